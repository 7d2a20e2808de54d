"""The artifact cache: one mechanism for everything mibench builds once and reuses — trained zoo
models and priors, TL-DMI pre-training, LOKT's T-ACGAN warm-up and its per-run stages, rendered
synthfaces splits.

An artifact is a set of files next to a sidecar `<name>-<key>.artifact.json` that records the key,
the sha256 of every file and what produced it. The key hashes the artifact's *content description*
(a card, a recipe, a seed …) together with the source code of the modules that produce it — found
automatically as the static import closure of the producer modules, imports inside functions
included — so editing any code an artifact depends on rebuilds it, and no list of files is kept by
hand. A lock per artifact lets processes started together (pool workers, torchrun ranks) build it
once; the others wait and reuse it. A file whose sha256 no longer matches its sidecar is one clear
error naming the file (never silently trusted, never silently replaced).

Location: `$MIBENCH_CACHE`, default `~/.cache/mibench`; an area may also live elsewhere (LOKT keeps
its per-run stages inside the run folder, so a resumed run finds them).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mibench import __version__
from mibench.errors import CheckpointError
from mibench.ops.fileio import atomic_write_json, file_lock, sha256_file

_PKG = Path(__file__).resolve().parent.parent
SIDECAR = ".artifact.json"


def cache_dir() -> Path:
    """The cache root (created on demand)."""
    root = Path(os.environ.get("MIBENCH_CACHE", "~/.cache/mibench")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


# ----------------------------------------------------------------------------- code closure

@functools.cache
def _module_files() -> dict[str, Path]:
    """Every module of the mibench package: dotted name → source file."""
    out = {}
    for f in _PKG.rglob("*.py"):
        parts = list(f.relative_to(_PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def module_imports(module: str) -> set[str]:
    """The mibench modules `module` imports anywhere in its source (inside functions too)."""
    files = _module_files()
    path = files[module]
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "mibench":
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                name = f"{pkg}.{node.module}" if node.module else pkg
            else:
                name = node.module or ""
            if name.split(".")[0] != "mibench":
                continue
            for a in node.names:
                sub = f"{name}.{a.name}"
                add(sub if sub in files else name)
    return found


@functools.cache
def module_closure(*roots: str) -> tuple[str, ...]:
    """`roots` and every mibench module they import, transitively (sorted)."""
    files = _module_files()
    unknown = [r for r in roots if r not in files]
    if unknown:
        raise ValueError(f"not mibench modules: {', '.join(unknown)}")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(module_imports(m) - seen)
    return tuple(sorted(seen))


@functools.cache
def code_version(*roots: str) -> str:
    """`__version__` plus a hash of the source of `roots`' import closure (module names, e.g.
    'mibench.generators.tacgan'): the code that produces an artifact."""
    h = hashlib.sha256(__version__.encode())
    files = _module_files()
    for m in module_closure(*roots):
        h.update(m.encode())
        h.update(files[m].read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"


# ----------------------------------------------------------------------------- artifacts

def content_key(content: Any, code: Sequence[str]) -> str:
    """16 hex digits identifying (content description, producing code)."""
    blob = json.dumps({"content": content, "code": code_version(*code)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Artifact:
    """One cache entry: files `<root>/<name>-<key><suffix>` and their sidecar."""

    root: Path
    name: str
    key: str
    code: tuple[str, ...] = ()

    @property
    def stem(self) -> Path:
        """Path prefix of the artifact's files."""
        return self.root / f"{self.name}-{self.key}"

    def file(self, suffix: str) -> Path:
        """The path of one of the artifact's files (e.g. '.safetensors')."""
        return self.stem.with_name(self.stem.name + suffix)

    @property
    def sidecar(self) -> Path:
        """The record written last: its presence means the artifact is complete."""
        return self.file(SIDECAR)

    def exists(self) -> bool:
        """True when the artifact was completely written (its sidecar exists)."""
        return self.sidecar.is_file()

    def meta(self) -> dict[str, Any]:
        """The sidecar, after checking every file's sha256 (a mismatch is one clear error)."""
        try:
            record = json.loads(self.sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cache record is unreadable ({exc})", path=self.sidecar,
                                  fix=f"delete {self.stem}* to rebuild it") from None
        for suffix, digest in record.get("files", {}).items():
            path = self.file(suffix)
            if not path.is_file() or sha256_file(path) != digest:
                raise CheckpointError("cached file is damaged (its sha256 differs from the cache record)",
                                      path=path, fix=f"delete {self.stem}* (or rebuild with --force) to rebuild it")
        return record.get("meta", {})

    def commit(self, suffixes: Sequence[str], meta: dict[str, Any]) -> dict[str, Any]:
        """Record the written files (sha256 each) and `meta`; returns `meta`."""
        files = {s: sha256_file(self.file(s)) for s in suffixes}
        atomic_write_json(self.sidecar, {"key": self.key, "name": self.name, "files": files,
                                         "code_version": code_version(*self.code) if self.code else None,
                                         "meta": meta})
        return meta

    def discard(self) -> None:
        """Remove the artifact (sidecar first, so a half-removed artifact is never 'complete')."""
        self.sidecar.unlink(missing_ok=True)
        for f in self.root.glob(f"{self.stem.name}.*"):
            if not f.name.endswith(".lock"):
                f.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock: one process builds the artifact, the others wait and reuse it."""
        with file_lock(self.file(".lock")):
            yield


class ArtifactCache:
    """An area of the cache (e.g. 'zoo/targets'), or a folder of its own (`root`)."""

    def __init__(self, area: str, root: str | Path | None = None):
        self.area = area
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        """The folder holding this area's artifacts."""
        return self._root if self._root is not None else cache_dir() / self.area

    def artifact(self, name: str, content: Any, code: Sequence[str]) -> Artifact:
        """The artifact `name` for this content description, produced by the modules `code`."""
        return Artifact(self.root, name, content_key(content, code), tuple(code))

    def get_or_build(self, art: Artifact, build: Callable[[Artifact], tuple[Sequence[str], dict[str, Any]]],
                     *, force: bool = False) -> dict[str, Any]:
        """The artifact's meta, building it first (under its lock) when missing or `force`.
        `build(art)` writes the files and returns (their suffixes, meta)."""
        with art.lock():
            if art.exists() and not force:
                return art.meta()
            art.discard()
            suffixes, meta = build(art)
            return art.commit(suffixes, meta)
