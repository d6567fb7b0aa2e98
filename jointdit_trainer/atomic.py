"""Atomic file writes: write to a temporary name in the same folder, flush to disk, then ``os.replace``.

A crash (even SIGKILL) leaves either the old file or the new one under the final name, never half of one;
at worst a ``*.tmp*`` file stays behind, which readers ignore.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

TMP_MARK = ".tmp-"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_into_place(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` (a file) and rename it to ``path`` atomically."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` written atomically; tensors are made contiguous CPU tensors first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        replace_into_place(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_json_atomic(data, path: str | os.PathLike) -> None:
    """``json.dump`` (indent 2) written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        replace_into_place(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Raw bytes (e.g. an encoded PNG) written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        replace_into_place(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Rename a fully written folder to its final name (replacing an older folder of that name).

    Every file inside must already be complete; the rename itself is atomic, so a folder under the
    final name is always whole.
    """
    _fsync_dir(tmp_dir)
    if final_dir.exists():
        old = final_dir.with_name(f"{final_dir.name}{TMP_MARK}old-{os.getpid()}")
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)
    _fsync_dir(final_dir.parent)


def is_tmp(path: str | os.PathLike) -> bool:
    """True for the leftovers of an interrupted atomic write (ours, or ``.<name>.*.tmp`` of jointdit_core)."""
    name = Path(path).name
    return TMP_MARK in name or (name.startswith(".") and name.endswith(".tmp"))
