"""The generic Registry and the plug-in entry point group."""

from __future__ import annotations

import pytest

from mibench.errors import RegistryError
from mibench.registry import ATTACKS, DATASETS, DEFENSES, Registry, load_builtins


def test_register_get_list_and_suggest():
    reg = Registry("widget")
    reg.register("alpha", description="first")(1)
    reg.register("beta")(2)
    assert reg.get("alpha") == 1 and reg.names() == ["alpha", "beta"] and "beta" in reg
    assert reg.meta("alpha") == {"description": "first"}
    with pytest.raises(RegistryError, match="did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("alpha")(3)


def test_builtins_are_registered():
    load_builtins()
    assert {"ppa", "ifgmi"} <= set(ATTACKS.names())
    assert {"synthfaces32", "synthfaces64", "celeba", "facescrub", "stanford_dogs", "imagefolder", "ffhq"} <= set(DATASETS.names())
    assert {"none", "negative_label_smoothing", "label_smoothing", "tl_dmi", "bido_hsic", "mid_vib"} <= set(DEFENSES.names())


def test_plugins_register_through_entry_points(monkeypatch):
    import mibench.registry as registry

    calls = []

    class EP:
        name, value = "demo", "demo_pkg:register"

        def load(self):
            def register():
                calls.append(1)
                registry.ATTACKS.register("demo-attack", description="from a plug-in")(object)
            return register

    class BrokenEP(EP):
        name, value = "broken", "broken_pkg:register"

        def load(self):
            raise ImportError("no module named broken_pkg")

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [EP()] if group == "mibench.plugins" else [])
    try:
        registry.load_builtins()
        assert calls == [1] and "demo-attack" in ATTACKS
    finally:
        ATTACKS._items.pop("demo-attack", None)
        ATTACKS._meta.pop("demo-attack", None)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [BrokenEP()])
    with pytest.raises(RegistryError, match="plug-in 'broken'"):
        registry.load_builtins()
    monkeypatch.setattr(registry, "_loaded", True)
