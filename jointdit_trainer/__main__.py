"""Command line: ``python -m jointdit_trainer {preprocess,train} [--config FILE] [--set key=value ...]``;
``python -m jointdit_trainer evaluate --dataset nyuv2 --data-dir ...`` (depth benchmarks, :mod:`.benchmark.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jointdit_trainer", description="JointDiT addon training")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("preprocess", "resize/crop, depth, autoencoder latents and text embeddings -> safetensors cache"),
        ("train", "train the JointDiT addons on the cache (also under `accelerate launch -m jointdit_trainer train`)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", help="TOML, JSON or YAML config file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value (repeatable), e.g. --set max_train_steps=100 --set lora_ranks.blocks=16")
    from .benchmark.cli import add_evaluate_parser

    add_evaluate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "evaluate":
        from .benchmark.cli import run

        return run(args)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "preprocess":
        from .preprocess import preprocess

        preprocess(cfg)
    else:
        from .train import TrainingError, train

        try:
            train(cfg)
        except TrainingError as exc:
            print(f"training stopped: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
