"""Which callback events a result emits, their stable ids, and the envelope they carry."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks, LinkSigner
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import callbacks, state, urlguard
from services.orchestrator.settings import Settings

KEY = "callback-link-key-0123456789"
OLD_KEY = "retired-link-key-0123456789"


def record(files: int = 2, url: str = "https://hooks.example/cb") -> state_pb2.JobRecord:
    job = jobs_pb2.Job(job_id="job-1", tenant="acme", job_type=jobs_pb2.JOB_TYPE_CONVERT)
    rec = state_pb2.JobRecord(job=job, callback_url=url, callback_secret="s3cret")
    for index in range(files):
        rec.tasks.append(state_pb2.FileTask(index=index, task_id=f"job-1.{index}"))
        rec.job.files.append(
            jobs_pb2.FileResult(
                index=index, filename=f"f{index}.png", status=jobs_pb2.FILE_STATUS_PENDING
            )
        )
    return rec


def finish(rec: state_pb2.JobRecord, index: int, ok: bool = True) -> tasks_pb2.Result:
    result = tasks_pb2.Result(
        task_id=f"job-1.{index}",
        job_id="job-1",
        tenant="acme",
        file_index=index,
        kind=tasks_pb2.RESULT_KIND_SUCCEEDED if ok else tasks_pb2.RESULT_KIND_FAILED,
        output_size=10,
        mime_type="image/png",
        output_format="png",
        error_code="" if ok else "CORRUPT_INPUT",
        error_message="" if ok else "damaged",
    )
    assert state.apply_result(rec, result)
    return result


def test_a_finished_file_emits_progress_and_the_last_one_completion() -> None:
    rec = record()
    first = callbacks.events_for(rec, finish(rec, 0))
    assert [e.type for e in first] == [callbacks.PROGRESS]
    last = callbacks.events_for(rec, finish(rec, 1))
    assert [e.type for e in last] == [callbacks.PROGRESS, callbacks.COMPLETED]
    assert last[1].job.status == jobs_pb2.JOB_STATUS_COMPLETED


def test_a_job_whose_files_all_failed_emits_failed() -> None:
    rec = record(files=1)
    events = callbacks.events_for(rec, finish(rec, 0, ok=False))
    assert [e.type for e in events] == [callbacks.PROGRESS, callbacks.FAILED]


def test_started_and_progress_results_emit_nothing() -> None:
    rec = record(files=1)
    started = tasks_pb2.Result(
        task_id="job-1.0", job_id="job-1", tenant="acme", kind=tasks_pb2.RESULT_KIND_STARTED
    )
    assert state.apply_result(rec, started)
    assert callbacks.events_for(rec, started) == []


def test_a_job_without_callback_url_emits_nothing() -> None:
    rec = record(files=1, url="")
    assert callbacks.events_for(rec, finish(rec, 0)) == []


def test_event_ids_are_stable_per_job_type_and_file_and_distinct_otherwise() -> None:
    rec = record()
    result = finish(rec, 0)
    again = callbacks.events_for(rec, result)
    assert [e.event_id for e in callbacks.events_for(rec, result)] == [e.event_id for e in again]
    ids = {
        callbacks.event_id("acme", "job-1", callbacks.PROGRESS, 0),
        callbacks.event_id("acme", "job-1", callbacks.PROGRESS, 1),
        callbacks.event_id("acme", "job-1", callbacks.COMPLETED),
        callbacks.event_id("globex", "job-1", callbacks.COMPLETED),
    }
    assert len(ids) == 4 and all(i.startswith("evt_") for i in ids)


def test_event_round_trips_through_message_headers_and_renders_the_envelope() -> None:
    rec = record(files=1)
    event = callbacks.events_for(rec, finish(rec, 0))[-1]
    back = callbacks.Event.from_message(event.headers(), event.job.SerializeToString())
    assert back == event
    signer = LinkSigner((KEY,))
    body = json.loads(back.envelope(DownloadLinks("https://convert.example", signer)))
    assert body["id"] == event.event_id and body["type"] == callbacks.COMPLETED
    assert isinstance(body["created"], int)
    data = body["data"]
    assert data["jobId"] == "job-1" and data["status"] == "completed"
    link = urlsplit(data["results"]["files"][0]["downloadUrl"])
    assert (link.scheme, link.netloc, link.path) == (
        "https",
        "convert.example",
        "/api/jobs/job-1/files/0",
    )
    query = parse_qs(link.query)
    tenant = signer.verify(["globex", "acme"], link.path, *query["expires"], *query["signature"])
    assert tenant == rec.job.tenant
    assert data["callbacks"] == []


def test_the_snapshot_does_not_follow_later_changes_to_the_record() -> None:
    rec = record()
    event = callbacks.events_for(rec, finish(rec, 0))[0]
    finish(rec, 1)
    assert event.job.status == jobs_pb2.JOB_STATUS_PROCESSING


def test_settings_read_delays_allowlist_base_url_and_link_keys() -> None:
    settings = Settings.from_env(
        {
            "CALLBACK_RETRY_DELAYS": "1, 2.5",
            "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
            "PUBLIC_BASE_URL": "https://convert.example/",
            "LINK_SIGNING_KEYS": f"{KEY},{OLD_KEY}",
            "LINK_LIFETIME_SECONDS": "600",
        }
    ).callbacks
    assert settings.retry_delays == (1.0, 2.5) and settings.attempts == 3
    assert settings.allow.allows("127.0.0.1", 80)
    assert settings.public_base_url == "https://convert.example"
    assert settings.signer == LinkSigner((KEY, OLD_KEY), 600)
    keyed = {"LINK_SIGNING_KEYS": KEY}
    assert Settings.from_env(keyed).callbacks.retry_delays == (5.0, 25.0)
    with pytest.raises(ValueError, match="CALLBACK_RETRY_DELAYS"):
        Settings.from_env({**keyed, "CALLBACK_RETRY_DELAYS": "soon"})
    with pytest.raises(ValueError, match="LINK_SIGNING_KEYS"):
        Settings.from_env({})


def test_validate_callback_refuses_internal_urls_naming_the_field() -> None:
    with pytest.raises(MeshError) as caught:
        callbacks.validate_callback("http://169.254.169.254/", "s", urlguard.Allowlist())
    assert caught.value.reason is Reason.INVALID_FIELD
    assert "metadata" in caught.value.detail["fields"]["callbackUrl"]
    with pytest.raises(MeshError) as caught:
        callbacks.validate_callback("https://8.8.8.8/", "x" * 1000, urlguard.Allowlist())
    assert "callbackSecret" in caught.value.detail["fields"]
    callbacks.validate_callback("https://8.8.8.8/hook", "s", urlguard.Allowlist())
    callbacks.validate_callback("", "", urlguard.Allowlist())


def test_validate_callback_accepts_a_name_without_resolving_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_lookups(*args: object, **kwargs: object) -> None:
        raise AssertionError("job creation must not resolve the callback host")

    monkeypatch.setattr(urlguard, "_resolve", no_lookups)
    callbacks.validate_callback("https://0.com/hook", "s", urlguard.Allowlist())
