"""The services' event loop: uvloop (pinned) unless `EVENT_LOOP=asyncio` asks for asyncio's own
(to compare them, or for asyncio's debug mode). Measured with `bench.e2e`: bench/PROFILE.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from mesh.settings import Env

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


def read(env: Env) -> str:
    """`EVENT_LOOP`: `uvloop` or `asyncio`, as uvicorn's `loop` setting spells them."""
    raw = env.text("EVENT_LOOP", LOOPS[0])
    name = raw.strip().lower()
    if name not in LOOPS:
        env.problem("EVENT_LOOP", f"must be uvloop or asyncio, got {raw!r}")
        return LOOPS[0]
    return name


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only imported when chosen

        return uvloop.run(main)
    return asyncio.run(main)
