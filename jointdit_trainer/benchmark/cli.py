"""``python -m jointdit_trainer evaluate``: a depth benchmark by Marigold's protocol, in one command.

    python -m jointdit_trainer evaluate --dataset nyuv2 --data-dir $BASE_DATA_DIR \\
        --flux flux1-dev.safetensors --addons jointdit_addons.safetensors --ae ae.safetensors \\
        --clip-l clip_l.safetensors --t5xxl t5xxl_fp16.safetensors --clip-tokenizer ... --t5-tokenizer ...
    python -m jointdit_trainer evaluate --dataset rgbd_world --data-dir build/rgbd_world_test --model-dir rgbd_world/model
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from .alignment import ALIGNMENTS
from .datasets import BENCHMARKS, KITTI_CROPS

DTYPES = ("bfloat16", "float16", "float32")


def _positive(text: str) -> int:
    """argparse ``type=``: an integer >= 1, else a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an argparse subparsers object."""
    text = "depth-estimation benchmark (NYUv2, KITTI, ETH3D, ScanNet, DIODE; Marigold's protocol)"
    p = sub.add_parser("evaluate", help=text, description=text)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", required=True, choices=sorted(BENCHMARKS))
    data.add_argument("--data-dir", required=True, help="Marigold's BASE_DATA_DIR, or the dataset's .tar, or its extracted folder")
    data.add_argument("--file-list", help="a Marigold file list (data_split/...) to take the samples and their order from")
    data.add_argument("--kitti-crop", choices=KITTI_CROPS, help="KITTI evaluation crop (default eigen, as Marigold)")
    data.add_argument("--limit", type=_positive, help="evaluate only the first N images")
    data.add_argument("--any-size", action="store_true", help="accept a dataset with another number of images than the benchmark's")
    model = p.add_argument_group("model: a model folder with model.json (e.g. rgbd_world/model), or FLUX.1-dev + addons")
    model.add_argument("--model-dir")
    model.add_argument("--variant", help="addon variant of --model-dir (default: its default_addon)")
    for name, what in (("--flux", "FLUX.1-dev transformer, BFL layout (bf16 or fp8 file)"), ("--addons", "JointDiT addon file (+ its .json sidecar)"),
                       ("--ae", "ae.safetensors"), ("--clip-l", "CLIP-L folder or .safetensors"), ("--t5xxl", "T5-XXL folder or .safetensors"),
                       ("--clip-tokenizer", "CLIP tokenizer folder (single-file CLIP)"), ("--t5-tokenizer", "T5 tokenizer folder (single-file T5)")):
        model.add_argument(name, help=what)
    model.add_argument("--t5-max-length", type=int, default=512)
    model.add_argument("--guidance", type=float, default=3.5, help="FLUX.1-dev distilled guidance (official 3.5; a --model-dir uses its model.json's)")
    model.add_argument("--device", default=None, help="default cuda when available")
    model.add_argument("--dtype", choices=DTYPES, default=None, help="compute dtype (default bfloat16 on cuda, float32 on cpu)")
    model.add_argument("--fp8-base", action="store_true",
                       help="store the FLUX.1-dev base's linear weights as scaled float8 (e4m3fn), cast per layer to --dtype: "
                            "about half the base's memory (the trainer's fp8_base)")
    run = p.add_argument_group("run")
    run.add_argument("--steps", type=_positive, default=20)
    run.add_argument("--seed", type=int, default=0, help="a batch starting at image i uses seed + i; ensemble member k adds 1000 k")
    run.add_argument("--processing-resolution", type=int, default=512, help="longer side the photo is processed at (0 = its own size)")
    run.add_argument("--ensemble-size", type=_positive, default=1)
    run.add_argument("--reduction", choices=("median", "mean"), default="median")
    run.add_argument("--cache-threshold", type=float, default=0.0,
                     help="JointDiT step cache threshold (0 = off, every step computed; 0.05 = the JointDiT Cache node's default)")
    run.add_argument("--batch-size", type=_positive, default=1)
    run.add_argument("--alignment", choices=ALIGNMENTS, default="disparity",
                     help="least squares in disparity (JointDiT predicts relative disparity; default) or in depth (Marigold's default for depth models)")
    run.add_argument("--fit-zero-disparity", action="store_true",
                     help="fit the alignment also over pixels predicted at disparity 0 (Marigold leaves them out; the demo world's protocol keeps them)")
    run.add_argument("--out", help="output folder (default benchmark_output/<dataset>); an interrupted run resumes there")
    run.add_argument("--no-progress", action="store_true")
    return p


def _load_estimator(a):
    import torch

    from .predictor import load_flux_addons, load_model_folder

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, a.dtype or ("bfloat16" if str(device).startswith("cuda") else "float32"))
    if a.model_dir:
        return load_model_folder(a.model_dir, a.variant, device, dtype, fp8_base=a.fp8_base)
    missing = [f"--{n.replace('_', '-')}" for n in ("flux", "addons", "ae", "clip_l", "t5xxl") if not getattr(a, n)]
    if missing:
        raise ValueError(f"give --model-dir, or all of --flux --addons --ae --clip-l --t5xxl (missing: {' '.join(missing)})")
    return load_flux_addons(a.flux, a.addons, a.ae, a.clip_l, a.t5xxl, a.clip_tokenizer, a.t5_tokenizer, a.t5_max_length, a.guidance,
                            device=device, dtype=dtype, fp8_base=a.fp8_base)


def run(a: argparse.Namespace) -> int:
    """Run the parsed ``evaluate`` command; prints the Markdown table. Returns the exit code (2 on bad input)."""
    from pathlib import Path

    from .datasets import get_spec
    from .readers import BenchmarkData
    from .runner import markdown_table, run_benchmark

    try:
        spec = get_spec(a.dataset, a.kitti_crop)
        file_list = Path(a.file_list).read_text() if a.file_list else None
        data = BenchmarkData(spec, a.data_dir, file_list, a.any_size)
        estimator = _load_estimator(a)
        predict = partial(_predict, estimator, a)
        settings = {"model": estimator.name, "processing_resolution": a.processing_resolution, "steps": a.steps,
                    "ensemble_size": a.ensemble_size, "reduction": a.reduction, "guidance": estimator.guidance, "file_list": a.file_list,
                    "fp8_base": a.fp8_base, "cache_threshold": a.cache_threshold}
        result = run_benchmark(data, predict, a.out or f"benchmark_output/{a.dataset}", settings, a.alignment, a.seed, a.batch_size,
                               a.limit, not a.no_progress, a.fit_zero_disparity)
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(result))
    return 0


def _predict(estimator, a, rgb, seed):
    from .predictor import estimate_disparity

    return estimate_disparity(estimator, rgb, seed, a.steps, a.processing_resolution, a.ensemble_size, a.reduction, a.cache_threshold)
