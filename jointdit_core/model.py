"""JointDiT: a Flux base with the JointDiT addons, run as rgb/depth row pairs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .addons import JointAddons
from .config import FluxConfig, LoraRanks
from .flux import Flux
from .joint import AttentionFn, BranchLayout, JointInputs, sdpa_attention


class JointDiT(nn.Module):
    """The joint RGB-depth transformer: ``base`` (BFL-layout Flux) + ``addons`` (official addon layout).

    Args:
        config: base Flux sizes (default FLUX.1-dev).
        ranks: depth-branch LoRA ranks (default official).
    """

    def __init__(self, config: FluxConfig = FluxConfig(), ranks: LoraRanks = LoraRanks()):
        super().__init__()
        self.config = config
        self.base = Flux(config)
        self.addons = JointAddons(config, ranks)

    def freeze_base(self) -> None:
        """Freeze the Flux weights; only the addons keep ``requires_grad`` (official training)."""
        self.base.requires_grad_(False)
        self.addons.requires_grad_(True)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.base.set_gradient_checkpointing(enabled)

    def forward(
        self, img: Tensor, img_ids: Tensor, txt: Tensor, txt_ids: Tensor, timesteps: Tensor, y: Tensor, guidance: Tensor | None = None,
        asw_strength: float = 1.0, layout: BranchLayout | None = None, attention: AttentionFn = sdpa_attention,
    ) -> Tensor:
        """Joint velocity prediction for a batch of rgb/depth row pairs.

        Args:
            img: (2P, L, 64) packed latents; rows as in ``layout`` (default official: P rgb rows, then
                P depth rows).
            img_ids: (2P, L, 3); txt: (2P, T, context); txt_ids: (2P, T, 3); y: (2P, vec).
            timesteps: (2P,) per-row t in [0, 1]; guidance: (2P,) or None.
            asw_strength: adaptive scheduling weights, 1.0 official, 0.0 off.
            attention: the attention backend of every block (:data:`~jointdit_core.joint.AttentionFn`).
        Returns:
            (2P, L, 64) velocity, row order of the input.
        Raises:
            ValueError: odd batch without a layout, or mismatched timesteps.
        """
        if layout is None:
            if img.shape[0] % 2:
                raise ValueError(f"a joint batch holds rgb/depth pairs: got an odd batch of {img.shape[0]} rows")
            layout = BranchLayout.official(img.shape[0] // 2)
        joint = JointInputs(layout, timesteps, asw_strength)
        return self.base(img, img_ids, txt, txt_ids, timesteps, y, guidance, joint, self.addons, attention)

    def velocity(
        self,
        x_rgb: Tensor,
        x_depth: Tensor,
        t_rgb: Tensor,
        t_depth: Tensor,
        img_ids: Tensor,
        txt: Tensor,
        y: Tensor,
        guidance: Tensor | None = None,
        txt_ids: Tensor | None = None,
        asw_strength: float = 1.0,
    ) -> tuple[Tensor, Tensor]:
        """Velocities of P pairs given per-branch tokens and timesteps.

        Args:
            x_rgb, x_depth: (P, L, 64) packed latents of each branch.
            t_rgb, t_depth: (P,) timesteps in [0, 1].
            img_ids: (P, L, 3); txt: (P, T, context); y: (P, vec); guidance: (P,) or None;
            txt_ids: (P, T, 3), zeros when None (official).
        Returns:
            (v_rgb, v_depth), each (P, L, 64).
        """
        if txt_ids is None:
            txt_ids = torch.zeros(*txt.shape[:2], 3, dtype=img_ids.dtype, device=img_ids.device)
        two = lambda a: torch.cat([a, a])  # noqa: E731 - both rows of a pair share the conditioning
        out = self(
            torch.cat([x_rgb, x_depth]),
            two(img_ids),
            two(txt),
            two(txt_ids),
            torch.cat([t_rgb, t_depth]),
            two(y),
            None if guidance is None else two(guidance),
            asw_strength,
        )
        return out.chunk(2)
