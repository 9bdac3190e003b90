"""A real nats-server per test module, with a temporary store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from launcher.nats import NatsServer, start_nats


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    started = start_nats(tmp_path_factory.mktemp("nats"))
    yield started
    started.stop()
