#!/usr/bin/env bash
# The "benchmark your own data" flow on one image-folder dataset, command by command (README).
#   benchmarks/own_data_flow.sh DATASET_DIR NAME WORK_DIR
# DATASET_DIR holds private/<class>/*.png and public/*.png (benchmarks/demo_folders.py writes two).
# Cards go to WORK_DIR (the current directory is a card folder), runs to WORK_DIR/runs, the
# leaderboard to WORK_DIR/leaderboard; the timing of every step is printed.
set -euo pipefail
data=$(realpath "$1"); name=$2; work=$3
mkdir -p "$work" && cd "$work"
step() { echo "+ $*"; local t0=$SECONDS; "$@"; echo "  ($((SECONDS - t0)) s)"; }
step mibench init "$data/private" --public "$data/public" --name "$name" --force
step mibench zoo build "$name-resnet" "$name-evaluator" "$name-stylegan2"
step mibench zoo preview "$name-stylegan2" --out "prior-$name.png"
for attack in ppa ifgmi lokt; do
  step mibench run --target "$name-resnet" --attack "$attack" --protocol standard
done
step mibench leaderboard build --from runs --root leaderboard
