"""The evaluation model's false-positive rate (synthfaces): of the reconstructions the evaluation
model counts as the attacked class, the share whose identity the ground truth does not confirm —
the attribute reader does not re-identify them among the top 5 private identities (`reid@5`).

A Type-I false positive in the sense of Ho et al. (2025): the evaluator is fooled, typically by
adversarial features that transfer from the target. The per-class value is over that class's
evaluator-correct reconstructions; the run's value is the mean over the classes that have any.
Real images are not perfect either: the same rate on the private test images (the reader's floor)
is measured by `benchmarks/attribute_reader.py` and stated in the README.
"""

from __future__ import annotations

from mibench.metrics.base import ClassBatch, Column, Metric
from mibench.metrics.identity_recovery import reid_of, setup_reader
from mibench.registry import METRICS


class EvaluatorFalsePositives(Metric):
    """Share of a class's evaluator-correct reconstructions that ground truth does not re-identify."""

    name = "evaluator_fp"
    description = ("evaluator false-positive rate (synthfaces): share of the reconstructions the evaluation model "
                   "counts as correct (top-1) that the ground-truth reader does not re-identify (top-5)")
    columns = (Column("eval_fp", "lower", "evaluator false-positive rate (top-1 hits not re-identified top-5)",
                      percent=True, label="eval_fp", page_key="evalfp", page_label="eval FP %", in_table=True,
                      unit="fraction"),)
    scope = "class"
    aggregate = "scored"  # over the classes with at least one evaluator-correct reconstruction
    requires = "attribute reader (synthfaces ground truth)"
    order = 13

    def setup(self, ctx) -> None:
        """Load the attribute reader (MetricUnavailable for data without ground truth)."""
        setup_reader(ctx)

    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float | None]:
        """eval_fp of one class (None when the evaluator accepts none of its reconstructions)."""
        hit = batch.logits.argmax(1) == batch.labels
        if not bool(hit.any()):
            return {"eval_fp": None}
        _, reid = reid_of(ctx, batch)
        # The expected share under the exact tie-breaking of `reid_hits`.
        return {"eval_fp": float((1 - reid[5][hit]).mean())}


METRICS.register("evaluator_fp", description=EvaluatorFalsePositives.description)(EvaluatorFalsePositives())
