"""Checksum manifests of checkpoint folders: size and sha256 of every file, signed with this machine's key.

``checksums.json`` in a checkpoint folder lists every other file in it (subfolders included) with its
size and sha256, and an HMAC-SHA256 signature of that list. Verifying it finds a truncated file, bytes
overwritten inside a file, a missing file and a file that was added afterwards.

The signature key is 32 random bytes kept outside every output folder: ``$JOINTDIT_TRAINER_KEY_FILE``,
else ``$XDG_CONFIG_HOME/jointdit_trainer/checkpoint.key`` (``~/.config/...``), created on the first
save with mode 0600. Only a folder whose manifest verifies with this key was written by this trainer
under this user account; that is required before ``accelerate_state/`` (FSDP/DeepSpeed) is handed to
accelerate's ``load_state``, which unpickles. Anyone who can read the key file can sign a folder: keep
it as private as your SSH keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

from jointdit_core.files import save_json_atomic

logger = logging.getLogger(__name__)

MANIFEST = "checksums.json"
FORMAT = "jointdit-trainer-checksums-1"
KEY_ENV = "JOINTDIT_TRAINER_KEY_FILE"


class DamagedCheckpoint(ValueError):
    """A checkpoint folder whose files do not match its manifest (the message says which and how)."""


class MissingManifest(DamagedCheckpoint):
    """A checkpoint folder without ``checksums.json`` (written by a trainer before checksums existed)."""


def key_path() -> Path:
    """Where the signing key lives (see the module docstring)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "jointdit_trainer" / "checkpoint.key"


def load_key(create: bool = False) -> bytes | None:
    """The signing key; with ``create``, a new random one is written when there is none.

    Returns None when there is no key (or it cannot be created: the folder is read-only)."""
    path = key_path()
    if path.is_file():
        return path.read_bytes()
    if not create:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    except FileExistsError:
        pass  # another process made it just now
    except OSError as exc:
        logger.warning("cannot create the checkpoint signing key %s (%s): checkpoints are not signed; "
                       "set %s to a writable path", path, exc, KEY_ENV)
        return None
    return path.read_bytes()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the manifest, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST)


def _signature(key: bytes, files: dict) -> str:
    return hmac.new(key, json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def write(folder: str | os.PathLike) -> Path:
    """Write ``<folder>/checksums.json`` for the files in ``folder`` now; returns its path."""
    folder = Path(folder)
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in _files(folder)}
    key = load_key(create=True)
    data = {"format": FORMAT, "files": files, "signature": _signature(key, files) if key else None}
    return save_json_atomic(data, folder / MANIFEST)


def verify(folder: str | os.PathLike, signed: bool = False) -> None:
    """Check every file of ``folder`` against its manifest; with ``signed`` also the signature.

    Raises:
        MissingManifest: no ``checksums.json``.
        DamagedCheckpoint: an unreadable manifest, a missing, extra, truncated or changed file, or (with
            ``signed``) a signature that is absent or not made with this machine's key. The message
            names the file and what is wrong with it.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise MissingManifest(f"{folder.name} has no {MANIFEST} (written by a trainer version without checksums)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DamagedCheckpoint(f"{folder.name}/{MANIFEST} is unreadable ({exc})") from None
    present = set(_files(folder))
    missing, added = sorted(set(files) - present), sorted(present - set(files))
    if missing:
        raise DamagedCheckpoint(f"{folder.name}/{missing[0]} is missing")
    if added:
        raise DamagedCheckpoint(f"{folder.name}/{added[0]} is not in {MANIFEST}: it was added after the checkpoint was written")
    for name, entry in files.items():
        size = (folder / name).stat().st_size
        if size != entry["bytes"]:
            raise DamagedCheckpoint(f"{folder.name}/{name} has {size} bytes, {entry['bytes']} when written: it is truncated or damaged")
    for name, entry in files.items():
        if _sha256(folder / name) != entry["sha256"]:
            raise DamagedCheckpoint(f"{folder.name}/{name} does not match its sha256 in {MANIFEST}: its content is damaged")
    if signed:
        key = load_key()
        if not key or not data.get("signature") or not hmac.compare_digest(_signature(key, files), data["signature"]):
            raise DamagedCheckpoint(
                f"{folder.name} is not signed with this machine's trainer key ({key_path()}): its accelerate_state/ would be "
                "unpickled by accelerate's load_state, so the trainer loads only states it wrote itself. If you trust the "
                f"folder, point {KEY_ENV} at the key file of the account that wrote it"
            )
