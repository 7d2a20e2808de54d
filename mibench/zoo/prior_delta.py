"""A prior stored as its changes from the prior it was trained from (card `storage: delta`): only
the tensors that training changed, loaded on top of the source prior's weights. A frozen transfer
(`train.freeze_g`) then stores its grown block alone. The file records the sha256 of the source
weights it was taken against, so a source that was retrained since is an error, not a silent mix."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from mibench.errors import CheckpointError
from mibench.ops.fileio import atomic_path

DELTA_KEY = "mibench_prior_delta"


def changed_tensors(G: nn.Module, source: dict[str, Tensor]) -> dict[str, Tensor]:
    """G's state-dict tensors that the source lacks or that differ from it in any bit."""
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    return {k: v.contiguous().clone() for k, v in state.items()
            if k not in source or v.shape != source[k].shape or not torch.equal(v, source[k].cpu())}


def save_delta(G: nn.Module, source: dict[str, Tensor], source_name: str, source_sha256: str, path: Path) -> Path:
    """Write G's changes from `source` (the state dict of prior `source_name`, whose weights file has
    `source_sha256`) to `path` (.safetensors, atomic)."""
    from safetensors.torch import save_file

    delta = changed_tensors(G, source)
    info = {"source": source_name, "source_sha256": source_sha256, "tensors": len(delta),
            "of": len(G.state_dict())}
    with atomic_path(path) as tmp:
        save_file(delta, str(tmp), metadata={DELTA_KEY: json.dumps(info, sort_keys=True)})
    return path


def load_delta(G: nn.Module, source: dict[str, Tensor], source_sha256: str, path: Path) -> nn.Module:
    """Fill the freshly built G (the card's architecture) from `source` and the changes in `path`;
    every tensor of G must come from one of them. The caller has checked the file's own sha256."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if DELTA_KEY not in meta:
        raise CheckpointError("not a prior stored as changes from its source (no delta record)", path=path,
                              fix="rebuild it with `mibench zoo build --force`")
    info = json.loads(meta[DELTA_KEY])
    if info["source_sha256"] != source_sha256:
        raise CheckpointError(f"these weights are changes to prior '{info['source']}' as it was (sha256 "
                              f"{info['source_sha256'][:12]}…), but that prior's weights are now "
                              f"{source_sha256[:12]}…", path=path,
                              fix="rebuild it on the current source: `mibench zoo build --force` with this prior's name")
    delta = load_file(str(path))
    own = G.state_dict()
    merged = {k: delta[k] if k in delta else source.get(k) for k in own}
    missing = [k for k, v in merged.items() if v is None]
    unfit = [k for k, v in merged.items() if v is not None and v.shape != own[k].shape]
    stray = [k for k in delta if k not in own]
    if missing or unfit or stray:
        first = (missing or unfit or stray)[0]
        raise CheckpointError(f"the stored changes and prior '{info['source']}' do not make this generator "
                              f"(first tensor that does not fit: {first})", path=path,
                              fix="rebuild it with `mibench zoo build --force`")
    G.load_state_dict(merged, strict=True)
    return G
