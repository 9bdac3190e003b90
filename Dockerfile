# One image for every service: `python -m services.<name>` (the Deployments' args).
# Build: `make image` (podman or docker). Only what runs is installed: requirements.lock and the
# convertmesh wheel, whose build generates the gRPC stubs from proto/ (setup.py).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock ./
RUN python -m venv /opt/convertmesh \
    && /opt/convertmesh/bin/pip install --no-deps -r requirements.lock
COPY . .
RUN /opt/convertmesh/bin/pip install --no-deps . \
    && /opt/convertmesh/bin/python -c "import mesh.jobs.v1.jobs_pb2, services.gateway.app"

FROM ${BASE_IMAGE}
# libarchive: the archive worker reads archives through libarchive-c. Unpinned: Debian's
# security updates replace the exact version within the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libarchive13 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 convertmesh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin convertmesh \
    && mkdir /scratch \
    && chown 10001:10001 /scratch
COPY --from=build /opt/convertmesh /opt/convertmesh
# The root filesystem is read-only in the pods: scratch files, the sandbox's fork-server
# socket and every temporary file go to /scratch, a writable volume.
ENV PATH=/opt/convertmesh/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCRATCH_DIR=/scratch \
    TMPDIR=/scratch
VOLUME ["/scratch"]
WORKDIR /opt/convertmesh
USER 10001:10001
# gateway HTTP, orchestrator gRPC, worker gRPC health, metrics
EXPOSE 8080 50051 8081 9090
CMD ["python", "-m", "services.gateway"]
