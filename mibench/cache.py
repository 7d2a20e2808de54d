"""The cache of built artefacts (trained zoo models, priors, rendered datasets).

Location: `$MIBENCH_CACHE`, default `~/.cache/mibench`. Entries are keyed by card hash + code
version, where the code version hashes the source of the sub-packages that shape the artefact.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from mibench import __version__

_PKG = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """The cache root (created on demand)."""
    root = Path(os.environ.get("MIBENCH_CACHE", "~/.cache/mibench")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


@functools.cache
def code_version(*parts: str) -> str:
    """`__version__` plus a hash of the source files under the given sub-paths of the package."""
    h = hashlib.sha256(__version__.encode())
    for part in parts:
        target = _PKG / part
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(_PKG)).encode())
                h.update(f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"
