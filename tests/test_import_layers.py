"""The package's layers point one way and nothing imports in a cycle — imports inside functions
count. Layers, lowest first: core (errors, typed, registry, seeding) → ops (rng, transforms, imaging,
file IO, the artifact cache, the worker pool) → data → models (classifiers, defenses, generators,
metrics) → attacks → cards / zoo / run → listing / leaderboard / api / cli. A module may import its
own layer (without a cycle) or any lower one."""

from __future__ import annotations

from mibench.ops.cache import _module_files, module_imports

LAYERS = [
    ("core", ["mibench", "mibench.errors", "mibench.typed", "mibench.registry", "mibench.seeding"]),
    ("ops", ["mibench.ops"]),
    ("data", ["mibench.data"]),
    ("models", ["mibench.classifiers", "mibench.defenses", "mibench.generators", "mibench.metrics"]),
    ("attacks", ["mibench.attacks"]),
    ("orchestration", ["mibench.cards", "mibench.starter", "mibench.zoo", "mibench.run"]),
    ("interface", ["mibench.listing", "mibench.leaderboard", "mibench.api", "mibench.cli", "mibench.__main__"]),
]


def layer_of(module: str) -> int:
    """Index of the layer that owns `module` (longest matching prefix)."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} belongs to no layer: add it to LAYERS"
    return rank


def graph() -> dict[str, set[str]]:
    """module → the mibench modules it imports (anywhere in its source)."""
    return {m: module_imports(m) for m in _module_files()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for m in _module_files():
        layer_of(m)


def test_no_upward_imports():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    # The closure walker is the one the artifact cache keys on: a function-level import counts.
    assert "mibench.zoo" in module_imports("mibench.run.execute")  # imported inside run_one
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
