"""GPU readiness check: one prepared script that proves mibench's research setting on a CUDA machine
with nothing downloaded, in about 8 minutes on one H200 — and that runs in a tiny configuration on
CPU inside the test suite (tests/test_gpu_check.py), so it cannot rot.

What it measures (random weights in the official shapes, written to files that cards point to):

1. Runs through the normal `mibench run` path (a subprocess of `python -m mibench run …`, cards in a
   temporary $MIBENCH_CARDS folder): PPA and IF-GMI with the paper preset (`--preset facescrub`)
   and `--set` overrides for a few steps and candidates, on classes 0-1 — StyleGAN2 at 1024 px in
   the official FFHQ shape (generators/ffhq-1024.yaml), a ResNet-152 target at 224 px and an
   Inception-v3 evaluator at 299 px, on the procedural synthfaces32 data rendered at 224 / 299 px.
   It checks that entry.json is written and records acc@1 and wall time.
2. The optimisation loop's images·steps/s and peak memory (torch.cuda.max_memory_allocated on
   CUDA, ru_maxrss on CPU) at batch 20: mibench's batched loop in fp32 / bf16 autocast, with and
   without channels_last and torch.compile (both applied to the target classifier, as mibench's
   runner does with channels_last), against the per-class reference loop of
   benchmarks/attack_throughput.py (fp32, as in the published code) — each variant in its own
   subprocess, so each peak is its own. Also the max abs difference of the bf16 (and other)
   variants' final images and final-selection scores from the fp32 ones. Anchor: PPA's paper reports
   24.1 GB at batch 20 with the 1024 px generator; the goal is ≥ 2× the reference loop's throughput
   at no more memory than that.
3. Determinism: the same PPA run twice with the same seed must give identical entry metrics,
   per-class values and class tensor files. It tries without flags first; only if that fails,
   with cuDNN determinism (torch.backends.cudnn.deterministic, CUBLAS_WORKSPACE_CONFIG), then also
   with torch.use_deterministic_algorithms(True, warn_only=True), and reports what was needed
   (and which ops warned that they have no deterministic implementation).

Usage (a machine with a GPU; nothing is downloaded, everything is written under --out):

    python benchmarks/gpu_check.py --device cuda --out gpu_check_out

    --tiny          small shapes (16 px StyleGAN2, compact ResNets at 16 / 24 px, 2 steps): about a
                    minute on two CPU cores
    --device cpu    run on the CPU (the test suite runs `--device cpu --tiny --skip-compile`)
    --skip-compile  leave out the torch.compile variants (on CPU they are left out unless --compile:
                    compiling takes minutes there and needs a C compiler)
    --json PATH     where the results go (default: OUT/gpu_check.json)
    --budget-s S    overall time budget (default 450 s at research size); every subprocess gets a
                    timeout within it. The runs go first, then determinism, then the throughput rows;
                    a row that no longer fits is recorded as skipped.

At research size the random weights take about 460 MB under OUT/weights.

It prints one table and writes everything as JSON. Timings are printed, never asserted. A failed
measurement (e.g. torch.compile unavailable) is recorded as an error string for its row; a failed
`mibench run` step makes the script exit with status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # attack_throughput, imported by the measurement subprocesses

PAPER_PEAK_GB = 24.1  # PPA (Struppek et al., ICML 2022): batch 20, 1024 px StyleGAN2 generator
PAPER_BATCH = 20
GOAL_SPEEDUP = 2.0
BATCH = 20  # the throughput rows always optimise 20 candidates at once

# The official StyleGAN2-ADA FFHQ 1024 px generator shape (generators/ffhq-1024.yaml).
FFHQ_1024 = {"z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 8},
             "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256}}
TINY_G = {"z_dim": 16, "w_dim": 16, "mapping_kwargs": {"num_layers": 2},
          "synthesis_kwargs": {"channel_base": 128, "channel_max": 16, "num_fp16_res": 4, "conv_clamp": 256}}

# Only the private splits are read (the scorer's real images); two identities, few images each.
DATA_COUNTS = {"num_private": 2, "train_per_class": 4, "test_per_class": 2, "num_public": 2,
               "public_per_identity": 1, "num_shifted": 2, "shifted_per_identity": 1}

CONFIGS: dict[str, dict[str, Any]] = {
    "research": {
        "generator": {"params": FFHQ_1024, "resolution": 1024, "truncation_psi": 0.5, "truncation_cutoff": 8},
        "target": {"architecture": "resnet152", "arch_params": {}, "num_classes": 530, "input_size": 224},
        "evaluator": {"architecture": "inception_v3", "arch_params": {}, "num_classes": 530, "input_size": 299},
        "ppa": {"search_space_size": 40, "num_candidates": 4, "num_final": 2, "steps": 2, "final_views": 2,
                "batch_size": 8, "selection_batch_size": 20},
        "ifgmi": {"stage_steps": [2, 1, 1], "radii": [1000.0, 2000.0, 3000.0]},
        # attack_throughput.SIZES entry: (G params, resolution, arch, input, centre crop, classes,
        # candidates per class, timed steps) — one class × 20 candidates = batch 20 for both loops.
        "throughput": (FFHQ_1024, 1024, "resnet152", 224, 0.78125, 1, BATCH, 3),
        "timeouts": {"run": 240, "variant": 150, "compile": 240},
        "min_start": {"variant": 20, "compile": 90},  # seconds of budget a measurement needs to start
        "budget_s": 450,
    },
    "tiny": {
        "generator": {"params": TINY_G, "resolution": 16, "truncation_psi": 0.5, "truncation_cutoff": 8},
        "target": {"architecture": "compact_resnet", "arch_params": {"width": 8, "depths": [1, 1, 1]},
                   "num_classes": 10, "input_size": 16},
        "evaluator": {"architecture": "compact_resnet", "arch_params": {"width": 8, "depths": [1, 1]},
                      "num_classes": 10, "input_size": 24},
        "ppa": {"search_space_size": 16, "num_candidates": 4, "num_final": 2, "steps": 2, "final_views": 2,
                "batch_size": 8, "selection_batch_size": 16},
        "ifgmi": {"stage_steps": [2, 1, 1], "radii": [50.0, 50.0, 50.0]},
        "throughput": (TINY_G, 16, "compact_resnet", 16, 0.78125, 1, BATCH, 2),
        "timeouts": {"run": 120, "variant": 90, "compile": 240},
        "min_start": {"variant": 10, "compile": 60},
        "budget_s": 420,
    },
}

CARD_TARGET, CARD_EVAL, CARD_PRIOR = "gpucheck-target", "gpucheck-evaluator", "gpucheck-prior"
CLASSES = "0-1"
SEED = 0

# Batched-loop variants (precision, channels_last, torch.compile); the reference loop runs in fp32.
EAGER_VARIANTS = [("fp32", False, False), ("bf16", False, False), ("fp32", True, False), ("bf16", True, False)]
# Compiled variants last, channels_last first: those left when the time budget runs out are skipped.
COMPILE_VARIANTS = [("bf16", True, True), ("fp32", True, True), ("bf16", False, True), ("fp32", False, True)]

# Determinism levels, tried in order until two runs agree.
DET_LEVELS = ["none", "cudnn", "deterministic_algorithms"]
# `python -c LAUNCHER run …`: the normal mibench CLI, with determinism flags set before it starts.
LAUNCHER = """import os, sys, torch
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
if os.environ.get("GPU_CHECK_DET_ALGOS") == "1":
    torch.use_deterministic_algorithms(True, warn_only=True)
sys.argv[0] = "mibench"
from mibench.cli import main
main()
"""


# ----------------------------------------------------------------------------------- helpers

class Budget:
    """The overall time budget: each subprocess's timeout is its own cap or what is left."""

    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.deadline = self.start + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, cap: float) -> float:
        return max(0.0, min(float(cap), self.left()))


def _finite(v: Any) -> Any:
    """JSON-safe numbers: NaN / inf become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def run_subprocess(cmd: list[str], *, env: dict[str, str], timeout: float, log: Path,
                   cwd: Path = ROOT) -> dict[str, Any]:
    """Run `cmd` with stdout+stderr to `log`; on timeout its whole process group is killed (compile
    workers included). Returns rc (None on timeout), seconds and timed_out."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            rc, timed_out = None, True
    return {"rc": rc, "seconds": round(time.monotonic() - t0, 2), "timed_out": timed_out}


def child_env(cards: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MIBENCH_CARDS"] = os.pathsep.join([str(cards)] + ([env["MIBENCH_CARDS"]] if env.get("MIBENCH_CARDS") else []))
    env.setdefault("MIBENCH_CACHE", str(cache))
    # The checkout stays importable from any cwd (after whatever PYTHONPATH already names).
    env["PYTHONPATH"] = os.pathsep.join([p for p in (env.get("PYTHONPATH"), str(ROOT)) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------- 0. weights + cards

def write_zoo(cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """Random weights in the configured (official) shapes + the three cards pointing at them."""
    import torch
    import yaml

    from mibench.classifiers.architectures import build_classifier
    from mibench.classifiers.checkpoint import save_classifier
    from mibench.generators.io import save_generator
    from mibench.generators.stylegan2 import Generator, generator_kwargs

    t0 = time.monotonic()
    weights, cards = root / "weights", root / "cards"
    (cards / "targets").mkdir(parents=True, exist_ok=True)
    (cards / "generators").mkdir(parents=True, exist_ok=True)
    weights.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"cards": str(cards)}
    for name, role, spec, seed in ((CARD_TARGET, "target", cfg["target"], 1),
                                   (CARD_EVAL, "evaluator", cfg["evaluator"], 2)):
        model = build_classifier(spec["architecture"], spec["num_classes"], spec["input_size"],
                                 spec["arch_params"], seed=seed)
        path = save_classifier(model, weights / name, {"note": "random weights (gpu_check)"})
        card = {"description": f"gpu_check {role}: random {spec['architecture']} weights at {spec['input_size']} px",
                "role": role, "architecture": spec["architecture"], "arch_params": spec["arch_params"],
                "dataset": {"name": "synthfaces32", "params": {"resolution": spec["input_size"], **DATA_COUNTS}},
                "num_classes": spec["num_classes"], "input_size": spec["input_size"],
                "weights": {"path": str(path), "sha256": sha256_of(path)}, "natural_accuracy": None}
        if role == "target":
            card["evaluator"] = CARD_EVAL
        (cards / "targets" / f"{name}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
        info[role] = {"file": str(path), "parameters": sum(p.numel() for p in model.parameters()),
                      "bytes": path.stat().st_size}
        del model
    g = cfg["generator"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        G = Generator(**generator_kwargs(g["params"], g["resolution"])).eval()
    gpath = save_generator(G, weights / f"{CARD_PRIOR}.safetensors")
    (cards / "generators" / f"{CARD_PRIOR}.yaml").write_text(yaml.safe_dump({
        "kind": "stylegan2", "description": "gpu_check prior: random StyleGAN2 weights in the configured shape",
        "resolution": g["resolution"], "params": g["params"],
        "weights": {"path": str(gpath), "sha256": sha256_of(gpath)},
        "truncation_psi": g["truncation_psi"], "truncation_cutoff": g["truncation_cutoff"], "domain": "faces"},
        sort_keys=False))
    info["generator"] = {"file": str(gpath), "parameters": sum(p.numel() for p in G.parameters()),
                         "bytes": gpath.stat().st_size, "num_ws": G.num_ws}
    info["seconds"] = round(time.monotonic() - t0, 2)
    return info


# ----------------------------------------------------------------------------------- 1. mibench run

def run_args(cfg: dict[str, Any], attack: str, device: str, out: Path) -> list[str]:
    sets = dict(cfg["ppa"])
    if attack == "ifgmi":
        sets.update(cfg["ifgmi"])
    args = ["run", "--target", CARD_TARGET, "--attack", attack, "--prior", CARD_PRIOR, "--classes", CLASSES,
            "--seed", str(SEED), "--device", device, "--out", str(out), "--preset", "facescrub", "--no-build"]
    for k, v in sets.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


def mibench_run(cfg: dict[str, Any], attack: str, device: str, out: Path, *, env: dict[str, str],
                budget: Budget, log: Path, det_level: str = "none", label: str | None = None) -> dict[str, Any]:
    """One `mibench run` in a subprocess; the row says whether entry.json was written."""
    row: dict[str, Any] = {"attack": attack, "label": label or attack, "out": str(out), "flags": det_level,
                           "ok": False, "entry_written": False, "log": str(log)}
    args = run_args(cfg, attack, device, out)
    env = dict(env)
    if det_level == "none":
        cmd = [sys.executable, "-m", "mibench", *args]
    else:
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        if det_level == "deterministic_algorithms":
            env["GPU_CHECK_DET_ALGOS"] = "1"
        cmd = [sys.executable, "-c", LAUNCHER, *args]
    row["command"] = " ".join(["python -m mibench" if det_level == "none" else "python -c <launcher>", *args])
    timeout = budget.timeout(cfg["timeouts"]["run"])
    if timeout < 5:
        row["error"] = "skipped: the time budget is spent"
        return row
    res = run_subprocess(cmd, env=env, timeout=timeout, log=log)
    row["seconds"] = res["seconds"]
    entries = sorted(out.glob("*/entry.json"))
    if res["timed_out"]:
        row["error"] = f"timed out after {timeout:.0f}s"
    elif res["rc"] != 0:
        row["error"] = f"exit status {res['rc']}: {_tail(log, 8)}"
    elif len(entries) != 1:
        row["error"] = f"expected one entry.json under {out}, found {len(entries)}"
    if entries:
        entry = json.loads(entries[0].read_text())
        row.update(entry_written=True, run_dir=str(entries[0].parent), entry=str(entries[0]),
                   acc1=entry["metrics"].get("acc@1"), acc5=entry["metrics"].get("acc@5"),
                   wall_time_s=entry.get("wall_time_s"), num_images=entry.get("num_images"),
                   queries=entry.get("queries", {}).get("total"),
                   gpu=entry.get("environment", {}).get("gpu"))
    row["ok"] = "error" not in row and row["entry_written"]
    if det_level == "deterministic_algorithms":
        warned = sorted({ln.strip() for ln in _tail(log, 10_000).splitlines()
                         if "does not have a deterministic implementation" in ln})
        row["nondeterministic_ops"] = warned
    return row


# ----------------------------------------------------------------------------------- 3. determinism

def _tensor_diffs(a: Path, b: Path) -> dict[str, float]:
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    out = {}
    for k in sorted(set(ta) & set(tb)):
        if ta[k].shape != tb[k].shape:
            out[k] = float("inf")
        else:
            out[k] = float((ta[k].double() - tb[k].double()).abs().max()) if ta[k].numel() else 0.0
    return out


def compare_runs(dir_a: Path, dir_b: Path) -> dict[str, Any]:
    """Same metrics, per-class values and class tensor bytes? Lists what differs."""
    ea = json.loads((dir_a / "entry.json").read_text())
    eb = json.loads((dir_b / "entry.json").read_text())
    diffs: list[str] = []
    if dir_a.name != dir_b.name:
        diffs.append(f"run ids differ: {dir_a.name} vs {dir_b.name}")
    if ea["metrics"].get("acc@1") != eb["metrics"].get("acc@1"):
        diffs.append(f"acc@1 {ea['metrics'].get('acc@1')} vs {eb['metrics'].get('acc@1')}")
    for k in sorted(set(ea["metrics"]) | set(eb["metrics"])):
        if k != "acc@1" and ea["metrics"].get(k) != eb["metrics"].get(k):
            diffs.append(f"metrics.{k} {ea['metrics'].get(k)} vs {eb['metrics'].get(k)}")
    if ea["per_class"] != eb["per_class"]:
        for pa, pb in zip(ea["per_class"], eb["per_class"]):
            for k in sorted(set(pa) | set(pb)):
                if pa.get(k) != pb.get(k):
                    diffs.append(f"per_class[{pa.get('class')}].{k} {pa.get(k)} vs {pb.get(k)}")
    files_a = sorted(p.name for p in (dir_a / "classes").glob("*.safetensors"))
    files_b = sorted(p.name for p in (dir_b / "classes").glob("*.safetensors"))
    tensor_diffs: dict[str, dict[str, float]] = {}
    if files_a != files_b:
        diffs.append(f"class files differ: {files_a} vs {files_b}")
    for name in sorted(set(files_a) & set(files_b)):
        if (dir_a / "classes" / name).read_bytes() != (dir_b / "classes" / name).read_bytes():
            tensor_diffs[name] = {k: _finite(v) for k, v in
                                  _tensor_diffs(dir_a / "classes" / name, dir_b / "classes" / name).items()}
            diffs.append(f"classes/{name} bytes differ (max abs diff {tensor_diffs[name]})")
    return {"identical": not diffs, "acc1": [ea["metrics"].get("acc@1"), eb["metrics"].get("acc@1")],
            "class_files": len(files_a), "differences": diffs[:30], "tensor_max_abs_diff": tensor_diffs}


def check_determinism(cfg: dict[str, Any], first: dict[str, Any], device: str, root: Path, *,
                      env: dict[str, str], budget: Budget, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Re-run PPA with the same seed (into another folder: the run id is content-derived) and compare;
    escalate the determinism flags only while the runs disagree."""
    out: dict[str, Any] = {"attack": "ppa", "seed": SEED, "levels": [], "deterministic": False,
                           "flags_needed": None, "flags": None}
    levels = DET_LEVELS if device.startswith("cuda") else DET_LEVELS[:1]
    for level in levels:
        if level == "none":
            a = first
        else:
            a = mibench_run(cfg, "ppa", device, root / "det" / level / "a", env=env, budget=budget,
                            log=root / "logs" / f"det-{level}-a.log", det_level=level, label=f"ppa (det {level} a)")
            runs.append(a)
        b = mibench_run(cfg, "ppa", device, root / "det" / level / "b", env=env, budget=budget,
                        log=root / "logs" / f"det-{level}-b.log", det_level=level, label=f"ppa (det {level} b)")
        runs.append(b)
        rec: dict[str, Any] = {"flags": level}
        if not (a["ok"] and b["ok"]):
            rec["error"] = a.get("error") or b.get("error")
            out["levels"].append(rec)
            break
        rec.update(compare_runs(Path(a["run_dir"]), Path(b["run_dir"])))
        if level == "deterministic_algorithms":
            rec["nondeterministic_ops"] = sorted(set(a.get("nondeterministic_ops", []))
                                                 | set(b.get("nondeterministic_ops", [])))
        out["levels"].append(rec)
        if rec["identical"]:
            out.update(deterministic=True, flags_needed=level != "none", flags=level)
            break
    if not out["deterministic"] and out["levels"] and "error" not in out["levels"][-1]:
        out["flags_needed"] = True  # none of the levels made the runs agree
    return out


# ----------------------------------------------------------------------------------- 2. throughput

def _register_size(name: str, cfg: dict[str, Any]) -> None:
    import attack_throughput as at

    at.SIZES[name] = cfg["throughput"]


def _child_batched(spec: dict[str, Any], device: str) -> dict[str, Any]:
    """mibench's PPA optimisation loop (PPAttack.optimize) on 20 candidates in one batch, timed after a
    one-step warm-up; then the final selection, whose images and scores are saved for comparison."""
    import attack_throughput as at
    import torch
    from safetensors.torch import save_file

    from mibench.attacks.access import WhiteBox
    from mibench.attacks.base import AttackContext, candidate_keys
    from mibench.attacks.ppa import PPAttack

    G, T, crop, n_cls, n_cand, steps = at._setup(spec["size"], device)
    num_classes = int(T.num_classes)
    if spec["channels_last"]:
        T = T.to(memory_format=torch.channels_last)
    if spec["compile"]:
        T = torch.compile(T)
    n = n_cls * n_cand
    conf = {"search_space_size": n, "num_candidates": n_cand, "num_final": 1, "steps": steps, "batch_size": BATCH,
            "center_crop": crop, "autocast": spec["precision"] if spec["precision"] == "bf16" else "none",
            "final_views": 2, "selection_batch_size": BATCH}
    attack = PPAttack.from_preset("facescrub", conf)
    warm = PPAttack.from_preset("facescrub", {**conf, "steps": 1})
    dev = torch.device(device)
    ctx = AttackContext(WhiteBox(T, num_classes, int(T.input_size), dev), G, dev, SEED, int(T.input_size), False)
    classes = torch.arange(n_cls)
    targets, keys = classes.repeat_interleave(n_cand), candidate_keys(classes, n_cand)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(1234)).to(dev)  # same in every variant
    with torch.no_grad():
        w0 = G.mapping(z, None, psi=0.7)[:, 0]
    warm.optimize(ctx, w0, targets, keys)  # kernels, cuDNN plans, compilation
    at._sync(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    latents, extra = attack.optimize(ctx, w0, targets, keys)
    at._sync(device)
    dt = time.perf_counter() - t0
    peak = at._peak(device)
    images, scores = attack.final_selection(ctx, latents, targets, keys, extra)
    save_file({"latents": latents.detach().float().cpu().contiguous(), "images": images.float().contiguous(),
               "scores": scores.float().contiguous(),
               "final_loss": extra["final_loss"].float().contiguous()}, spec["save"])
    return {"img_steps_per_s": n * steps / dt, "seconds": dt, "peak_mib": peak, "images": n, "steps": steps}


def _child_reference(spec: dict[str, Any], device: str) -> dict[str, Any]:
    """attack_throughput's per-class reference loop (torchvision crops image by image, mean loss)."""
    import attack_throughput as at

    r = at.run_reference(spec["size"], device)
    _, _, _, _, _, n_cls, n_cand, steps = at.SIZES[spec["size"]]
    return {"img_steps_per_s": r["img_steps_per_s"], "seconds": r["seconds"], "peak_mib": r["peak_mib"],
            "images": n_cls * n_cand, "steps": steps}


def child_main(args: argparse.Namespace) -> None:
    spec = json.loads(args.child)
    _register_size(spec["size"], CONFIGS[spec["config"]])
    out = _child_reference(spec, args.device) if spec["loop"] == "reference" else _child_batched(spec, args.device)
    print("RESULT " + json.dumps(out), flush=True)


def variant_name(loop: str, precision: str, channels_last: bool, compile_: bool) -> str:
    if loop == "reference":
        return f"reference per-class {precision}"
    return " ".join(["batched", precision] + (["channels_last"] if channels_last else [])
                    + (["compile"] if compile_ else []))


def measure_variant(config: str, loop: str, precision: str, channels_last: bool, compile_: bool, *,
                    device: str, root: Path, env: dict[str, str], budget: Budget, cap: float,
                    min_start: float) -> dict[str, Any]:
    name = variant_name(loop, precision, channels_last, compile_)
    slug = name.replace(" ", "-")
    row: dict[str, Any] = {"variant": name, "loop": loop, "precision": precision, "channels_last": channels_last,
                           "compile": compile_, "batch": BATCH, "error": None}
    spec = {"config": config, "size": f"gpucheck-{config}", "loop": loop, "precision": precision,
            "channels_last": channels_last, "compile": compile_,
            "save": str(root / "throughput" / f"{slug}.safetensors")}
    (root / "throughput").mkdir(parents=True, exist_ok=True)
    timeout = budget.timeout(cap)
    if timeout < min_start:
        row["error"] = f"skipped: the time budget is spent ({budget.left():.0f}s left)"
        return row
    log = root / "logs" / f"throughput-{slug}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec), "--device", device]
    res = run_subprocess(cmd, env=env, timeout=timeout, log=log)
    row["wall_s"] = res["seconds"]
    line = next((ln for ln in reversed(_tail(log, 10_000).splitlines()) if ln.startswith("RESULT ")), None)
    if res["timed_out"]:
        row["error"] = f"timed out after {timeout:.0f}s"
    elif res["rc"] != 0 or line is None:
        last = [ln for ln in _tail(log, 40).splitlines() if ln.strip()]
        row["error"] = f"exit status {res['rc']}: {last[-1] if last else 'no output'}"
    else:
        row.update(json.loads(line[len("RESULT "):]))
        if loop == "batched":
            row["outputs"] = spec["save"]
    return row


def add_diffs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Max abs difference of each batched variant's final images / scores / latents from batched fp32;
    returns the bf16-vs-fp32 summary."""
    import torch
    from safetensors.torch import load_file

    base = next((r for r in rows if r["variant"] == "batched fp32" and r.get("outputs")), None)
    summary: dict[str, Any] = {"variant": "batched bf16", "baseline": "batched fp32", "max_abs_diff_images": None,
                               "max_abs_diff_scores": None, "max_abs_diff_latents": None}
    if base is None:
        summary["error"] = "the batched fp32 variant did not finish"
        return summary
    ref = load_file(base["outputs"])
    for r in rows:
        if r["loop"] != "batched" or not r.get("outputs"):
            continue
        got = load_file(r["outputs"])
        for key in ("images", "scores", "latents"):
            d = (got[key].double() - ref[key].double()).abs()
            r[f"max_abs_diff_{key}_vs_fp32"] = _finite(float(d.max())) if d.numel() else 0.0
        r["nonfinite_outputs"] = int(sum(int((~torch.isfinite(got[k])).sum()) for k in ("images", "scores")))
    bf = next((r for r in rows if r["variant"] == "batched bf16"), None)
    if bf is None or not bf.get("outputs"):
        summary["error"] = "the batched bf16 variant did not finish" + (f": {bf['error']}" if bf else "")
        return summary
    for key in ("images", "scores", "latents"):
        summary[f"max_abs_diff_{key}"] = bf.get(f"max_abs_diff_{key}_vs_fp32")
    return summary


def anchor_summary(rows: list[dict[str, Any]], device: str, tiny: bool) -> dict[str, Any]:
    limit_mib = PAPER_PEAK_GB * 1e9 / 2**20
    ref = next((r for r in rows if r["loop"] == "reference" and r.get("img_steps_per_s")), None)
    out: dict[str, Any] = {"paper_peak_gb": PAPER_PEAK_GB, "paper_batch": PAPER_BATCH, "goal_speedup": GOAL_SPEEDUP,
                           "limit_mib": round(limit_mib), "applies": device.startswith("cuda") and not tiny,
                           "best_variant": None, "best_speedup": None, "best_peak_mib": None, "met": None}
    for r in rows:
        if ref and r.get("img_steps_per_s"):
            r["speedup_vs_reference"] = r["img_steps_per_s"] / ref["img_steps_per_s"]
    fits = [r for r in rows if r["loop"] == "batched" and r.get("speedup_vs_reference")
            and (not out["applies"] or r["peak_mib"] <= limit_mib)]
    if fits:
        best = max(fits, key=lambda r: r["speedup_vs_reference"])
        out.update(best_variant=best["variant"], best_speedup=round(best["speedup_vs_reference"], 3),
                   best_peak_mib=round(best["peak_mib"]))
        if out["applies"]:
            out["met"] = best["speedup_vs_reference"] >= GOAL_SPEEDUP
    elif out["applies"] and ref:
        out["met"] = False
    return out


# ----------------------------------------------------------------------------------- report

def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def print_table(report: dict[str, Any]) -> None:
    head = (f"gpu_check  device {report['device']}{' (' + report['gpu'] + ')' if report.get('gpu') else ''}  "
            f"config {report['config']}  torch {report['torch']}  total {report.get('total_seconds', 0):.0f}s")
    cols = ["check", "item", "status", "acc@1 %", "img·steps/s", "peak MiB", "× ref", "Δimg vs fp32",
            "Δscore vs fp32", "seconds"]
    rows = []
    for r in report["runs"]:
        rows.append(["run", r["label"], "ok" if r["ok"] else "FAILED: " + str(r.get("error", ""))[:60],
                     _fmt(None if r.get("acc1") is None else 100 * r["acc1"], ".1f"), "", "", "", "", "",
                     _fmt(r.get("wall_time_s"), ".1f")])
    for r in report["throughput"]:
        status = "ok" if not r.get("error") else str(r["error"]).splitlines()[0][:60]
        rows.append(["throughput", r["variant"], status, "", _fmt(r.get("img_steps_per_s"), ".2f"),
                     _fmt(r.get("peak_mib"), ".0f"), _fmt(r.get("speedup_vs_reference"), ".2f"),
                     _fmt(r.get("max_abs_diff_images_vs_fp32")), _fmt(r.get("max_abs_diff_scores_vs_fp32")),
                     _fmt(r.get("seconds"), ".2f")])
    det = report.get("determinism") or {}
    for lv in det.get("levels", []):
        status = ("identical" if lv.get("identical") else
                  "ERROR: " + str(lv["error"])[:50] if lv.get("error") else f"DIFFERENT ({len(lv['differences'])})")
        rows.append(["determinism", f"ppa twice, flags: {lv['flags']}", status, "", "", "", "", "", "", ""])
    widths = [max(len(c), *(len(str(r[i])) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print(head)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    bf = report.get("bf16_vs_fp32") or {}
    print(f"bf16 vs fp32 (batched, after {report['shapes']['throughput']['steps']} steps): max |Δ| images "
          f"{_fmt(bf.get('max_abs_diff_images'))}, scores {_fmt(bf.get('max_abs_diff_scores'))}, latents "
          f"{_fmt(bf.get('max_abs_diff_latents'))}" + (f"  ({bf['error']})" if bf.get("error") else ""))
    a = report.get("anchor") or {}
    verdict = ("n/a here (the anchor is for CUDA at research size)" if not a.get("applies") else
               "MET" if a.get("met") else "NOT met")
    print(f"anchor: PPA's paper reports {PAPER_PEAK_GB} GB at batch {PAPER_BATCH} with the 1024 px generator; goal "
          f"≥ {GOAL_SPEEDUP:g}× the reference loop's img·steps/s at ≤ that memory — best: {a.get('best_variant')} "
          f"{_fmt(a.get('best_speedup'), '.2f')}× at {_fmt(a.get('best_peak_mib'))} MiB → {verdict}")
    if det:
        print(f"determinism: {'identical' if det.get('deterministic') else 'NOT identical'}"
              f"{' with flags: ' + str(det.get('flags')) if det.get('flags_needed') and det.get('deterministic') else ''}"
              f"{' (flags needed: ' + str(det.get('flags_needed')) + ')' if det.get('flags_needed') is not None else ''}")
    print(f"timings are printed, never asserted; JSON: {report['json']}")


# ----------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (cuda:N) or cpu (default: cuda)")
    p.add_argument("--tiny", action="store_true", help="small shapes (CPU test configuration)")
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="output folder (default: gpu_check_out)")
    p.add_argument("--json", type=Path, default=None, help="results JSON (default: OUT/gpu_check.json)")
    p.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile variants")
    p.add_argument("--compile", action="store_true", help="run the torch.compile variants on CPU too (they are "
                   "left out there by default: compiling takes minutes)")
    p.add_argument("--budget-s", type=float, default=None, help="overall time budget in seconds "
                   "(default: 450 at research size, 420 tiny)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0

    import torch

    config = "tiny" if args.tiny else "research"
    cfg = CONFIGS[config]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (use --device cpu --tiny on a CPU)", file=sys.stderr)
        return 2
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    json_path = (args.json or root / "gpu_check.json").resolve()
    budget = Budget(args.budget_s if args.budget_s is not None else cfg["budget_s"])
    report: dict[str, Any] = {
        "schema": "mibench-gpu-check/1", "config": config, "device": args.device, "torch": torch.__version__,
        "python": platform.python_version(), "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda")
        else None, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "budget_s": round(budget.deadline - budget.start),
        "json": str(json_path), "out": str(root),
        "shapes": {"generator": cfg["generator"], "target": cfg["target"], "evaluator": cfg["evaluator"],
                   "data": {"name": "synthfaces32", **DATA_COUNTS}, "classes": CLASSES,
                   "attack_overrides": {"ppa": cfg["ppa"], "ifgmi": {**cfg["ppa"], **cfg["ifgmi"]}},
                   "throughput": dict(zip(("generator", "resolution", "arch", "input_size", "center_crop", "classes",
                                           "candidates", "steps"), cfg["throughput"]), batch=BATCH)},
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "runs": [], "throughput": [], "bf16_vs_fp32": None, "determinism": None, "anchor": None, "ok": False,
        "notes": ["timings are printed, never asserted",
                  "the reference loop runs fp32 eager (as the published code); channels_last and torch.compile "
                  "apply to the target classifier, as in mibench's runner",
                  "peak memory: torch.cuda.max_memory_allocated of the timed loop on CUDA, ru_maxrss of the "
                  "process on CPU",
                  "fp32 rows on CUDA use PyTorch's defaults: TF32 convolutions (cuDNN), fp32 matmuls (see tf32)"]}

    def save() -> None:
        report["total_seconds"] = round(time.monotonic() - budget.start, 1)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str))

    # 0. weights and cards
    try:
        report["zoo"] = write_zoo(cfg, root)
    except Exception as exc:  # nothing can run without them
        report["zoo"] = {"error": f"{type(exc).__name__}: {exc}"}
        save()
        print(f"error: writing the random-weight zoo failed: {exc}", file=sys.stderr)
        return 1
    env = child_env(root / "cards", root / "cache")

    # 1. the runs (required)
    first: dict[str, Any] | None = None
    for attack in ("ppa", "ifgmi"):
        row = mibench_run(cfg, attack, args.device, root / "runs" / attack, env=env, budget=budget,
                          log=root / "logs" / f"run-{attack}.log")
        report["runs"].append(row)
        first = first or row
        save()
    # 3. determinism (required runs: a failing re-run fails the check)
    if first is not None and first["ok"]:
        report["determinism"] = check_determinism(cfg, first, args.device, root, env=env, budget=budget,
                                                  runs=report["runs"])
    else:
        report["determinism"] = {"deterministic": False, "flags_needed": None, "levels": [],
                                 "error": "the first PPA run failed"}
    save()
    # 2. throughput (optional rows: errors are recorded, not raised)
    _register_size(f"gpucheck-{config}", cfg)
    plan = [("reference", "fp32", False, False)] + [("batched", *v) for v in EAGER_VARIANTS]
    skip_compile = ("skipped: --skip-compile" if args.skip_compile else
                    "skipped: torch.compile on CPU takes minutes (pass --compile to run it)"
                    if not args.device.startswith("cuda") and not args.compile else None)
    if skip_compile is None:
        plan += [("batched", *v) for v in COMPILE_VARIANTS]
    for loop, precision, cl, comp in plan:
        kind = "compile" if comp else "variant"
        report["throughput"].append(measure_variant(config, loop, precision, cl, comp, device=args.device, root=root,
                                                    env=env, budget=budget, cap=cfg["timeouts"][kind],
                                                    min_start=cfg["min_start"][kind]))
        save()
    if skip_compile is not None:
        for precision, cl, comp in COMPILE_VARIANTS:
            report["throughput"].append({"variant": variant_name("batched", precision, cl, comp), "loop": "batched",
                                         "precision": precision, "channels_last": cl, "compile": comp,
                                         "batch": BATCH, "error": skip_compile})
    try:
        report["bf16_vs_fp32"] = add_diffs(report["throughput"])
    except Exception as exc:
        report["bf16_vs_fp32"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["anchor"] = anchor_summary(report["throughput"], args.device, args.tiny)
    report["ok"] = all(r["ok"] for r in report["runs"]) and len(report["runs"]) >= 2
    save()
    print_table(report)
    if not report["ok"]:
        failed = [f"{r['label']}: {r.get('error')}" for r in report["runs"] if not r["ok"]]
        print("gpu_check FAILED: a `mibench run` step failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
