"""Window sampling (panoramas) on the demo world: wide depth estimation, the 360-degree seam, the cost.

    python -m rgbd_world.evaluation.windows --scenes 8 --steps 10
    python -m rgbd_world.evaluation.windows --figure docs/panorama.png   # the README's 360-degree picture
    python -m rgbd_world.evaluation.windows --figure docs/panorama.png --thumbnail "example_workflows/JointDiT 9b - 360-degree panorama in 3D.jpg"

Window sizes are in pixels; the latent is the demo autoencoder's (4 pixels a latent column, FLUX.1's 8).
Prints three tables (Markdown):

1. **Wide depth estimation.** Held-out scenes rendered 4x wider than the model's 64 px (64 x 256, the
   native focal length, so each 64 px window sees what the model was trained on; exact z-depth). The depth
   is estimated (a) in windows of 64 px with 32 px overlap and (b) by resizing the photo to 64 x 64 and
   the disparity back (what a sampler without windows does). AbsRel / delta1 after the usual disparity
   alignment (:func:`rgbd_world.evaluation.metrics.evaluate_disparity`), and the disagreement of overlapping windows
   before blending: the mean |difference| of neighbouring windows' clean-depth estimates
   (``x - sigma * v``, latent space) over their overlap, relative to the mean |estimate| there, averaged
   over the steps (and at the last step).
2. **360-degree seam.** Joint generation of 64 x 256 RGB-D from the test captions, windows of 64 px with
   32 px overlap, with and without ``wrap``: the mean |difference| between the first and last column over the
   mean |difference| of neighbouring columns elsewhere (1 = the seam is like any column step), for the latents,
   and for rgb / disparity decoded plainly and with circular padding (:func:`jointdit_core.windows.decode_wrapped`;
   pixels: compared with the steps between two latent columns, where the seam lies).
3. **Cost.** Model evaluations per step against the window count for a few widths.

With ``--tiles`` instead: **large photos** (JointDiT Depth Estimation's ``large_photos``): held-out scenes rendered
at 4x the native size with the native field of view (256 x 256, exact depth) and 4x wider (64 x 256), depth by
(a) resizing to 64 x 64 and back, (b) tiles of 64 px reconciled and anchored to (a), (c) the same tiles without the
anchor (:func:`rgbd_world.stack.depth_estimation_tiles`, the node's core); AbsRel / delta1, model forward passes and
CPU seconds per image.

    python -m rgbd_world.evaluation.windows --tiles --scenes 15 --steps 4
"""

from __future__ import annotations

import argparse
import functools
import time
from unittest import mock

import numpy as np
import torch

import jointdit_core.pipeline as pipeline
from jointdit_core.images import model_to_uint8, uint8_to_model
from jointdit_core.resize import to_input_size
from jointdit_core.tiles import merge_tiles
from jointdit_core.windows import WindowSettings, decode_wrapped, plan_windows, windows_per_call

from ..cli import command_prog
from .metrics import evaluate_disparity
from ..world.scenes import HFOV_DEG, Camera, _camera_basis, _shade, camera_rays, rng_for, sample_spec, scene, split_indices
from ..stack import DEPTH_ESTIMATION_PROMPT, _decode, _decode_disparity, _encode, _resize_uint8, depth_estimation_resized, load_stack, tile_estimates

NATIVE = 64  # the demo model's resolution (pixels)
pipeline_windowed_velocity = pipeline.windowed_velocity  # the real one, wrapped by WindowSpy while generate runs


def render_wide(index: int, height: int = NATIVE, width: int = 4 * NATIVE, supersample: int = 2, zoom: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` seen by a camera ``width`` px wide with the native focal length times ``zoom`` (zoom 1 and a
    width above 64: a wider field of view; 256 x 256 at zoom 4: the native view at 4x the resolution).

    Returns (rgb uint8 (H, W, 3), z-depth float32 (H, W) in metres, exact per pixel), shaded as
    :func:`rgbd_world.world.scenes.render` does.
    """
    spec = sample_spec(rng_for(index))
    focal = zoom * (NATIVE / 2) / np.tan(np.deg2rad(HFOV_DEG) / 2)
    cam = Camera(np.array([0.0, spec.camera_height, 0.0]), _camera_basis(spec.camera_pitch), float(focal), width, height)
    _, depth, _ = _shade(spec, cam, camera_rays(cam, 1).reshape(-1, 3))
    colour, _, _ = _shade(spec, cam, camera_rays(cam, supersample).reshape(-1, 3))
    colour = colour.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
    rgb = np.round(np.clip(colour, 0, 1) ** (1 / 1.6) * 255).astype(np.uint8)
    return rgb, depth.astype(np.float32).reshape(height, width)


class WindowSpy:
    """Records each window's clean-depth estimate ``x - sigma * v`` (windows evaluated one per call, in grid order)."""

    def __init__(self):
        self.estimates: list[torch.Tensor] = []
        self.grid = None

    def windowed_velocity(self, velocity_fn, grid, windows_per_batch=1):
        self.grid = grid

        def spy(x_rgb, x_depth, t_rgb, t_depth):
            v_rgb, v_depth = velocity_fn(x_rgb, x_depth, t_rgb, t_depth)
            self.estimates.append((x_depth - t_depth.view(-1, 1, 1, 1) * v_depth).detach().clone())
            return v_rgb, v_depth

        return pipeline_windowed_velocity(spy, grid, 1)

    def disagreement(self) -> tuple[float, float]:
        """(mean over steps, last step) of the relative disagreement of neighbouring windows in their overlaps."""
        n = len(self.grid.windows)
        per_step = []
        for first in range(0, len(self.estimates), n):
            windows = self.estimates[first : first + n]
            diffs, sizes = [], []
            for (col_a, a), (col_b, b) in zip(zip(self.grid.cols, windows), zip(self.grid.cols[1:], windows[1:])):
                shared = col_a + self.grid.size[1] - col_b  # overlap columns: the end of a, the start of b
                diffs.append((a[..., -shared:] - b[..., :shared]).abs().mean())
                sizes.append(0.5 * (a[..., -shared:].abs().mean() + b[..., :shared].abs().mean()))
            per_step.append(float(torch.stack(diffs).mean() / torch.stack(sizes).mean()))
        return float(np.mean(per_step)), per_step[-1]


def _estimate(stack, rgb: np.ndarray, steps: int, seed: int, windows: WindowSettings | None) -> np.ndarray:
    txt, y = stack.text.encode([DEPTH_ESTIMATION_PROMPT])
    z = _encode(stack, uint8_to_model(rgb[None]))
    _, z_depth = pipeline.generate(stack.model, txt, y, "depth_estimation", rgb_latent=z, seed=seed, steps=steps, guidance=stack.guidance,
                                   asw_strength=stack.asw_strength, progress=False, windows=windows)
    return _decode_disparity(stack, z_depth)[0]


def _windows(stack, overlap: int, wrap: bool = False) -> WindowSettings:
    """Windows of the demo model's native 64 px with ``overlap`` pixels, in the stack's latent pixels."""
    cell = stack.ae.config.downscale
    return WindowSettings((NATIVE // cell, NATIVE // cell), overlap // cell, wrap)


def wide_depth_table(stack, scenes: int, steps: int, overlap: int) -> list[str]:
    windows = _windows(stack, overlap)
    rows = {"windows": [], "resize": []}
    agree = []
    for k, index in enumerate(split_indices("test")[:scenes]):
        rgb, depth = render_wide(index)
        spy = WindowSpy()
        with mock.patch.object(pipeline, "windowed_velocity", spy.windowed_velocity):
            rows["windows"].append(evaluate_disparity(_estimate(stack, rgb, steps, k, windows), depth))
        agree.append(spy.disagreement())
        small = _resize_uint8(rgb[None], (NATIVE, NATIVE))[0]
        disparity = to_input_size(torch.from_numpy(_estimate(stack, small, steps, k, None))[None], depth.shape)[0]
        rows["resize"].append(evaluate_disparity(disparity.numpy(), depth))
    lines = ["| method (64 x 256, %d scenes, %d steps) | AbsRel | delta1 | overlap disagreement (mean over steps / last step) |" % (scenes, steps),
             "|---|---|---|---|"]
    for name, results in rows.items():
        abs_rel, delta1 = np.mean([r["abs_rel"] for r in results]), np.mean([r["delta1"] for r in results])
        extra = "%.3f / %.3f" % tuple(np.mean(agree, axis=0)) if name == "windows" else "-"
        label = f"windows of 64 px, overlap {overlap} px" if name == "windows" else "resize to 64 x 64 and back"
        lines.append(f"| {label} | {abs_rel:.3f} | {delta1:.3f} | {extra} |")
    return lines


def large_photo_table(stack, scenes: int, steps: int, overlaps: tuple[int, ...] = (16, 32), ensemble: int = 1, anchor_weight: float = 0.1) -> list[str]:
    """AbsRel / delta1 / forward passes / CPU seconds per image of resize against tiles (with and without the anchor)
    on held-out scenes at 256 x 256 (native view, 4x resolution) and 64 x 256 (4x wider). The tiles are estimated
    once per overlap (:func:`rgbd_world.stack.tile_estimates`) and merged both ways (what
    :func:`rgbd_world.stack.depth_estimation_tiles` does); the anchored CPU time includes the resize estimate."""
    resize = "resize to 64 x 64 and back"
    lines = [f"| photo ({scenes} scenes, {steps} steps, ensemble {ensemble}) | method | AbsRel | delta1 | forward passes / image | CPU s / image |",
             "|---|---|---|---|---|---|"]
    for label, (height, width, zoom) in (("256 x 256 (native view, 4x resolution)", (256, 256, 4)), ("64 x 256 (4x wider view)", (64, 256, 1))):
        scores: dict[str, list] = {}
        seconds: dict[str, float] = {}
        passes = {resize: steps * ensemble}
        for k, index in enumerate(split_indices("test")[:scenes]):
            rgb, depth = render_wide(index, height, width, zoom=zoom)
            started = time.process_time()
            resized = depth_estimation_resized(stack, rgb[None], steps, k, ensemble=ensemble)[0]
            resize_seconds = time.process_time() - started
            runs = {resize: (resized, resize_seconds)}
            for overlap in overlaps:
                started = time.process_time()
                grid, tiles = tile_estimates(stack, rgb[None], overlap, steps, k, ensemble=ensemble)
                tile_seconds = time.process_time() - started
                for anchored in (True, False):
                    name = f"{len(grid.windows)} tiles of 64 px, overlap {overlap} px, " + ("anchored to the resize estimate" if anchored else "no anchor")
                    passes[name] = (len(grid.windows) + anchored) * steps * ensemble
                    started = time.process_time()
                    merged = merge_tiles(tiles[0], grid, torch.from_numpy(resized) if anchored else None, anchor_weight)
                    runs[name] = (merged.disparity.numpy(), tile_seconds + time.process_time() - started + (resize_seconds if anchored else 0.0))
            for name, (disparity, spent) in runs.items():
                scores.setdefault(name, []).append(evaluate_disparity(disparity, depth))
                seconds[name] = seconds.get(name, 0.0) + spent
        for name, results in scores.items():
            abs_rel, delta1 = np.mean([r["abs_rel"] for r in results]), np.mean([r["delta1"] for r in results])
            lines.append(f"| {label} | {name} | {abs_rel:.3f} | {delta1:.3f} | {passes[name]} | {seconds[name] / len(results):.2f} |")
    return lines


def tiles_figure(folder, index: int = 3, overlap: int = 16, steps: int = 4, seed: int = 0) -> None:
    """The template card's pictures of the wide-photo workflow: held-out scene ``index`` rendered 128 x 256 (twice the
    native resolution, twice as wide a view) and its disparity in tiles of 64 px (anchored, the node's
    ``large_photos = tiles``), each letterboxed onto a dark 256 x 256 square: ``folder/wide/00_input.png`` and
    ``folder/wide/00_depth_color.png`` (turbo)."""
    from pathlib import Path

    from PIL import Image

    from jointdit_core.depth import colorize

    from ..stack import depth_estimation_tiles

    rgb, _ = render_wide(split_indices("test")[index], 128, 256, zoom=2)
    disparity = depth_estimation_tiles(load_stack(), rgb[None], overlap, steps, seed)[0]
    colour = (colorize(torch.from_numpy(disparity), "turbo").numpy() * 255).round().astype(np.uint8)
    out = Path(folder) / "wide"
    out.mkdir(parents=True, exist_ok=True)
    for name, picture in (("00_input.png", rgb), ("00_depth_color.png", colour)):
        square = np.full((256, 256, 3), 24, np.uint8)
        square[64:192] = picture
        Image.fromarray(square).save(out / name)
        print(out / name)


def _seam_ratio(x: np.ndarray, period: int = 1) -> float:
    """(H, W[, C]) -> mean |col 0 - col W-1| / mean |col j - col j+1| over the other columns j + 1 divisible by
    ``period`` (the autoencoder's pixels per latent column for decoded pixels: the seam lies between two latent columns, so it is compared with the steps
    between latent columns, not with the smaller steps inside one)."""
    seam = np.abs(x[:, 0] - x[:, -1]).mean()
    inner = np.abs(np.diff(x, axis=1))[:, period - 1 :: period].mean()
    return float(seam / inner)


def _decode_pair(stack, z_rgb: torch.Tensor, z_depth: torch.Tensor, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """rgb float (B, H, W, 3) in [0, 1] and disparity (B, H, W) decoded with ``columns`` latent columns of circular padding (0: plain)."""
    from jointdit_core.depth import model_output_to_disparity

    decode = functools.partial(_decode, stack)
    rgb = model_to_uint8(decode_wrapped(decode, z_rgb, columns)).numpy().astype(np.float64) / 255
    disparity = model_output_to_disparity(decode_wrapped(decode, z_depth, columns), stack.depth_transform).numpy()
    return rgb, disparity


def _panorama(stack, captions: list[str], width: int, steps: int, overlap: int, wrap: bool, seed: int = 0):
    """Joint generation of NATIVE x ``width`` px RGB-D in windows of 64 px; returns the (rgb, depth) latents."""
    txt, y = stack.text.encode(captions)
    negative = stack.text.encode([""]) if stack.cfg != 1.0 else None
    cell = stack.ae.config.downscale
    return pipeline.generate(stack.model, txt, y, latent_size=(NATIVE // cell, width // cell), seed=seed, steps=steps, guidance=stack.guidance,
                             asw_strength=stack.asw_strength, cfg=stack.cfg, negative=negative, progress=False, windows=_windows(stack, overlap, wrap))


def seam_table(stack, count: int, steps: int, overlap: int, pad: int = 8) -> list[str]:
    """Seam / column-step ratios of 64 x 256 joint generation, decoded plainly and with circular padding of ``pad``
    latent columns (:func:`jointdit_core.windows.decode_wrapped`: the autoencoder's zero padding then makes no seam)."""
    captions = [scene(i).caption for i in split_indices("test")[:count]]
    cell = stack.ae.config.downscale
    lines = [f"| joint generation 64 x 256 ({count} captions, {steps} steps, cfg {stack.cfg:g}) | latent seam / column step | rgb | disparity | "
             f"rgb, circular decode | disparity, circular decode |", "|---|---|---|---|---|---|"]
    for wrap in (False, True):
        z_rgb, z_depth = _panorama(stack, captions, 4 * NATIVE, steps, overlap, wrap)
        latent = np.mean([_seam_ratio(z.movedim(0, -1).numpy()) for z in torch.cat([z_rgb, z_depth])])
        ratios = []
        for columns in (0, pad):
            for x in _decode_pair(stack, z_rgb, z_depth, columns):
                ratios.append(np.mean([_seam_ratio(one, cell) for one in x]))
        cells = " | ".join(f"{r:.2f}" for r in [latent] + ratios)
        lines.append(f"| windows of 64 px, overlap {overlap} px, wrap {'on' if wrap else 'off'} | {cells} |")
    return lines


def cost_table(overlap: int, per_batch: int = 1) -> list[str]:
    lines = [f"| width (px, height 64; windows 64 px, overlap {overlap} px) | windows (open / wrap) | model calls per step (windows per call {per_batch}) |",
             "|---|---|---|"]
    for width in (64, 128, 256, 512, 1024):
        counts = [len(plan_windows(NATIVE // 8, width // 8, (NATIVE // 8, NATIVE // 8), overlap // 8, wrap).windows) for wrap in (False, True)]
        calls = [-(-c // windows_per_call(c, per_batch)) for c in counts]
        lines.append(f"| {width} | {counts[0]} / {counts[1]} | {calls[0]} / {calls[1]} |")
    return lines


VIEWS = (("ahead", 0), ("right", -90), ("behind (the wrap seam)", 180), ("left", 90))  # (title, yaw in degrees)


def _labelled(panels: list[tuple[str, np.ndarray]], font) -> np.ndarray:
    """Pictures side by side, each with its title above it on a white strip."""
    from PIL import Image, ImageDraw

    strip = font.size + 12
    row = Image.new("RGB", (sum(p.shape[1] for _, p in panels) + 8 * (len(panels) - 1), strip + max(p.shape[0] for _, p in panels)), "white")
    left = 0
    for title, picture in panels:
        row.paste(Image.fromarray(picture), (left, strip))
        ImageDraw.Draw(row).text((left + picture.shape[1] // 2, strip // 2), title, fill="black", font=font, anchor="mm")
        left += picture.shape[1] + 8
    return np.asarray(row)


def panorama_figure(path, caption_index: int = 2, steps: int = 20, seed: int = 0, thumbnail=None) -> None:
    """A 360-degree RGB-D panorama (64 x 128 px, windows of 64 px, overlap 32 px, ``wrap``, decoded with circular
    padding) of a test caption and four views from inside its equirectangular lifting, labelled, saved as a PNG;
    with ``thumbnail`` also a 400 x 400 template card (JPEG) of the panorama and two views."""
    from PIL import Image, ImageDraw, ImageFont

    from jointdit_core.lift3d import lift_rgbd

    from ..world.render3d import orbit, render_mesh

    stack = load_stack()
    caption = scene(split_indices("test")[caption_index]).caption
    z_rgb, z_depth = _panorama(stack, [caption], 2 * NATIVE, steps, 32, True, seed)
    rgb, disparity = (x[0] for x in _decode_pair(stack, z_rgb, z_depth, 8))
    rgb = np.round(rgb * 255).astype(np.uint8)
    lifted = lift_rgbd(rgb, disparity, near=1.0, far=10.0, edge_threshold=0.5, projection="equirectangular")
    views = {title: render_mesh(orbit(lifted.points, yaw, 0.0, np.zeros(3)), lifted.faces, lifted.colors, size=240, fov_degrees=90.0)
             for title, yaw in VIEWS}
    grey = np.repeat((disparity * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    wide = lambda x, scale=4: np.asarray(Image.fromarray(x).resize((x.shape[1] * scale, x.shape[0] * scale), Image.NEAREST))  # noqa: E731
    font = ImageFont.load_default(size=22)
    top = _labelled([("360-degree RGB-D panorama (image)", wide(rgb)), ("disparity", wide(grey))], font)
    bottom = _labelled([(f"inside: {title}", view) for title, view in views.items()], font)
    pad = np.full((16, top.shape[1], 3), 255, np.uint8)
    spare = top.shape[1] - bottom.shape[1]
    bottom = np.pad(bottom, ((0, 0), (spare // 2, spare - spare // 2), (0, 0)), constant_values=255)
    Image.fromarray(np.concatenate([top, pad, bottom], axis=0)).save(path, optimize=True)
    print(f"{path}: {caption!r}")
    if thumbnail:
        font = ImageFont.load_default(size=15)  # as make_workflows.py's cards: a label on a black bar at the bottom of each picture
        canvas = Image.new("RGB", (400, 400), (24, 24, 24))
        tiles = [("360-degree image", wide(rgb, 3), (8, 8))]
        tiles += [(f"3D, inside: {name.split(' ')[0]}", np.asarray(Image.fromarray(views[name]).resize((180, 180), Image.BICUBIC)), (12 + 196 * k, 212))
                  for k, name in enumerate(("ahead", "behind (the wrap seam)"))]
        draw = ImageDraw.Draw(canvas)
        for label, picture, (left, top) in tiles:
            canvas.paste(Image.fromarray(picture), (left, top))
            bottom = top + picture.shape[0]
            draw.rectangle((left, bottom - 22, left + picture.shape[1] - 1, bottom - 1), fill=(0, 0, 0))
            draw.text((left + 6, bottom - 20), label, fill=(255, 255, 255), font=font)
        canvas.save(thumbnail, quality=88)
        print(thumbnail)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog=command_prog(), description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes for the depth table and captions for the seam table")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=32, help="window overlap in pixels (multiple of 16)")
    parser.add_argument("--seam-only", action="store_true", help="skip the depth table")
    parser.add_argument("--figure", help="write the 360-degree panorama picture to this PNG instead of the tables")
    parser.add_argument("--caption", type=int, default=2, help="with --figure: the test caption (index) to generate")
    parser.add_argument("--thumbnail", help="with --figure: also write the panorama workflow's template card (400 x 400 JPEG) here")
    parser.add_argument("--tiles", action="store_true", help="only the large-photo table: resize against tiles (steps: the model's own, see --steps)")
    parser.add_argument("--ensemble", type=int, default=1, help="--tiles: ensemble members per estimate")
    parser.add_argument("--tiles-figure", help="write the wide-photo workflow's thumbnail pictures into this folder (wide/) instead of the tables")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.figure:
        with torch.no_grad():
            panorama_figure(args.figure, args.caption, args.steps, thumbnail=args.thumbnail)
        return
    if args.tiles_figure:
        with torch.no_grad():
            tiles_figure(args.tiles_figure)
        return
    stack = load_stack()
    if args.tiles:
        with torch.no_grad():
            print("\n".join(large_photo_table(stack, args.scenes, args.steps, ensemble=args.ensemble)) + "\n", flush=True)
        return
    with torch.no_grad():
        print("\n".join(cost_table(args.overlap)) + "\n", flush=True)
        if not args.seam_only:
            print("\n".join(wide_depth_table(stack, args.scenes, args.steps, args.overlap)) + "\n", flush=True)
        print("\n".join(seam_table(stack, args.scenes, args.steps, args.overlap)) + "\n", flush=True)


if __name__ == "__main__":
    main()
