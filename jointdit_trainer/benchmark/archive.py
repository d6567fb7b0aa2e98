"""A benchmark as distributed: one tar file (as Marigold's download script fetches it) or its extracted folder.

Members are named by their path relative to the archive root, with ``/`` separators and without the
``./`` prefix Marigold's tar files carry.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path


class Archive:
    """Read-only access to the files of a tar file or a folder.

    Args:
        path: a ``.tar`` file or a folder.
    Raises:
        FileNotFoundError: nothing at ``path``; ValueError: a file that is not a tar archive.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            self._tar = None
            self._names = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        elif self.path.is_file():
            if not tarfile.is_tarfile(self.path):
                raise ValueError(f"{self.path} is neither a folder nor a tar file; give the benchmark's .tar or its extracted folder")
            self._tar = tarfile.open(self.path)
            self._members = {_clean(m.name): m for m in self._tar.getmembers() if m.isfile()}
            self._names = sorted(self._members)
        else:
            raise FileNotFoundError(f"no file or folder at {self.path}")

    def names(self) -> list[str]:
        """All file names, sorted."""
        return self._names

    def read(self, name: str) -> bytes:
        """The bytes of one member. Raises FileNotFoundError naming the archive when it is missing."""
        if self._tar is None:
            file = self.path / name
            if not file.is_file():
                raise FileNotFoundError(f"{name} is missing from {self.path} (an incomplete download or extraction?)")
            return file.read_bytes()
        member = self._members.get(_clean(name))
        if member is None:
            raise FileNotFoundError(f"{name} is missing from {self.path} (an incomplete download?)")
        return self._tar.extractfile(member).read()


def _clean(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def locate(data_dir: str | os.PathLike, archive: str | None) -> Path:
    """The benchmark's tar or folder given ``--data-dir``: the tar file or its extracted folder itself, or
    Marigold's ``BASE_DATA_DIR`` holding ``archive`` (e.g. ``nyuv2/nyu_labeled_extracted.tar``) or its
    extracted folder (the same path without ``.tar``).

    Raises:
        FileNotFoundError: nothing at ``data_dir``.
    """
    path = Path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"--data-dir {path} does not exist")
    if archive is not None and path.is_dir():
        for candidate in (path / archive, path / archive.removesuffix(".tar")):
            if candidate.exists():
                return candidate
    return path
