"""The caption classifier of the RGB-D world: caption -> targets, scoring, the shipped weights, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgbd_world.evaluation import caption_classifier as cc
from rgbd_world.evaluation.metrics import generated_depth_abs_rel
from rgbd_world.world.scenes import COLOURS, SHAPES, scene, split_indices

# Measured on test scenes 1,000,000-1,000,039 with the shipped weights: count 1.0, floor 1.0 (19 captions name it),
# shapes 0.75, colours 1.0, objects 0.525, overall 0.855 (chance for an exact set of colour + shape objects is
# below 0.03). The margins allow numerical differences between machines, not a broken classifier or scoring.
SHIPPED_MINIMUM = {"count": 0.9, "floor": 0.9, "shapes": 0.6, "colours": 0.9, "objects": 0.4, "overall": 0.75}


def _names(flags, names):
    return {n for n, f in zip(names, flags) if f}


def test_targets_of_known_captions():
    t = cc.caption_targets("two green cylinders and a small striped red cone on a checkered floor")
    assert _names(t["shapes"], SHAPES) == {"cylinder", "cone"}
    assert _names(t["colours"], COLOURS) == {"green", "red"}
    assert _names(t["objects"], cc.OBJECTS) == {"green cylinder", "red cone"}
    assert (t["floor"], t["count"]) == ("checkered", 3)

    t = cc.caption_targets("a blue cube left of a yellow cone")
    assert _names(t["objects"], cc.OBJECTS) == {"blue cube", "yellow cone"}
    assert (t["floor"], t["count"]) == ("", 2)
    assert cc.caption_targets("a blue cube left of a yellow cone", floor="striped")["floor"] == "striped"
    assert cc.caption_targets("a red sphere on a checkered floor", floor="striped")["floor"] == "checkered"  # the caption wins


def test_target_vector_layout():
    v = cc.target_vector(cc.caption_targets("a large red sphere", floor="striped"))
    assert v.shape == (len(cc.LABELS),) and v.dtype == np.float32
    assert {cc.LABELS[i] for i in np.flatnonzero(v)} == {"shape:sphere", "colour:red", "object:red sphere", "count:1"}
    with pytest.raises(ValueError, match="floor"):
        cc.target_vector(cc.caption_targets("a large red sphere"))


class _Oracle(torch.nn.Module):
    """Returns the logits of given captions' targets with floor ``floor`` (sign flipped when ``wrong``), whatever the image."""

    def __init__(self, captions, floor="checkered", wrong=False):
        super().__init__()
        targets = np.stack([cc.target_vector(cc.caption_targets(c, "striped")) for c in captions])
        targets[:, cc.GROUPS["floor"]] = floor == "checkered"
        self.logits = torch.from_numpy(targets * 2 - 1) * (-1 if wrong else 1)

    def forward(self, x):
        return self.logits[: len(x)]


def test_scoring_counts_only_what_the_caption_states():
    captions = ["a large red sphere", "two green cylinders on a striped floor"]
    images = np.zeros((2, 64, 64, 3), np.uint8)
    right = cc.caption_accuracy(images, captions, _Oracle(captions, floor="striped"))
    assert all(right[k] == 1.0 for k in (*cc.ATTRIBUTES, "overall", "mentioned_objects"))
    assert (right["n"], right["n_floor"]) == (2, 1)
    # the checkered floor the oracle reads is only wrong where a caption names the floor
    floor_wrong = cc.caption_accuracy(images, captions, _Oracle(captions, floor="checkered"))
    assert floor_wrong["floor"] == 0.0 and floor_wrong["objects"] == 1.0 and floor_wrong["overall"] == pytest.approx(0.8)
    wrong = cc.caption_accuracy(images, captions, _Oracle(captions, floor="striped", wrong=True))
    assert wrong["overall"] == 0.0 and wrong["mentioned_objects"] == 0.0
    no_floor = cc.caption_accuracy(images[:1], captions[:1], _Oracle(captions[:1]))
    assert no_floor["floor"] is None and no_floor["overall"] == 1.0


@pytest.mark.parametrize(
    "images, captions, message",
    [
        (np.zeros((1, 64, 64, 3), np.float32), ["a red cube"], "uint8"),
        (np.zeros((1, 32, 32, 3), np.uint8), ["a red cube"], r"\(N, 64, 64, 3\)"),
        (np.zeros((64, 64, 3), np.uint8), ["a red cube"], r"\(N, 64, 64, 3\)"),
        (np.zeros((2, 64, 64, 3), np.uint8), ["a red cube"], "as many captions as images"),
        (np.zeros((0, 64, 64, 3), np.uint8), [], "at least one"),
        (np.zeros((1, 64, 64, 3), np.uint8), ["a pink cube"], "pink"),
    ],
)
def test_bad_input_is_refused(images, captions, message):
    with pytest.raises(ValueError, match=message):
        cc.caption_accuracy(images, captions, _Oracle(["a red cube"]))


def test_bad_floor_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="floor must be one of"):
        cc.caption_targets("a red cube", floor="wooden")
    with pytest.raises(FileNotFoundError, match="python -m rgbd_world.evaluation.caption_classifier"):
        cc.load_classifier(tmp_path / "none.safetensors")


def test_augmentation_is_seeded_and_in_range():
    x = torch.rand(4, 3, 64, 64)
    a = cc.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, cc.augment(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, x)


def test_generated_depth_abs_rel_is_zero_for_the_generated_map_itself():
    generated = np.clip(np.linspace(0, 1, 64)[:, None] * np.ones((1, 64)), 0, 1)
    assert generated_depth_abs_rel(generated, generated) < 1e-9
    assert generated_depth_abs_rel(np.random.default_rng(0).random((64, 64)), generated) > 0.1  # no affine fit


def test_shipped_classifier_reads_ground_truth_test_renders():
    classifier = cc.load_classifier()
    assert sum(p.numel() for p in classifier.parameters()) * 4 < 1_000_000
    scenes = [scene(i) for i in split_indices("test")[:40]]
    result = cc.caption_accuracy(np.stack([s.rgb for s in scenes]), [s.caption for s in scenes], classifier)
    for key, minimum in SHIPPED_MINIMUM.items():
        assert result[key] >= minimum, (key, result)


def test_a_model_rebuild_keeps_the_classifier(tmp_path):
    from rgbd_world import recipe

    out = tmp_path / "model"
    out.mkdir()
    for name in recipe.KEPT_FILES + ("model.json",):
        (out / name).write_text("x")
    recipe.parse_args(["--quick", "--out", str(out), "--work", str(tmp_path / "work")])  # not refused as foreign
    assert recipe.clear_outputs(out) == ["model.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(recipe.KEPT_FILES)
    assert cc.DEFAULT_PATH.name in recipe.KEPT_FILES and cc.DEFAULT_PATH.with_suffix(".json").name in recipe.KEPT_FILES


def test_describe_names_the_objects_read():
    import numpy as np

    from rgbd_world.evaluation.caption_classifier import OBJECTS, describe

    objects = np.zeros((2, len(OBJECTS)), bool)
    objects[0, OBJECTS.index("red sphere")] = objects[0, OBJECTS.index("blue cube")] = True
    reading = {"objects": objects, "count": np.array([2, 1]), "floor": np.array(["striped", "checkered"])}
    assert describe(reading, 0) == "2 objects: red sphere, blue cube; striped floor"
    assert describe(reading, 1) == "1 object: none recognised; checkered floor"


def test_roundtrip_only_scores_the_renders_and_the_autoencoder_without_sampling(monkeypatch):
    from rgbd_world.evaluation import captions as E

    def no_sampling(*args, **kwargs):
        raise AssertionError("roundtrip_only must not sample")

    monkeypatch.setattr(E, "joint_generation", no_sampling)
    monkeypatch.setattr(E, "depth_to_image", no_sampling)
    result = E.evaluate_captions(count=3, roundtrip_only=True)
    assert set(result["caption_accuracy"]) == {"ground_truth", "ae_roundtrip"} and result["depth"] == {}
    assert "depth agreement" not in E.table(result) and "ground truth through the autoencoder" in E.table(result)


def test_evaluate_captions_skip_depth_scores_the_generated_rows_without_depth():
    from rgbd_world.evaluation.captions import evaluate_captions

    result = evaluate_captions(count=2, steps=1, cfg=2.0, skip_depth=True)
    assert list(result["caption_accuracy"]) == ["ground_truth", "ae_roundtrip", "joint_generation", "depth_to_image"]
    assert result["depth"] == {} and "depth_estimation" not in result["seconds"] and result["settings"]["cfg"] == 2.0
