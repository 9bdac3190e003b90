"""The layout's rules, read from the source: services never import each other, `mesh` never
imports `services` nor names a service, and only settings modules read the environment."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def sources(package: str) -> list[Path]:
    return sorted(
        path
        for path in (ROOT / package).rglob("*.py")
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    )


@functools.cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_service_list_is_the_one_the_layout_expects() -> None:
    assert SERVICES == ["archive", "gateway", "image", "media", "orchestrator"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    found = [
        f"{where(path, line)} imports {name}"
        for path in sources(f"services/{service}")
        for line, name in imported(parse(path))
        if name.split(".")[0] == "services" and name.split(".")[1:2] not in ([service], [])
    ]
    assert found == []


def test_mesh_imports_no_service() -> None:
    found = [
        f"{where(path, line)} imports {name}"
        for path in sources("mesh")
        for line, name in imported(parse(path))
        if name.split(".")[0] == "services"
    ]
    assert found == []


def test_mesh_names_no_service() -> None:
    """No string in `mesh` is a service's name or module path. Names that are also a format
    family (`Family.IMAGE`), a proto field (`HasField("archive")`) or a JSON key of the public
    job body mean those, not the service, and are allowed there."""
    found = [
        f"{where(path, node.lineno)} says {node.value!r}"
        for path in sources("mesh")
        for node in _strings(parse(path))
        if str(node.value) in SERVICES or "services." in str(node.value)
    ]
    assert found == []


def test_only_settings_modules_read_the_environment() -> None:
    found = [
        where(path, node.lineno)
        for package in ("mesh", "services")
        for path in sources(package)
        if path.name != "settings.py"
        for node in ast.walk(parse(path))
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
    ]
    assert found == []


def test_the_checks_see_a_violation() -> None:
    tree = ast.parse(
        'import services.image.pipeline\nSERVICES = ("media",)\nx = os.environ["A"]\n'
        'class Family(enum.Enum):\n    IMAGE = "image"\n'
    )
    assert [name for _, name in imported(tree)] == ["services.image.pipeline"]
    assert [node.value for node in _strings(tree)] == ["media", "A"]


def _strings(tree: ast.Module) -> Iterator[ast.Constant]:
    allowed = set(_allowed_uses(tree))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in allowed
        ):
            yield node


def _allowed_uses(tree: ast.Module) -> Iterator[int]:
    """Docstrings, enum members' values, proto field names and dict keys."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            yield id(first.value)
        if isinstance(node, ast.ClassDef) and any(_is_enum(base) for base in node.bases):
            for item in node.body:
                if isinstance(item, ast.Assign):
                    yield id(item.value)
        if isinstance(node, ast.Call) and _calls_field_method(node):
            yield from (id(argument) for argument in node.args)
        if isinstance(node, ast.Dict):
            yield from (id(key) for key in node.keys if key is not None)


def _calls_field_method(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in (
        "HasField",
        "ClearField",
        "WhichOneof",
    )


def _is_enum(base: ast.expr) -> bool:
    name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
    return name in ("Enum", "IntEnum", "StrEnum")
