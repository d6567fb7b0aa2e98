"""rgbd_world.evaluation.addon: any addon file on the shipped base scores as rgbd_world.evaluation.depth's rows do."""

import json

import numpy as np
import pytest

from rgbd_world.evaluation import addon as E
from rgbd_world import stack as S


def test_an_addon_file_gives_the_same_depth_as_its_shipped_variant(tmp_path):
    addon = S.DEFAULT_MODEL_DIR / "addons" / "uts_asw.safetensors"
    scenes = E.scenes_of("test", 0, 2, 64)
    rgb = np.stack([s.rgb for s in scenes])
    shipped = S.depth_estimation(S.load_stack(S.DEFAULT_MODEL_DIR, "uts_asw"), rgb, steps=2)
    stack = S.load_stack(addon=addon)
    np.testing.assert_array_equal(S.depth_estimation(stack, rgb, steps=2), shipped)
    row = E.evaluate_addon(stack, rgb, [s.depth for s in scenes], steps=2, save_pred=str(tmp_path / "p.npy"))
    assert len(row["per_image"]) == 2 and 0 < row["abs_rel"] < 1 and np.load(tmp_path / "p.npy").shape == (2, 64, 64)
    E.main([str(addon), "--split", "train", "--count", "1", "--steps", "1", "--json", str(tmp_path / "r.jsonl")])
    assert json.loads((tmp_path / "r.jsonl").read_text())["split"] == "train"


def test_scenes_outside_the_split_are_refused():
    with pytest.raises(ValueError, match="test split has 1000"):
        E.scenes_of("test", 999, 2, 64)
