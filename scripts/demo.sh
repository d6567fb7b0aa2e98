#!/usr/bin/env bash
# The main command: set up .venv (CPU torch + the project's dependencies) on first use, then run the
# embedded small JointDiT on the RGB-D world: depth estimation on held-out scenes, 3D, depth completion,
# joint inpainting and outpainting, depth-to-image, joint generation -> demo_output/ (open overview.png first;
# PNGs, 3D files, summary.md, summary.json).
# Usage: bash scripts/demo.sh [--out DIR] [--steps N] [--seed S] ...   (python -m rgbd_world.demo --help)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
python -m rgbd_world.demo --out demo_output "$@"
