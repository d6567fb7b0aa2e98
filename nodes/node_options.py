"""Node options of newer ComfyUI releases, used where the running ComfyUI has them (feature checks, no version compare).

* ``advanced=True`` on an input (``comfy_api.latest.io`` inputs of newer releases): the frontend folds the
  input away behind "show advanced inputs"; older releases show it like any other input.
* ``search_aliases`` on a ``Schema``: extra words the node search finds the node by.

The checks look at the signatures of the running ``comfy_api``, so one node definition runs on the oldest
supported ComfyUI (v0.3.64) and on today's.
"""

from __future__ import annotations

import inspect

from comfy_api.latest import io


def _accepts(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


HAS_ADVANCED_INPUTS = _accepts(io.Float.Input.__init__, "advanced")
HAS_SEARCH_ALIASES = _accepts(io.Schema, "search_aliases")


def advanced() -> dict:
    """Keyword arguments marking a widget input as advanced: ``{"advanced": True}`` where supported, else ``{}``."""
    return {"advanced": True} if HAS_ADVANCED_INPUTS else {}


def schema_options(search_aliases: list[str]) -> dict:
    """Keyword arguments for ``io.Schema`` carrying the search aliases where the running ComfyUI reads them."""
    return {"search_aliases": list(search_aliases)} if HAS_SEARCH_ALIASES else {}
