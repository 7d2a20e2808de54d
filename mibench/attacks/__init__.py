"""Attacks: the shared pipeline (`base`), access levels, and PPA, IF-GMI and LOKT."""

import importlib

for _m in ("ppa", "ifgmi", "lokt"):
    try:
        importlib.import_module(f"mibench.attacks.{_m}")
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while an attack is being written
        if _exc.name != f"mibench.attacks.{_m}":
            raise
