"""VAE decoding of 360-degree panoramas with circular padding (:func:`jointdit_core.windows.decode_wrapped`):
the helper DecodeDepth's ``wrap`` uses and the image node *VAE Decode (360-degree wrap)*."""

from __future__ import annotations

from comfy_api.latest import io

from jointdit_core.windows import WRAP_DECODE_COLUMNS, decode_wrapped

from .node_options import schema_options


def vae_decode(vae, z, wrap: bool = False):
    """ComfyUI ``vae.decode(z)`` -> (B, H, W, C) pixels; with ``wrap`` the latent (B, C, h, w) is padded circularly
    by up to :data:`WRAP_DECODE_COLUMNS` columns first, so the left and right edges of a 360-degree panorama join."""
    return decode_wrapped(vae.decode, z, min(WRAP_DECODE_COLUMNS, z.shape[-1]) if wrap else 0, pixel_dim=-2)


class VAEDecodePanorama(io.ComfyNode):
    """VAE Decode for 360-degree panoramas: the latent padded circularly, decoded, cropped."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointDiTVAEDecodeWrap",
            display_name="VAE Decode (360-degree wrap)",
            category="JointDiT",
            description=(
                "VAE Decode for 360-degree panoramas (the Window Sampler with wrap): the latent's left and right edges are "
                f"joined ({WRAP_DECODE_COLUMNS} latent columns from each side padded circularly, cropped after decoding), so "
                "the decoder makes no seam where the panorama wraps. Otherwise the same as VAE Decode."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="A 360-degree LATENT (e.g. 2048x1024) from the JointDiT Window Sampler with wrap on."),
                io.Vae.Input("vae"),
            ],
            outputs=[io.Image.Output()],
            **schema_options(["panorama decode", "360 decode", "circular padding", "seamless decode", "equirectangular"]),
        )

    @classmethod
    def execute(cls, samples, vae) -> io.NodeOutput:
        return io.NodeOutput(vae_decode(vae, samples["samples"], wrap=True))
