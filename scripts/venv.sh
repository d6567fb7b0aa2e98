# Sourced by the scripts: create/activate .venv with torch (the CPU build) and the project's dependencies.
#
# torch is asked for explicitly as the CPU build, torch==$TORCH_VERSION+cpu (default 2.13.0): from pip's own
# sources when they have it, else from PyTorch's CPU index ($TORCH_INDEX_URL, default
# https://download.pytorch.org/whl/cpu); plain PyPI alone would give the CUDA build on Linux (several GB with
# its nvidia-* packages).
# On macOS PyPI's wheels are CPU builds already: there it is torch==$TORCH_VERSION.
# TORCH_SPEC overrides the whole requirement, e.g. TORCH_SPEC="torch==2.13.0" for pip's default build.
# An environment that already has torch keeps it.
VENV="${JOINTDIT_VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
if [ "$(uname -s)" = "Darwin" ]; then
  TORCH_SPEC="${TORCH_SPEC:-torch==$TORCH_VERSION}"
else
  TORCH_SPEC="${TORCH_SPEC:-torch==$TORCH_VERSION+cpu}"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up $VENV (first run): installs $TORCH_SPEC, the CPU build of torch (about 190 MB download," \
       "750 MB on disk), and the project's dependencies (about 500 MB more); a few minutes" >&2
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if ! python -c "import torch, safetensors, accelerate, transformers, pytest" 2>/dev/null; then
  python -m pip install -q --upgrade pip
  if ! python -c "import torch" 2>/dev/null; then
    # pip's configured sources first (a mirror or a local wheel may hold the CPU build); PyTorch's CPU
    # index only when they do not have it, so no other host is contacted where they do.
    echo "installing $TORCH_SPEC" >&2
    if ! python -m pip install -q "$TORCH_SPEC" 2>/dev/null; then
      echo "$TORCH_SPEC is not in pip's configured sources; trying $TORCH_INDEX_URL" >&2
      if ! python -m pip install -q --extra-index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; then
        echo "could not install $TORCH_SPEC: set TORCH_INDEX_URL to a reachable index with CPU builds of torch, or" \
             "TORCH_SPEC=\"torch==$TORCH_VERSION\" for pip's default build (on Linux from PyPI: the CUDA build, several GB)" >&2
        return 1 2>/dev/null || exit 1
      fi
    fi
  fi
  echo "installing the project's dependencies into $VENV" >&2
  python -m pip install -q -r requirements.txt -e ".[test,train]"
fi
