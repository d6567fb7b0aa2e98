"""One training per output folder: an OS file lock on ``<output_dir>/.jointdit_train.lock``.

The lock is ``filelock.FileLock`` (``flock`` on Linux/macOS, ``LockFileEx`` on Windows; filelock is a
dependency of torch, so it is always installed). The operating system drops it when the process ends,
even by SIGKILL, so a crashed run never leaves the folder locked. Who holds it (process id, host, start
time) is written next to it in ``.jointdit_train.owner.json``, for the message the second run shows.
On a network file system without working locks, the lock may not hold across machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from jointdit_core.files import save_json_atomic

LOCK_FILE = ".jointdit_train.lock"
OWNER_FILE = ".jointdit_train.owner.json"


class OutputFolderBusy(RuntimeError):
    """Another training holds the output folder (the message names its process and host)."""


def _owner(folder: Path) -> str:
    try:
        info = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        return f"process {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike):
    """Hold the output folder's lock for the ``with`` block (the folder is created when missing).

    Raises:
        OutputFolderBusy: another process holds it; the message names that process (pid, host).
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputFolderBusy(
            f"output_dir {folder} is in use by another training ({_owner(folder)}); wait for it to end or stop it, "
            "or set another output_dir"
        ) from None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        save_json_atomic({"pid": os.getpid(), "host": socket.gethostname(), "started": started}, folder / OWNER_FILE)
        yield
    finally:
        (folder / OWNER_FILE).unlink(missing_ok=True)
        lock.release()
