"""The evaluation loop: predict, align, score, append; resumable; one Markdown table and one JSON per run.

Output folder::

    settings.json     what the run is (dataset, model, steps, seed, ...); a resumed run must match it
    per_image.jsonl   one line per image as it is scored: index, name, the metrics, seconds
    results.json      means over the images, seconds per image, settings
    results.md        the same as a Markdown table

Images go in batches of ``batch_size``; a batch starting at image ``i`` uses noise seed ``seed + i``
(as ``rgbd_world.stack.depth_estimation``). An interrupted run picks up after the last complete batch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from jointdit_core.files import save_json_atomic

from .alignment import align_prediction
from .metrics import LOWER_IS_BETTER, METRICS, depth_metrics, mean_metrics
from .readers import BenchmarkData

PredictFn = Callable[[np.ndarray, int], np.ndarray]  # (B, H, W, 3) uint8 photos, seed -> (B, H, W) prediction


class SettingsMismatch(ValueError):
    """The output folder holds a run with other settings."""


def _read_done(path: Path) -> list[dict]:
    """Complete lines of per_image.jsonl (a line cut by an interruption is dropped, and rewritten)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _start(out: Path, settings: dict) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / "settings.json"
    if settings_file.is_file():
        before = json.loads(settings_file.read_text())
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            raise SettingsMismatch(f"{out} holds a run with other settings ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                                   "choose another --out, or delete the folder to start over")
    save_json_atomic(settings, settings_file)
    done = _read_done(out / "per_image.jsonl")
    with open(out / "per_image.jsonl", "w") as f:  # rewrite without a cut-off last line
        f.writelines(json.dumps(row) + "\n" for row in done)
    return done


def run_benchmark(data: BenchmarkData, predict: PredictFn, out_dir: str | Path, settings: dict, alignment: str = "disparity",
                  seed: int = 0, batch_size: int = 1, limit: int | None = None, progress: bool = True, fit_zero_disparity: bool = False) -> dict:
    """Evaluate ``predict`` on ``data`` (the first ``limit`` images), resuming what ``out_dir`` already holds.

    Args:
        predict: photos (B, H, W, 3) uint8 and a seed -> predictions (B, H, W) at the photos' size (disparity
            or depth, as ``alignment`` expects); settings: what the run is, recorded in settings.json;
            alignment, fit_zero_disparity: :func:`~.alignment.align_prediction`.
    Returns:
        the content of results.json: {"dataset", "images", "metrics": {name: mean}, "seconds_per_image", "settings"}.
    Raises:
        SettingsMismatch: ``out_dir`` holds a run with other settings; ValueError: a prediction of the wrong
        shape, images of different sizes in one batch, or what the readers raise.
    """
    out = Path(out_dir)
    settings = {**settings, "dataset": data.spec.name, "alignment": alignment, "fit_zero_disparity": fit_zero_disparity, "seed": seed,
                "batch_size": batch_size}
    done = _start(out, settings)
    total = len(data) if limit is None else min(limit, len(data))
    bar = tqdm(total=total, initial=min(len(done), total), desc=f"{data.spec.name}", disable=not progress)
    with open(out / "per_image.jsonl", "a") as log:
        for start in range(len(done), total, batch_size):
            samples = [data[i] for i in range(start, min(start + batch_size, total))]
            if len({s.rgb.shape for s in samples}) > 1:
                raise ValueError(f"images {start}..{start + len(samples) - 1} differ in size; use --batch-size 1 for this dataset")
            t0 = time.perf_counter()
            predictions = np.asarray(predict(np.stack([s.rgb for s in samples]), seed + start))
            seconds = (time.perf_counter() - t0) / len(samples)
            if predictions.shape != (len(samples), *samples[0].depth.shape):
                raise ValueError(f"the model returned predictions of shape {predictions.shape} for {len(samples)} images of "
                                 f"{samples[0].depth.shape[1]} x {samples[0].depth.shape[0]}: it must return one map per image at the image's size")
            for j, (sample, pred) in enumerate(zip(samples, predictions)):
                depth = align_prediction(pred, sample.depth, sample.valid, alignment, data.spec.min_depth, data.spec.max_depth,
                                         data.spec.alignment_max_res, fit_zero_disparity)
                row = {"index": start + j, "name": sample.name, **depth_metrics(depth, sample.depth, sample.valid), "seconds": round(seconds, 4)}
                log.write(json.dumps(row) + "\n")
                done.append(row)
            log.flush()
            bar.update(len(samples))
            running = mean_metrics(done, ("abs_rel", "delta1"))
            bar.set_postfix(AbsRel=f"{running['abs_rel']:.4f}", delta1=f"{running['delta1']:.4f}")
    bar.close()
    done = done[:total]
    result = {"dataset": data.spec.title, "images": len(done), "metrics": mean_metrics(done, METRICS),
              "seconds_per_image": float(np.mean([r["seconds"] for r in done])), "settings": settings}
    save_json_atomic(result, out / "results.json")
    (out / "results.md").write_text(markdown_table(result) + "\n")
    return result


HEADERS = {"abs_rel": "AbsRel x100", "sq_rel": "SqRel", "rmse": "RMSE", "rmse_log": "RMSE-log", "log10": "log10", "delta1": "delta1 x100",
           "delta2": "delta2 x100", "delta3": "delta3 x100", "i_rmse": "i-RMSE", "silog": "SILog"}
PERCENT = {"abs_rel", "delta1", "delta2", "delta3"}  # reported x100, as the papers do


def markdown_table(result: dict) -> str:
    """One-row Markdown table of a run (AbsRel and the deltas x100; arrows say which way is better)."""
    names = list(result["metrics"])
    head = ["dataset", "images"] + [f"{HEADERS[n]} {'↓' if LOWER_IS_BETTER[n] else '↑'}" for n in names] + ["s / image"]
    values = [f"{result['metrics'][n] * (100 if n in PERCENT else 1):.{2 if n in PERCENT else 4}f}" for n in names]
    row = [result["dataset"], str(result["images"])] + values + [f"{result['seconds_per_image']:.2f}"]
    settings = result["settings"]
    note = ", ".join(f"{k} {settings[k]}" for k in ("model", "alignment", "processing_resolution", "steps", "ensemble_size", "seed") if k in settings)
    if settings.get("fit_zero_disparity"):
        note += ", disparity 0 fitted (--fit-zero-disparity)"
    return "\n".join(["| " + " | ".join(head) + " |", "|" + " --- |" * len(head), "| " + " | ".join(row) + " |", "", note])
