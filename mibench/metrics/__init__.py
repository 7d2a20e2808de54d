"""mibench.metrics: how much private information an attack's reconstructions reveal.

Pure functions on tensors (attack accuracy, KNN / FaceNet distance, FID, PRDC, knowledge
extraction) plus the two pretrained feature extractors (Inception for FID / PRDC, FaceNet for
δ_face), which load local weights only. Importing this package registers the metric kinds in
`mibench.registry.METRICS` (metadata: description, more_leakage = "higher" | "lower", features).
"""

from mibench.metrics import evaluator_fp, identity_recovery, second_evaluator  # noqa: F401, E402  (register kinds)
from mibench.metrics.accuracy import attack_accuracy, per_class_accuracy, topk_correct
from mibench.metrics.base import MetricUnavailable, extract_features
from mibench.metrics.facenet import FACENET_ENV, FaceNetFeatures, facenet_distance
from mibench.metrics.fid import (
    INCEPTION_ENV,
    InceptionFeatures,
    feature_stats,
    fid_from_features,
    frechet_distance,
)
from mibench.metrics.knn import knn_distance, pairwise_sq_dists
from mibench.metrics.knowledge_extraction import knowledge_extraction_score
from mibench.metrics.prdc import prdc, prdc_per_class

__all__ = [
    "FACENET_ENV",
    "INCEPTION_ENV",
    "FaceNetFeatures",
    "InceptionFeatures",
    "MetricUnavailable",
    "attack_accuracy",
    "extract_features",
    "facenet_distance",
    "feature_stats",
    "fid_from_features",
    "frechet_distance",
    "knn_distance",
    "knowledge_extraction_score",
    "pairwise_sq_dists",
    "per_class_accuracy",
    "prdc",
    "prdc_per_class",
    "topk_correct",
]
