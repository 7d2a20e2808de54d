"""mibench.generators: GAN image priors. A generator kind is a `PriorKind` (base.py) registered in
`GENERATORS` by its own module; `mibench.registry.load_builtins` imports every module here."""

from mibench.generators.base import Prior, PriorKind, TrainedPrior  # noqa: F401
