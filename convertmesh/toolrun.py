"""`convertmesh tools <tool> ...` and `convertmesh inspect`: one sub-command per media tool,
its flags generated from the tools table (`--start 3 --duration 4`, `--watermark-file
logo.png`), outputs written into `-o`. A server without the tools answers 404 or 501, which
becomes a clear message (exit 1)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from convertmesh.calls import is_url
from convertmesh.client import Client
from convertmesh.display import Display
from convertmesh.jobrun import run_jobs
from convertmesh.results import ToolResult
from convertmesh.tools import TOOLS, Param, tool_named
from convertmesh.views import media_lines, print_json, saved_note

EXIT_OK, EXIT_FAILED = 0, 1


def _flag(param: Param) -> str:
    return "--" + param.python_name.replace("_", "-")


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("must be true or false")


def add_tool_parsers(
    parser: argparse.ArgumentParser,
    *,
    _common_after: Callable[[argparse.ArgumentParser], None],
    parser_class: type[argparse.ArgumentParser],
) -> None:
    tools = parser.add_subparsers(dest="tool", required=True, parser_class=parser_class)
    for tool in TOOLS.values():
        sub = tools.add_parser(tool.name, help=tool.summary, description=tool.summary)
        many = "+" if tool.many_files else None
        sub.add_argument("inputs", nargs=many or 1, metavar="FILE|URL")
        for param in tool.params:
            default = f" (server default {param.default})" if param.default is not None else ""
            kind: Any = _boolean if param.kind is bool else param.kind
            sub.add_argument(
                _flag(param),
                dest=f"param_{param.python_name}",
                metavar=param.python_name.upper(),
                type=kind,
                choices=param.choices or None,
                help=(param.help + default).strip() or None,
            )
        for part in tool.file_params:
            sub.add_argument(
                "--" + _snake(part).replace("_", "-"),
                dest=f"file_{_snake(part)}",
                metavar="FILE",
                help="a file sent with the request",
            )
        sub.add_argument("-o", "--output", default=".", help="directory for the outputs")
        sub.add_argument(
            "--background",
            action="store_true",
            help="run as a job (for long media): follow it and download like convert",
        )
        _common_after(sub)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    tool = tool_named(args.tool)
    given: dict[str, Any] = {}
    for param in tool.params:
        value = getattr(args, f"param_{param.python_name}", None)
        if value is not None:
            given[param.name] = value
    for part in tool.file_params:
        value = getattr(args, f"file_{_snake(part)}", None)
        if value is not None:
            given[part] = value
    return given


def _show(result: ToolResult, args: argparse.Namespace, display: Display) -> int:
    if args.json:
        print_json(
            {
                "media": dict(result.media) if result.media is not None else None,
                "outputs": [vars(saved) for saved in result.outputs],
                "failed": [vars(failed) for failed in result.failed],
            }
        )
    elif result.media is not None:
        print("\n".join(media_lines(result.media)))
    for saved in result.outputs:
        display.line(saved_note(saved))
    for failed in result.failed:
        display.error(f"{failed.filename}: {failed.message}")
    return EXIT_FAILED if result.failed else EXIT_OK


def run_tool(client: Client, args: argparse.Namespace, display: Display) -> int:
    inputs: list[str] = args.inputs
    source: Any = inputs[0] if len(inputs) == 1 and is_url(inputs[0]) else inputs
    result = client.tool(
        args.tool, source, dest=args.output, background=args.background, **_params(args)
    )
    if result.job_id is not None:
        follow = argparse.Namespace(**{**vars(args), "zip": False})
        return run_jobs(client, follow, display, existing=result.job_id)
    return _show(result, args, display)


def run_inspect(client: Client, args: argparse.Namespace, display: Display) -> int:
    result = client.inspect(args.input)
    return _show(result, args, display)
