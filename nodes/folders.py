"""The ``models/jointdit`` model folder, registered with ComfyUI's ``folder_paths``.

Also the one place where a file name from a prompt becomes a path in ComfyUI's input folder
(:func:`input_file`): names are checked by :func:`jointdit_core.safe_paths.file_inside` on every
supported release (ComfyUI 0.3.64's own ``get_annotated_filepath`` does not check them).

Registration keeps paths that ``extra_model_paths.yaml`` (loaded by ComfyUI before custom nodes)
already added under the name ``jointdit``; only ``.safetensors`` files are listed.
"""

from __future__ import annotations

import os
from pathlib import Path

from jointdit_core.safe_paths import UnsafeFileName, file_inside

FOLDER = "jointdit"
EXTENSIONS = {".safetensors"}


def register_folder() -> list[str]:
    """Add ``<ComfyUI models dir>/jointdit`` as the default ``jointdit`` folder; returns its search paths."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    os.makedirs(default, exist_ok=True)
    if FOLDER in folder_paths.folder_names_and_paths:
        paths, _ = folder_paths.folder_names_and_paths[FOLDER]
        paths = [default] + [p for p in paths if p != default]
    else:
        paths = [default]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))
    return list(paths)


def addon_files() -> list[str]:
    """Addon file names (relative to the ``jointdit`` folders) for the LoadJointDiT dropdown."""
    import folder_paths

    return folder_paths.get_filename_list(FOLDER)


def addon_folders() -> list[str]:
    """The folders searched for addon files (``models/jointdit`` and ``extra_model_paths.yaml`` entries)."""
    import folder_paths

    return list(folder_paths.get_folder_paths(FOLDER))


def addon_path(name: str) -> str:
    """Full path of an addon file from the dropdown. Raises FileNotFoundError naming the folders searched."""
    import folder_paths

    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        raise FileNotFoundError(
            f"JointDiT addon {name!r} not found in {addon_folders()}; put "
            "jointdit.safetensors (the official download; its .json sidecar is optional) into models/jointdit"
        )
    return path


def input_file(name: str, what: str = "file") -> Path:
    """Path of a file in ComfyUI's input folder from a node's file name (``"a.png"``, ``"sub/a.png"``, ``"a.png [input]"``).

    Returns the resolved path (it may not exist: callers say "not found").
    Raises:
        jointdit_core.safe_paths.UnsafeFileName: an absolute name, ``..`` (also URL-encoded), a symbolic link
            leading out of the input folder, or an ``[output]`` / ``[temp]`` annotation (only the input folder is read).
    """
    import folder_paths

    for tag in ("[output]", "[temp]"):
        if isinstance(name, str) and name.endswith(tag):
            raise UnsafeFileName(
                f"{what} {name!r} is refused: this node reads from ComfyUI's input folder only; copy the file from the "
                f"{tag[1:-1]} folder into {folder_paths.get_input_directory()}"
            )
    if isinstance(name, str) and name.endswith("[input]"):
        name = name[: -len("[input]")].rstrip()
    return file_inside(folder_paths.get_input_directory(), name, what)


def input_files(suffixes: tuple[str, ...]) -> list[str]:
    """Files directly in ComfyUI's input folder with one of ``suffixes`` (lower case), for a dropdown; files
    that are symbolic links leading out of the folder are left out."""
    import folder_paths

    folder = folder_paths.get_input_directory()
    if not os.path.isdir(folder):
        return []
    names = []
    for f in sorted(os.listdir(folder)):
        if f.lower().endswith(suffixes) and os.path.isfile(os.path.join(folder, f)):
            try:
                file_inside(folder, f)
            except ValueError:
                continue
            names.append(f)
    return names


def output_path(filename_prefix: str, width: int, height: int) -> tuple[str, str, int, str]:
    """ComfyUI's ``get_save_image_path`` in the output folder, refusing a prefix that would write outside it.

    Returns (folder, file name stem, counter, subfolder) as ComfyUI's Save Image uses them.
    Raises:
        jointdit_core.safe_paths.UnsafeFileName: an absolute prefix, ``..`` (also URL-encoded), or a subfolder
            that is a symbolic link leading out of the output folder (ComfyUI itself checks only the first two).
    """
    import folder_paths

    output = folder_paths.get_output_directory()
    file_inside(output, filename_prefix, "filename_prefix")  # before ComfyUI makes any folder
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output, width, height)
    file_inside(output, os.path.join(os.path.relpath(folder, output), name or "x"), "filename_prefix")
    return folder, name, counter, subfolder
