#!/usr/bin/env bash
# The main command: set up .venv (CPU torch + the project's dependencies) on first use, then run the
# embedded small JointDiT on the RGB-D world: joint generation, depth estimation on held-out scenes,
# depth-to-image from held-out depth maps -> demo_output/ (PNGs, summary.md, summary.json).
# Usage: bash scripts/demo.sh [--out DIR] [--steps N] [--seed S] ...   (python -m rgbd_world.demo --help)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
python -m rgbd_world.demo --out demo_output "$@"
