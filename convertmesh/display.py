"""What the CLI shows while it works: a progress bar per file (upload, processing, download)
on a terminal, plain lines otherwise (a log, a pipe, CI). Everything goes to stderr, so that
stdout carries only results (`--json`)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

PHASES = ("upload", "processing", "download")
PLAIN_STEP = 25  # percent between plain progress lines


def human_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class Display:
    def __init__(
        self, *, bars: bool | None = None, quiet: bool = False, stream: TextIO | None = None
    ) -> None:
        """`bars`: None decides by whether the stream is a terminal."""
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.bars = (self.console.is_terminal if bars is None else bars) and not quiet
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._names: dict[str, str] = {}
        self._phase: dict[str, str] = {}
        self._shown: dict[str, int] = {}

    def __enter__(self) -> Display:
        if self.bars:
            self._progress = Progress(
                TextColumn("{task.fields[name]}", style="bold"),
                TextColumn("{task.fields[phase]:<10}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[note]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def line(self, text: str) -> None:
        """A message that is always shown (unless quiet), above the bars."""
        if not self.quiet:
            self.console.print(text, markup=False)

    def error(self, text: str) -> None:
        self.console.print(f"convertmesh: {text}", markup=False, style="red")

    def add(self, key: str, name: str) -> None:
        self._names[key] = name
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(
                "", total=100, name=name, phase="waiting", note=""
            )

    def step(self, key: str, phase: str, done: float, total: float | None, note: str = "") -> None:
        """Progress of one file in one phase; `total` None when unknown."""
        percent = int(done * 100 / total) if total else 0
        if self._progress is not None:
            task = self._tasks[key]
            self._progress.update(task, completed=done, total=total or None, phase=phase, note=note)
            return
        if self.quiet:
            return
        if self._phase.get(key) != phase:
            self._phase[key], self._shown[key] = phase, -PLAIN_STEP
        if percent >= self._shown[key] + PLAIN_STEP or (percent == 100 > self._shown[key]):
            self._shown[key] = percent - percent % PLAIN_STEP
            extra = f" {note}" if note else ""
            self.line(f"{self._names[key]}: {phase} {percent}%{extra}")

    def finish(self, key: str, ok: bool, text: str) -> None:
        """The file's bar gives way to one lasting line (a bar with a long note would be
        squeezed)."""
        if self._progress is not None:
            self._progress.remove_task(self._tasks.pop(key))
            style = "green" if ok else "red"
            mark = "✓" if ok else "✗"
            self._progress.console.print(
                f"{mark} {self._names[key]}: {text}", markup=False, style=style
            )
            return
        self.line(f"{self._names[key]}: {text}")
