"""Jobs and results as the API answers them, read leniently so that older and newer servers
both work: a cancelled job is `status: "cancelled"` on some and `status: "failed"` with
`cancelled: true` on others; `filename` is the output's name where `originalFilename` is
given, the upload's name where it is not (the output's name is then derived from its format).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

TERMINAL = frozenset({"completed", "failed", "cancelled"})

# Output format -> file extension, where they differ from the format's name.
_EXTENSIONS = {"tgz": "tar.gz", "heif": "heic"}
_MIME_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/tiff": "tiff",
    "image/gif": "gif",
    "image/heif": "heic",
    "image/svg+xml": "svg",
    "application/pdf": "pdf",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/mp4": "m4a",
    "audio/flac": "flac",
    "application/zip": "zip",
    "application/x-tar": "tar",
    "application/gzip": "gz",
    "application/x-bzip2": "bz2",
    "application/x-xz": "xz",
    "application/x-7z-compressed": "7z",
    "application/vnd.rar": "rar",
    "application/json": "json",
}
_ARCHIVE_FORMATS = frozenset({"zip", "tar", "tgz", "7z", "rar", "gz", "bz2", "xz"})


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def safe_filename(name: str, fallback: str = "output") -> str:
    """A name that is safe to create in a directory: no folders, no control characters, no
    leading dots."""
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = "".join(c for c in base if c.isprintable() and c not in '<>:"|?*').strip(" .")
    return cleaned[:200] or fallback


def extension_for(format_name: str | None, mime_type: str | None) -> str | None:
    if mime_type == "application/zip" and format_name not in _ARCHIVE_FORMATS:
        return "zip"  # an archive whose members were converted comes back zipped
    if format_name:
        return _EXTENSIONS.get(format_name, format_name)
    return _MIME_EXTENSIONS.get(mime_type or "")


def stem_of(name: str) -> str:
    for double in (".tar.gz", ".tar.bz2", ".tar.xz"):
        if name.lower().endswith(double):
            return name[: -len(double)]
    return PurePosixPath(name).stem or name


@dataclass(frozen=True)
class FileResult:
    index: int
    filename: str  # the output's name, safe to create
    original_filename: str
    status: str
    progress: int | None
    original_size: int | None
    final_size: int | None
    saved_percent: float | None
    mime_type: str | None
    format: str | None
    width: int | None
    height: int | None
    duration: float | None
    applied_quality: int | None
    download_url: str | None
    error_message: str | None
    error_code: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileResult:
        given = _str(data.get("filename")) or f"file-{data.get('index', 0)}"
        mime, fmt = _str(data.get("mimeType")), _str(data.get("format"))
        if _str(data.get("originalFilename")):
            original, output = str(data["originalFilename"]), given
        else:  # an older server: `filename` is the upload's name
            original = given
            extension = extension_for(fmt, mime)
            output = f"{stem_of(given)}.{extension}" if extension else given
        duration = data.get("duration")
        saved = data.get("savedPercent")
        return cls(
            index=_int(data.get("index")) or 0,
            filename=safe_filename(output),
            original_filename=original,
            status=str(data.get("status", "pending")),
            progress=_int(data.get("progress")),
            original_size=_int(data.get("originalSize")),
            final_size=_int(data.get("finalSize")),
            saved_percent=float(saved) if isinstance(saved, int | float) else None,
            mime_type=mime,
            format=fmt,
            width=_int(data.get("width")),
            height=_int(data.get("height")),
            duration=float(duration) if isinstance(duration, int | float) else None,
            applied_quality=_int(data.get("appliedQuality")),
            download_url=_str(data.get("downloadUrl")),
            error_message=_str(data.get("errorMessage")) or _str(data.get("error")),
            error_code=_str(data.get("errorCode")) or _str(data.get("code")),
            raw=data,
        )

    def progress_percent(self) -> int:
        """Progress 0-100, estimated from the status where the server gives none."""
        if self.status in ("completed", "failed"):
            return 100
        if self.progress is not None:
            return max(0, min(100, self.progress))
        return 0


@dataclass(frozen=True)
class Archive:
    status: str
    size: int | None
    download_url: str | None
    error_message: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Archive:
        return cls(
            status=str(data.get("status", "pending")),
            size=_int(data.get("size")),
            download_url=_str(data.get("downloadUrl")),
            error_message=_str(data.get("errorMessage")),
            raw=data,
        )


@dataclass(frozen=True)
class Job:
    id: str
    job_type: str
    status: str  # pending, processing, completed, failed (or cancelled on older servers)
    cancelled: bool
    progress: int
    total_files: int
    completed_files: int
    failed_files: int
    error_message: str | None
    files: tuple[FileResult, ...]
    archive: Archive | None
    created_at: str | None
    updated_at: str | None
    completed_at: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL or self.cancelled

    @property
    def all_ok(self) -> bool:
        return self.status == "completed" and all(item.ok for item in self.files)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        results = data.get("results") if isinstance(data.get("results"), Mapping) else {}
        assert isinstance(results, Mapping)
        items = results.get("files") if isinstance(results.get("files"), list) else []
        archive = results.get("archive")
        status = str(data.get("status", "pending"))
        return cls(
            id=str(data.get("jobId", data.get("id", ""))),
            job_type=str(data.get("jobType", "convert")),
            status=status,
            cancelled=status == "cancelled" or data.get("cancelled") is True,
            progress=_int(data.get("progress")) or 0,
            total_files=_int(data.get("totalFiles")) or len(items or ()),
            completed_files=_int(data.get("completedFiles")) or 0,
            failed_files=_int(data.get("failedFiles")) or 0,
            error_message=_str(data.get("errorMessage")),
            files=tuple(
                FileResult.from_json(item) for item in items or () if isinstance(item, Mapping)
            ),
            archive=Archive.from_json(archive) if isinstance(archive, Mapping) else None,
            created_at=_str(data.get("createdAt")),
            updated_at=_str(data.get("updatedAt")),
            completed_at=_str(data.get("completedAt")),
            raw=data,
        )


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    limit: int
    offset: int
    total: int
    has_more: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobPage:
        page = data.get("pagination") if isinstance(data.get("pagination"), Mapping) else {}
        assert isinstance(page, Mapping)
        jobs = tuple(Job.from_json(j) for j in data.get("jobs", ()) if isinstance(j, Mapping))
        return cls(
            jobs=jobs,
            limit=_int(page.get("limit")) or len(jobs),
            offset=_int(page.get("offset")) or 0,
            total=_int(page.get("total")) or len(jobs),
            has_more=page.get("hasMore") is True,
        )


@dataclass(frozen=True)
class Saved:
    """An output written to disk."""

    path: str
    filename: str
    mime_type: str | None
    size: int
    original_size: int | None = None
    saved_percent: float | None = None
