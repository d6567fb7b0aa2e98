"""The benchmarks as Marigold evaluates them (prs-eth/Marigold ``config/dataset_depth/*.yaml`` and
``src/dataset/*_dataset.py``, commit b1dffaaa3f7a2fe406b3bb9dd3c358b30da66060): where the files are,
how many images, the valid depth range and the evaluation mask.

Valid pixels are ``min_depth < depth < max_depth`` inside the evaluation crop (DIODE: its own validity
mask instead). The prediction, once aligned, is clipped to ``[min_depth, max_depth]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NYU_SHAPE = (480, 640)
KITTI_BENCHMARK_SIZE = (352, 1216)  # KITTI benchmark crop: bottom rows, centred columns
KITTI_CROPS = ("eigen", "garg")


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark.

    name: the ``--dataset`` name; title: for tables; layout: the reader (:mod:`.readers`); archive: the
    tar file under Marigold's ``BASE_DATA_DIR`` (its extracted folder has the same name without ``.tar``);
    count: images with ground truth (None: any number); min_depth, max_depth: metres, exclusive bounds of
    valid ground truth and the clipping range of the prediction; eval_crop: None, "eigen_nyu" (Eigen crop
    of NYUv2), "eigen" or "garg" (KITTI); kitti_benchmark_crop: crop photo and depth to 352 x 1216 first;
    alignment_max_res: the alignment is fitted at most at this resolution (Marigold's ``--alignment_max_res``).
    """

    name: str
    title: str
    layout: str
    archive: str | None
    count: int | None
    min_depth: float
    max_depth: float
    eval_crop: str | None = None
    kitti_benchmark_crop: bool = False
    alignment_max_res: int | None = None


RGBD_WORLD_FAR = 20.0  # the demo world's backdrop distance (rgbd_world.world.scenes.FAR; a test keeps them equal)

BENCHMARKS = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("nyuv2", "NYUv2 test", "nyuv2", "nyuv2/nyu_labeled_extracted.tar", 654, 1e-3, 10.0, "eigen_nyu"),
        BenchmarkSpec("kitti", "KITTI Eigen test", "kitti", "kitti/kitti_eigen_split_test.tar", 652, 1e-5, 80.0, "eigen", True),
        BenchmarkSpec("eth3d", "ETH3D", "eth3d", "eth3d/eth3d.tar", 454, 1e-5, float("inf"), alignment_max_res=1024),
        BenchmarkSpec("scannet", "ScanNet", "scannet", "scannet/scannet_val_sampled_800_1.tar", 800, 1e-3, 10.0),
        BenchmarkSpec("diode", "DIODE val", "diode", "diode/diode_val.tar", 771, 0.6, 350.0),
        # The demo world's test split written by `python -m rgbd_world.evaluation.benchmark_split` in DIODE's layout (the
        # mask file holds the sky exclusion), scored with the demo world's range (0, FAR].
        BenchmarkSpec("rgbd_world", "RGB-D world test", "diode", None, None, 1e-5, RGBD_WORLD_FAR),
    )
}


def get_spec(name: str, kitti_crop: str | None = None) -> BenchmarkSpec:
    """The :class:`BenchmarkSpec` called ``name``; ``kitti_crop`` ("eigen" default, or "garg") for KITTI.

    Raises:
        ValueError: an unknown name or crop.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    if kitti_crop is not None and kitti_crop != spec.eval_crop:
        if name != "kitti" or kitti_crop not in KITTI_CROPS:
            raise ValueError(f"--kitti-crop {kitti_crop!r}: only KITTI has a choice of crops, {KITTI_CROPS}")
        spec = BenchmarkSpec(**{**spec.__dict__, "eval_crop": kitti_crop})
    return spec


def kitti_benchmark_crop(image: np.ndarray) -> np.ndarray:
    """(H, W, ...) -> (352, 1216, ...): the bottom 352 rows, the 1216 columns in the middle (Marigold's
    ``KITTIDepthDataset.kitti_benchmark_crop``)."""
    height, width = image.shape[:2]
    top, left = height - KITTI_BENCHMARK_SIZE[0], int((width - KITTI_BENCHMARK_SIZE[1]) / 2)
    return image[top : top + KITTI_BENCHMARK_SIZE[0], left : left + KITTI_BENCHMARK_SIZE[1]]


def eval_crop_mask(shape: tuple[int, int], crop: str | None) -> np.ndarray:
    """(H, W) bool, True inside the evaluation crop.

    "eigen_nyu": rows 45:471, columns 41:601 of a 480 x 640 map (Eigen et al. 2014, as Marigold's
    ``NYUDepthDataset``); "garg" / "eigen": the KITTI crops as fractions of the map's size (Garg et al.
    2016 / Eigen et al. 2014, as BTS and Marigold's ``KITTIDepthDataset``); None: everything.

    Raises:
        ValueError: a NYUv2 map of another size, or an unknown crop.
    """
    height, width = shape
    mask = np.zeros(shape, bool)
    if crop is None:
        mask[:] = True
    elif crop == "eigen_nyu":
        if tuple(shape) != NYU_SHAPE:
            raise ValueError(f"the NYUv2 Eigen crop needs 480 x 640 depth maps, this one is {height} x {width}")
        mask[45:471, 41:601] = True
    elif crop == "garg":
        mask[int(0.40810811 * height) : int(0.99189189 * height), int(0.03594771 * width) : int(0.96405229 * width)] = True
    elif crop == "eigen":
        mask[int(0.3324324 * height) : int(0.91351351 * height), int(0.0359477 * width) : int(0.96405229 * width)] = True
    else:
        raise ValueError(f"unknown evaluation crop {crop!r}")
    return mask
