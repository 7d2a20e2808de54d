"""mibench.generators: GAN image priors. A generator kind is a `PriorKind` (base.py) registered in
`GENERATORS`; importing this package registers the built-in kinds (StyleGAN2, T-ACGAN)."""

from mibench.generators import stylegan2_kind, tacgan  # noqa: F401  (register "stylegan2", "tacgan")
from mibench.generators.base import Prior, PriorKind, TrainedPrior  # noqa: F401
