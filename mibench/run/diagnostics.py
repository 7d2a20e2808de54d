"""Facts about an attack that the harness measures with the target itself (never counted as the
attack's queries): how well an attack's surrogate mimics the target on the private test images."""

from __future__ import annotations

from typing import Any

import torch

from mibench.ops.transforms import View


@torch.no_grad()
def surrogate_agreement(surrogate: torch.nn.Module | None, target: torch.nn.Module, private_test,
                        target_size: int, dev: torch.device, batch_size: int = 250) -> dict[str, Any] | None:
    """The fraction of private-test images on which the surrogate (and each of its `members`, when it is
    an ensemble) predicts the target's label; None for attacks without a surrogate."""
    if surrogate is None:
        return None
    x, y = private_test.load_tensors(progress=False)
    to_target = View(size=target_size)
    members = list(getattr(surrogate, "members", [surrogate]))
    agree_members = torch.zeros(len(members))
    agree, truth = 0, 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev).float() / 255
        t = target(to_target(xb)).argmax(1)
        logits = [m(xb).float() for m in members]
        pred = torch.stack(logits).mean(0).argmax(1)
        agree += int((pred == t).sum())
        truth += int((pred.cpu() == y[i:i + batch_size]).sum())
        agree_members += torch.tensor([float((lg.argmax(1) == t).sum()) for lg in logits])
    n = len(x)
    return {"images": n, "split": "private-test", "ensemble": round(agree / n, 4),
            "members": [round(float(a) / n, 4) for a in agree_members],
            "ensemble_accuracy": round(truth / n, 4)}
