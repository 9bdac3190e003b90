"""Which job and file statuses and which results are final, the two ways a file reaches a
final status, and where its output is.

Shared by the transitions of one-task files (`state`) and of archives (`fanout`).
"""

from __future__ import annotations

from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2

TERMINAL_JOB = frozenset(
    {jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELLED}
)
TERMINAL_FILE = frozenset(
    {jobs_pb2.FILE_STATUS_COMPLETED, jobs_pb2.FILE_STATUS_FAILED, jobs_pb2.FILE_STATUS_CANCELLED}
)

# A task's last word: what settles it, unlocks its follow-ups and may emit a callback.
FINAL_RESULTS = frozenset({tasks_pb2.RESULT_KIND_SUCCEEDED, tasks_pb2.RESULT_KIND_FAILED})


def complete(item: jobs_pb2.FileResult, result: tasks_pb2.Result) -> None:
    """The file's output is written: record what the worker reported about it."""
    item.status = jobs_pb2.FILE_STATUS_COMPLETED
    item.progress = 100
    item.final_size = result.output_size
    item.mime_type = result.mime_type
    item.output_format = result.output_format
    item.kept_original = result.kept_original
    if result.output_name:
        item.output_filename = result.output_name
    for name in ("applied_quality", "width", "height", "duration"):
        if result.HasField(name):
            setattr(item, name, getattr(result, name))


def take_output(task: state_pb2.FileTask | state_pb2.EntryTask, result: tasks_pb2.Result) -> None:
    """Points the task at the output its winning delivery wrote (each delivery writes under a
    name of its own, see `mesh.bus.claims`); results of older workers name none."""
    if result.output_blob:
        task.output_blob = result.output_blob


def fail(item: jobs_pb2.FileResult, code: str, message: str) -> None:
    item.status = jobs_pb2.FILE_STATUS_FAILED
    item.progress = 100
    item.error_code = code
    item.error_message = message
