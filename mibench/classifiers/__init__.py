"""Classifiers: the uniform `Classifier` interface, registered architectures, training and checkpoints.

Importing this package registers the built-in architectures in `ARCHITECTURES`.
"""

from mibench.classifiers import architectures  # noqa: F401  (registers architectures)
from mibench.classifiers.architectures import build_classifier, count_parameters  # noqa: F401
from mibench.classifiers.base import HEADS, Backbone, Classifier, LinearHead  # noqa: F401
from mibench.classifiers.checkpoint import (  # noqa: F401
    load_classifier,
    load_external_classifier,
    read_meta,
    read_state_dict,
    save_classifier,
)
from mibench.classifiers.train import TrainResult, evaluate_accuracy, train_classifier  # noqa: F401
