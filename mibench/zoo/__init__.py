"""The model zoo: builds, caches and loads what the cards describe — target classifiers, evaluation
models and GAN priors.

Cards with a training recipe (the embedded default) are trained locally into the artifact cache
(`mibench.ops.cache`), keyed by the card and the code that trains them; cards with a weights file
(the research setting) load the user's file, sha256-checked. Cached files are verified against the
sha256 recorded when they were written before every use.
"""

from mibench.zoo.build import build_zoo, zoo_cards, zoo_table  # noqa: F401
from mibench.zoo.priors import (  # noqa: F401
    build_generator,
    generator_cache_path,
    generator_status,
    load_prior,
    prior_artifact,
)
from mibench.zoo.targets import (  # noqa: F401
    build_target,
    external_accuracy,
    is_external,
    load_target,
    target_artifact,
    target_cache_path,
    target_status,
)
