"""An incremental reader of server-sent events (the WHATWG event-stream format)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None


class EventParser:
    """Feed it bytes as they arrive; it hands back each event once its blank line is seen."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, chunk: bytes) -> Iterator[Event]:
        self._buffer += chunk
        while True:
            cut = self._next_line_end()
            if cut is None:
                return
            end, width = cut
            line = self._buffer[:end].decode("utf-8", "replace")
            self._buffer = self._buffer[end + width :]
            event = self._line(line)
            if event is not None:
                yield event

    def _next_line_end(self) -> tuple[int, int] | None:
        for position, byte in enumerate(self._buffer):
            if byte == 0x0A:
                return position, 1
            if byte == 0x0D:
                if position + 1 == len(self._buffer):
                    return None  # a CR at the end may be the first half of CRLF
                return position, 2 if self._buffer[position + 1] == 0x0A else 1
        return None

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keepalive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        if self._id is not None:
            self.last_id = self._id
        if not self._data:
            self._event = ""
            return None
        event = Event(self._event or "message", "\n".join(self._data), self.last_id)
        self._event, self._data = "", []
        return event
