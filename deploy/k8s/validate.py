"""Validates rendered Kubernetes objects offline, strictly (unknown fields are errors).

Built-in kinds against the Kubernetes OpenAPI schemas that kubernetes-validate ships; custom
resources against the schema of their CRD, vendored under vendor/schemas. Run by `make
k8s-check` with the interpreter of its tools (.tools/venv):

    python deploy/k8s/validate.py KUBERNETES_VERSION FILE...

Prints one line per invalid or unknown object and exits 1 if there is any.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = Path(__file__).parent / "vendor" / "schemas"


def strict(schema: Any) -> Any:
    """The CRD's schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> schema of every version of every vendored CRD."""
    found: dict[tuple[str, str], Any] = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            found[(f"{group}/{version['name']}", kind)] = schema
    return found


def problems(version: str, documents: list[dict[str, Any]]) -> list[str]:
    custom = crd_schemas()
    found = []
    for doc in documents:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        try:
            if key in custom:
                jsonschema.validate(doc, custom[key])
            else:
                kubernetes_validate.validate(doc, version, strict=True)
        except jsonschema.ValidationError as error:
            found.append(f"{name}: {error.message} at {'/'.join(map(str, error.path))}")
        except kubernetes_validate.ValidationError as error:
            found.append(f"{name}: {error.message} at {'/'.join(map(str, error.path))}")
        except Exception as error:  # an unknown kind or version: no schema to validate with
            found.append(f"{name}: {error}")
    return found


def main(argv: list[str]) -> int:
    version, files = argv[0], argv[1:]
    documents = [doc for path in files for doc in yaml.safe_load_all(Path(path).read_text()) if doc]
    found = problems(version, documents)
    for line in found:
        print(line)
    print(f"{len(documents)} objects, {len(found)} invalid (Kubernetes {version})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
