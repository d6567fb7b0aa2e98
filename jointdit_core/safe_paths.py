"""File names that must stay inside one folder (a server's input folder, say), whatever a request sends.

A name is accepted when it is a relative path without ``..`` parts and the file it names, with every
symbolic link resolved, lies inside the folder (itself resolved). URL-encoded forms are judged as what
they decode to too (``..%2Fsecret.npy``), so a name that only looks harmless until some layer decodes it
is refused as well. This is the check behind ComfyUI's ``folder_paths.get_annotated_filepath`` users
that read what a request names.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote


class UnsafeFileName(ValueError):
    """A file name that would leave its folder: the message says which name, which folder, and why."""


def _why_unsafe(name: str) -> str | None:
    """Why ``name`` (as sent, or as decoded) is not a plain relative name, or None."""
    for form in dict.fromkeys((name, unquote(name), unquote(unquote(name)))):
        if "\x00" in form:
            return "it contains a NUL character"
        if PurePosixPath(form).is_absolute() or PureWindowsPath(form).is_absolute() or PureWindowsPath(form).drive:
            return "it is an absolute path" + ("" if form == name else f" once URL-decoded ({form!r})")
        if ".." in PureWindowsPath(form).parts:  # splits on both / and \
            return "it contains '..'" + ("" if form == name else f" once URL-decoded ({form!r})")
    return None


def file_inside(folder: str | os.PathLike, name: str, what: str = "file") -> Path:
    """The path of ``name`` inside ``folder``, with symbolic links resolved; refused if it would leave the folder.

    Args:
        folder: the folder the file must stay in (e.g. ComfyUI's input folder).
        name: a relative file name as a user or request sent it, subfolders allowed (``"depth/a.png"``).
        what: what the file is, for the messages (e.g. "depth file").
    Returns:
        the resolved absolute path (the file need not exist; the caller says "not found").
    Raises:
        UnsafeFileName: an empty, absolute, ``..``-containing (also once URL-decoded) name, or one that
            resolves outside ``folder`` through a symbolic link; the message names the folder and the fix.
    """
    base = Path(folder).resolve()
    if not isinstance(name, str) or not name.strip():
        raise UnsafeFileName(f"no {what} name was given: pick a file in {base}")
    why = _why_unsafe(name)
    if why is None:
        path = (base / name).resolve()
        if path == base or base not in path.parents:
            why = "it leads outside the folder through a symbolic link"
        else:
            return path
    raise UnsafeFileName(
        f"{what} {name!r} is refused: {why}. Only files inside {base} can be read; copy the file into that folder "
        "and pick it by its name there"
    )
