"""Rows for `mibench list KIND`: registered implementations and cards with their local status."""

from __future__ import annotations

from mibench import registry
from mibench.attacks.addon import attack_class, attack_names
from mibench.cards import list_cards


def _kind_rows(reg: registry.Registry) -> tuple[list[dict], list[str]]:
    rows = []
    for name in reg.names():
        meta = reg.meta(name)
        rows.append({"name": name, "description": meta.get("description", ""),
                     **({"splits": ", ".join(meta["splits"])} if "splits" in meta else {})})
    cols = ["name", "splits", "description"] if any("splits" in r for r in rows) else ["name", "description"]
    return rows, cols


def rows(kind: str) -> tuple[list[dict], list[str]]:
    """(rows, columns) describing everything of `kind`."""
    if kind == "targets":
        from mibench.zoo import target_status

        out = []
        for c in list_cards("target"):
            out.append({"name": c.name, "role": c.role, "dataset": c.dataset.name, "arch": c.architecture,
                        "defense": c.defense.card, "classes": c.num_classes, "size": c.input_size,
                        "status": target_status(c)})
        return out, ["name", "role", "dataset", "arch", "defense", "classes", "size", "status"]
    if kind == "generators":
        from mibench.zoo import generator_status

        out = [{"name": c.name, "kind": c.kind, "resolution": c.resolution,
                "data": f"{c.dataset.name}:{c.dataset.split or 'public'}" if c.dataset else "(external)",
                "status": generator_status(c)} for c in list_cards("generator")]
        return out, ["name", "kind", "resolution", "data", "status"]
    if kind == "defenses":
        out = [{"name": c.name, "kind": c.kind,
                "params": ", ".join(f"{k}={v}" for k, v in c.params.items()),
                "reference": c.reference} for c in list_cards("defense")]
        return out, ["name", "kind", "params", "reference"]
    if kind == "attacks":
        out = []
        for name in attack_names():
            a = attack_class(name)
            out.append({"name": name, "access": a.access_level, "prior": " / ".join(a.prior_kinds) if a.needs_prior else "own",
                        "presets": ", ".join(a.presets), "suite": "yes" if a.in_default_suite else "no",
                        "description": a.description})
        return out, ["name", "access", "prior", "presets", "suite", "description"]
    if kind == "metrics":
        out = []
        for name in registry.METRICS.names():
            m = registry.METRICS.get(name)
            out.append({"name": name, "columns": ", ".join(c.name for c in m.columns), "scope": m.scope,
                        "leakage": "/".join(sorted({f"{c.more_leakage} = more" for c in m.columns})),
                        "needs": m.requires, "default": "yes" if m.default else "on request",
                        "description": m.description})
        return out, ["name", "columns", "scope", "leakage", "needs", "default", "description"]
    reg = {"datasets": registry.DATASETS, "architectures": registry.ARCHITECTURES}[kind]
    return _kind_rows(reg)
