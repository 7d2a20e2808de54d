"""Attack add-ons: a switchable extension any compatible attack can run with, named
"<attack>+<add-on>" (e.g. `gmi+lomma`), as LOMMA plugs into GMI and KED-MI.

An add-on is one file: a subclass of `AttackAddOn` registered in `ADDONS`. It declares which
attacks it applies to (`applies_to`: by default white-box attacks that declare `identity_hook`, i.e.
whose loss goes through `identity_loss(ctx, x, targets, n_real)`), its typed config (nested in the composed
attack's config under the add-on's `field`, so `--set lomma.lambda_reg=0.5` reaches it; its stages
live in `<run>/<attack>/<field>/` and ship as `stages/<field>/`), its
presets (keyed like the attacks' presets) and the base settings it changes per preset
(`base_overrides`: e.g. LOMMA's published runs use 2400 GMI iterations). `attack_class(name)`
composes the class the runner uses; the entry's attack name is the composed name, and its config
records the add-on (`addons`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mibench.attacks.base import Attack, AttackContext
from mibench.errors import AttackError
from mibench.registry import ADDONS, ATTACKS


class AttackAddOn:
    """Base class of add-ons: hooks into `prepare`, the identity loss, surrogates and phase info."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    field: ClassVar[str] = ""  # the config field (of the composed config) holding this add-on's config
    config_cls: ClassVar[type] = object
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # keyed like the attacks' presets; missing: {}
    needs_public_data: ClassVar[bool] = False  # True: the composed attack gets the attacker's public images

    def __init__(self, config: Any):
        self.config = config

    @classmethod
    def applies_to(cls, base: type[Attack]) -> bool:
        """Whether the add-on can extend `base`: white-box attacks that declare the `identity_hook`."""
        return base.access_level == "white-box" and base.identity_hook

    @classmethod
    def base_overrides(cls, base: type[Attack], preset: str) -> dict[str, Any]:
        """Base-attack settings the add-on's published runs change under `preset` (default: none)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What entries record about the add-on (beyond its config)."""
        return {"name": self.name}

    def prepare(self, attack: Attack, ctx: AttackContext) -> None:
        """One-time work after the base attack's `prepare` (e.g. training surrogates)."""

    def identity_loss(self, attack: Attack, ctx: AttackContext, x: torch.Tensor, targets: torch.Tensor,
                      n_real: int, base: Callable[..., torch.Tensor]) -> torch.Tensor:
        """The per-sample identity loss (N,) replacing the base's; `base(ctx, x, targets, n_real)` is the
        base attack's own (the default returns it)."""
        return base(ctx, x, targets, n_real)

    def surrogates(self) -> nn.Module | None:
        """Models the add-on trained to imitate the target (their agreement is reported), or None."""
        return None

    def phase_info(self) -> dict[str, Any]:
        """Add-on facts for the entry (queries by phase, training summaries)."""
        return {}


class _Composed:
    """Mixed in before the base attack: routes the hooks through the add-on."""

    addon_cls: ClassVar[type[AttackAddOn]]

    def __init__(self, config: Any):
        super().__init__(config)
        self.addon = self.addon_cls(getattr(config, self.addon_cls.field))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "addons": [self.addon.describe()]}

    def prepare(self, ctx: AttackContext) -> None:
        super().prepare(ctx)
        # The add-on's stages live in a folder of their own (`<run>/<attack>/<field>/`), so that
        # `mibench zoo ship-stages` can ship them apart from the base's.
        store = None if ctx.store_dir is None else Path(ctx.store_dir) / self.addon_cls.field
        self.addon.prepare(self, dataclasses.replace(ctx, store_dir=store))

    def identity_loss(self, ctx: AttackContext, x: torch.Tensor, targets: torch.Tensor, n_real: int) -> torch.Tensor:
        return self.addon.identity_loss(self, ctx, x, targets, n_real, super().identity_loss)

    def surrogates(self) -> nn.Module | None:
        mine = self.addon.surrogates()
        return super().surrogates() if mine is None else mine

    def phase_info(self) -> dict[str, Any]:
        info = super().phase_info()
        extra = self.addon.phase_info()
        return {**info, self.addon_cls.field: extra} if extra else info


_COMPOSED: dict[str, type[Attack]] = {}


def compose(base: type[Attack], addon: type[AttackAddOn]) -> type[Attack]:
    """The attack class `base` extended by `addon` (cached: one class per composed name)."""
    name = f"{base.name}+{addon.name}"
    if name in _COMPOSED:
        return _COMPOSED[name]
    if not addon.applies_to(base):
        raise AttackError(f"add-on '{addon.name}' does not apply to attack '{base.name}'",
                          fix=f"use it with one of: {', '.join(compatible_attacks(addon)) or 'none'}")
    config_cls = dataclasses.make_dataclass(
        f"{base.config_cls.__name__}With{addon.field.capitalize()}",
        [(addon.field, addon.config_cls, dataclasses.field(default_factory=addon.config_cls))],
        bases=(base.config_cls,))
    config_cls.__module__ = base.config_cls.__module__
    presets = {p: {**values, **addon.base_overrides(base, p), addon.field: dict(addon.presets.get(p, {}))}
               for p, values in base.presets.items()}
    cls = type(f"{base.__name__}Plus{addon.__name__}", (_Composed, base), {
        "name": name, "addon_cls": addon, "config_cls": config_cls, "presets": presets,
        "description": f"{base.description} + {addon.description}", "in_default_suite": False,
        "needs_public_data": base.needs_public_data or addon.needs_public_data,
        "__module__": addon.__module__})
    _COMPOSED[name] = cls
    return cls


def compatible_attacks(addon: type[AttackAddOn]) -> list[str]:
    """Registered attacks the add-on applies to."""
    return [n for n in ATTACKS.names() if addon.applies_to(ATTACKS.get(n))]


def attack_class(name: str) -> type[Attack]:
    """The attack class for `name`: a registered attack, or "<attack>+<add-on>" composed."""
    base, plus, addon = name.partition("+")
    if not plus:
        return ATTACKS.get(name)
    if "+" in addon:
        raise AttackError(f"attack '{name}' names more than one add-on", fix="use one add-on: <attack>+<add-on>")
    return compose(ATTACKS.get(base), ADDONS.get(addon))


def attack_names() -> list[str]:
    """Every runnable attack name: the registered attacks, then each add-on on each attack it applies to."""
    composed = [f"{base}+{a}" for a in ADDONS.names() for base in compatible_attacks(ADDONS.get(a))]
    return ATTACKS.names() + sorted(composed)
