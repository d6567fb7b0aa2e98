"""Benchmark readers on tiny files written in each dataset's distributed format and folder layout."""

import dataclasses
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from jointdit_trainer.benchmark import readers
from jointdit_trainer.benchmark.datasets import RGBD_WORLD_FAR, eval_crop_mask, get_spec
from jointdit_trainer.benchmark.readers import BenchmarkData, read_file_list


def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write(root, files: dict, as_tar: bool):
    """Write ``files`` (name -> bytes) as a folder, or as a tar with Marigold's ``./`` member prefix."""
    if not as_tar:
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root
    path = root.with_suffix(".tar")
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def any_count(name, **changes):
    return dataclasses.replace(get_spec(name), count=None, **changes)


def rgb_of(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("as_tar", [False, True])
def test_nyuv2_millimetres_range_and_eigen_crop(tmp_path, as_tar):
    depth_mm = np.full((480, 640), 2500, np.uint16)
    depth_mm[100, 100] = 0  # missing
    depth_mm[200, 200] = 12000  # 12 m: beyond NYUv2's 10 m
    depth_mm[10, 300] = 3000  # outside the Eigen crop (rows 45:471)
    rgb = rgb_of(480, 640)
    files = {"test/kitchen_0004/rgb_0001.png": png(rgb), "test/kitchen_0004/depth_0001.png": png(depth_mm),
             "test/kitchen_0004/filled_0001.png": png(depth_mm), "train/bedroom_0001/rgb_0002.png": png(rgb)}
    data = BenchmarkData(any_count("nyuv2"), write(tmp_path / "nyu_labeled_extracted", files, as_tar))
    assert len(data) == 1  # the train image is not part of the test set
    s = data[0]
    assert s.name == "test/kitchen_0004/rgb_0001.png" and np.array_equal(s.rgb, rgb)
    assert s.depth[300, 300] == pytest.approx(2.5) and s.depth[100, 100] == 0
    assert not s.valid[100, 100] and not s.valid[200, 200] and not s.valid[10, 300]
    assert s.valid.sum() == (471 - 45) * (601 - 41) - 2


def test_nyuv2_wrong_size_and_crop_of_another_shape(tmp_path):
    files = {"test/a/rgb_0001.png": png(rgb_of(480, 640)), "test/a/depth_0001.png": png(np.full((480, 640), 1000, np.uint16))}
    with pytest.raises(ValueError, match="holds 1 NYUv2 test samples.*has 654.*--any-size"):
        BenchmarkData(get_spec("nyuv2"), write(tmp_path / "nyu", files, False))
    with pytest.raises(ValueError, match="480 x 640"):
        eval_crop_mask((240, 320), "eigen_nyu")


def kitti_files(depth_m):
    depth = np.round(depth_m * 256).astype(np.uint16)
    return {
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png": png(rgb_of(375, 1242)),
        "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png": png(depth),
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000070.png": png(rgb_of(375, 1242, 1)),  # no ground truth
    }


@pytest.mark.parametrize("as_tar", [False, True])
def test_kitti_benchmark_crop_scale_and_eigen_garg_crops(tmp_path, as_tar):
    depth = np.zeros((375, 1242))  # 0 = no LiDAR point
    depth[:370, 20:1220] = 12.5
    depth[300, 600] = 90.0  # beyond 80 m
    files = kitti_files(depth)
    path = write(tmp_path / "kitti_eigen_split_test", files, as_tar)
    data = BenchmarkData(any_count("kitti"), path)
    assert len(data) == 1  # the frame without ground truth is not in the benchmark
    s = data[0]
    top, left = 375 - 352, (1242 - 1216) // 2
    assert s.rgb.shape == (352, 1216, 3) and np.array_equal(s.rgb, rgb_of(375, 1242)[top:, left : left + 1216])
    assert s.depth.shape == (352, 1216) and s.depth[250 - top, 600 - left] == pytest.approx(12.5)
    assert not s.valid[300 - top, 600 - left] and not s.valid[0, 600]
    eigen = eval_crop_mask((352, 1216), "eigen")
    assert np.array_equal(s.valid, (s.depth > 1e-5) & (s.depth < 80) & eigen)
    rows = np.flatnonzero(eigen.any(axis=1))
    assert (rows[0], rows[-1]) == (int(0.3324324 * 352), int(0.91351351 * 352) - 1)
    garg = BenchmarkData(any_count("kitti", eval_crop="garg"), path)[0].valid
    assert not np.array_equal(garg, s.valid) and np.flatnonzero(garg.any(axis=1))[0] == int(0.40810811 * 352)


def test_eth3d_raw_float32_with_inf(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "ETH3D_SHAPE", (8, 12))  # the real files are 4032 x 6048; the format is the same
    depth = np.full((8, 12), 3.0, np.float32)
    depth[0, 0] = np.inf  # missing
    depth[1, 1] = 1e-6  # below ETH3D's 1e-5
    files = {"rgb/office/images/dslr_images/DSC_0219.JPG": jpg(rgb_of(8, 12)),
             "depth/office_dslr_depth/office/ground_truth_depth/dslr_images/DSC_0219.JPG": depth.tobytes()}
    s = BenchmarkData(any_count("eth3d"), write(tmp_path / "eth3d", files, True))[0]
    assert s.depth[0, 0] == 0 and s.depth[2, 2] == 3.0
    assert s.valid.sum() == 8 * 12 - 2 and not s.valid[0, 0] and not s.valid[1, 1]
    files["depth/office_dslr_depth/office/ground_truth_depth/dslr_images/DSC_0219.JPG"] = depth[:4].tobytes()
    with pytest.raises(ValueError, match="bytes, an ETH3D depth file holds 384"):
        BenchmarkData(any_count("eth3d"), write(tmp_path / "eth3d_cut", files, False))[0]


def test_scannet_millimetres_and_missing_depth(tmp_path):
    depth = np.full((48, 64), 1500, np.uint16)
    depth[0, :5] = 0
    files = {"scene0406_02/color/000300.jpg": jpg(rgb_of(48, 64)), "scene0406_02/depth/000300.png": png(depth)}
    s = BenchmarkData(any_count("scannet"), write(tmp_path / "scannet", files, False))[0]
    assert s.depth[10, 10] == pytest.approx(1.5) and s.valid.sum() == 48 * 64 - 5
    del files["scene0406_02/depth/000300.png"]
    with pytest.raises(FileNotFoundError, match="scene0406_02/depth/000300.png is missing"):
        BenchmarkData(any_count("scannet"), write(tmp_path / "scannet_cut", files, False))


@pytest.mark.parametrize("as_tar", [False, True])
def test_diode_npy_depth_and_its_own_validity_mask(tmp_path, as_tar):
    stem = "outdoor/scene_00024/scan_00202/00024_00202_outdoor_110_020"
    depth = np.full((6, 8, 1), 40.0, np.float32)
    depth[0, 0] = 400.0  # beyond DIODE's 350 m, but the mask file alone says what is valid (as Marigold)
    mask = np.ones((6, 8), np.float32)
    mask[5, 7] = 0
    files = {f"{stem}.png": png(rgb_of(6, 8)), f"{stem}_depth.npy": npy(depth), f"{stem}_depth_mask.npy": npy(mask)}
    s = BenchmarkData(any_count("diode"), write(tmp_path / "diode_val", files, as_tar))[0]
    assert s.depth.shape == (6, 8) and s.depth[1, 1] == 40.0
    assert np.array_equal(s.valid, mask.astype(bool))
    del files[f"{stem}_depth_mask.npy"]
    with pytest.raises(FileNotFoundError, match="_depth_mask.npy is missing"):
        BenchmarkData(any_count("diode"), write(tmp_path / "diode_cut", files, as_tar))


def test_wrong_folder_not_a_tar_and_base_data_dir(tmp_path):
    nyu = {"test/a/rgb_0001.png": png(rgb_of(480, 640)), "test/a/depth_0001.png": png(np.full((480, 640), 1000, np.uint16))}
    folder = write(tmp_path / "base" / "nyuv2" / "nyu_labeled_extracted", nyu, False)
    with pytest.raises(ValueError, match="no ScanNet sample found .* right folder"):
        BenchmarkData(any_count("scannet"), folder)
    assert len(BenchmarkData(any_count("nyuv2"), tmp_path / "base")) == 1  # Marigold's BASE_DATA_DIR works too
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BenchmarkData(any_count("nyuv2"), tmp_path / "nowhere")
    (tmp_path / "fake.tar").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="neither a folder nor a tar"):
        BenchmarkData(any_count("nyuv2"), tmp_path / "fake.tar")


def test_marigold_file_list_order_and_missing_members(tmp_path):
    depth = np.full((375, 1242), 10.0)
    path = write(tmp_path / "kitti", kitti_files(depth), True)
    listing = ("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000070.png None 721.5377\n"
               "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
               "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377\n")
    assert [e.rgb[-14:] for e in read_file_list(listing, "kitti")] == ["0000000069.png"]
    data = BenchmarkData(any_count("kitti"), path, file_list=listing + "2011_09_26/x/image_02/data/1.png 2011_09_26_x/gt/1.png 1.0\n")
    assert len(data) == 2 and data[0].depth.shape == (352, 1216)
    with pytest.raises(FileNotFoundError, match="missing from"):
        data[1]


def test_rgbd_world_spec_uses_the_worlds_far_plane():
    from rgbd_world.world.scenes import FAR

    assert RGBD_WORLD_FAR == FAR
    with pytest.raises(ValueError, match="unknown dataset"):
        get_spec("nyu")
    with pytest.raises(ValueError, match="only KITTI"):
        get_spec("nyuv2", kitti_crop="garg")
