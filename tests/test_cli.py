"""The `mibench` command line: version, list, data preview, errors as one line + non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from mibench import __version__


def mibench(*args, env=None, check=True):
    """Run the real console entry point in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "mibench", *args], capture_output=True, text=True, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_version():
    assert __version__ in mibench("--version").stdout


@pytest.mark.parametrize("kind, expect", [
    ("datasets", "synthfaces32"), ("targets", "synthfaces32-resnet-nls"), ("generators", "ffhq-1024"),
    ("defenses", "negative_label_smoothing"), ("attacks", "ppa"), ("architectures", "compact_resnet"),
    ("metrics", "knn_dist"),
])
def test_list(kind, expect):
    assert expect in mibench("list", kind).stdout


def test_list_targets_shows_missing_research_weights():
    out = mibench("list", "targets").stdout
    line = next(x for x in out.splitlines() if x.startswith("facescrub-resnet152"))
    assert "missing weights:" in line and "facescrub/resnet152" in line


def test_data_preview_writes_a_contact_sheet(tmp_path):
    out = tmp_path / "faces.png"
    proc = mibench("data", "preview", "synthfaces32", "--split", "private-train", "--out", str(out),
                   "--identities", "3", "--per-identity", "4", "--scale", "1")
    assert "wrote" in proc.stdout
    img = Image.open(out)
    # 3 rows × 4 columns of 32 px images with 2 px padding
    assert img.size == (4 * 34 + 2, 3 * 34 + 2)


@pytest.mark.parametrize("args, message", [
    (["data", "preview", "synthface32", "--out", "x.png"], "did you mean 'synthfaces32'"),
    (["data", "preview", "synthfaces32", "--split", "privat-train", "--out", "x.png"], "did you mean 'private-train'"),
    (["data", "preview", "celeba", "--out", "x.png"], "dataset.root"),
    (["run", "--target", "synthfaces32-resnt", "--attack", "ppa"], "did you mean 'synthfaces32-resnet'"),
    (["run", "--target", "synthfaces32-resnet", "--attack", "ppa", "--classes", "0,100"], "out of range"),
    (["run", "--target", "synthfaces32-resnet", "--attack", "ppa", "--set", "stepz=3"], "did you mean 'steps'"),
])
def test_errors_are_one_line_and_nonzero(tmp_path, args, message):
    proc = mibench(*args, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err


def test_help_is_readable():
    out = mibench("run", "--help").stdout
    assert "DEFAULT SUITE" in out and "--resume" in out


def test_zoo_build_list_and_preview_on_a_tiny_zoo(tmp_path):
    import os

    from tiny_zoo import write_tiny_cards

    env = {**os.environ, "MIBENCH_CARDS": str(write_tiny_cards(tmp_path / "cards")),
           "MIBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = mibench("zoo", "build", "tiny-target", "tiny-eval", "tiny-prior", "--device", "cpu", "--jobs", "2", env=env).stdout
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.startswith("tiny-")}
    assert set(rows) == {"tiny-target", "tiny-eval", "tiny-prior"}
    assert "built" in rows["tiny-target"] and "%" in rows["tiny-target"]
    again = mibench("zoo", "build", "tiny-target", "--device", "cpu", env=env).stdout
    assert "built" in again  # cached: nothing retrained
    listed = mibench("list", "targets", env=env).stdout
    assert next(x for x in listed.splitlines() if x.startswith("tiny-target ")).rstrip().endswith("built")
    png = tmp_path / "samples.png"
    mibench("zoo", "preview", "tiny-prior", "--out", str(png), "--rows", "2", "--cols", "3", "--device", "cpu", env=env)
    assert Image.open(png).size[0] > Image.open(png).size[1]


def test_leaderboard_build_imports_runs_after_mibench_run(tmp_path):
    """`mibench run && mibench leaderboard build`: the run entries in ./runs join the page."""
    import json

    from entry_factory import make_entry

    run_dir = tmp_path / "runs" / "t__ppa__p__seed0__abc"
    run_dir.mkdir(parents=True)
    (run_dir / "entry.json").write_text(json.dumps(make_entry("t__ppa__p__seed0__abc")))
    proc = subprocess.run([sys.executable, "-m", "mibench", "leaderboard", "build", "--root", "lb"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "importing run entries from runs/" in proc.stdout and "1 entries (1 imported)" in proc.stdout
    assert (tmp_path / "lb" / "entries" / "t__ppa__p__seed0__abc.json").is_file()
    assert (tmp_path / "lb" / "site" / "index.html").is_file()
