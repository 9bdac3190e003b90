"""`convertmesh`: convert, compress, jobs, media tools and inspect from the command line.

Exit codes, for scripts: 0 every file done; 1 some file (or the job, or a tool) failed, the
others are saved; 2 the command cannot work as given (bad flags, no or wrong API key, a field
or format pair the server refuses); 3 the server cannot be reached, or stays unavailable or
busy through every retry.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from convertmesh import __version__
from convertmesh.calls import DEFAULT_URL, KEY_VARIABLE, URL_VARIABLE
from convertmesh.client import Client
from convertmesh.display import Display
from convertmesh.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConvertmeshError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnreachableError,
    ServiceUnavailableError,
    ToolUnavailableError,
    UnsupportedMediaError,
)
from convertmesh.families import ALL_OUTPUTS
from convertmesh.jobrun import run_jobs
from convertmesh.options import MODES, RESIZE_PRESETS, Options, parse_size
from convertmesh.retry import RetryNotice, RetryPolicy
from convertmesh.toolrun import add_tool_parsers, run_inspect, run_tool
from convertmesh.views import job_lines, job_page_lines, print_json

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code for usage is 2 too
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"convertmesh: {message}\n")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Connection and output flags, accepted before and after the command."""
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--url", default=default, help=f"server base URL (${URL_VARIABLE}, else {DEFAULT_URL})"
    )
    group.add_argument("--key", default=default, help=f"API key (${KEY_VARIABLE})")
    group.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print results as JSON on stdout",
    )
    group.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="no progress output",
    )
    group.add_argument(
        "--no-progress",
        dest="bars",
        action="store_false",
        default=None if top else argparse.SUPPRESS,
        help="plain progress lines even on a terminal",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=60.0 if top else argparse.SUPPRESS,
        help="seconds without data before a request is given up (default 60)",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=5 if top else argparse.SUPPRESS,
        help="attempts per request when the server is busy or unreachable (default 5)",
    )


def _formats(text: str) -> list[str]:
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in ALL_OUTPUTS]
    if not formats or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(unknown) or text!r}; formats: {', '.join(ALL_OUTPUTS)}"
        )
    return formats


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except InvalidRequestError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _quality(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("quality must be a whole number from 1 to 100")
    return value


def _batch_flags(parser: argparse.ArgumentParser, *, convert: bool) -> None:
    parser.add_argument("inputs", nargs="+", metavar="FILE|URL", help="files, or http(s) URLs")
    parser.add_argument(
        "--to",
        type=_formats,
        required=convert,
        metavar="FORMAT[,FORMAT...]",
        help="output format; with several, each file takes the first of its own kind "
        "(images, video, audio, archives)"
        + ("" if convert else "; default: each file keeps its format"),
    )
    parser.add_argument("-o", "--output", default=".", help="directory for the outputs")
    parser.add_argument("--quality", type=_quality, help="1-100 (default 82)")
    parser.add_argument(
        "--target-size", type=_size, metavar="SIZE", help="largest output, e.g. 200KB, 1.5MB"
    )
    parser.add_argument("--mode", choices=MODES, help="quality or target-size")
    parser.add_argument("--lossless", action="store_true", default=None)
    parser.add_argument("--strip-metadata", action="store_true", default=None)
    parser.add_argument("--resize", choices=RESIZE_PRESETS, help="resize preset")
    parser.add_argument("--width", type=int, help="pixels, for --resize width or square")
    parser.add_argument("--height", type=int, help="pixels, for --resize height")
    parser.add_argument("--no-auto-orient", dest="auto_orient", action="store_false", default=None)
    parser.add_argument("--mono", action="store_true", default=None, help="one-colour SVG")
    parser.add_argument("--zip", action="store_true", help="also download one zip of all")
    parser.add_argument(
        "--no-wait", action="store_true", help="print the job id and return at once"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="convertmesh",
        description="Convert, compress and inspect files with a Convertly-compatible server.",
        epilog="Exit codes: 0 all done, 1 some files failed, 2 usage (flags, key, refused "
        "request), 3 server unreachable or unavailable.",
    )
    parser.add_argument("--version", action="version", version=f"convertmesh {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)

    convert = commands.add_parser("convert", help="convert files to other formats")
    _batch_flags(convert, convert=True)
    _common(convert, top=False)

    compress = commands.add_parser("compress", help="make files smaller")
    _batch_flags(compress, convert=False)
    _common(compress, top=False)

    jobs = commands.add_parser("jobs", help="list, show, wait for, cancel or download jobs")
    _common(jobs, top=False)
    actions = jobs.add_subparsers(dest="action", required=True, parser_class=UsageParser)
    listing = actions.add_parser("list", help="your jobs, newest first")
    listing.add_argument(
        "--status", choices=("pending", "processing", "completed", "failed", "cancelled")
    )
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    for name, text in (
        ("show", "one job"),
        ("cancel", "cancel a pending job"),
        ("wait", "wait for a job (and download its outputs with -o)"),
        ("download", "download a job's outputs"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        if name in ("wait", "download"):
            action.add_argument("-o", "--output", default=None if name == "wait" else ".")
            action.add_argument("--zip", action="store_true", help="the job's zip too")
        _common(action, top=False)
    _common(listing, top=False)

    tools = commands.add_parser("tools", help="media tools (gif, trim, thumbnail...)")
    _common(tools, top=False)
    add_tool_parsers(tools, _common_after=lambda p: _common(p, top=False), parser_class=UsageParser)

    inspect = commands.add_parser("inspect", help="describe a media file")
    inspect.add_argument("input", metavar="FILE|URL")
    _common(inspect, top=False)
    return parser


def batch_options(args: argparse.Namespace) -> Options:
    return Options(
        resize=args.resize,
        resize_width=args.width,
        resize_height=args.height,
        quality=args.quality,
        auto_orient=args.auto_orient,
        mono=args.mono,
        mode=args.mode,
        target_bytes=args.target_size,
        lossless=args.lossless,
        strip_metadata=args.strip_metadata,
    )


def _jobs(client: Client, args: argparse.Namespace, display: Display) -> int:
    if args.action == "list":
        page = client.list_jobs(limit=args.limit, offset=args.offset, status=args.status)
        if args.json:
            print_json({"jobs": [dict(job.raw) for job in page.jobs], "total": page.total})
        else:
            for text in job_page_lines(page):
                print(text)
        return EXIT_OK
    if args.action == "show":
        job = client.get_job(args.job_id)
    elif args.action == "cancel":
        job = client.cancel_job(args.job_id)
    else:
        return run_jobs(client, args, display, existing=args.job_id)
    if args.json:
        print_json(dict(job.raw))
    else:
        for text in job_lines(job):
            print(text)
    return EXIT_OK


def _dispatch(client: Client, args: argparse.Namespace, display: Display) -> int:
    if args.command in ("convert", "compress"):
        return run_jobs(client, args, display, options=batch_options(args))
    if args.command == "jobs":
        return _jobs(client, args, display)
    if args.command == "tools":
        return run_tool(client, args, display)
    return run_inspect(client, args, display)


def _explain(error: ConvertmeshError, display: Display) -> int:
    """The message and exit code for an error that ended the command."""
    if isinstance(error, AuthenticationError):
        display.error(
            f"the server refused the API key ({error.describe()}). Check --key or ${KEY_VARIABLE}."
        )
        return EXIT_USAGE
    if isinstance(error, ToolUnavailableError):
        display.error(f"{error} This needs a server that offers the media tools.")
        return EXIT_FAILED
    if isinstance(error, BadRequestError | PermissionDeniedError | UnsupportedMediaError):
        display.error(error.describe())
        return EXIT_USAGE
    if isinstance(error, ServiceUnavailableError | RateLimitedError):
        display.error(f"{error.describe()} (gave up after retrying; try again later)")
        return EXIT_UNREACHABLE
    if isinstance(error, ServerUnreachableError):
        display.error(str(error))
        return EXIT_UNREACHABLE
    if isinstance(error, InvalidRequestError):
        display.error(str(error))
        return EXIT_USAGE
    display.error(error.describe() if isinstance(error, ApiError) else str(error))
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    display = Display(bars=args.bars, quiet=args.quiet)
    key = args.key if args.key is not None else os.environ.get(KEY_VARIABLE, "")
    if not key:
        display.error(f"no API key: pass --key or set ${KEY_VARIABLE}.")
        return EXIT_USAGE

    def on_retry(notice: RetryNotice) -> None:
        wait = f"{notice.delay:.1f}" if notice.delay < 10 else f"{notice.delay:.0f}"
        display.line(f"{notice.reason}; trying again in {wait} s (attempt {notice.attempt + 1})")

    try:
        retry = RetryPolicy(attempts=max(1, args.retries))
        with Client(args.url, key, timeout=args.timeout, retry=retry, on_retry=on_retry) as client:
            return _dispatch(client, args, display)
    except ConvertmeshError as error:
        return _explain(error, display)
    except KeyboardInterrupt:
        display.error("interrupted")
        return 130
