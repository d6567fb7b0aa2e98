#!/usr/bin/env bash
# Run the ComfyUI test suite (tests/comfyui) against one ComfyUI checkout with the Python that runs it.
# Usage: bash scripts/test_comfyui.sh COMFYUI_PATH COMFYUI_PYTHON [pytest args]
#   e.g. bash scripts/test_comfyui.sh ~/ComfyUI-0.3.64 ~/venv-comfy-0.3.64/bin/python
#        bash scripts/test_comfyui.sh ~/ComfyUI-0.28.1 ~/venv-comfy-0.28.1/bin/python -k golden
# That Python needs ComfyUI's requirements.txt, pytest, and accelerate + transformers for the trainer test
# (README: "Tests" has the setup of both supported ends, ComfyUI 0.3.64 and 0.28.1).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n 2,7p "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
comfyui="$(cd "$1" && pwd)"
python="$2"
shift 2
cd "$(dirname "$0")/.."
if [ ! -f "$comfyui/main.py" ] || [ ! -d "$comfyui/comfy" ]; then
  echo "$comfyui is not a ComfyUI checkout (no main.py / comfy/)" >&2
  exit 2
fi
"$python" -c "import torch, aiohttp, pytest" || { echo "$python lacks ComfyUI's requirements or pytest (see README: Tests)" >&2; exit 2; }
echo "ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$comfyui/comfyui_version.py") at $comfyui, $("$python" --version)"
COMFYUI_PATH="$comfyui" exec "$python" -m pytest -q tests/comfyui "$@"
