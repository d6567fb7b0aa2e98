"""The ``models/jointdit`` model folder, registered with ComfyUI's ``folder_paths``.

Registration keeps paths that ``extra_model_paths.yaml`` (loaded by ComfyUI before custom nodes)
already added under the name ``jointdit``; only ``.safetensors`` files are listed.
"""

from __future__ import annotations

import os

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
