"""JointDiT Window Sampler: wide and 360-degree RGB-D (panoramas) sampled in overlapping windows.

The sampling is JointSampler's (:func:`.sampler.run_joint_sampler`, every model call through ComfyUI's guider)
with :mod:`jointdit_core.windows` cutting each step's latent into windows of the model's size and blending
the window velocities back (MultiDiffusion-style); ``wrap`` joins the right edge to the left one.
"""

from __future__ import annotations

from comfy_api.latest import io

from jointdit_core.sampler import TASKS
from jointdit_core.windows import WindowSettings

from .sampler import _DEPTH_TIP, _IMAGE_TIP, SEARCH_ALIASES, _common_inputs, _schema, run_joint_sampler


def window_settings(window_width: int, window_height: int, overlap: int, wrap: bool, windows_per_batch: int) -> WindowSettings:
    """The node's pixel sizes as latent :class:`WindowSettings`.

    Raises:
        ValueError: a window side or the overlap that is not a multiple of 16 pixels, an overlap not smaller than
            the window.
    """
    for name, value in (("window_width", window_width), ("window_height", window_height), ("overlap", overlap)):
        if value % 16:
            raise ValueError(f"{name} is {value} pixels; it must be a multiple of 16 (FLUX works on 16-pixel patches)")
    if overlap >= min(window_width, window_height):
        raise ValueError(f"overlap is {overlap} pixels but the window is {window_width}x{window_height}: make the overlap smaller than the window")
    return WindowSettings((window_height // 8, window_width // 8), overlap // 8, bool(wrap), int(windows_per_batch))


class JointSamplerWindows(io.ComfyNode):
    """JointSampler for latents wider than the model's window: overlapping windows, optional 360-degree wrap."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        size = dict(min=16, max=16384, step=16)
        return _schema(
            "JointSamplerWindows", "JointDiT Window Sampler (Panorama)",
            "Window sampling for images wider or taller than the model's window (panoramas, wide photos): every step "
            "denoises overlapping windows of the model's size and blends them. wrap joins the right edge to the left "
            "(360-degree panoramas, 2:1 latents for equirectangular output).",
            [
                *_common_inputs(list(TASKS)),
                io.Int.Input("window_width", default=1024, **size, tooltip="Window width in pixels: the size the model was trained at (FLUX.1-dev: 1024; the demo model: 64)."),
                io.Int.Input("window_height", default=1024, **size, tooltip="Window height in pixels; a window larger than the image is cut to it."),
                io.Int.Input("overlap", default=256, min=0, max=16384, step=16, tooltip="Pixels shared by neighbouring windows (blended smoothly); must be smaller than a window side."),
                io.Boolean.Input("wrap", default=False, tooltip="Join the right edge to the left: windows cross the seam, so a 360-degree panorama has none."),
                io.Int.Input("windows_per_batch", default=1, min=1, max=64, tooltip="Windows evaluated in one model call: faster with memory to spare, same result."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance; 1 = off (official). >1 needs 'negative'."),
                io.Conditioning.Input("negative", optional=True, tooltip="Only used when cfg > 1."),
                io.Latent.Input("image", optional=True, tooltip=_IMAGE_TIP + " Its size is the panorama's (e.g. 2048x1024 for 360 degrees)."),
                io.Latent.Input("depth", optional=True, tooltip=_DEPTH_TIP),
            ],
            SEARCH_ALIASES + ["panorama", "360", "equirectangular", "multidiffusion", "tiled", "wide image"],
        )

    @classmethod
    def execute(
        cls, model, positive, task, seed, steps, window_width, window_height, overlap, wrap, windows_per_batch, cfg,
        negative=None, image=None, depth=None,
    ) -> io.NodeOutput:
        windows = window_settings(window_width, window_height, overlap, wrap, windows_per_batch)
        return run_joint_sampler(model, positive, task, seed, steps, image, depth, negative=negative, cfg=cfg, windows=windows)
