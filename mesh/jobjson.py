"""The job as Convertly's JSON shows it (API.md), from the `Job` proto.

Shared by the gateway (GET /api/jobs/{id}, events, sync answers) and the orchestrator (callback
`data`), so a receiver gets exactly what a GET returns. Every `downloadUrl` is signed
(`mesh.links`), so it works without the API key.

Convertly's SDKs wait for pending, processing, completed or failed: a cancelled job is shown as
`failed` with `errorMessage: "Cancelled"`, `cancelled: true` and `cancelledAt` (its files
likewise), while `status=cancelled` still filters the list.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks

CANCELLED_MESSAGE = "Cancelled"


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


def job_status(value: int) -> str:
    return _name(jobs_pb2.JobStatus.Name(value), "JOB_STATUS_")  # type: ignore[arg-type]


def file_status(value: int) -> str:
    return _name(jobs_pb2.FileStatus.Name(value), "FILE_STATUS_")  # type: ignore[arg-type]


def public_job_status(value: int) -> str:
    """The status a Convertly client sees: cancelled is failed (with `cancelled: true`)."""
    return "failed" if value == jobs_pb2.JOB_STATUS_CANCELLED else job_status(value)


def public_file_status(value: int) -> str:
    return "failed" if value == jobs_pb2.FILE_STATUS_CANCELLED else file_status(value)


PUBLIC_FILE_STATUSES = tuple(
    dict.fromkeys(
        public_file_status(v)
        for v in jobs_pb2.FileStatus.values()
        if v != jobs_pb2.FILE_STATUS_UNSPECIFIED
    )
)
PUBLIC_JOB_STATUSES = tuple(
    dict.fromkeys(
        public_job_status(v)
        for v in jobs_pb2.JobStatus.values()
        if v != jobs_pb2.JOB_STATUS_UNSPECIFIED
    )
)


STATUS_FILTERS = {
    job_status(v): v for v in jobs_pb2.JobStatus.values() if v != jobs_pb2.JOB_STATUS_UNSPECIFIED
}


def _time(stamp: Timestamp) -> str | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToJsonString()


def saved_percent(original_size: int, final_size: int) -> float:
    # `+ 0.0` turns the -0.0 of a byte-equal output into 0.0.
    return round((1 - final_size / original_size) * 100, 2) + 0.0


def render_file(
    job: jobs_pb2.Job, item: jobs_pb2.FileResult, links: DownloadLinks
) -> dict[str, Any]:
    completed = item.status == jobs_pb2.FILE_STATUS_COMPLETED
    cancelled = item.status == jobs_pb2.FILE_STATUS_CANCELLED
    saved = None
    if completed and item.original_size:
        saved = saved_percent(item.original_size, item.final_size)
    path = f"/api/jobs/{job.job_id}/files/{item.index}"
    return {
        "index": item.index,
        # The output's name (a client saving by it gets the right extension); the upload's
        # own name is `originalFilename`.
        "filename": item.output_filename or item.filename,
        "originalFilename": item.filename,
        "status": public_file_status(item.status),
        "progress": item.progress,
        "originalSize": item.original_size,
        "finalSize": item.final_size if completed else None,
        "savedPercent": saved,
        "mimeType": item.mime_type or None,
        "format": item.output_format or None,
        "detectedFormat": item.detected_format or None,
        "appliedQuality": item.applied_quality if item.HasField("applied_quality") else None,
        "width": item.width if item.HasField("width") else None,
        "height": item.height if item.HasField("height") else None,
        "duration": item.duration if item.HasField("duration") else None,
        "keptOriginal": item.kept_original,
        "downloadUrl": links.url(job.tenant, path) if completed else None,
        "errorMessage": CANCELLED_MESSAGE if cancelled else item.error_message or None,
        "errorCode": "CANCELLED" if cancelled else item.error_code or None,
        "entries": [
            {
                "name": entry.name,
                "status": public_file_status(entry.status),
                "outputName": entry.output_name or None,
                "errorMessage": entry.error_message or None,
            }
            for entry in item.entries
        ]
        or None,
    }


def render_callback(delivery: jobs_pb2.CallbackDelivery) -> dict[str, Any]:
    return {
        "eventId": delivery.event_id,
        "type": delivery.type,
        "attempt": delivery.attempt,
        "status": delivery.status,
        "httpStatus": delivery.http_status or None,
        "at": _time(delivery.at),
        "error": delivery.error or None,
    }


def render_archive(job: jobs_pb2.Job, links: DownloadLinks) -> dict[str, Any] | None:
    if not job.HasField("archive"):
        return None
    archive = job.archive
    completed = archive.status == jobs_pb2.FILE_STATUS_COMPLETED
    path = f"/api/jobs/{job.job_id}/archive"
    return {
        "status": public_file_status(archive.status),
        "size": archive.size if completed else None,
        "mimeType": "application/zip",
        "downloadUrl": links.url(job.tenant, path) if completed else None,
        "errorMessage": archive.error_message or None,
    }


def render_job(job: jobs_pb2.Job, links: DownloadLinks) -> dict[str, Any]:
    cancelled = job.status == jobs_pb2.JOB_STATUS_CANCELLED
    completed_at = _time(job.completed_at) if job.HasField("completed_at") else None
    rendered: dict[str, Any] = {
        "jobId": job.job_id,
        "jobType": _name(jobs_pb2.JobType.Name(job.job_type), "JOB_TYPE_"),
        "status": public_job_status(job.status),
        "totalFiles": len(job.files),
        "completedFiles": job.completed_files,
        "failedFiles": job.failed_files,
        "progress": job.progress,
        "errorMessage": CANCELLED_MESSAGE if cancelled else job.error_message or None,
        "cancelled": cancelled,
        "cancelledAt": completed_at if cancelled else None,
        "results": {
            "files": [render_file(job, item, links) for item in job.files],
            "archive": render_archive(job, links),
        },
        "createdAt": _time(job.created_at),
        "updatedAt": _time(job.updated_at),
        "completedAt": completed_at,
        "callbacks": [render_callback(delivery) for delivery in job.callbacks],
    }
    if job.tool.tool:
        rendered["tool"] = job.tool.tool
    return rendered
