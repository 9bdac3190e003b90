"""The synchronous client, on httpx. Every call is described in `calls`; this module sends it,
retries it (`retry`), and turns error answers into typed exceptions (`errors`).

    with Client("http://127.0.0.1:8080", "key") as client:
        job_id = client.create_job(["photo.heic"], options=Options(format="webp"))
        job = client.wait(job_id, on_progress=lambda job: print(job.progress))
        paths = client.download_outputs(job, "out/")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from convertmesh import calls
from convertmesh.calls import Call, DownloadProgress, Input, JobType
from convertmesh.errors import (
    ApiError,
    ServerUnreachableError,
    ToolUnavailableError,
    error_from_response,
)
from convertmesh.models import Archive, FileResult, Job, JobPage, Saved
from convertmesh.multipart import UploadProgress
from convertmesh.options import Options
from convertmesh.results import (
    NamePicker,
    ToolResult,
    filename_from_disposition,
    save_sync_files,
    without_payloads,
)
from convertmesh.retry import RetryPolicy
from convertmesh.tools import ToolMethods
from convertmesh.transport import (
    ERROR_BODY_LIMIT,
    describe_transport_error,
    never_sent,
    timeout_for,
    tool_unavailable,
)
from convertmesh.waiting import STREAM_READ_SECONDS, JobProgress, Waiter

# (the output, bytes received so far, its size or None when the server does not say)
FileProgress = Callable[[FileResult | Archive, int, int | None], None]


class Client(ToolMethods[ToolResult]):
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: Any = None,
        http: httpx.Client | None = None,
    ) -> None:
        """`base_url` and `api_key` default to CONVERTMESH_URL and CONVERTMESH_API_KEY.
        `on_retry` is called with a `RetryNotice` before each wait between attempts."""
        self.settings = calls.Settings(base_url, api_key, retry, on_retry)
        self._http = http or httpx.Client(timeout=timeout_for(timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------

    @contextmanager
    def _open(
        self, call: Call, read_timeout: httpx.Timeout | None = None
    ) -> Iterator[httpx.Response]:
        """The response to `call` with its body not yet read, after any retries; an error
        answer is raised as its typed exception."""
        if self.settings.needs_key_check(call):
            self._json(Call("GET", calls.KEY_CHECK, params={"limit": "1"}))
            self.settings.key_checked = True
        policy, attempt = self.settings.retry, 0
        while True:
            attempt += 1
            url = self.settings.url(call.path)
            headers = self.settings.headers(call, url)
            body = call.body()
            if body is not None:
                headers.update(body.headers())
            request = self._http.build_request(
                call.method,
                url,
                params=call.params or None,
                headers=headers,
                content=iter(body) if body is not None else None,
                timeout=read_timeout or httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as error:
                delay = policy.after_transport_error(
                    attempt, not never_sent(error), call.idempotent
                )
                if delay is None:
                    raise ServerUnreachableError(
                        self.settings.base_url, describe_transport_error(error)
                    ) from error
                self.settings.notify_retry(attempt, delay, describe_transport_error(error))
                time.sleep(delay)
                continue
            if response.status_code < 400:
                # Any answer that is not an error proves the key (KEY_CHECK_BYTES).
                self.settings.key_checked |= self.settings.same_origin(url)
                try:
                    yield response
                finally:
                    response.close()
                return
            problem = self._error(response, call)
            delay = policy.after_status(
                attempt, response.status_code, problem.retry_after, call.idempotent
            )
            if delay is None:
                raise problem
            self.settings.notify_retry(
                attempt, delay, f"the server answered {problem.status} {problem.code}".strip()
            )
            time.sleep(delay)

    def _error(self, response: httpx.Response, call: Call) -> ApiError:
        content = b""
        try:
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) >= ERROR_BODY_LIMIT:
                    break
        except httpx.TransportError:
            pass
        finally:
            response.close()
        return error_from_response(
            response.status_code, response.headers, content[:ERROR_BODY_LIMIT], call.describe()
        )

    def _json(self, call: Call) -> Any:
        with self._open(call) as response:
            response.read()
            return response.json()

    # -- jobs ----------------------------------------------------------------------------

    def create_job(
        self,
        inputs: Sequence[Input] | Input = (),
        *,
        source_url: str | None = None,
        options: Options | None = None,
        per_file: Sequence[Options] | None = None,
        job_type: JobType = "convert",
        create_archive: bool = False,
        callback_url: str | None = None,
        callback_secret: str | None = None,
        idempotency_key: str | None = None,
        on_upload: UploadProgress | None = None,
    ) -> str:
        """Uploads the files (streamed from disk) and returns the new job's id. A single URL
        as the input is sent as `sourceUrl` (the server fetches it)."""
        files, source_url = split_inputs(inputs, source_url)
        call = calls.create_job_call(
            files,
            source_url=source_url,
            options=options or Options(),
            per_file=per_file,
            job_type=job_type,
            create_archive=create_archive,
            callback_url=callback_url,
            callback_secret=callback_secret,
            idempotency_key=idempotency_key,
            on_upload=on_upload,
        )
        return str(self._json(call)["jobId"])

    def get_job(self, job_id: str) -> Job:
        return Job.from_json(self._json(Call("GET", f"/api/jobs/{job_id}")))

    def list_jobs(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> JobPage:
        return JobPage.from_json(self._json(calls.list_jobs_call(limit, offset, status)))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        offset = 0
        while True:
            page = self.list_jobs(limit=page_size, offset=offset, status=status)
            yield from page.jobs
            if not page.has_more or not page.jobs:
                return
            offset += len(page.jobs)

    def cancel_job(self, job_id: str) -> Job:
        return Job.from_json(self._json(Call("DELETE", f"/api/jobs/{job_id}", idempotent=False)))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: JobProgress | None = None,
        within: float | None = None,
    ) -> Job:
        """The job once it has finished, following its event stream (polling where the server
        has none); `on_progress` sees every change."""
        waiter = Waiter(job_id, on_progress, within)
        read_timeout = timeout_for(STREAM_READ_SECONDS)
        while not waiter.polling:
            call = Call("GET", f"/api/jobs/{job_id}/events", headers=waiter.event_headers())
            try:
                with self._open(call, read_timeout) as response:
                    if not waiter.takes_stream(
                        response.status_code, response.headers.get("content-type", "")
                    ):
                        break
                    for chunk in response.iter_raw():
                        finished = waiter.feed(chunk)
                        if finished is not None:
                            return finished
                        waiter.check_deadline()
                        if waiter.needs_fetch:
                            break
            except ApiError as error:
                if error.status not in (404, 405, 406, 501):
                    raise
                waiter.polling = True
            except (ServerUnreachableError, httpx.TransportError):
                pass
            if waiter.needs_fetch:
                waiter.polling = True
                break
            waiter.stream_ended()
            waiter.check_deadline()
        while True:
            job = self.get_job(job_id)
            waiter.report(job)
            if job.finished:
                return job
            waiter.check_deadline()
            time.sleep(waiter.next_poll_delay())

    # -- downloads -----------------------------------------------------------------------

    def download(
        self,
        target: FileResult | Archive | str,
        dest: str | os.PathLike[str] = ".",
        *,
        on_progress: DownloadProgress | None = None,
    ) -> Path:
        """Streams an output to `dest` (a file, or a directory to put it in, named by the
        output). A connection that breaks mid-way is resumed with a Range request."""
        url = calls.download_url(target)
        path: Path | None = None
        received, etag, breaks = 0, None, 0
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            with self._open(Call("GET", url, headers=headers)) as response:
                if path is None:
                    disposition = response.headers.get("content-disposition")
                    path = calls.destination(target, dest, disposition)
                part = calls.partial_path(path)
                resumed = bool(received) and response.status_code == 206
                resumed = resumed and etag in (None, response.headers.get("etag"))
                received = received if resumed else 0
                etag = response.headers.get("etag")
                length = response.headers.get("content-length")
                total = received + int(length) if length and length.isdigit() else None
                try:
                    with part.open("ab" if resumed else "wb") as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
                            received += len(chunk)
                            if on_progress is not None:
                                on_progress(received, total)
                except httpx.TransportError as error:
                    breaks += 1
                    if breaks >= self.settings.retry.attempts:
                        raise ServerUnreachableError(
                            self.settings.base_url, describe_transport_error(error)
                        ) from error
                    continue
            os.replace(part, path)
            return path

    def download_outputs(
        self,
        job: Job,
        directory: str | os.PathLike[str] = ".",
        *,
        archive: bool = False,
        protected: set[Path] | None = None,
        on_progress: FileProgress | None = None,
    ) -> list[Saved]:
        """Every completed output of the job (and its zip, with `archive`) into `directory`,
        under names that collide neither with each other nor with `protected` paths."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        names = NamePicker(folder, protected)
        saved: list[Saved] = []
        targets: list[FileResult | Archive] = [item for item in job.files if item.ok]
        if archive and job.archive is not None and job.archive.download_url:
            targets.append(job.archive)
        for target in targets:
            name = (
                target.filename
                if isinstance(target, FileResult)
                else f"convertmesh-{job.id[:8]}.zip"
            )
            path = names.pick(name)

            def report(received: int, total: int | None, target: Any = target) -> None:
                if on_progress is not None:
                    on_progress(target, received, total)

            written = self.download(target, path, on_progress=report)
            saved.append(saved_output(target, written))
        return saved

    # -- synchronous routes --------------------------------------------------------------

    def convert(
        self,
        inputs: Sequence[Input] | Input = (),
        format: str | None = None,
        *,
        source_url: str | None = None,
        options: Options | None = None,
        per_file: Sequence[Options] | None = None,
        dest: str | os.PathLike[str] = ".",
        on_upload: UploadProgress | None = None,
    ) -> list[Saved]:
        """POST /api/convert: waits inside the request and writes the outputs into `dest`."""
        chosen = (options or Options()).merged(Options(format=format))
        return self._sync(
            route="convert",
            inputs=inputs,
            source_url=source_url,
            options=chosen,
            per_file=per_file,
            dest=dest,
            on_upload=on_upload,
        )

    def compress(
        self,
        inputs: Sequence[Input] | Input = (),
        *,
        source_url: str | None = None,
        options: Options | None = None,
        per_file: Sequence[Options] | None = None,
        dest: str | os.PathLike[str] = ".",
        on_upload: UploadProgress | None = None,
    ) -> list[Saved]:
        """POST /api/compress: each output keeps its input's format."""
        chosen = options or Options()
        return self._sync(
            route="compress",
            inputs=inputs,
            source_url=source_url,
            options=chosen,
            per_file=per_file,
            dest=dest,
            on_upload=on_upload,
        )

    def _sync(
        self,
        *,
        route: Any,
        inputs: Sequence[Input] | Input,
        source_url: str | None,
        options: Options,
        per_file: Sequence[Options] | None,
        dest: str | os.PathLike[str],
        on_upload: UploadProgress | None,
    ) -> list[Saved]:
        files, source_url = split_inputs(inputs, source_url)
        call = calls.sync_call(
            route,
            files,
            source_url=source_url,
            options=options,
            per_file=per_file,
            want_bytes=len(files) + (source_url is not None) == 1,
            on_upload=on_upload,
        )
        return list(self._save_answer(call, dest).outputs)

    def tool(
        self,
        name: str,
        source: Sequence[Input] | Input,
        *,
        dest: str | os.PathLike[str] = ".",
        background: bool = False,
        on_upload: UploadProgress | None = None,
        **params: Any,
    ) -> ToolResult:
        """POST /api/media/<name> with a file (or a URL, sent as `sourceUrl`). Outputs are
        written into `dest`; `inspect` answers its `media` document; with `background` the
        tool runs as a job and its id is answered (wait for it and download as for jobs)."""
        files, source_url = split_inputs(source, None)
        call = calls.tool_call(
            name,
            files,
            source_url=source_url,
            params=params,
            background=background,
            want_bytes=name != "inspect",
            on_upload=on_upload,
        )
        try:
            return self._save_answer(call, dest)
        except ApiError as error:
            if isinstance(error, ToolUnavailableError) or error.status not in (404, 501):
                raise
            raise tool_unavailable(name, error) from error

    def _save_answer(self, call: Call, dest: str | os.PathLike[str]) -> ToolResult:
        folder = Path(dest)
        with self._open(call) as response:
            if "application/json" in response.headers.get("content-type", ""):
                response.read()
                return json_answer(response.json(), folder)
            folder.mkdir(parents=True, exist_ok=True)
            name = filename_from_disposition(response.headers.get("content-disposition"))
            path = NamePicker(folder).pick(name or "output")
            part = calls.partial_path(path)
            with part.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            os.replace(part, path)
            saved = Saved(
                str(path), path.name, response.headers.get("content-type"), path.stat().st_size
            )
            return ToolResult(outputs=(saved,))


def json_answer(body: Any, folder: Path) -> ToolResult:
    if not isinstance(body, Mapping):
        return ToolResult(raw={"answer": body})
    if "jobId" in body:
        return ToolResult(job_id=str(body["jobId"]), raw=body)
    if isinstance(body.get("media"), Mapping):
        return ToolResult(media=body["media"], raw=body)
    folder.mkdir(parents=True, exist_ok=True)
    saved, failed = save_sync_files(body, NamePicker(folder))
    return ToolResult(outputs=saved, failed=failed, raw=without_payloads(body))


def split_inputs(
    inputs: Sequence[Input] | Input, source_url: str | None
) -> tuple[list[Input], str | None]:
    """Files, and the one URL given in their place (as `sourceUrl`)."""
    listed: list[Input] = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if source_url is None and len(listed) == 1 and calls.is_url(listed[0]):
        return [], str(listed[0])
    return listed, source_url


def saved_output(target: FileResult | Archive, path: Path) -> Saved:
    size = path.stat().st_size
    if isinstance(target, FileResult):
        return Saved(
            str(path), path.name, target.mime_type, size, target.original_size, target.saved_percent
        )
    return Saved(str(path), path.name, "application/zip", size)
