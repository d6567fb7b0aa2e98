"""The one pair of 8-bit <-> [-1, 1] pixel conversions (jointdit_core.images)."""

import numpy as np
import torch

from jointdit_core.images import model_to_uint8, uint8_to_model, unit_to_uint8


def test_uint8_to_model_and_back_is_exact_and_moves_channels():
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 5, 4, 3), dtype=np.uint8)
    x = uint8_to_model(rgb)
    assert x.shape == (2, 3, 5, 4) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[1, 2, 3, 1], torch.tensor(rgb[1, 3, 1, 2] / 127.5 - 1, dtype=torch.float32))
    back = model_to_uint8(x)
    assert back.dtype == torch.uint8 and np.array_equal(back.numpy(), rgb)
    single = uint8_to_model(rgb[0])  # one (H, W, 3) image -> (3, H, W)
    assert torch.equal(single, x[0]) and np.array_equal(model_to_uint8(single).numpy(), rgb[0])


def test_out_of_range_values_are_clamped():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).view(1, 5, 1)  # (C=1, H=5, W=1)
    assert model_to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255]  # 127.5 rounds half to even: 128
    assert unit_to_uint8(np.array([-0.5, 0.0, 0.5, 1.0, 2.0])).tolist() == [0, 0, 128, 255, 255]
    assert unit_to_uint8(torch.tensor([[0.2]])).dtype == torch.uint8
