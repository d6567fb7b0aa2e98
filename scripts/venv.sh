# Sourced by the scripts: create/activate .venv with torch (CPU wheel) and the project's dependencies.
VENV="${JOINTDIT_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if ! python -c "import torch, safetensors, accelerate, transformers, pytest" 2>/dev/null; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  python -m pip install -q -r requirements.txt -e ".[test,train]"
fi
