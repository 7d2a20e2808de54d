"""How good a trained prior is, in the features of its dataset's evaluation model: FID_eval against
real images with the real-vs-real floor next to it, precision / recall / coverage (k-NN, k = 3), and
class coverage (the share of the evaluator's classes that some sample is classified as). Reported
after every prior build and recorded in shipped priors' manifests; a prior far from its floor or
covering few classes or little of the real data's variety (collapsed) gets a warning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mibench.cards import GeneratorCard, list_cards
from mibench.registry import GENERATORS
from mibench.zoo.targets import dataset, load_target

log = logging.getLogger(__name__)

# Warn when FID_eval exceeds this multiple of the floor, or when the samples cover
# less than this share of the classes real images cover: a prior that useless makes attack accuracy
# measure the evaluator's response to artefacts more than leaked identity.
FID_WARN_FACTOR = 10.0
COVERAGE_WARN = 0.5
# ... or when the samples' recall is below this share of real images' recall against the same
# reference: a collapsed prior on data whose classes the evaluator does not know (a user's public
# folder of other classes) still "covers" the evaluator's classes, but not the data's variety.
RECALL_WARN = 0.1


@dataclass
class PriorQuality:
    """A prior's quality figures (all in the evaluation model's penultimate features)."""

    evaluator: str
    samples: int
    fid_eval: float
    fid_floor: float  # real vs other real images of the same count
    class_coverage: float  # share of evaluator classes predicted for at least one sample
    class_coverage_real: float  # the same for real images
    precision: float
    recall: float
    density: float
    coverage: float
    recall_real: float | None = None  # recall of other real images against the same reference

    def warnings(self) -> list[str]:
        """Why this prior is not fit for attacks (empty when it is)."""
        out = []
        if self.fid_eval > FID_WARN_FACTOR * self.fid_floor:
            out.append(f"FID_eval {self.fid_eval:.1f} is far above its floor {self.fid_floor:.2f}")
        if self.class_coverage < COVERAGE_WARN * self.class_coverage_real:
            out.append(f"samples cover {100 * self.class_coverage:.0f}% of the classes real images cover "
                       f"({100 * self.class_coverage_real:.0f}%): the prior looks collapsed")
        if self.recall_real and self.recall < RECALL_WARN * self.recall_real:
            out.append(f"samples reach recall {self.recall:.3f} where other real images reach {self.recall_real:.3f}: "
                       "they cover little of the data's variety, the prior looks collapsed")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures, rounded."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def evaluator_for(card: GeneratorCard) -> str | None:
    """The evaluation model of the prior's dataset (an evaluator card on the same dataset kind), else
    the evaluator of a target card that names this prior (`prior:`; a prior on a public folder of a
    user's own data)."""
    ref = card.dataset
    targets = list_cards("target")
    for t in targets:
        d = t.dataset
        if t.role == "evaluator" and (d.name, d.params, d.root) == (ref.name, ref.params, ref.root):
            return t.name
    for t in targets:
        if t.role == "target" and t.prior == card.name and t.evaluator:
            return t.evaluator
    return None


@torch.no_grad()
def _features(model, images01: torch.Tensor, device, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    fs, ls = [], []
    for i in range(0, len(images01), batch):
        f, lg = model.forward_with_features(images01[i:i + batch].to(device))
        fs.append(f.float().cpu())
        ls.append(lg.float().cpu())
    return torch.cat(fs), torch.cat(ls)


def prior_quality(card: GeneratorCard, G: torch.nn.Module, n: int = 2000, device: str | torch.device = "cpu",
                  seed: int = 1, evaluator: str | None = None) -> PriorQuality | None:
    """Quality figures of the prior `G` made from `card` (untruncated samples, seeded latents) in the
    features of `evaluator` (default: `evaluator_for(card)`), or None when there is no evaluation model."""
    name = evaluator or evaluator_for(card)
    if name is None:
        return None
    evaluator, _ = load_target(name, device, build=True, progress=False)  # (may train it: not under no_grad)
    with torch.no_grad():
        return _measure(card, G, evaluator, name, n, device, seed)


def _measure(card: GeneratorCard, G: torch.nn.Module, evaluator, name: str, n: int, device,
             seed: int) -> PriorQuality:
    """The figures, with the evaluator loaded (under no_grad)."""
    from mibench.metrics.fid import fid_from_features
    from mibench.metrics.prdc import prdc

    real, _ = dataset(card.dataset, card.dataset.split or "public").load_tensors()
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    n = min(n, len(real) // 2)
    # (the evaluator resizes its inputs to its own input size)
    f_ref, l_ref = _features(evaluator, real[perm[:n]].float() / 255, device)
    f_other, l_other = _features(evaluator, real[perm[n:2 * n]].float() / 255, device)
    kind = GENERATORS.get(card.kind)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    samples = torch.cat([((kind.sample(G, z[i:i + 250].to(device), psi=1.0, cutoff=None) + 1) / 2).clamp(0, 1).cpu()
                         for i in range(0, n, 250)])  # untruncated, in [0, 1]
    f_gen, l_gen = _features(evaluator, samples, device)
    k = l_ref.shape[1]
    pr, pr_real = prdc(f_ref, f_gen, k=3), prdc(f_ref, f_other, k=3)
    return PriorQuality(evaluator=name, samples=n, fid_eval=fid_from_features(f_gen, f_ref),
                        fid_floor=fid_from_features(f_other, f_ref),
                        class_coverage=l_gen.argmax(1).unique().numel() / k,
                        class_coverage_real=l_other.argmax(1).unique().numel() / k,
                        precision=pr["precision"], recall=pr["recall"], density=pr["density"],
                        coverage=pr["coverage"], recall_real=pr_real["recall"])


def report(card: GeneratorCard, quality: PriorQuality | None) -> None:
    """Log the figures, with a warning when the prior is unfit for attacks."""
    if quality is None:
        log.info("prior %s: no evaluation model for dataset '%s', no quality report", card.name, card.dataset.name)
        return
    q = quality
    log.info("prior %s: FID_eval %.2f (floor %.2f), class coverage %.0f%% (real %.0f%%), precision %.2f, "
             "recall %.2f (real %.2f), coverage %.2f (%d samples, %s features)", card.name, q.fid_eval, q.fid_floor,
             100 * q.class_coverage, 100 * q.class_coverage_real, q.precision, q.recall, q.recall_real or float("nan"),
             q.coverage,
             q.samples, q.evaluator)
    for w in q.warnings():
        log.warning("prior %s: %s — attack accuracy through it measures artefacts more than leaked identity; "
                    "train it longer (train.steps) or check its dataset", card.name, w)
