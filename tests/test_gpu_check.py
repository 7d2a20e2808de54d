"""benchmarks/gpu_check.py in its tiny CPU configuration, so the GPU readiness script cannot rot:
the two `mibench run` steps write entries, the throughput rows and the bf16-vs-fp32 differences are
recorded, and the same run twice gives identical results. Timings are never asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.slow
def test_gpu_check_tiny_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MIBENCH_CACHE": str(tmp_path / "cache")}
    env.pop("MIBENCH_CARDS", None)
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny", "--skip-compile",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "img·steps/s" in proc.stdout  # the table was printed
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] is True and report["config"] == "tiny" and report["device"] == "cpu"

    runs = {r["label"]: r for r in report["runs"]}
    for attack in ("ppa", "ifgmi"):
        row = runs[attack]
        assert row["ok"] and row["entry_written"], row
        entry = json.loads(Path(row["entry"]).read_text())
        assert entry["attack"]["name"] == attack and entry["attack"]["preset"] == "facescrub"
        assert entry["classes"] == [0, 1]
        assert _number(row["acc1"]) and 0 <= row["acc1"] <= 1
        assert _number(row["wall_time_s"])

    rows = {r["variant"]: r for r in report["throughput"]}
    for name in ("reference per-class fp32", "batched fp32", "batched bf16"):
        assert rows[name]["error"] is None, rows[name]
        assert rows[name]["img_steps_per_s"] > 0 and rows[name]["peak_mib"] > 0
        assert rows[name]["batch"] == 20
    for name in ("batched fp32 channels_last compile", "batched bf16 channels_last compile"):
        assert rows[name]["error"].startswith("skipped")  # a row that did not run says why

    bf16 = report["bf16_vs_fp32"]
    for key in ("max_abs_diff_images", "max_abs_diff_scores", "max_abs_diff_latents"):
        assert _number(bf16[key]), bf16
    assert _number(rows["batched bf16"]["max_abs_diff_images_vs_fp32"])

    det = report["determinism"]
    assert det["deterministic"] is True, det
    assert det["levels"][0]["flags"] == "none" and det["levels"][0]["identical"] is True
