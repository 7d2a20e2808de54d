"""Ground-truth identity recovery (synthfaces): does a reconstruction show the attacked person?

The evaluation model's verdict ("attack accuracy") can be fooled by adversarial features that
transfer from the target to the evaluator (Type-I false positives; Ho et al., 2025). On synthfaces
every identity *is* a known attribute vector, so the reconstructions can be judged against the truth
instead: the attribute reader (`attribute_reader.py`, trained only on public identities) reads each
reconstruction, and

- `attr_recovery`: the share of the attacked identity's readable attributes the reading matches
  (palette attributes exactly, continuous ones within 10 % of their range);
- `reid@1` / `reid@5`: re-identification — the attacked identity is among the 1 / 5 private
  identities most likely to have produced the readings (ties broken uniformly, exactly).

Chance levels (what a random other private identity scores) are recorded with every entry.
Datasets without ground truth (real faces) report these columns as unavailable, with the reason.
"""

from __future__ import annotations

import numpy as np
import torch

from mibench.metrics.attribute_reader import TOLERANCE, identity_scores, load_reader, recovered, reid_hits
from mibench.metrics.base import ClassBatch, Column, Metric, MetricUnavailable
from mibench.registry import METRICS


def setup_reader(ctx) -> None:
    """Load (or train) the attribute reader of the private data's dataset into `ctx` (once per run)."""
    if "attribute_reader" in ctx.networks:
        return
    truth = getattr(ctx.private, "ground_truth", None)
    if truth is None:
        raise MetricUnavailable(f"dataset '{ctx.private.name}' has no ground-truth identity attributes "
                                "(only synthfaces has)", fix="judge real datasets by the evaluation models "
                                                             "(acc@1, and `eval2_agree` with a second evaluator)")
    ctx.networks["attribute_reader"] = load_reader(truth, ctx.device, progress=False)
    ctx.cache["identities"] = truth.class_attributes()


def reid_of(ctx, batch: ClassBatch) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """The reader's readings of a class's reconstructions and their re-identification hits {1: (n,), 5: (n,)}."""
    reader = ctx.networks["attribute_reader"]
    readings = reader.read(batch.images)
    scores = identity_scores(reader, readings, ctx.cache["identities"])
    return readings, {k: reid_hits(scores, batch.labels, k) for k in (1, 5)}


class IdentityRecovery(Metric):
    """Attribute recovery and re-identification of each class's reconstructions against the
    ground-truth identity; the run's value is the mean over all attacked classes (a failed one counts 0)."""

    name = "identity_recovery"
    description = ("ground-truth identity recovery (synthfaces): share of the attacked identity's attributes an "
                   "attribute reader trained on public identities reads in the reconstructions, and re-identification "
                   "top-1 / top-5 among all private identities")
    columns = (Column("attr_recovery", "higher", "attributes of the attacked identity recovered", percent=True,
                      label="attr", page_key="attr", page_label="attributes %", in_table=True, unit="fraction"),
               Column("reid@1", "higher", "re-identification top-1 (ground truth)", percent=True, page_key="reid1",
                      page_label="re-id@1 %", in_table=True, unit="fraction"),
               Column("reid@5", "higher", "re-identification top-5 (ground truth)", percent=True, page_key="reid5",
                      page_label="re-id@5 %", unit="fraction"))
    scope = "class"
    aggregate = "all"
    requires = "attribute reader (synthfaces ground truth)"
    order = 12

    def setup(self, ctx) -> None:
        """Load the attribute reader (MetricUnavailable for data without ground truth)."""
        setup_reader(ctx)

    def not_applicable(self, num_classes: int) -> dict[str, str]:
        """reid@5 with 5 classes or fewer: every identity is then in the top 5."""
        if num_classes <= 5:
            return {"reid@5": f"not applicable: with {num_classes} identities every one is in the top 5"}
        return {}

    def chance(self, ctx) -> dict[str, float]:
        """What a random other private identity scores: Σ w² per palette attribute, 2t − t² per
        continuous one (t = the tolerance), averaged over the readable ones; k / K for re-identification."""
        reader = ctx.networks["attribute_reader"]
        ids = ctx.cache["identities"]
        k = len(ids["identity"])
        specs = [s for s in reader.specs if s.name in reader.readable]
        # A frame colour counts only for identities with glasses: weigh each attribute by how often it is scored.
        shown = np.array([np.mean(ids[s.visible_if] != 0) if s.visible_if else 1.0 for s in specs])
        per = np.array([s.chance(TOLERANCE) for s in specs])
        attr = float((per * shown).sum() / max(shown.sum(), 1e-12)) if specs else 0.0
        return {"attr_recovery": attr, "reid@1": min(1.0, 1 / k), "reid@5": min(1.0, 5 / k)}

    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float]:
        """attr_recovery, reid@1 and reid@5 of one class's reconstructions."""
        readings, hits = reid_of(ctx, batch)
        ids = ctx.cache["identities"]
        c = int(batch.class_id)
        identity = {name: values[c] for name, values in ids.items()}
        out = {"attr_recovery": float(recovered(ctx.networks["attribute_reader"], readings, identity).mean()),
               "reid@1": float(hits[1].mean()), "reid@5": float(hits[5].mean())}
        if self.not_applicable(len(ids["identity"])):
            out["reid@5"] = None
        return out


METRICS.register("identity_recovery", description=IdentityRecovery.description)(IdentityRecovery())
