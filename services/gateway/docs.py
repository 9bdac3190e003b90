"""The readable API page at /docs, rendered on the server from the OpenAPI document: plain HTML
with inline CSS and no scripts, so it works on a host without any outside network."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from services.gateway import openapi

Schema = dict[str, Any]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#1d2330}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ee;padding-bottom:.2rem;margin-top:2.5rem}
section{border:1px solid #dde3ee;border-radius:6px;padding:.2rem 1rem 1rem;margin:1rem 0}
code{background:#f2f4f8;padding:0 .25rem;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #e6e9ef;text-align:left;padding:.3rem .5rem;vertical-align:top}
th{background:#f7f8fb}
.method{display:inline-block;min-width:4.5rem;font-weight:700;color:#fff;border-radius:4px;
text-align:center;padding:0 .4rem;margin-right:.5rem}
.get{background:#2f7d4f}.post{background:#2e5fa8}.delete{background:#a83232}
.planned{background:#fff4d6;border:1px solid #e0c060;border-radius:4px;padding:0 .4rem;
font-size:.85rem}
nav li{list-style:none}nav ul{padding-left:1rem}
"""


def _anchor(method: str, path: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in path).strip("-")
    return f"{method}-{cleaned}"


def _schema_link(reference: str) -> str:
    name = reference.rsplit("/", 1)[-1]
    return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'


def type_text(schema: Schema) -> str:
    """A short HTML description of a JSON Schema: type, values, range, format."""
    if "$ref" in schema:
        return _schema_link(schema["$ref"])
    if "anyOf" in schema:
        return " or ".join(type_text(option) for option in schema["anyOf"])
    if "allOf" in schema:
        return " and ".join(type_text(part) for part in schema["allOf"] if "$ref" in part)
    kind = schema.get("type", "any")
    kinds = [kind] if isinstance(kind, str) else list(kind)
    text = " or ".join(escape(str(k)) for k in kinds)
    if "items" in schema:
        text = f"array of {type_text(schema['items'])}"
    if "contentSchema" in schema:
        text = f"JSON text: {type_text(schema['contentSchema'])}"
    if schema.get("format"):
        text += f" ({escape(schema['format'])})"
    if "enum" in schema:
        values = ", ".join(
            f"<code>{escape(str(v))}</code>" for v in schema["enum"] if v is not None
        )
        text += f": one of {values}"
    if "minimum" in schema or "maximum" in schema:
        text += f", {schema.get('minimum', '…')}–{schema.get('maximum', '…')}"
    if "maxLength" in schema:
        text += f", at most {schema['maxLength']} characters"
    return text


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{h}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _default(schema: Schema) -> str:
    return f"<code>{escape(str(schema['default']))}</code>" if "default" in schema else ""


def _parameters(operation: Schema) -> str:
    rows = [
        (
            f"<code>{escape(p['name'])}</code>",
            escape(p["in"]),
            type_text(p["schema"]),
            _default(p["schema"]),
            escape(p.get("description", "")),
        )
        for p in operation.get("parameters", [])
    ]
    return _table(("Parameter", "In", "Type", "Default", "Meaning"), rows)


def _body(operation: Schema) -> str:
    body = operation.get("requestBody")
    if not body:
        return ""
    parts = []
    for media_type, content in body["content"].items():
        schema = content["schema"]
        required = set(schema.get("required", ()))
        rows = [
            (
                f"<code>{escape(name)}</code>" + (" <b>required</b>" if name in required else ""),
                type_text(field),
                _default(field),
                escape(field.get("description", "")),
            )
            for name, field in schema.get("properties", {}).items()
        ]
        parts.append(f"<p>Body: <code>{escape(media_type)}</code></p>")
        parts.append(_table(("Field", "Type", "Default", "Meaning"), rows))
    return "".join(parts)


def _responses(operation: Schema, document: Schema) -> str:
    shared = document["components"]["responses"]
    rows = []
    for status, listed in operation["responses"].items():
        response = shared[listed["$ref"].rsplit("/", 1)[-1]] if "$ref" in listed else listed
        kinds = [
            f"<code>{escape(media_type)}</code> {type_text(content['schema'])}"
            for media_type, content in response.get("content", {}).items()
        ]
        rows.append(
            (f"<b>{escape(status)}</b>", escape(response["description"]), "<br>".join(kinds))
        )
    return _table(("Status", "When", "Body"), rows)


def _operation(method: str, path: str, operation: Schema, document: Schema) -> str:
    planned = ' <span class="planned">planned</span>' if operation.get("x-planned") else ""
    access = "No key needed." if operation.get("security") == [] else "Needs an API key."
    return (
        f'<section id="{_anchor(method, path)}"><h3><span class="method {method}">'
        f"{method.upper()}</span><code>{escape(path)}</code>{planned}</h3>"
        f"<p>{escape(operation['summary'])}. {access}</p>"
        f"{_parameters(operation)}{_body(operation)}{_responses(operation, document)}</section>"
    )


def _schema_section(name: str, schema: Schema) -> str:
    required = set(schema.get("required", ()))
    rows = [
        (
            f"<code>{escape(prop)}</code>",
            type_text(field),
            "yes" if prop in required else "",
            escape(field.get("description", "")),
        )
        for prop, field in schema.get("properties", {}).items()
    ]
    return (
        f'<section id="schema-{escape(name)}"><h3>{escape(name)}</h3>'
        f"{_table(('Property', 'Type', 'Always present', 'Meaning'), rows)}</section>"
    )


def render_page(document: Schema) -> str:
    info = document["info"]
    operations = [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    index = "".join(
        f'<li><a href="#{_anchor(m, p)}">{m.upper()} {escape(p)}</a> {escape(o["summary"])}</li>'
        for m, p, o in operations
    )
    errors = _table(
        ("Status", "When, and the codes it carries"),
        [
            (escape(name.removeprefix("E")), escape(response["description"]))
            for name, response in document["components"]["responses"].items()
        ],
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(info['title'])}"
        f" API</title><style>{_STYLE}</style></head><body><h1>{escape(info['title'])} API</h1>"
        f"<p>{escape(info['description'])}</p><p>Authenticate with <code>Authorization: Bearer "
        "&lt;key&gt;</code> or <code>x-api-key: &lt;key&gt;</code>. The machine-readable "
        'document is at <a href="/openapi.json">/openapi.json</a>.</p>'
        f"<nav><h2>Routes</h2><ul>{index}</ul></nav><h2>Operations</h2>"
        + "".join(_operation(m, p, o, document) for m, p, o in operations)
        + f"<h2>Errors</h2><p>Every error body is an {_schema_link('Error')}.</p>{errors}"
        + "<h2>Schemas</h2>"
        + "".join(_schema_section(n, s) for n, s in document["components"]["schemas"].items())
        + "</body></html>"
    )


async def docs_page(request: Request) -> Response:
    return HTMLResponse(render_page(openapi.build_document()))
