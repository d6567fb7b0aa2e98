"""Command line: ``python -m jointdit_trainer {preprocess,train,plan} [--config FILE] [--set key=value ...]``;
``python -m jointdit_trainer evaluate --dataset nyuv2 --data-dir ...`` (depth benchmarks, :mod:`.benchmark.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import load_config

NEEDS_CONFIG = "needs a config file: add --config FILE (start from a copy of jointdit_trainer/example_config.toml)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jointdit_trainer", description="JointDiT addon training")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("preprocess", "resize/crop, depth, autoencoder latents and text embeddings -> safetensors cache"),
        ("train", "train the JointDiT addons on the cache (also under `accelerate launch -m jointdit_trainer train`)"),
        ("plan", "expected peak accelerator memory of the configured run, part by part, and the settings that fit a budget"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", help="TOML, JSON or YAML config file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value (repeatable), e.g. --set max_train_steps=100 --set lora_ranks.blocks=16")
        if name == "plan":
            p.add_argument("--budget-gb", type=float, default=24.0, help="accelerator memory to fit in, GiB (default 24)")
    from .benchmark.cli import add_evaluate_parser

    add_evaluate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "evaluate":
        from .benchmark.cli import run

        return run(args)
    if args.config is None and not args.overrides:
        print(f"{args.command} {NEEDS_CONFIG}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "plan":
        from .plan import print_plan

        return print_plan(cfg, args.budget_gb)
    if args.command == "preprocess":
        from .preprocess import preprocess

        try:
            preprocess(cfg)
        except (ValueError, FileNotFoundError) as exc:
            print(f"preprocess stopped: {exc}", file=sys.stderr)
            return 1
    else:
        from .train import TrainingError, train

        try:
            train(cfg)
        except (TrainingError, ValueError, FileNotFoundError) as exc:
            print(f"training stopped: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
