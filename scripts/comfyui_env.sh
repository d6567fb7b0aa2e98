#!/usr/bin/env bash
# Make (once) and print a ComfyUI release's source tree and Python for the ComfyUI test suite, from the source
# archives in ../shared/comfyui (the project's CI has them; a user's clone usually does not).
#
# Usage: bash scripts/comfyui_env.sh RELEASE       e.g. 0.3.64, 0.28.1, 0.33.0
# Prints two lines on stdout: the ComfyUI folder and its Python. Progress goes to stderr.
#
# The environment lives outside the clone, in $JOINTDIT_COMFYUI_CACHE (default ~/.cache/comfyui-jointdit), in a
# folder named after the release and a hash of everything that decides its contents (the archive, the pack's
# requirements.txt, the packages below, the Python version): a repeat run on the same machine reuses it in a second,
# and a change to any of those makes a new one. A half-made environment (an interrupted run) is never used.
#
# What goes in: ComfyUI's requirements.txt, except torch/torchvision/torchaudio, which come as
# torch==2.14.1 + torchvision==0.29.1 (PyPI's build for Linux, which runs on CPU; about 5.5 GB) and
# torchaudio without its dependencies (ComfyUI >= 0.28 imports it at start; PyPI has no torchaudio for 2.14,
# and 2.11.1's Python code loads beside it); the pack's requirements.txt; pytest and requests (ComfyUI's server
# imports it); accelerate + transformers (the trainer test); gguf and city96's ComfyUI-GGUF (the GGUF test),
# whose folder is printed as a third line.
# Override the torch pins with COMFYUI_TORCH_SPEC="torch==X torchvision==Y" and COMFYUI_TORCHAUDIO_SPEC.
set -euo pipefail
if [ $# -ne 1 ]; then
  sed -n 2,7p "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
release="${1#v}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
shared="${JOINTDIT_SHARED:-$repo/../shared}"
archive="$shared/comfyui/comfyui-$release.tar.gz"
gguf_archive="$(ls "$shared"/comfyui/ComfyUI-GGUF-*.tar.gz 2>/dev/null | head -n 1 || true)"
if [ ! -f "$archive" ]; then
  echo "no ComfyUI $release source archive at $archive." >&2
  echo "To run the ComfyUI tests against your own ComfyUI: bash scripts/test_comfyui.sh /path/to/ComfyUI /path/to/its/python" >&2
  exit 3
fi
torch_spec="${COMFYUI_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
torchaudio_spec="${COMFYUI_TORCHAUDIO_SPEC:-torchaudio==2.11.1}"
python="${COMFYUI_BASE_PYTHON:-python3}"
extras=(pytest requests accelerate "transformers>=4.44" "gguf>=0.13.0")
recipe=2  # raise when the steps below change what an environment holds
key="$( { sha256sum "$archive" ${gguf_archive:+"$gguf_archive"} "$repo/requirements.txt" | cut -d' ' -f1;
          echo "$recipe $torch_spec $torchaudio_spec ${extras[*]}"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)"
cache="${JOINTDIT_COMFYUI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comfyui-jointdit}"
env_dir="$cache/comfyui-$release-$key"

mkdir -p "$cache"
exec 9>"$env_dir.lock"
flock 9  # two runs at once: the second waits for the first and reuses its environment
if [ ! -f "$env_dir/ready" ]; then
  start=$SECONDS
  echo "making the ComfyUI $release test environment in $env_dir (first run on this machine: a few minutes, about 6 GB)" >&2
  rm -rf "$env_dir"  # what an interrupted run left
  mkdir -p "$env_dir/ComfyUI"
  tar -xzf "$archive" -C "$env_dir/ComfyUI"
  if [ -n "$gguf_archive" ]; then
    mkdir "$env_dir/ComfyUI-GGUF"
    tar -xzf "$gguf_archive" -C "$env_dir/ComfyUI-GGUF"
  fi
  "$python" -m venv "$env_dir/venv"
  py="$env_dir/venv/bin/python"
  pip=("$py" -m pip install -q --disable-pip-version-check)
  # shellcheck disable=SC2086
  "${pip[@]}" $torch_spec
  # shellcheck disable=SC2086
  "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$env_dir/wheels" $torchaudio_spec
  "${pip[@]}" --no-deps "$env_dir"/wheels/*.whl
  grep -v -E '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;#].*)?$' "$env_dir/ComfyUI/requirements.txt" > "$env_dir/comfyui-requirements.txt"
  "${pip[@]}" -r "$env_dir/comfyui-requirements.txt" -r "$repo/requirements.txt" "${extras[@]}"
  "$py" -c "import torch, torchvision, torchaudio, aiohttp, requests, pytest, gguf, trimesh, tifffile, OpenEXR"
  touch "$env_dir/ready"
  echo "ComfyUI $release environment ready in $((SECONDS - start)) s" >&2
fi
echo "$env_dir/ComfyUI"
echo "$env_dir/venv/bin/python"
if [ -d "$env_dir/ComfyUI-GGUF" ]; then echo "$env_dir/ComfyUI-GGUF"; fi
