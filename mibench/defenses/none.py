"""`none`: the undefended baseline — plain cross-entropy training."""

from __future__ import annotations

from mibench.defenses.base import Defense
from mibench.registry import DEFENSES


@DEFENSES.register("none", description="no defense: plain cross-entropy", paper="")
class NoDefense(Defense):
    """Plain cross-entropy; the model is trained unchanged."""

    kind = "none"
