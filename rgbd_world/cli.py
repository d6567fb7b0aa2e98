"""Small helpers for the command lines of the RGB-D world (usage errors instead of tracebacks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def int_at_least(lowest: int):
    """argparse ``type=``: an integer >= ``lowest``; anything else is a usage error naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
        return value

    return parse


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` (parent folders made) and say so on stdout."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {path}")
