"""Defenses against model inversion: each a small object that changes the model and/or the loss.

Importing this package registers the built-in kinds in `DEFENSES`: `none`, `label_smoothing`,
`negative_label_smoothing`, `tl_dmi`, `bido_hsic`, `mid_vib`.
"""

from mibench.defenses import bido, label_smoothing, mid, none, tl_dmi  # noqa: F401, E402  (register kinds)
from mibench.defenses.base import Defense, DefenseContext, NoParams, build_defense  # noqa: F401
