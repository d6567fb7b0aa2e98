"""Small helpers for the command lines of the RGB-D world (usage errors instead of tracebacks)."""

from __future__ import annotations

import argparse
import json
import sys
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


def command_prog() -> str | None:
    """``prog`` for argparse: ``python -m rgbd_world.<module>`` of the command being run, so usage lines name the
    command a reader types (argparse's default is the file name, e.g. ``depth.py``); None outside such a command."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", "")
    return f"python -m {name}" if name.startswith("rgbd_world.") else None


def evaluation_parser(description: str, default_model: str) -> argparse.ArgumentParser:
    """The shared options of the evaluation commands: --model, --count (test scenes), --steps, --json."""
    parser = argparse.ArgumentParser(prog=command_prog(), description=description)
    parser.add_argument("--model", default=default_model, help="model folder (python -m rgbd_world.recipe)")
    parser.add_argument("--count", type=int_at_least(1), default=200, help="held-out test scenes (the split has 1000)")
    parser.add_argument("--steps", type=int_at_least(1), default=20, help="sampling steps (official 20)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    return parser


def print_rows(result: dict, metric_title: str = "AbsRel") -> None:
    """Print an evaluation's ``rows`` ({name: {"abs_rel", "delta1"}}), one line each."""
    for name, row in result["rows"].items():
        print(f"{name:18s} {metric_title} {row['abs_rel']:.4f}  delta1 {row['delta1']:.4f}")


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` (parent folders made) and say so on stdout."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {path}")
