"""A second, independent evaluation model's verdict on the same reconstructions, and how often it
confirms the first one's hits.

Attack accuracy trusts one evaluation model; adversarial features that fool it need not fool a
network of another architecture trained with other augmentation. `acc2@1` is attack accuracy judged
by the second model; `eval_agree` is the share of the first evaluator's top-1 hits that the second
one confirms (top-1). A low agreement flags hits that are features of the first evaluator rather
than of the identity. This works on any dataset: the run picks up any other `role: evaluator` card
of the target's data (`mibench.run.spec.second_evaluator_for`), e.g. one with your own CelebA or
FaceScrub weights. Per class over the scored classes; `eval_agree` over those with a hit.
"""

from __future__ import annotations

import torch

from mibench.metrics.base import ClassBatch, Column, Metric, MetricUnavailable
from mibench.registry import METRICS


class SecondEvaluator(Metric):
    """acc@1 by the second evaluation model and its agreement with the first one's hits."""

    name = "second_evaluator"
    description = ("second evaluation model: attack accuracy top-1 judged by an independent evaluator, and the share "
                   "of the first evaluator's hits it confirms")
    columns = (Column("acc2@1", "higher", "attack accuracy top-1 by the second evaluation model", percent=True,
                      page_key="acc2", page_label="acc@1 eval₂ %", in_table=True, unit="fraction"),
               Column("eval_agree", "higher", "share of the evaluator's hits the second evaluator confirms",
                      percent=True, label="agree2", page_key="agree2", page_label="eval₂ agrees %",
                      unit="fraction"))
    scope = "class"
    aggregate = "scored"
    requires = "a second evaluation model (another `role: evaluator` card on the target's data)"
    order = 14

    def setup(self, ctx) -> None:
        """Needs the run's second evaluation model (MetricUnavailable when the data has none)."""
        if "evaluator2" not in ctx.networks:
            raise MetricUnavailable("no second evaluation model for this dataset",
                                    fix="add a second card with `role: evaluator` on the target's dataset "
                                        "(another architecture; your own weights for real data)")

    @torch.no_grad()
    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float | None]:
        """acc2@1 and eval_agree of one class (eval_agree None without a first-evaluator hit)."""
        net = ctx.networks["evaluator2"]
        x = batch.images.to(ctx.device).float() / 255.0
        pred = torch.cat([net(x[i:i + ctx.batch_size]).argmax(1).cpu() for i in range(0, len(x), ctx.batch_size)])
        hit2 = pred == batch.labels
        hit1 = batch.logits.argmax(1) == batch.labels
        agree = float(hit2[hit1].double().mean()) if bool(hit1.any()) else None
        return {"acc2@1": float(hit2.double().mean()), "eval_agree": agree}


METRICS.register("second_evaluator", description=SecondEvaluator.description)(SecondEvaluator())
