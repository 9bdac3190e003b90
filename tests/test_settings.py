"""Settings: every service builds what it needs from one environment mapping, and a bad value
is refused naming its variable; every bad variable is named at once."""

from __future__ import annotations

import pytest

from mesh.settings import Env, SettingsError, load
from services.archive.settings import Settings as ArchiveSettings
from services.image.settings import Settings as ImageSettings
from services.media.settings import Settings as MediaSettings
from services.orchestrator.settings import Settings as OrchestratorSettings

# The orchestrator signs callback bodies' download links: it refuses to start without keys.
LINKS = {"LINK_SIGNING_KEYS": "settings-test-link-key-0123456789"}


def test_values_are_parsed_and_defaults_fill_the_rest() -> None:
    env = Env({"A": "7", "B": "1e8", "C": "0.5", "D": "yes", "E": ""})
    assert env.integer("A", 1) == 7
    assert env.integer("B", 1) == 100_000_000
    assert env.number("C", 1.0, positive=True) == 0.5
    assert env.flag("D") is True
    assert env.optional("E") is None and env.raw("E") == ""
    assert env.integer("MISSING", 3) == 3
    env.validate()


def test_every_bad_variable_is_named_at_once() -> None:
    env = {"GRPC_PORT": "70000", "MAX_FILES_PER_JOB": "0", "RETENTION_SECONDS": "soon"}
    with pytest.raises(SettingsError) as caught:
        OrchestratorSettings.from_env(env)
    message = str(caught.value)
    assert "GRPC_PORT must be at most 65535, got '70000'" in message
    assert "MAX_FILES_PER_JOB must be at least 1, got '0'" in message
    assert "RETENTION_SECONDS must be a number, got 'soon'" in message


def test_the_orchestrator_builds_what_it_passes_down() -> None:
    settings = OrchestratorSettings.from_env(
        {
            **LINKS,
            "RETENTION_SECONDS": "600",
            "METRICS_PORT": "9100",
            "RAR_OUTPUT_ENABLED": "true",
            "CALLBACK_CONCURRENCY": "4",
        }
    )
    assert settings.retention.seconds == 600
    assert settings.retention.duplicate_window_seconds == 120
    assert settings.metrics.port == 9100
    assert settings.rar_available is True
    assert settings.callbacks.concurrency == 4


def test_source_url_fetches_are_bounded_by_the_upload_limit_and_their_own_times() -> None:
    settings = OrchestratorSettings.from_env(
        {
            **LINKS,
            "MAX_UPLOAD_BYTES": "5000",
            "SOURCE_URL_TIMEOUT_SECONDS": "12",
            "SOURCE_URL_IDLE_SECONDS": "3",
            "SOURCE_URL_MIN_BYTES_PER_SECOND": "0",
        }
    )
    fetch = settings.fetch
    assert (fetch.max_bytes, fetch.total_seconds, fetch.idle_seconds) == (5000, 12, 3)
    assert fetch.min_bytes_per_second == 0
    defaults = OrchestratorSettings.from_env(LINKS).fetch
    assert defaults.max_bytes == OrchestratorSettings.max_upload_bytes
    with pytest.raises(SettingsError, match="SOURCE_URL_TIMEOUT_SECONDS"):
        OrchestratorSettings.from_env({**LINKS, "SOURCE_URL_TIMEOUT_SECONDS": "0"})


def test_the_orchestrator_does_not_read_the_archive_workers_settings() -> None:
    orchestrator = OrchestratorSettings.from_env({**LINKS, "ARCHIVE_RAR_BINARY": "/usr/bin/rar"})
    assert not orchestrator.rar_available
    assert ArchiveSettings.from_env({"ARCHIVE_RAR_BINARY": "/usr/bin/rar"}).rar_binary


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [(ImageSettings, "IMAGE"), (MediaSettings, "MEDIA"), (ArchiveSettings, "ARCHIVE")],
)
def test_each_worker_reads_its_own_prefix_and_the_shared_bus_settings(
    settings: type[ImageSettings | MediaSettings | ArchiveSettings], prefix: str
) -> None:
    built = settings.from_env(
        {
            f"{prefix}_CONCURRENCY": "3",
            f"{prefix}_TASK_SECONDS": "9",
            "RETENTION_SECONDS": "60",
            "METRICS_PORT": "9101",
            "SCRATCH_DIR": "/scratch",
        }
    )
    worker = built.worker
    assert (worker.runtime.concurrency, worker.task_seconds) == (3, 9)
    assert worker.retention.seconds == 60 and worker.retention.duplicate_window_seconds == 60
    assert worker.metrics.port == 9101
    assert str(worker.runtime.scratch_dir) == "/scratch"
    with pytest.raises(SettingsError, match=f"{prefix}_CONCURRENCY must be at least 1"):
        settings.from_env({f"{prefix}_CONCURRENCY": "0"})


def test_worker_limits_are_checked_like_the_rest() -> None:
    with pytest.raises(SettingsError) as caught:
        load(ImageSettings.read, {"IMAGE_MAX_PIXELS": "-5", "TASK_MAX_DELIVER": "many"})
    assert "IMAGE_MAX_PIXELS must be at least 1" in str(caught.value)
    assert "TASK_MAX_DELIVER must be a whole number" in str(caught.value)
    assert ArchiveSettings.from_env({"ARCHIVE_MAX_RATIO": "50"}).limits.max_ratio == 50
    assert ArchiveSettings.from_env({}).trace_members == 100
    assert ArchiveSettings.from_env({"ARCHIVE_TRACE_MEMBERS": "0"}).trace_members == 0
    with pytest.raises(SettingsError, match="ARCHIVE_TRACE_MEMBERS must be at least 0"):
        ArchiveSettings.from_env({"ARCHIVE_TRACE_MEMBERS": "-1"})
    assert MediaSettings.from_env({"MEDIA_MAX_WIDTH": "640"}).limits.max_width == 640


def test_flags_refuse_what_is_neither_true_nor_false() -> None:
    with pytest.raises(SettingsError, match="OUTBOUND_ALLOW_ONLY must be true or false"):
        OrchestratorSettings.from_env({"OUTBOUND_ALLOW_ONLY": "sometimes"})


def test_the_orchestrator_needs_the_link_signing_keys() -> None:
    with pytest.raises(SettingsError, match="LINK_SIGNING_KEYS must hold one or more keys"):
        OrchestratorSettings.from_env({})
