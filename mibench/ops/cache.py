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

Shipped artifacts: a *shippable* area also looks in `mibench/shipped/<area>/`, the read-only store
committed with the code (and in the wheel), where artifacts are keyed by their content description
alone — not by the code — so every machine uses the same trained weights for the same card. A
shipped artifact is preferred to a local build of the same content unless the local one was built
with `force` (an explicit retrain); `MIBENCH_SHIPPED=0` ignores the store. Its sidecar is the
artifact's manifest (content, sha256 of every file, the code version that produced it, training
time and figures), checked before every use like any other sidecar.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibench import __version__
from mibench.errors import CheckpointError
from mibench.ops.fileio import atomic_write_json, file_lock, sha256_file

_PKG = Path(__file__).resolve().parent.parent
SIDECAR = ".artifact.json"
SHIPPED = _PKG / "shipped"  # read-only artifacts committed with the code
OVERRIDE = "overrides_shipped"  # meta flag of a local artifact built with force


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


def shipped_key(content: Any) -> str:
    """16 hex digits identifying a content description alone (the key of a shipped artifact)."""
    blob = json.dumps({"content": content}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shipped_enabled() -> bool:
    """False when `MIBENCH_SHIPPED=0` (use and build local artifacts only)."""
    return os.environ.get("MIBENCH_SHIPPED", "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Artifact:
    """One cache entry: files `<root>/<name>-<key><suffix>` and their sidecar."""

    root: Path
    name: str
    key: str
    code: tuple[str, ...] = ()
    content: Any = field(default=None, compare=False, hash=False)  # the description the key hashes
    shipped: bool = False  # True: read-only, from the store committed with the code

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

    def record(self) -> dict[str, Any]:
        """The sidecar as written (no sha256 check)."""
        return json.loads(self.sidecar.read_text())

    def commit(self, suffixes: Sequence[str], meta: dict[str, Any]) -> dict[str, Any]:
        """Record the written files (sha256 each) and `meta`; returns `meta`."""
        if self.shipped:
            raise CheckpointError("a shipped artifact is read-only", path=self.sidecar,
                                  fix="build a local artifact (`mibench zoo build --force NAME`)")
        files = {s: sha256_file(self.file(s)) for s in suffixes}
        atomic_write_json(self.sidecar, {"key": self.key, "name": self.name, "files": files,
                                         "code_version": code_version(*self.code) if self.code else None,
                                         "content": self.content, "meta": meta})
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
    """An area of the cache (e.g. 'zoo/targets'), or a folder of its own (`root`); a `shippable` area
    also finds artifacts in the store shipped with the code (`mibench/shipped/<area>/`)."""

    def __init__(self, area: str, root: str | Path | None = None, shippable: bool = False):
        self.area = area
        self._root = Path(root) if root is not None else None
        self.shippable = shippable

    @property
    def root(self) -> Path:
        """The folder holding this area's artifacts."""
        return self._root if self._root is not None else cache_dir() / self.area

    @property
    def shipped_root(self) -> Path:
        """The folder of this area's shipped artifacts."""
        return SHIPPED / self.area

    def artifact(self, name: str, content: Any, code: Sequence[str], *, local: bool = False) -> Artifact:
        """The artifact `name` for this content description, produced by the modules `code`: the
        shipped one when it exists (unless a forced local build overrides it, or `local`), else the
        local cache entry."""
        mine = Artifact(self.root, name, content_key(content, code), tuple(code), content)
        if local or not self.shippable or not shipped_enabled():
            return mine
        theirs = self.shipped_artifact(name, content, code)
        if not theirs.exists():
            return mine
        if mine.exists() and mine.record().get("meta", {}).get(OVERRIDE):
            return mine
        return theirs

    def shipped_artifact(self, name: str, content: Any, code: Sequence[str] = ()) -> Artifact:
        """The shipped artifact for this content description (it may not exist); `code` is what a
        forced local rebuild of it is keyed with."""
        return Artifact(self.shipped_root, name, shipped_key(content), tuple(code), content, shipped=True)

    def ship(self, art: Artifact, manifest: dict[str, Any]) -> tuple[Artifact, bool]:
        """Copy the complete local artifact `art` into the shipped store (the maintainer's step), with
        `manifest` added to its record; other shipped versions of the same name are removed.
        Returns (shipped artifact, whether anything changed): identical files are not rewritten, so
        re-shipping unchanged weights changes nothing in git."""
        record = art.record()
        meta = art.meta()  # checks the local files
        out = self.shipped_artifact(art.name, record.get("content"))
        if record.get("content") is None:
            raise CheckpointError("the artifact records no content description (built by an older mibench)",
                                  path=art.sidecar, fix="rebuild it, then ship it")
        files = record["files"]
        if out.exists() and out.record().get("files") == files:
            return out, False
        out.root.mkdir(parents=True, exist_ok=True)
        for old in out.root.glob(f"{art.name}-*"):
            key = old.name[len(art.name) + 1:].split(".")[0]
            if len(key) == 16 and all(c in "0123456789abcdef" for c in key):  # not another name's file
                old.unlink()
        for suffix in files:
            shutil.copyfile(art.file(suffix), out.file(suffix))
        atomic_write_json(out.sidecar, {"key": out.key, "name": out.name, "files": files,
                                        "code_version": record.get("code_version"), "content": record["content"],
                                        "meta": {k: v for k, v in meta.items() if k != OVERRIDE},
                                        "manifest": manifest})
        return out, True

    def get_or_build(self, art: Artifact, build: Callable[[Artifact], tuple[Sequence[str], dict[str, Any]]],
                     *, force: bool = False) -> dict[str, Any]:
        """The artifact's meta, building it first (under its lock) when missing or `force`.
        `build(art)` writes the files and returns (their suffixes, meta). A shipped artifact is
        returned as it is; `force` builds a local one that then overrides it."""
        if art.shipped:
            if not force:
                return art.meta()
            art = Artifact(self.root, art.name, content_key(art.content, art.code), art.code, art.content)
        with art.lock():
            if art.exists() and not force:
                return art.meta()
            art.discard()
            suffixes, meta = build(art)
            if force and self.shippable:
                meta = {**meta, OVERRIDE: True}
            return art.commit(suffixes, meta)
