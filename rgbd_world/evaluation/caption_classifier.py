"""Caption classifier: a small CNN that reads a scene caption's attributes from a 64x64 image.

    python -m rgbd_world.evaluation.caption_classifier --out rgbd_world/model/caption_classifier.safetensors [--scenes 16000] [--steps 4000]

What it reads (everything :func:`rgbd_world.world.scenes.parse_caption` gives that an image shows regardless of
viewpoint): which shapes are present (4 labels), which colours (8), which colour + shape objects (32, e.g.
"blue cube"), the floor pattern (checkered / striped) and the number of objects (1, 2 or 3). Not read: sizes
and object textures (a "small" sphere near the camera looks like a "large" one far away) and the relation.

It is trained on freshly rendered scenes of the train split *after* the 4000 the shipped JointDiT saw
(``split_indices("train")[4000:4000+scenes]``; the last ``VALIDATION_SCENES`` of them are kept out of training
for the progress line) and never sees the test split. Augmentation (each training image, random): horizontal
flip, a blend towards a Gaussian-blurred copy (sigma 1.2), brightness and contrast +-15%, a per-channel gain of
+-6% and pixel noise. Why: generated images come through an autoencoder that blurs and shifts colours a little,
and the classifier must be a fixed ruler for *any* model stack, so it is made robust to generic blur and small
colour shifts rather than trained on one autoencoder's output; the gain stays small so that the named colours
(red and orange differ by 0.38 in green) stay apart, and a colour the autoencoder turns into another one is
read as that other colour (the image shows it).

Weights: ``caption_classifier.safetensors`` (float32) + ``caption_classifier.json`` (labels, architecture,
training settings, validation accuracy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cli import int_at_least
from ..world.scenes import COLOURS, GROUND_TEXTURES, SHAPES, parse_caption, scene, split_indices

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "model" / "caption_classifier.safetensors"
TRAIN_START = 4000  # the shipped JointDiT trained on train scenes 0..3999
VALIDATION_SCENES = 500
COUNTS = (1, 2, 3)
OBJECTS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)  # "red sphere", "red cube", ...
# Output layout: sigmoid logits for shapes, colours, objects, floor (1 = checkered), then softmax over COUNTS.
LABELS = (
    [f"shape:{s}" for s in SHAPES] + [f"colour:{c}" for c in COLOURS] + [f"object:{o}" for o in OBJECTS]
    + ["floor:checkered"] + [f"count:{n}" for n in COUNTS]
)
GROUPS = {"shapes": slice(0, 4), "colours": slice(4, 12), "objects": slice(12, 44), "floor": slice(44, 45), "count": slice(45, 48)}
ATTRIBUTES = ("count", "floor", "shapes", "colours", "objects")  # the per-attribute accuracies
WIDTHS = (24, 32, 48, 48, 64, 96)
STRIDES = (2, 1, 2, 1, 2, 1)


def caption_targets(caption: str, floor: str | None = None) -> dict:
    """What a caption says an image must show.

    Args:
        caption: a caption of the world's grammar (:func:`rgbd_world.world.scenes.caption_for`).
        floor: the floor pattern when the caption does not name it (training: the scene's spec), else None.
    Returns:
        {"shapes": bool (4,) in SHAPES order, "colours": bool (8,) in COLOURS order, "objects": bool (32,) in
        OBJECTS order, "floor": "checkered" | "striped" | "" (not stated), "count": 1..3}.
    Raises:
        ValueError: a caption outside the grammar (from parse_caption) or an unknown floor.
    """
    if floor not in (None, "", *GROUND_TEXTURES):
        raise ValueError(f"floor must be one of {GROUND_TEXTURES}, got {floor!r}")
    parsed = parse_caption(caption)
    pairs = {(colour, shape) for _, _, colour, shape in parsed["objects"]}
    return {
        "shapes": np.array([any(s == shape for _, s in pairs) for shape in SHAPES]),
        "colours": np.array([any(c == colour for c, _ in pairs) for colour in COLOURS]),
        "objects": np.array([(c, s) in pairs for c in COLOURS for s in SHAPES]),
        "floor": parsed["floor"] or (floor or ""),
        "count": len(parsed["objects"]),
    }


def target_vector(targets: dict) -> np.ndarray:
    """:func:`caption_targets` (with a floor) -> float32 (len(LABELS),) in the output layout (count one-hot)."""
    if targets["floor"] not in GROUND_TEXTURES:
        raise ValueError("training targets need the floor pattern")
    count = [float(targets["count"] == n) for n in COUNTS]
    return np.concatenate([targets["shapes"], targets["colours"], targets["objects"], [targets["floor"] == "checkered"], count]).astype(np.float32)


class CaptionClassifier(nn.Module):
    """3x3 convolutions (BatchNorm, ReLU; strides STRIDES) over a 64x64 image, then average and max pooling
    and one linear layer to len(LABELS) logits. Input: (N, 3, H, W) float in [0, 1]."""

    def __init__(self, widths=WIDTHS, strides=STRIDES):
        super().__init__()
        layers, c_in = [], 3
        for width, stride in zip(widths, strides):
            layers += [nn.Conv2d(c_in, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x - 0.5)
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (64, 64, 3):
        raise ValueError(f"images must be uint8 (N, 64, 64, 3), got {images.dtype} {images.shape}")
    return images


def load_classifier(path: str | Path = DEFAULT_PATH) -> CaptionClassifier:
    """The trained classifier (eval mode) from ``path`` + its ``.json``. Raises FileNotFoundError naming the
    command that trains it, ValueError when the file's labels are not this module's LABELS."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train it with python -m rgbd_world.evaluation.caption_classifier --out {path}")
    info = json.loads(path.with_suffix(".json").read_text())
    if info["labels"] != list(LABELS):
        raise ValueError(f"{path} was trained for other labels than rgbd_world.evaluation.caption_classifier.LABELS")
    model = CaptionClassifier(tuple(info["widths"]), tuple(info["strides"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


@torch.no_grad()
def read_images(images, classifier: CaptionClassifier | None = None, batch: int = 256) -> dict:
    """Read the attributes from images: uint8 (N, 64, 64, 3) -> {"shapes": bool (N, 4), "colours": bool (N, 8),
    "objects": bool (N, 32), "floor": str array (N,) "checkered" | "striped", "count": int (N,) 1..3}
    (a label is present when its probability is above 0.5). ``classifier`` defaults to the shipped one (put in
    eval mode).
    Raises ValueError for another dtype or shape."""
    images = _check_images(images)
    classifier = (classifier or load_classifier()).eval()
    logits = torch.cat([classifier(torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() / 255) for i in range(0, len(images), batch)]) if len(images) else torch.zeros(0, len(LABELS))
    present = (logits > 0).numpy()
    return {
        "shapes": present[:, GROUPS["shapes"]],
        "colours": present[:, GROUPS["colours"]],
        "objects": present[:, GROUPS["objects"]],
        "floor": np.where(present[:, GROUPS["floor"]][:, 0], "checkered", "striped"),
        "count": np.array(COUNTS)[logits[:, GROUPS["count"]].argmax(1).numpy()],
    }


def describe(reading: dict, i: int) -> str:
    """Image ``i`` of a :func:`read_images` result in words, e.g. "2 objects: red sphere, blue cube; striped floor"."""
    objects = [name for name, present in zip(OBJECTS, reading["objects"][i]) if present]
    count = int(reading["count"][i])
    return f"{count} object{'s' if count > 1 else ''}: {', '.join(objects) or 'none recognised'}; {reading['floor'][i]} floor"


def caption_accuracy(images, captions: list[str], classifier: CaptionClassifier | None = None) -> dict:
    """Score images against their captions with the caption classifier.

    Args:
        images: uint8 (N, 64, 64, 3), values 0..255; captions: N captions of the world's grammar.
        classifier: default the shipped one (:func:`load_classifier`).
    Returns:
        {"count", "floor", "shapes", "colours", "objects": share of images (in [0, 1]) whose read attribute
        matches the caption exactly (the number of objects; the floor pattern, over the ``n_floor`` captions
        that name it, None if none does; the set of shapes; of colours; of colour + shape objects),
        "overall": mean of those five (floor left out when None), "mentioned_objects": share of the
        captions' colour + shape objects that are read as present (recall), "n": N, "n_floor": int}.
    Raises:
        ValueError: images not uint8 (N, 64, 64, 3), N != len(captions), N == 0, or a caption outside the grammar.
    """
    images = _check_images(images)
    if len(images) != len(captions) or not len(images):
        raise ValueError(f"need as many captions as images (at least one): {len(images)} images, {len(captions)} captions")
    truth = [caption_targets(c) for c in captions]
    read = read_images(images, classifier)
    hits = {k: [bool((read[k][i] == t[k]).all()) for i, t in enumerate(truth)] for k in ("count", "shapes", "colours", "objects")}
    floors = [read["floor"][i] == t["floor"] for i, t in enumerate(truth) if t["floor"]]
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    out["floor"] = float(np.mean(floors)) if floors else None
    out["overall"] = float(np.mean([out[k] for k in ATTRIBUTES if out[k] is not None]))
    mentioned = np.concatenate([read["objects"][i][t["objects"]] for i, t in enumerate(truth)])
    out.update(mentioned_objects=float(mentioned.mean()), n=len(images), n_floor=len(floors))
    return {k: out[k] for k in (*ATTRIBUTES, "overall", "mentioned_objects", "n", "n_floor")}


def render_training_set(start: int, count: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scenes ``split_indices("train")[start:start+count]`` -> (images uint8 (count, 64, 64, 3), targets float32
    (count, len(LABELS)) from each caption and its scene's floor). Raises ValueError outside the train split."""
    from tqdm.auto import tqdm

    indices = split_indices("train")[start : start + count]
    if start < 0 or len(indices) != count:
        raise ValueError(f"the train split has {len(split_indices('train'))} scenes; start={start} count={count} is outside it")
    images, targets = [], []
    for i in tqdm(indices, desc="rendering training scenes", disable=not progress, mininterval=10):
        s = scene(i)
        images.append(s.rgb)
        targets.append(target_vector(caption_targets(s.caption, s.spec.ground_texture)))
    return np.stack(images), np.stack(targets)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random training augmentation of (N, 3, H, W) float images in [0, 1] (see the module docstring)."""
    n = len(x)
    u = lambda channels=1: torch.rand(n, channels, 1, 1, generator=generator)  # noqa: E731
    x = torch.where(u() < 0.5, x.flip(3), x)
    k = torch.exp(-torch.arange(-3.0, 4.0) ** 2 / (2 * 1.2**2))
    k = (k / k.sum()).repeat(3, 1, 1, 1)  # (3, 1, 1, 7): separable Gaussian, sigma 1.2
    padded = F.pad(x, (3, 3, 3, 3), mode="replicate")
    blurred = F.conv2d(F.conv2d(padded, k, groups=3), k.transpose(2, 3).contiguous(), groups=3)
    x = torch.lerp(x, blurred, u() * (u() < 0.7))
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (0.85 + 0.3 * u()) + mean * (0.85 + 0.3 * u())
    x = x * (0.94 + 0.12 * u(3))
    x = x + 0.03 * u() * torch.randn(x.shape, generator=generator)
    return x.clamp(0, 1)


def training_set(start: int, count: int, cache: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_training_set`, read from / written to the ``.npz`` ``cache`` when given (rendering is
    deterministic, so the cache only saves time; one made for another range is re-rendered and replaced)."""
    if cache and Path(cache).is_file():
        with np.load(cache) as f:
            if int(f["start"]) == start and len(f["images"]) == count and f["labels"].tolist() == list(LABELS):
                return f["images"], f["targets"]
    images, targets = render_training_set(start, count)
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, images=images, targets=targets, start=start, labels=np.array(LABELS))
    return images, targets


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the binary labels of their cross-entropy (a mean over 45 mostly absent labels trains the
    trunk mainly for the count) + the count's cross-entropy, averaged over the batch."""
    binary = slice(0, GROUPS["count"].start)
    return F.binary_cross_entropy_with_logits(logits[:, binary], targets[:, binary], reduction="sum") / len(logits) + F.cross_entropy(
        logits[:, GROUPS["count"]], targets[:, GROUPS["count"]].argmax(1)
    )


def train(out: str | Path, scenes: int = 16000, steps: int = 4000, batch: int = 64, lr: float = 3e-3, seed: int = 0, cache: str | Path | None = None) -> dict:
    """Train the classifier (see the module docstring) and write ``out`` + ``.json``; returns the JSON's dict.

    ``scenes`` train-split scenes from index TRAIN_START are rendered; the last VALIDATION_SCENES of them are
    held out and scored every 250 steps (the progress line). Adam, learning rate ``lr`` with a linear decay
    to 0, ``batch`` images per step, everything seeded by ``seed``. Raises ValueError for scenes <= VALIDATION_SCENES.
    """
    from safetensors.torch import save_file

    if scenes <= VALIDATION_SCENES:
        raise ValueError(f"scenes must be more than the {VALIDATION_SCENES} validation scenes, got {scenes}")
    t0 = time.time()
    images, targets = training_set(TRAIN_START, scenes, cache)
    t_render = time.time() - t0
    n_train = scenes - VALIDATION_SCENES
    x = torch.from_numpy(images[:n_train]).permute(0, 3, 1, 2)  # uint8 (N, 3, 64, 64)
    y = torch.from_numpy(targets[:n_train])
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = CaptionClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    order, pos, t1, validation = torch.randperm(n_train, generator=generator), 0, time.time(), {}
    for step in range(1, steps + 1):
        if pos + batch > n_train:
            order, pos = torch.randperm(n_train, generator=generator), 0
        idx = order[pos : pos + batch]
        pos += batch
        model.train()
        loss = _loss(model(augment(x[idx].float() / 255, generator)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps:
            model.eval()
            val = images[n_train:]
            captions_ok = _validation(model, val, targets[n_train:])
            validation = {"step": step, **captions_ok}
            print(f"step {step}/{steps} loss {loss.item():.4f} validation {' '.join(f'{k} {v:.3f}' for k, v in captions_ok.items())} "
                  f"({time.time() - t1:.0f}s)", flush=True)
    info = {
        "labels": list(LABELS), "widths": list(WIDTHS), "strides": list(STRIDES),
        "training": {"scenes": f"split_indices('train')[{TRAIN_START}:{TRAIN_START + n_train}]", "validation_scenes":
                     f"split_indices('train')[{TRAIN_START + n_train}:{TRAIN_START + scenes}]", "steps": steps, "batch": batch, "lr": lr,
                     "optimizer": "Adam, linear decay to 0", "seed": seed, "augmentation": "flip, blur blend (sigma 1.2), brightness/contrast 15%, channel gain 6%, noise",
                     "render_seconds": round(t_render, 1), "train_seconds": round(time.time() - t1, 1), "torch_threads": torch.get_num_threads()},
        "validation": validation,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out), metadata={"producer": "rgbd_world.evaluation.caption_classifier"})
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _validation(model: CaptionClassifier, images: np.ndarray, targets: np.ndarray) -> dict:
    """Exact-match accuracy per attribute group on rendered images with their full targets (floor always known)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    t = torch.from_numpy(targets)
    out = {k: float(((logits[:, GROUPS[k]] > 0) == (t[:, GROUPS[k]] > 0.5)).all(1).float().mean()) for k in ("shapes", "colours", "objects", "floor")}
    out["count"] = float((logits[:, GROUPS["count"]].argmax(1) == t[:, GROUPS["count"]].argmax(1)).float().mean())
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rgbd_world.evaluation.caption_classifier", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_PATH), help="weights to write (+ .json beside them)")
    p.add_argument("--scenes", type=int_at_least(VALIDATION_SCENES + 1), default=16000, help=f"train scenes from index {TRAIN_START} (last {VALIDATION_SCENES} validate)")
    p.add_argument("--steps", type=int_at_least(1), default=4000)
    p.add_argument("--batch", type=int_at_least(1), default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch threads (1: the result does not depend on the machine's core count)")
    p.add_argument("--cache", default=None, help="optional .npz of the rendered scenes (reused when it matches)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    info = train(a.out, a.scenes, a.steps, a.batch, a.lr, a.seed, a.cache)
    print(f"wrote {a.out} ({info['parameters']} parameters) in {time.time() - t0:.0f}s; validation {info['validation']}")


if __name__ == "__main__":
    main()
