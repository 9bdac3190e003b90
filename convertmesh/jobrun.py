"""`convertmesh convert|compress` and `jobs wait|download`: create the jobs (uploads streamed,
one bar per file), follow them (server-sent events, else polling), download every output.

Uploaded files go in one job; each URL gets a job of its own (`sourceUrl` names one source).
A file that fails does not stop the others: they are saved, and the exit code is 1.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convertmesh.calls import is_url
from convertmesh.client import Client
from convertmesh.display import Display, human_bytes
from convertmesh.errors import InvalidRequestError
from convertmesh.families import format_for
from convertmesh.models import Archive, FileResult, Job, Saved
from convertmesh.options import Options
from convertmesh.views import print_json, saved_note

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass
class Plan:
    """One job to create, or an existing one to follow."""

    labels: list[str]  # one per file, as the user named it
    files: list[str] = field(default_factory=list)
    source_url: str | None = None
    per_file: list[Options] = field(default_factory=list)
    job_id: str | None = None
    job: Job | None = None

    def key(self, index: int) -> str:
        return f"{id(self)}:{index}"


def _plans(args: argparse.Namespace) -> list[Plan]:
    formats: list[str] | None = args.to
    files = [value for value in args.inputs if not is_url(value)]
    missing = [value for value in files if not Path(value).is_file()]
    if missing:
        raise InvalidRequestError(f"no such file: {', '.join(missing)}")

    def chosen(name: str) -> Options:
        return Options(format=format_for(name, formats)) if formats else Options()

    plans: list[Plan] = []
    if files:
        plans.append(Plan(labels=files, files=files, per_file=[chosen(f) for f in files]))
    for url in (value for value in args.inputs if is_url(value)):
        plans.append(Plan(labels=[url], source_url=url, per_file=[chosen(url)]))
    return plans


def _create(
    client: Client, plan: Plan, args: argparse.Namespace, base: Options, display: Display
) -> None:
    for index, label in enumerate(plan.labels):
        display.add(plan.key(index), Path(label).name if not is_url(label) else label)

    def uploaded(index: int, sent: int, total: int) -> None:
        display.step(plan.key(index), "upload", sent, total, human_bytes(total))

    plan.job_id = client.create_job(
        plan.files,
        source_url=plan.source_url,
        options=base,
        per_file=plan.per_file,
        job_type=args.command,
        create_archive=args.zip,
        on_upload=uploaded,
    )


def _follow(client: Client, plan: Plan, display: Display) -> Job:
    assert plan.job_id is not None

    def progressed(job: Job) -> None:
        for item in job.files:
            if item.index < len(plan.labels) and not item.ok and item.status != "failed":
                display.step(plan.key(item.index), "processing", item.progress_percent(), 100)

    return client.wait(plan.job_id, on_progress=progressed)


def _download(
    client: Client, plan: Plan, job: Job, folder: Path, *, archive: bool, display: Display
) -> list[Saved]:
    inputs = {Path(label).resolve() for label in plan.files}

    def received(target: FileResult | Archive, done: int, total: int | None) -> None:
        if isinstance(target, FileResult) and target.index < len(plan.labels):
            display.step(plan.key(target.index), "download", done, total, human_bytes(total))

    return client.download_outputs(
        job, folder, archive=archive, protected=inputs, on_progress=received
    )


def _outcomes(
    plan: Plan, job: Job, saved: list[Saved] | None, display: Display
) -> list[dict[str, Any]]:
    """One entry per file; `saved` is None when nothing was to be downloaded."""
    ok_indexes = [item.index for item in job.files if item.ok]
    by_index = dict(zip(ok_indexes, saved or [], strict=False))
    outcomes: list[dict[str, Any]] = []
    for item in job.files:
        label = plan.labels[item.index] if item.index < len(plan.labels) else item.original_filename
        output = by_index.get(item.index)
        done = item.ok and (output is not None or saved is None)
        if done:
            note = saved_note(output) if output else "done"
            display.finish(plan.key(item.index), True, note)
        elif item.index < len(plan.labels):
            reason = item.error_message or ("cancelled" if job.cancelled else item.status)
            display.finish(plan.key(item.index), False, f"failed: {reason}")
        outcomes.append(
            {
                "input": label,
                "status": "completed" if done else "failed",
                "output": output.path if output else None,
                "size": output.size if output else None,
                "originalSize": item.original_size,
                "savedPercent": item.saved_percent,
                "error": item.error_message,
                "code": item.error_code,
            }
        )
    if saved and len(saved) > len(ok_indexes):
        display.line(f"zip of all outputs: {saved[-1].path}")
    return outcomes


def run_jobs(
    client: Client,
    args: argparse.Namespace,
    display: Display,
    *,
    options: Options | None = None,
    existing: str | None = None,
) -> int:
    if existing is not None:
        job = client.get_job(existing)
        names = [item.original_filename for item in job.files]
        plans = [Plan(labels=names, job_id=existing, job=job)]
        folder = Path(args.output) if args.output else None
    else:
        plans = _plans(args)
        folder = Path(args.output)
    report: dict[str, Any] = {"jobs": [], "files": []}
    with display:
        for plan in plans:
            if plan.job_id is None:
                _create(client, plan, args, options or Options(), display)
            else:
                for index, label in enumerate(plan.labels):
                    display.add(plan.key(index), label)
        if existing is None and args.no_wait:
            ids = [plan.job_id for plan in plans]
            if args.json:
                print_json({"jobs": ids})
            else:
                print("\n".join(str(i) for i in ids))
            return EXIT_OK
        for plan in plans:
            job = _follow(client, plan, display)
            saved = (
                _download(client, plan, job, folder, archive=args.zip, display=display)
                if folder is not None
                else None
            )
            report["jobs"].append(dict(job.raw))
            report["files"].extend(_outcomes(plan, job, saved, display))
    report["ok"] = all(entry["status"] == "completed" for entry in report["files"])
    if args.json:
        print_json(report)
    return EXIT_OK if report["ok"] else EXIT_FAILED
