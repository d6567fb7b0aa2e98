"""Processing resolution, ensembling with uncertainty, and precise depth files (jointdit_core.resize / ensemble / depth_files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jointdit_core.depth_files import FORMATS, PNG16_STEP, read_depth, write_depth
from jointdit_core.ensemble import align_members, ensemble_disparity, reduce_members
from jointdit_core.resize import processing_size, resize_image, to_input_size, to_processing_resolution


# ---- processing resolution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hw, res, expected",
    [((467, 700), 512, (336, 512)), ((467, 700), 0, (464, 704)), ((700, 467), 512, (512, 336)), ((512, 512), 512, (512, 512)),
     ((64, 64), 0, (64, 64)), ((5, 3), 0, (16, 16)), ((1000, 100), 500, (496, 48))],
)
def test_processing_size_longer_side_multiples_of_16(hw, res, expected):
    assert processing_size(*hw, res) == expected


def test_processing_size_rejects_bad_values():
    with pytest.raises(ValueError, match="processing_resolution"):
        processing_size(10, 10, -1)
    with pytest.raises(ValueError, match="at least one pixel"):
        processing_size(0, 10, 512)


def test_resize_round_trip_shapes_odd_photo():
    image = torch.rand(2, 467, 700, 3)
    small = to_processing_resolution(image, 512)
    assert small.shape == (2, 336, 512, 3) and small.min() >= 0 and small.max() <= 1
    depth = torch.rand(2, 336, 512)
    back = to_input_size(depth, (467, 700))
    assert back.shape == (2, 467, 700)
    assert back.min() >= depth.min() and back.max() <= depth.max()


def test_resize_is_identity_at_the_official_size():
    image = torch.rand(1, 512, 512, 3)
    assert to_processing_resolution(image, 512) is image
    depth = torch.rand(1, 512, 512)
    assert to_input_size(depth, (512, 512)) is depth


def test_resize_antialiases_when_shrinking():
    # a one-pixel checkerboard shrunk 4x: antialiasing averages it to ~0.5, plain bilinear would alias
    board = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float()[None]
    small = resize_image(board, (16, 16))
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.05)
    # a linear ramp grown stays a linear ramp in the interior (bilinear)
    ramp = torch.linspace(0, 1, 8)[None, None, :].expand(1, 4, 8)
    big = resize_image(ramp, (4, 32))
    diffs = big[0, 0, 4:-4].diff()
    assert torch.allclose(diffs, diffs.mean().expand_as(diffs), atol=1e-5)


# ---- ensembling ------------------------------------------------------------------------------------


def _scene(seed=0, h=24, w=32):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return 0.3 * yy + 0.5 * torch.sin(3 * xx) ** 2 + 0.2 * torch.rand(h, w, generator=g)


def test_alignment_recovers_known_scales_and_shifts():
    base = _scene()
    scales = torch.tensor([2.0, 0.5, 3.0, 1.25, 0.8], dtype=torch.float64)
    shifts = torch.tensor([0.1, -0.3, 2.0, 0.0, 5.0], dtype=torch.float64)
    members = torch.stack([(s * base.double() + t).float() for s, t in zip(scales, shifts)])
    aligned, scale, shift = align_members(members)
    # every member maps onto one common affine copy of base: scale_i * a_i = c and scale_i * b_i + shift_i = d
    c = scale * scales
    d = scale * shifts + shift
    assert torch.allclose(c, c[0].expand_as(c), rtol=1e-5)
    assert torch.allclose(d, d[0].expand_as(d), atol=1e-5)
    assert (aligned - aligned[0]).abs().max() < 1e-5
    expected = c[0] * base.double() + d[0]
    assert torch.allclose(aligned[0].double(), expected, atol=1e-5)


def test_alignment_with_noise_is_close_to_the_truth():
    base = _scene(1)
    g = torch.Generator().manual_seed(3)
    members = torch.stack([s * base + t + 0.01 * torch.randn(base.shape, generator=g) for s, t in ((1.0, 0.0), (3.0, 1.0), (0.2, -0.1), (1.5, 0.4))])
    out = ensemble_disparity(members)
    truth = (base - base.min()) / (base.max() - base.min())
    assert (out.disparity[0] - truth).abs().mean() < 0.03
    # without alignment (plain median of the raw members) the result would be far off
    raw = members.median(dim=0).values
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    assert (raw - truth).abs().mean() > (out.disparity[0] - truth).abs().mean()


def test_ensemble_of_one_is_the_single_run():
    member = torch.rand(2, 9, 11) * 0.8 + 0.1
    out = ensemble_disparity(member[None])
    assert torch.equal(out.disparity, member)
    assert torch.equal(out.uncertainty, torch.zeros_like(member))


def test_ensemble_output_range_and_uncertainty_where_members_disagree():
    base = _scene(2)
    members = torch.stack([base.clone() for _ in range(5)])
    members[1:3, :5, :5] += torch.tensor([0.5, -0.5])[:, None, None]  # two members disagree in one corner
    members[3, :5, :5] += 0.4
    for reduction in ("median", "mean"):
        out = ensemble_disparity(members, reduction)
        assert out.disparity.shape == (1, 24, 32)
        assert out.disparity.min() == 0 and out.disparity.max() == 1
        corner, rest = out.uncertainty[0, :5, :5].mean(), out.uncertainty[0, 8:, 8:].mean()
        assert corner > 10 * rest


def test_reduce_members_median_and_mean():
    a = torch.tensor([[[0.0]], [[1.0]], [[5.0]]])
    value, spread = reduce_members(a, "median")
    assert value.item() == 1.0 and spread.item() == 1.0  # |0-1|, |1-1|, |5-1| -> median 1
    value, spread = reduce_members(a, "mean")
    assert value.item() == 2.0 and spread.item() == pytest.approx(float(torch.tensor([0.0, 1.0, 5.0]).std()))
    value, spread = reduce_members(a[:2], "median")  # even N: midpoint, deviation half the gap (not 0)
    assert value.item() == 0.5 and spread.item() == 0.5
    with pytest.raises(ValueError, match="reduction"):
        reduce_members(a, "max")


def test_ensemble_rejects_nan():
    members = torch.rand(3, 1, 4, 4)
    members[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ensemble_disparity(members)


# ---- depth files -----------------------------------------------------------------------------------


def _ramp(h=37, w=53):
    return np.linspace(0, 1, h * w, dtype=np.float64).reshape(h, w).astype(np.float32)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_depth_file_round_trip_within_the_format_step(tmp_path, fmt):
    ramp = _ramp()
    path = write_depth(tmp_path / "depth", ramp, fmt)
    assert path.suffix == FORMATS[fmt] and path.is_file()
    back = read_depth(path)
    assert back.values.shape == ramp.shape and back.values.dtype == np.float32 and back.valid.all()
    if fmt == "png16":
        err = np.abs(back.values.astype(np.float64) - ramp)
        assert err.max() <= PNG16_STEP / 2 + 1e-7
        # 16 bits: every one of the 1961 distinct ramp values survives (8 bits would merge them into 256)
        assert len(np.unique(back.values)) == ramp.size
    else:
        assert np.array_equal(back.values, ramp)  # 32-bit float formats: bit exact


@pytest.mark.parametrize("fmt", ["exr", "tiff", "npy"])
def test_float_files_keep_values_outside_unit_range_and_mark_inf_invalid(tmp_path, fmt):
    metric = (_ramp() * 80 + 0.5).astype(np.float32)
    back = read_depth(write_depth(tmp_path / "metric", metric, fmt))
    assert np.array_equal(back.values, metric)
    if fmt != "png16":
        with_sky = metric.copy()
        with_sky[:3] = np.inf
        if fmt == "npy":
            np.save(tmp_path / "sky.npy", with_sky)
            path = tmp_path / "sky.npy"
        else:
            path = tmp_path / f"sky{FORMATS[fmt]}"
            write_depth_raw = {"exr": _write_exr_raw, "tiff": _write_tiff_raw}[fmt]
            write_depth_raw(path, with_sky)
        sky = read_depth(path)
        assert not sky.valid[:3].any() and sky.valid[3:].all() and (sky.values[:3] == 0).all()


def _write_exr_raw(path, arr):
    import OpenEXR

    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, {"Z": arr}) as f:
        f.write(str(path))


def _write_tiff_raw(path, arr):
    import tifffile

    tifffile.imwrite(path, arr)


def test_eight_bit_png_and_jpeg_read(tmp_path):
    from PIL import Image

    grey = (np.arange(256, dtype=np.uint8)[None, :].repeat(8, 0))
    Image.fromarray(grey).save(tmp_path / "d.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "d.jpg", quality=100)
    png = read_depth(tmp_path / "d.png")
    assert np.allclose(png.values, grey / 255.0, atol=1e-7) and "8-bit" in png.source
    jpg = read_depth(tmp_path / "d.jpg")
    assert jpg.values.shape == (8, 256) and np.abs(jpg.values - grey / 255.0).max() < 0.02


def test_bad_depth_files_get_clear_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_depth(tmp_path / "empty.png")
    (tmp_path / "text.exr").write_text("not an exr")
    with pytest.raises(ValueError, match="not a readable OpenEXR"):
        read_depth(tmp_path / "text.exr")
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a readable PNG"):
        read_depth(tmp_path / "text.png")
    (tmp_path / "text.tif").write_text("not a tiff")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        read_depth(tmp_path / "text.tif")
    (tmp_path / "d.bmp").write_bytes(b"BM....")
    with pytest.raises(ValueError, match="unknown depth file type"):
        read_depth(tmp_path / "d.bmp")
    nan = _ramp()
    nan[4, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match="NaN at 1 of"):
        read_depth(tmp_path / "nan.npy")
    np.save(tmp_path / "zero.npy", np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="zero-sized"):
        read_depth(tmp_path / "zero.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled objects are never loaded"):
        read_depth(tmp_path / "obj.npy")
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_depth(tmp_path / "x", nan, "exr")
    with pytest.raises(ValueError, match="png16 stores values in"):
        write_depth(tmp_path / "x", _ramp() * 2, "png16")
    with pytest.raises(ValueError, match="unknown depth file format"):
        write_depth(tmp_path / "x", _ramp(), "jpeg")
    with pytest.raises(FileNotFoundError):
        read_depth(tmp_path / "missing.png")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("cut", [40, 120, -200])
def test_damaged_or_cut_short_depth_files_say_so(tmp_path, cut):
    """A PNG/EXR/TIFF cut at any point gives ValueError naming the file (not OSError / the bindings' own text alone)."""
    for fmt in ("png16", "exr", "tiff"):
        noise = np.random.default_rng(0).random((64, 64), dtype=np.float32)  # incompressible: every cut loses pixels
        whole = write_depth(tmp_path / f"whole_{fmt}", noise, fmt).read_bytes()
        damaged = tmp_path / f"cut{FORMATS[fmt]}"
        damaged.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=r"cut\.\w+ is not a readable .* may be damaged, cut short"):
            read_depth(damaged)


def test_a_png_with_a_good_signature_and_garbage_after_it_is_damaged(tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 40)
    with pytest.raises(ValueError, match="garbage.png is not a readable PNG/JPEG image"):
        read_depth(tmp_path / "garbage.png")


def test_a_header_declaring_a_huge_map_is_refused_before_any_allocation(tmp_path):
    import struct

    from jointdit_core.depth_files import MAX_DEPTH_PIXELS

    huge = tmp_path / "huge.npy"  # a 100000 x 100000 float32 header (37 GiB) over 16 bytes of data
    with open(huge, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
        f.write(bytes(16))
    with pytest.raises(ValueError, match=r"huge.npy declares a 100000 x 100000 array .* up to 134 million pixels"):
        read_depth(huge)
    side = int(MAX_DEPTH_PIXELS**0.5) * 2  # a PNG header claiming 4x the limit, with no pixel data
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
    with pytest.raises(ValueError, match="huge.png declares .* pixels"):
        read_depth(tmp_path / "huge.png")
    np.save(tmp_path / "ok.npy", _ramp())  # a normal file still reads
    assert read_depth(tmp_path / "ok.npy").values.shape == _ramp().shape


# ---- rgbd_world.evaluation.ensemble scoring ------------------------------------------------------------


def test_ensemble_scoring_on_synthetic_scenes_uncertainty_tracks_error():
    from rgbd_world.evaluation.ensemble import score_ensemble

    g = np.random.default_rng(0)
    depths, members = [], []
    for _ in range(3):
        depth = g.uniform(2.0, 20.0, size=(16, 16))
        truth = 1.0 / depth
        noisy = np.zeros((6, 16, 16))
        for k in range(6):
            noise = g.normal(0, 0.002, size=(16, 16))
            noise[:, :8] *= 40  # the left half is where members disagree (and the ensemble errs)
            noisy[k] = (k + 1) * (truth + noise) + k
        depths.append(depth)
        members.append(noisy)
    members = np.stack(members, axis=1).astype(np.float32)  # (N, S, H, W)
    one, six = score_ensemble(members[:1], depths, "median"), score_ensemble(members, depths, "median")
    assert six["abs_rel"] < one["abs_rel"]
    assert six["uncertainty_error_corr_mean"] > 0.3 and six["uncertainty_error_corr_pooled"] > 0.3
    assert "uncertainty_error_corr_mean" not in one


def test_zero_is_missing_marks_zeros_invalid_in_a_sparse_16_bit_png(tmp_path):
    from PIL import Image

    sparse = np.zeros((6, 8), np.uint16)
    sparse[::2, ::3] = 30000
    Image.fromarray(sparse).save(tmp_path / "sparse.png")
    plain, sparse_read = read_depth(tmp_path / "sparse.png"), read_depth(tmp_path / "sparse.png", zero_is_missing=True)
    assert plain.valid.all()
    assert np.array_equal(sparse_read.valid, sparse > 0)
    Image.fromarray(np.zeros((6, 8), np.uint16)).save(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="other than 0"):
        read_depth(tmp_path / "empty.png", zero_is_missing=True)


@pytest.mark.parametrize("share", [0.01, 0.05, 0.3])
def test_fill_missing_nearest_matches_brute_force(share):
    from jointdit_core.depth import fill_missing_nearest

    g = torch.Generator().manual_seed(int(share * 100))
    values, valid = torch.rand(3, 37, 61, generator=g), torch.rand(3, 37, 61, generator=g) < share
    valid[:, 5, 7] = True
    filled = fill_missing_nearest(torch.where(valid, values, torch.nan), valid)  # whatever the holes hold
    assert torch.equal(filled[valid], values[valid])
    grid = torch.stack(torch.meshgrid(torch.arange(37.0), torch.arange(61.0), indexing="ij"), -1).reshape(-1, 2)
    for b in range(3):
        distances = torch.cdist(grid, valid[b].nonzero().float())
        nearest = distances.min(1).values
        chosen = torch.where(values[b][valid[b]][None] == filled[b].reshape(-1, 1), distances, torch.inf).min(1).values
        assert (chosen <= nearest + 1e-5).float().mean() >= 0.999  # jump flooding: at most a rare Voronoi-edge pixel off
        assert (chosen <= nearest + 1.5).all()


def test_fill_missing_nearest_errors():
    from jointdit_core.depth import fill_missing_nearest

    with pytest.raises(ValueError, match="no valid pixel"):
        fill_missing_nearest(torch.rand(2, 4, 4), torch.stack([torch.ones(4, 4), torch.zeros(4, 4)]).bool())
    with pytest.raises(ValueError, match="must both be"):
        fill_missing_nearest(torch.rand(4, 4), torch.ones(4, 5).bool())
