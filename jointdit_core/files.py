"""Atomic file writes: write to a temporary name in the same folder, flush to disk, then ``os.replace``.

A crash (even SIGKILL) leaves either the old file or the new one under the final name, never half of
one; at worst a ``<name>.tmp-*`` file stays behind, which readers ignore (:func:`is_tmp`). Used by the
core's :func:`~jointdit_core.checkpoint.save_addons` and by the trainer for every file it writes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

TMP_MARK = ".tmp-"


def _fsync_dir(path: Path) -> None:
    """fsync a folder so a rename inside it survives a power loss (a no-op where folders cannot be opened)."""
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


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to write a file next to ``path``, fsync it and rename it to ``path``.

    Args:
        path: final file path; its folder is created when missing.
        write: writes the whole file at the temporary path it is given (a str).
    Returns:
        ``path`` as a Path.
    Raises:
        whatever ``write`` raises; the temporary file is removed and an existing ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}{TMP_MARK}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def save_safetensors_atomic(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` written atomically; tensors are made contiguous CPU tensors first."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_json_atomic(data, path: str | os.PathLike, indent: int = 2) -> Path:
    """``json.dump`` written atomically (with a final newline)."""
    text = json.dumps(data, indent=indent) + "\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Raw bytes (e.g. an encoded PNG) written atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


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
    """True for the leftovers of an interrupted atomic write (``<name>.tmp-*``, or ``.<name>.*.tmp`` of
    earlier versions)."""
    name = Path(path).name
    return TMP_MARK in name or (name.startswith(".") and name.endswith(".tmp"))
