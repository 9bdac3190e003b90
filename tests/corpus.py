"""Where the shared test corpus is: `CORPUS_DIR`, else `shared/corpus` beside the checkout
(how CI lays it out), else the development machine's copy."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    Path(os.environ["CORPUS_DIR"]) if os.environ.get("CORPUS_DIR") else None,
    Path(__file__).resolve().parents[2] / "shared" / "corpus",
    Path("/work/shared/corpus"),
]

CORPUS: Path = next(
    (path for path in _CANDIDATES if path is not None and path.is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "corpus",
)
