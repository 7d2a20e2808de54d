"""`mean_brightness`: the mean pixel value of each class's reconstructions (a per-class metric that
needs no network) — on request: `mibench run --metric mean_brightness`."""

from __future__ import annotations

from mibench.metrics.base import ClassBatch, Column, Metric
from mibench.registry import METRICS


class MeanBrightness(Metric):
    """Mean pixel value in [0, 1]."""

    name = "mean_brightness"
    description = "test plug-in: mean pixel value of the reconstructions"
    columns = (Column("brightness", "higher", "mean pixel value", percent=True, label="bright",
                      page_key="bright", page_label="brightness %", in_table=True),)
    default = False
    order = 90

    def score_class(self, ctx, batch: ClassBatch) -> dict[str, float]:
        """Mean pixel value of one class's reconstructions."""
        return {"brightness": float(batch.images.double().mean() / 255)}


METRICS.register("mean_brightness", description=MeanBrightness.description)(MeanBrightness())
