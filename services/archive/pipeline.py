"""The archive pipelines: convert (wrap, repack, recompress), extract, pack_directory.

Pure synchronous code; the worker runs it inside a sandboxed child process that also holds
the wall-clock limit. Every failure is a MeshError; partial outputs are removed. Each step is a
span of the task's trace (`mesh.tracing.stage`): probe, then extract, pack or repack; a pack of
several files has a span per member written, for the first ARCHIVE_TRACE_MEMBERS of them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mesh import tracing
from mesh.errors import MeshError, Reason
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS, Family
from mesh.options import ConversionOptions
from mesh.outcome import Outcome, smaller_or_original
from services.archive import levels
from services.archive.detect import SINGLE_STREAMS, TAR_FAMILY, detect, require_archive
from services.archive.extraction import PathConflictError, ensure_dir, write_file
from services.archive.limits import ArchiveLimits, Budget
from services.archive.members import SKIP_REASONS, Entry, Kind, Member
from services.archive.names import UnsafeNameError, from_filename, normalise
from services.archive.outputs import KEEP_FORMAT, OUTPUTS, SINGLE_STREAM_OUTPUTS, open_sink
from services.archive.readers import CHUNK, members
from services.archive.writers import Sink

# The report of what a repack or fan-out left out, as `pack` writes it.
REPORT_NAME = "conversion-report.json"
# How many members of a pack get a span of their own, by default (ARCHIVE_TRACE_MEMBERS): an
# archive of 10,000 files is not 10,000 spans.
TRACED_MEMBERS = 100

log = logging.getLogger(__name__)

_SINGLE_SUFFIXES = {"gz": (".gz", ".gzip", ".z"), "bz2": (".bz2", ".bzip2"), "xz": (".xz",)}


def _single_name(filename: str, kind: str) -> str:
    """The member name of a bare gz/bz2/xz stream without a stored name: filename minus
    its compression suffix."""
    base = from_filename(filename)
    lower = base.lower()
    for suffix in _SINGLE_SUFFIXES.get(kind, ()):
        if lower.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _printable(raw: str) -> str:
    return raw.replace("\x00", "\\0")[:256]


def _metered(chunks: Iterator[bytes], budget: Budget) -> Iterator[bytes]:
    """Charges each chunk to the budget before anyone writes it."""
    written = 0
    for chunk in chunks:
        budget.charge(written, len(chunk))
        written += len(chunk)
        yield chunk


def _admitted(member: Member, budget: Budget, seen: set[str]) -> tuple[str | None, str | None]:
    """(normalised name, None) for a member to copy, (None, reason) for one to skip."""
    budget.admit_entry()
    try:
        name = normalise(member.name, budget.limits.max_name_bytes)
    except UnsafeNameError as unsafe:
        return None, unsafe.reason
    if member.kind in SKIP_REASONS:
        return None, SKIP_REASONS[member.kind]
    if member.kind is Kind.FILE and name in seen:
        return None, "duplicate name"
    seen.add(name)
    return name, None


def _copy_members(
    source: Iterator[Member], sink: Sink, budget: Budget, written: list[str] | None = None
) -> list[Entry]:
    """Repacks every safe member into the sink (their names go to `written`); returns the
    skipped ones."""
    skipped: list[Entry] = []
    seen: set[str] = set()
    for member in source:
        name, reason = _admitted(member, budget, seen)
        if name is None:
            skipped.append(Entry(_printable(member.name), member.size or 0, None, reason))
            continue
        if member.kind is Kind.DIR:
            sink.add_dir(name, member.mtime, member.mode)
            continue
        budget.check_declared(member.size)
        sink.add_file(
            name, _metered(member.chunks(), budget), member.size, member.mtime, member.mode
        )
        if written is not None:
            written.append(name)
    return skipped


def _holds_one_file(source: Path, kind: str, limits: ArchiveLimits, filename: str) -> bool:
    if kind in SINGLE_STREAMS:
        return True
    if kind in TAR_FAMILY:
        return False
    budget = Budget(limits, source.stat().st_size)
    files = 0
    for member in members(source, kind, budget, filename):
        budget.admit_entry()
        files += member.kind is Kind.FILE
        if files > 1:
            return False
    return files == 1


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _add_file(sink: Sink, name: str, path: Path) -> None:
    info = path.stat()
    sink.add_file(name, _file_chunks(path), info.st_size, info.st_mtime, None)


def _close_quietly(sink: Sink) -> None:
    with contextlib.suppress(Exception):
        sink.close()


def _fill(sink: Sink, fill: Callable[[], None]) -> None:
    """Runs `fill` (which adds entries) then closes the sink; a failure closes it quietly."""
    try:
        fill()
    except BaseException:
        _close_quietly(sink)
        raise
    sink.close()


def convert(  # noqa: PLR0917 - positional signature fixed by the worker contract
    source: Path,
    output: Path,
    source_format: str,
    filename: str,
    options: ConversionOptions,
    limits: ArchiveLimits,
    scratch: Path,
    *,
    rar_binary: str | None = None,
) -> Outcome:
    """Wraps a file, or repacks/recompresses an archive, into `options.format`.

    An empty format keeps the input's format at the strongest setting (compress jobs), and
    the input itself when that is not smaller. A gz/bz2/xz output is named for what it holds
    (`Outcome.output_name`): `photo.jpg.gz` for a wrapped file, `member.gz` for an archive of
    one file; an archive of several becomes a tar inside (the job names it `name.tar.gz`).
    """
    with tracing.stage("probe", source_format=source_format):
        kind = detect(source, source_format)
    if kind is None and INPUT_FAMILIES.get(source_format) is Family.ARCHIVE:
        raise MeshError(Reason.CORRUPT_INPUT, f"The {source_format} file is damaged.")
    target = options.format or (KEEP_FORMAT[kind] if kind else "")
    if target not in OUTPUTS:
        raise MeshError(
            Reason.UNSUPPORTED_PAIR, f"The archive service writes {', '.join(OUTPUTS)}."
        )
    compression = options.compression if options.format else levels.MAX_COMPRESSION
    output_name = ""
    try:
        with tracing.stage("pack" if kind is None else "repack", output_format=target):
            if kind is None:
                name = from_filename(filename)
                sink = open_sink(
                    target, output, compression, scratch, single=True, rar_binary=rar_binary
                )
                _fill(sink, functools.partial(_add_file, sink, name, source))
                if target in SINGLE_STREAM_OUTPUTS:
                    output_name = f"{name}.{target}"
            else:
                output_name = _repack(
                    source=source,
                    output=output,
                    kind=kind,
                    target=target,
                    filename=filename,
                    compression=compression,
                    limits=limits,
                    scratch=scratch,
                    rar_binary=rar_binary,
                )
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    outcome = Outcome(
        format=target,
        mime_type=OUTPUT_FORMATS[target].mime_type,
        applied_quality=compression,
        output_name=output_name,
    )
    if not options.format:
        # A compress keeping the format never hands back a larger archive.
        return smaller_or_original(source, output, outcome)
    return outcome


def _repack(
    *,
    source: Path,
    output: Path,
    kind: str,
    target: str,
    filename: str,
    compression: int,
    limits: ArchiveLimits,
    scratch: Path,
    rar_binary: str | None,
) -> str:
    """Repacks; returns the output's name when it is one compressed stream (`member.gz`),
    else "" (the job's `name.tar.gz` stands)."""
    single_name = _single_name(filename, kind)
    single = target in SINGLE_STREAM_OUTPUTS and _holds_one_file(source, kind, limits, single_name)
    budget = Budget(limits, source.stat().st_size)
    sink = open_sink(target, output, compression, scratch, single=single, rar_binary=rar_binary)
    skipped: list[Entry] = []
    written: list[str] = []

    def fill() -> None:
        source_members = members(source, kind, budget, single_name)
        skipped.extend(_copy_members(source_members, sink, budget, written))
        if skipped and not single:
            _add_report(sink, skipped, written, scratch)

    _fill(sink, fill)
    if skipped:
        log.warning(
            "archive repack skipped %d entries: %s",
            len(skipped),
            sorted({entry.skipped_reason or "" for entry in skipped}),
        )
    if single and written:
        return f"{posixpath.basename(written[0])}.{target}"
    return ""


def _add_report(sink: Sink, skipped: list[Entry], written: list[str], scratch: Path) -> None:
    """Adds `conversion-report.json` (as an archive fan-out does) naming every entry the
    repack left out and why; under another name when the archive has a member of that name."""
    name, number = REPORT_NAME, 1
    while name in written:
        name, number = f"conversion-report ({number}).json", number + 1
    report = [
        {"name": entry.name, "status": "skipped", "output": None, "reason": entry.skipped_reason}
        for entry in skipped
    ]
    path = scratch / "repack-report.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    try:
        _add_file(sink, name, path)  # written into the sink before it returns
    finally:
        path.unlink()
    written.append(name)


def extract(source: Path, source_format: str, dest: Path, limits: ArchiveLimits) -> list[Entry]:
    """Writes the archive's regular files under `dest`; links, devices and unsafe names are
    skipped and reported (skipped_reason), never created."""
    with tracing.stage("probe", source_format=source_format):
        kind = require_archive(source, source_format)
    budget = Budget(limits, source.stat().st_size)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tracing.stage("extract") as step:
        entries = _extract(source, kind, budget, root)
        tracing.set_attributes(step, {"convertmesh.entries": len(entries)})
    return entries


def _extract(source: Path, kind: str, budget: Budget, root: Path) -> list[Entry]:
    entries: list[Entry] = []
    seen: set[str] = set()
    for member in members(source, kind, budget, _single_name(source.name, kind)):
        name, reason = _admitted(member, budget, seen)
        if name is None:
            entries.append(Entry(_printable(member.name), member.size or 0, None, reason))
            continue
        if member.kind is Kind.DIR:
            with contextlib.suppress(PathConflictError):
                ensure_dir(root, name)
            continue
        budget.check_declared(member.size)
        try:
            path, size = write_file(root, name, _metered(member.chunks(), budget), member.mtime)
        except PathConflictError:
            entries.append(Entry(name, member.size or 0, None, "path taken by another entry"))
            continue
        entries.append(Entry(name, size, path))
    return entries


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or "/" in suffix:
        stem, suffix = name, ""
    counter = 2
    while True:
        candidate = f"{stem} ({counter}){'.' + suffix if suffix else ''}"
        if candidate not in taken:
            return candidate
        counter += 1


def pack_directory(
    entries: Sequence[tuple[str, Path]],
    output: Path,
    format: str,
    compression: int,
    *,
    rar_binary: str | None = None,
    traced_members: int = TRACED_MEMBERS,
) -> Outcome:
    """Packs regular files (name in archive, path on disk) into one archive of `format`.

    Names are normalised (unsafe ones fall back to `file-N`) and deduplicated with ` (N)`.
    The first `traced_members` members written are spans under the pack stage (`pack member`:
    position and size, never the name); the stage says how many got one (`member_spans`).
    """
    scratch = Path(tempfile.mkdtemp(dir=output.parent, prefix=".pack-"))
    single = len(entries) == 1
    try:
        with tracing.stage("pack", output_format=format, entries=len(entries)) as step:
            # Decided once: with tracing off (or this call unsampled) no member costs a span.
            spans = min(traced_members, len(entries)) if step.is_recording() else 0
            tracing.set_attributes(step, {"convertmesh.member_spans": spans})
            sink = open_sink(
                format, output, compression, scratch, single=single, rar_binary=rar_binary
            )
            _fill(sink, functools.partial(_pack, sink, entries, spans))
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(
        format=format, mime_type=OUTPUT_FORMATS[format].mime_type, applied_quality=compression
    )


def _pack(sink: Sink, entries: Sequence[tuple[str, Path]], spans: int) -> None:
    """Writes the entries; the first `spans` each in a `pack member` span."""
    taken: set[str] = set()
    for index, (raw_name, path) in enumerate(entries, start=1):
        info = path.lstat()
        if not path.is_file() or path.is_symlink():
            raise MeshError(Reason.INTERNAL, "A result to pack is not a regular file.")
        try:
            name = normalise(raw_name, 1024)
        except UnsafeNameError:
            name = f"file-{index}"
        name = _unique(name, taken)
        taken.add(name)
        if index > spans:
            sink.add_file(name, _file_chunks(path), info.st_size, info.st_mtime, None)
            continue
        # Like every stage span: position and size, not the (user-chosen) name.
        with tracing.stage("pack member", member_index=index - 1, input_bytes=info.st_size):
            sink.add_file(name, _file_chunks(path), info.st_size, info.st_mtime, None)
