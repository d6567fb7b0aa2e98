#!/usr/bin/env bash
# Run the ComfyUI test suite (tests/comfyui) against one ComfyUI with the Python that runs it.
# Usage: bash scripts/test_comfyui.sh COMFYUI_PATH COMFYUI_PYTHON [pytest args]    your own ComfyUI
#        bash scripts/test_comfyui.sh --release VERSION [pytest args]             a release from ../shared/comfyui
#   e.g. bash scripts/test_comfyui.sh ~/ComfyUI ~/ComfyUI/venv/bin/python
#        bash scripts/test_comfyui.sh --release 0.33.0 -k golden
# Your own ComfyUI's Python needs the pack's requirements.txt, pytest and requests (README: Tests); --release makes
# that environment itself, once per machine (scripts/comfyui_env.sh).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n 2,9p "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$1" = "--release" ]; then
  mapfile -t env_paths < <(bash "$repo/scripts/comfyui_env.sh" "$2")
  [ "${#env_paths[@]}" -ge 2 ] || exit 3
  comfyui="${env_paths[0]}"
  python="${env_paths[1]}"
  if [ "${#env_paths[@]}" -ge 3 ] && [ -z "${COMFYUI_GGUF_PATH:-}" ]; then export COMFYUI_GGUF_PATH="${env_paths[2]}"; fi
else
  comfyui="$(cd "$1" && pwd)"
  python="$2"
fi
shift 2
cd "$repo"
if [ ! -f "$comfyui/main.py" ] || [ ! -d "$comfyui/comfy" ]; then
  echo "$comfyui is not a ComfyUI checkout (no main.py / comfy/)" >&2
  exit 2
fi
"$python" -c "import torch, aiohttp, requests, pytest" 2>/dev/null \
  || { echo "$python lacks ComfyUI's requirements, requests or pytest: $python -m pip install -r $comfyui/requirements.txt pytest requests" >&2; exit 2; }
missing="$("$python" -c "
import importlib.util
need = {'safetensors': 'safetensors', 'numpy': 'numpy', 'einops': 'einops', 'tqdm': 'tqdm', 'PIL': 'pillow',
        'trimesh': 'trimesh', 'OpenEXR': 'openexr', 'tifffile': 'tifffile'}
print(' '.join(pip for module, pip in need.items() if importlib.util.find_spec(module) is None))")"
if [ -n "$missing" ]; then
  echo "$python lacks the pack's requirements ($missing): $python -m pip install -r $repo/requirements.txt" >&2
  exit 2
fi
echo "ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$comfyui/comfyui_version.py") at $comfyui, $("$python" --version)"
COMFYUI_PATH="$comfyui" exec "$python" -m pytest -q tests/comfyui "$@"
