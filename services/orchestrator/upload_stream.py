"""An UploadBlob stream that stops sending is ended: a client (or a gateway) that opened one
and went silent would otherwise hold the call and the chunks it stored until it disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from mesh.errors import MeshError, Reason

T = TypeVar("T")


async def paced(messages: AsyncIterator[T], idle_seconds: float) -> AsyncIterator[T]:
    """`messages`, failing with REQUEST_TIMEOUT (408, DEADLINE_EXCEEDED) when none arrives
    for `idle_seconds`. A MeshError, not a TimeoutError: the blob writer reports those as the
    broker's (503), and either way it removes what the upload stored."""
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                message = await anext(messages)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise MeshError(
                Reason.REQUEST_TIMEOUT,
                f"The upload sent nothing for {idle_seconds:g} s.",
                limit="upload_idle_seconds",
                max=idle_seconds,
            ) from None
        yield message
