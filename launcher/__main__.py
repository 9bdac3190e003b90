"""`make run`: the whole mesh in the foreground; Ctrl-C or SIGTERM stops all of it. A process
that exits is restarted (NATS on its own store), with backoff; one that keeps failing right
after it starts stops the mesh."""

from __future__ import annotations

import signal
import sys
import threading

from launcher.mesh import LocalMesh, MeshConfig, development_keys
from launcher.supervision import GiveUpError


def say(line: str) -> None:
    print(f"launcher: {line}", file=sys.stderr, flush=True)


def main() -> int:
    config = MeshConfig.from_env()
    if not config.api_keys:
        config.api_keys = development_keys()
        tenant, key = config.api_keys.split(":", 1)
        print(f"API_KEYS not set: development key for tenant {tenant!r}: {key}", flush=True)
    mesh = LocalMesh(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        mesh.start(stopping=stop.is_set, say=say)
        if not stop.is_set():
            print(f"convertmesh is up: {mesh.http_url} (gRPC {mesh.grpc_target})", flush=True)
            print(mesh.ports(), flush=True)
        while not stop.wait(0.5):
            mesh.supervise(say=say)
        return 0
    except GiveUpError as error:
        say(f"{error}; stopping")
        return 1
    finally:
        mesh.stop()
        print("convertmesh stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
