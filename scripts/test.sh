#!/usr/bin/env bash
# Set up a virtualenv (.venv) with the CPU torch wheel and the project's dependencies, then run the tests.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python -m pytest -q "$@"
