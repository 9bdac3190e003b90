"""The job as Convertly's JSON shows it (API.md), from the `Job` proto.

Shared by the gateway (GET /api/jobs/{id}, events, sync answers) and the orchestrator (callback
`data`), so a receiver gets exactly what a GET returns.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.jobs.v1 import jobs_pb2


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


def job_status(value: int) -> str:
    return _name(jobs_pb2.JobStatus.Name(value), "JOB_STATUS_")  # type: ignore[arg-type]


def file_status(value: int) -> str:
    return _name(jobs_pb2.FileStatus.Name(value), "FILE_STATUS_")  # type: ignore[arg-type]


STATUS_FILTERS = {
    job_status(v): v for v in jobs_pb2.JobStatus.values() if v != jobs_pb2.JOB_STATUS_UNSPECIFIED
}


def _time(stamp: Timestamp) -> str | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToJsonString()


def render_file(job: jobs_pb2.Job, item: jobs_pb2.FileResult, base_url: str) -> dict[str, Any]:
    completed = item.status == jobs_pb2.FILE_STATUS_COMPLETED
    saved = None
    if completed and item.original_size:
        saved = round((1 - item.final_size / item.original_size) * 100, 2)
    return {
        "index": item.index,
        "filename": item.filename,
        "status": file_status(item.status),
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
        "downloadUrl": f"{base_url}/api/jobs/{job.job_id}/files/{item.index}"
        if completed
        else None,
        "errorMessage": item.error_message or None,
        "errorCode": item.error_code or None,
        "entries": [
            {
                "name": entry.name,
                "status": file_status(entry.status),
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


def render_archive(job: jobs_pb2.Job, base_url: str) -> dict[str, Any] | None:
    if not job.HasField("archive"):
        return None
    archive = job.archive
    completed = archive.status == jobs_pb2.FILE_STATUS_COMPLETED
    return {
        "status": file_status(archive.status),
        "size": archive.size if completed else None,
        "mimeType": "application/zip",
        "downloadUrl": f"{base_url}/api/jobs/{job.job_id}/archive" if completed else None,
        "errorMessage": archive.error_message or None,
    }


def render_job(job: jobs_pb2.Job, base_url: str) -> dict[str, Any]:
    return {
        "jobId": job.job_id,
        "jobType": _name(jobs_pb2.JobType.Name(job.job_type), "JOB_TYPE_"),
        "status": job_status(job.status),
        "totalFiles": len(job.files),
        "completedFiles": job.completed_files,
        "failedFiles": job.failed_files,
        "progress": job.progress,
        "errorMessage": job.error_message or None,
        "results": {
            "files": [render_file(job, item, base_url) for item in job.files],
            "archive": render_archive(job, base_url),
        },
        "createdAt": _time(job.created_at),
        "updatedAt": _time(job.updated_at),
        "completedAt": _time(job.completed_at) if job.HasField("completed_at") else None,
        "callbacks": [render_callback(delivery) for delivery in job.callbacks],
    }
