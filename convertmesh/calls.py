"""The API's calls as plain descriptions (method, path, fields, files), and what both clients
share around them: configuration, headers, where a download goes. The sync client (`client`)
and the async one (`aio`) only add the I/O.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from convertmesh.errors import InvalidRequestError
from convertmesh.models import Archive, FileResult, safe_filename
from convertmesh.multipart import FilePart, MultipartBody, UploadProgress
from convertmesh.options import Options, form_fields
from convertmesh.results import filename_from_disposition
from convertmesh.retry import RetryNotice, RetryPolicy
from convertmesh.tools import tool_named, wire_params

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "CONVERTMESH_URL"
KEY_VARIABLE = "CONVERTMESH_API_KEY"
USER_AGENT = "convertmesh-python/0.1"
# Above this much to upload, the key is checked first with a cheap request: a server refusing
# the key answers before reading the body, and a large body still being written when the
# connection closes would hide that answer behind a broken pipe.
KEY_CHECK_BYTES = 1024 * 1024
KEY_CHECK = "/api/jobs"

JobType = Literal["convert", "compress"]
Input = str | os.PathLike[str]
# (bytes received so far, total or None when the server does not say)
DownloadProgress = Callable[[int, int | None], None]


@dataclass
class Call:
    method: str
    path: str  # relative to the base URL, or an absolute URL
    params: dict[str, str] = field(default_factory=dict)
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    multipart: bool = False
    on_upload: UploadProgress | None = None

    def body(self) -> MultipartBody | None:
        """A fresh body for each attempt (a retry sends the files again from disk)."""
        if not self.multipart:
            return None
        return MultipartBody(self.fields, self.files, self.on_upload)

    def upload_bytes(self) -> int:
        return sum(part.size for part in self.files)

    def describe(self) -> str:
        return f"{self.method} {urlsplit(self.path).path or self.path}"


def is_url(value: Input) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def _file_parts(inputs: Sequence[Input], part_name: str) -> list[FilePart]:
    if not inputs:
        raise InvalidRequestError("Give at least one file.")
    urls = [str(value) for value in inputs if is_url(value)]
    if urls:
        raise InvalidRequestError(
            f"{urls[0]} is a URL: pass it as source_url (one URL per job), not as a file."
        )
    return [FilePart.of(part_name, path) for path in inputs]


def _per_file(count: int, options: Options, per_file: Sequence[Options] | None) -> list[Options]:
    if per_file is None:
        return [options] * count
    if len(per_file) != count:
        raise InvalidRequestError(f"per_file has {len(per_file)} entries for {count} files.")
    return [options.merged(own) for own in per_file]


def create_job_call(
    inputs: Sequence[Input],
    *,
    source_url: str | None,
    options: Options,
    per_file: Sequence[Options] | None,
    job_type: JobType,
    create_archive: bool,
    callback_url: str | None,
    callback_secret: str | None,
    idempotency_key: str | None,
    on_upload: UploadProgress | None,
) -> Call:
    """POST /api/jobs. An Idempotency-Key is always sent (a fresh one unless given), so a retry
    after a lost answer finds the first job instead of creating a second."""
    fields: list[tuple[str, str]] = [("jobType", job_type), ("saveToStorage", "true")]
    if source_url is not None:
        if inputs:
            raise InvalidRequestError("Give files or a source_url, not both.")
        files: list[FilePart] = []
        fields.append(("sourceUrl", source_url))
        fields.extend(form_fields(_per_file(1, options, per_file)))
    else:
        files = _file_parts(inputs, "files")
        fields.extend(form_fields(_per_file(len(files), options, per_file)))
    if create_archive:
        fields.append(("createArchive", "true"))
    if callback_url:
        fields.append(("callbackUrl", callback_url))
    if callback_secret:
        fields.append(("callbackSecret", callback_secret))
    return Call(
        "POST",
        "/api/jobs",
        fields=fields,
        files=files,
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        idempotent=True,
        multipart=True,
        on_upload=on_upload,
    )


def sync_call(
    route: Literal["convert", "compress"],
    inputs: Sequence[Input],
    *,
    source_url: str | None,
    options: Options,
    per_file: Sequence[Options] | None,
    want_bytes: bool,
    on_upload: UploadProgress | None,
) -> Call:
    """POST /api/convert or /api/compress; with `want_bytes` (one file) the output's bytes
    are asked for instead of a JSON body with a `data:` URL."""
    if source_url is not None:
        if inputs:
            raise InvalidRequestError("Give files or a source_url, not both.")
        files: list[FilePart] = []
        fields = [("sourceUrl", source_url), *form_fields(_per_file(1, options, per_file))]
    else:
        files = _file_parts(inputs, "files")
        fields = form_fields(_per_file(len(files), options, per_file))
    accept = "application/octet-stream" if want_bytes else "application/json"
    return Call(
        "POST",
        f"/api/{route}",
        fields=fields,
        files=files,
        headers={"Accept": accept},
        idempotent=False,
        multipart=True,
        on_upload=on_upload,
    )


def tool_call(
    name: str,
    inputs: Sequence[Input],
    *,
    source_url: str | None,
    params: Mapping[str, object],
    background: bool,
    want_bytes: bool,
    on_upload: UploadProgress | None,
) -> Call:
    """POST /api/media/<tool>: one `file` (repeated `files` for image-to-pdf) or a
    `sourceUrl`, the tool's parameters, and extra file parameters such as `watermarkFile`."""
    tool = tool_named(name)
    given = dict(params)
    extra: list[FilePart] = []
    for part in tool.file_params:
        camel, snake = given.pop(part, None), given.pop(_snake(part), None)
        chosen = camel if camel is not None else snake
        if chosen is not None:
            extra.append(FilePart.of(part, str(chosen)))
    fields = wire_params(tool, given)
    if source_url is not None:
        if inputs:
            raise InvalidRequestError("Give files or a source_url, not both.")
        files: list[FilePart] = []
        fields.insert(0, ("sourceUrl", source_url))
    else:
        if len(inputs) > 1 and not tool.many_files:
            raise InvalidRequestError(f"The tool {name!r} takes one file.")
        files = _file_parts(inputs, "files" if tool.many_files else "file")
    if background:
        fields.append(("async", "true"))
    accept = "application/octet-stream" if want_bytes and not background else "application/json"
    return Call(
        "POST",
        f"/api/media/{name}",
        fields=fields,
        files=files + extra,
        headers={"Accept": accept},
        idempotent=False,
        multipart=True,
        on_upload=on_upload,
    )


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def list_jobs_call(limit: int, offset: int, status: str | None) -> Call:
    params = {"limit": str(limit), "offset": str(offset)}
    if status:
        params["status"] = status
    return Call("GET", "/api/jobs", params=params)


class Settings:
    """What both clients are configured with: where, which key, how to retry."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        retry: RetryPolicy | None,
        on_retry: Any,
    ) -> None:
        self.base_url = (base_url or os.environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_VARIABLE, "")
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.key_checked = False
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"{self.base_url!r} is not an http(s) base URL.")
        self._origin = (parts.scheme, parts.hostname, parts.port)

    def url(self, path: str) -> str:
        return path if "://" in path else urljoin(self.base_url + "/", path.lstrip("/"))

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port) == self._origin

    def headers(self, call: Call, url: str) -> dict[str, str]:
        """The call's headers, with the key only for our own server: a signed link elsewhere
        (a CDN, another host) needs no key and must not be handed one."""
        headers = {"User-Agent": USER_AGENT, **call.headers}
        if self.api_key and self.same_origin(url):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def needs_key_check(self, call: Call) -> bool:
        return not self.key_checked and call.upload_bytes() > KEY_CHECK_BYTES

    def notify_retry(self, attempt: int, delay: float, reason: str) -> None:
        if self.on_retry is not None:
            self.on_retry(RetryNotice(attempt, delay, reason))


def destination(
    target: FileResult | Archive | str,
    dest: str | os.PathLike[str],
    disposition: str | None = None,
) -> Path:
    """Where an output is written: `dest` itself, or a file in it when it is a directory,
    named by the output (a bare URL: by the answer's Content-Disposition, else the URL)."""
    path = Path(dest)
    if not (path.is_dir() or str(dest).endswith(os.sep)):
        return path
    if isinstance(target, FileResult):
        return path / target.filename
    named = filename_from_disposition(disposition)
    if named:
        return path / named
    if isinstance(target, Archive):
        return path / "outputs.zip"
    return path / safe_filename(PurePosixPath(urlsplit(target).path).name, "download")


def download_url(target: FileResult | Archive | str) -> str:
    if isinstance(target, str):
        return target
    if target.download_url is None:
        what = target.filename if isinstance(target, FileResult) else "the archive"
        reason = target.error_message or f"it is {target.status}"
        raise InvalidRequestError(f"{what} has no output to download: {reason}.")
    return target.download_url


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")
