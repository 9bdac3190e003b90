"""The asynchronous client, on httpx's AsyncClient: the same calls, retries and errors as
`convertmesh.client.Client`, awaited.

    async with AsyncClient("http://127.0.0.1:8080", "key") as client:
        job_id = await client.create_job(["clip.mov"], options=Options(format="mp4"))
        job = await client.wait(job_id)
        await client.download_outputs(job, "out/")
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from convertmesh import calls
from convertmesh.calls import Call, DownloadProgress, Input, JobType
from convertmesh.client import FileProgress, json_answer, saved_output, split_inputs
from convertmesh.errors import (
    ApiError,
    ServerUnreachableError,
    ToolUnavailableError,
    error_from_response,
)
from convertmesh.models import Archive, FileResult, Job, JobPage, Saved
from convertmesh.multipart import UploadProgress
from convertmesh.options import Options
from convertmesh.results import NamePicker, ToolResult, filename_from_disposition
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


class AsyncClient(ToolMethods[Awaitable[ToolResult]]):
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: Any = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = calls.Settings(base_url, api_key, retry, on_retry)
        self._http = http or httpx.AsyncClient(timeout=timeout_for(timeout))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- sending -------------------------------------------------------------------------

    @asynccontextmanager
    async def _open(
        self, call: Call, read_timeout: httpx.Timeout | None = None
    ) -> AsyncIterator[httpx.Response]:
        if self.settings.needs_key_check(call):
            await self._json(Call("GET", calls.KEY_CHECK, params={"limit": "1"}))
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
                content=body.async_chunks() if body is not None else None,
                timeout=read_timeout or httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as error:
                delay = policy.after_transport_error(
                    attempt, not never_sent(error), call.idempotent
                )
                if delay is None:
                    raise ServerUnreachableError(
                        self.settings.base_url, describe_transport_error(error)
                    ) from error
                self.settings.notify_retry(attempt, delay, describe_transport_error(error))
                await asyncio.sleep(delay)
                continue
            if response.status_code < 400:
                # Any answer that is not an error proves the key (KEY_CHECK_BYTES).
                self.settings.key_checked |= self.settings.same_origin(url)
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            problem = await self._error(response, call)
            delay = policy.after_status(
                attempt, response.status_code, problem.retry_after, call.idempotent
            )
            if delay is None:
                raise problem
            self.settings.notify_retry(
                attempt, delay, f"the server answered {problem.status} {problem.code}".strip()
            )
            await asyncio.sleep(delay)

    async def _error(self, response: httpx.Response, call: Call) -> ApiError:
        content = b""
        try:
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) >= ERROR_BODY_LIMIT:
                    break
        except httpx.TransportError:
            pass
        finally:
            await response.aclose()
        return error_from_response(
            response.status_code, response.headers, content[:ERROR_BODY_LIMIT], call.describe()
        )

    async def _json(self, call: Call) -> Any:
        async with self._open(call) as response:
            await response.aread()
            return response.json()

    # -- jobs ----------------------------------------------------------------------------

    async def create_job(
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
        return str((await self._json(call))["jobId"])

    async def get_job(self, job_id: str) -> Job:
        return Job.from_json(await self._json(Call("GET", f"/api/jobs/{job_id}")))

    async def list_jobs(
        self, *, limit: int = 20, offset: int = 0, status: str | None = None
    ) -> JobPage:
        return JobPage.from_json(await self._json(calls.list_jobs_call(limit, offset, status)))

    async def cancel_job(self, job_id: str) -> Job:
        call = Call("DELETE", f"/api/jobs/{job_id}", idempotent=False)
        return Job.from_json(await self._json(call))

    async def wait(
        self,
        job_id: str,
        *,
        on_progress: JobProgress | None = None,
        within: float | None = None,
    ) -> Job:
        waiter = Waiter(job_id, on_progress, within)
        read_timeout = timeout_for(STREAM_READ_SECONDS)
        while not waiter.polling:
            call = Call("GET", f"/api/jobs/{job_id}/events", headers=waiter.event_headers())
            try:
                async with self._open(call, read_timeout) as response:
                    if not waiter.takes_stream(
                        response.status_code, response.headers.get("content-type", "")
                    ):
                        break
                    async for chunk in response.aiter_raw():
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
            job = await self.get_job(job_id)
            waiter.report(job)
            if job.finished:
                return job
            waiter.check_deadline()
            await asyncio.sleep(waiter.next_poll_delay())

    # -- downloads -----------------------------------------------------------------------

    async def download(
        self,
        target: FileResult | Archive | str,
        dest: str | os.PathLike[str] = ".",
        *,
        on_progress: DownloadProgress | None = None,
    ) -> Path:
        url = calls.download_url(target)
        path: Path | None = None
        received, etag, breaks = 0, None, 0
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            async with self._open(Call("GET", url, headers=headers)) as response:
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
                out = await asyncio.to_thread(part.open, "ab" if resumed else "wb")
                try:
                    async for chunk in response.aiter_bytes():
                        await asyncio.to_thread(out.write, chunk)
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
                finally:
                    await asyncio.to_thread(out.close)
            os.replace(part, path)
            return path

    async def download_outputs(
        self,
        job: Job,
        directory: str | os.PathLike[str] = ".",
        *,
        archive: bool = False,
        protected: set[Path] | None = None,
        on_progress: FileProgress | None = None,
    ) -> list[Saved]:
        folder = Path(directory)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
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

            def report(received: int, total: int | None, target: Any = target) -> None:
                if on_progress is not None:
                    on_progress(target, received, total)

            written = await self.download(target, names.pick(name), on_progress=report)
            saved.append(saved_output(target, written))
        return saved

    # -- synchronous routes --------------------------------------------------------------

    async def convert(
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
        chosen = (options or Options()).merged(Options(format=format))
        return await self._sync(
            route="convert",
            inputs=inputs,
            source_url=source_url,
            options=chosen,
            per_file=per_file,
            dest=dest,
            on_upload=on_upload,
        )

    async def compress(
        self,
        inputs: Sequence[Input] | Input = (),
        *,
        source_url: str | None = None,
        options: Options | None = None,
        per_file: Sequence[Options] | None = None,
        dest: str | os.PathLike[str] = ".",
        on_upload: UploadProgress | None = None,
    ) -> list[Saved]:
        chosen = options or Options()
        return await self._sync(
            route="compress",
            inputs=inputs,
            source_url=source_url,
            options=chosen,
            per_file=per_file,
            dest=dest,
            on_upload=on_upload,
        )

    async def _sync(
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
        return list((await self._save_answer(call, dest)).outputs)

    async def tool(
        self,
        name: str,
        source: Sequence[Input] | Input,
        *,
        dest: str | os.PathLike[str] = ".",
        background: bool = False,
        on_upload: UploadProgress | None = None,
        **params: Any,
    ) -> ToolResult:
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
            return await self._save_answer(call, dest)
        except ApiError as error:
            if isinstance(error, ToolUnavailableError) or error.status not in (404, 501):
                raise
            raise tool_unavailable(name, error) from error

    async def _save_answer(self, call: Call, dest: str | os.PathLike[str]) -> ToolResult:
        folder = Path(dest)
        async with self._open(call) as response:
            if "application/json" in response.headers.get("content-type", ""):
                await response.aread()
                return json_answer(response.json(), folder)
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            name = filename_from_disposition(response.headers.get("content-disposition"))
            path = NamePicker(folder).pick(name or "output")
            part = calls.partial_path(path)
            out = await asyncio.to_thread(part.open, "wb")
            try:
                async for chunk in response.aiter_bytes():
                    await asyncio.to_thread(out.write, chunk)
            finally:
                await asyncio.to_thread(out.close)
            os.replace(part, path)
            size = path.stat().st_size
            saved = Saved(str(path), path.name, response.headers.get("content-type"), size)
            return ToolResult(outputs=(saved,))
