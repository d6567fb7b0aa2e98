"""The demo as a newcomer meets it: usage errors instead of tracebacks, and no stale or lost files."""

from __future__ import annotations

import pytest

from rgbd_world import demo


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--count", "0"], "argument --count: must be at least 1, got 0"),
        (["--count", "many"], "argument --count: 'many' is not an integer"),
        (["--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["--count", "100000"], "count must be 1..1000"),
        (["--caption", " "], "a --caption is empty"),
        (["--addon", "no_such_addon.safetensors"], "addon file no_such_addon.safetensors not found"),
        (["--addon", "a.safetensors", "--variant", "asw_off"], "give --variant or --addon, not both"),
    ],
)
def test_bad_options_are_usage_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv + ["--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_model_names_the_recipe(capsys, tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert "python -m rgbd_world.recipe" in capsys.readouterr().err


def _earlier_run(out):
    for folder, name in (("depth_estimation", "05_input.png"), ("3d", "depth_estimation_00.glb"), ("joint_generation", "00_rgb.png")):
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / name).write_bytes(b"x")
    (out / "summary.md").write_text("old")


def test_earlier_run_is_cleared(tmp_path):
    _earlier_run(tmp_path)
    assert demo.clear_earlier_run(tmp_path) == 4
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_foreign_files_are_refused_and_kept(tmp_path):
    _earlier_run(tmp_path)
    (tmp_path / "depth_estimation" / "my_notes.txt").write_text("mine")
    (tmp_path / "holiday.jpg").write_bytes(b"y")
    with pytest.raises(ValueError, match="holds files the demo does not write"):
        demo.clear_earlier_run(tmp_path)
    assert (tmp_path / "depth_estimation" / "my_notes.txt").read_text() == "mine"
    assert (tmp_path / "depth_estimation" / "05_input.png").exists()  # nothing removed when refusing


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(ValueError, match="is a file"):
        demo.clear_earlier_run(tmp_path / "out")


def test_addon_for_another_model_is_a_usage_error(capsys, tmp_path):
    """An addon file of another size (here the official layout's tiny reference model) is refused by name."""
    from pathlib import Path

    import safetensors.torch

    data = Path(__file__).parent / "data" / "golden_tiny.safetensors"
    addon = {k.removeprefix("addon."): v for k, v in safetensors.torch.load_file(data).items() if k.startswith("addon.")}
    if not addon:
        pytest.skip("the reference file holds no addon tensors under 'addon.'")
    safetensors.torch.save_file(addon, tmp_path / "other.safetensors")
    with pytest.raises(SystemExit):
        demo.main(["--addon", str(tmp_path / "other.safetensors"), "--out", str(tmp_path / "out")])
    assert "other.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_overview_lays_out_labelled_groups_and_wraps_long_sections():
    import numpy as np

    from rgbd_world.figures.overview import GROUP_GAP, MARGIN, TILE, Example, Section, render_overview

    tile = np.zeros((64, 64, 3), np.uint8)
    tile[..., 0] = 255
    three = Example("a caption", [("photo", tile), ("estimate", tile), ("ground truth", tile)])
    one_line = render_overview([Section("one", [three, three])], max_width=10_000)
    assert one_line.width == 2 * MARGIN + 2 * (3 * TILE + 2 * 4) + GROUP_GAP
    wrapped = render_overview([Section("one", [three, three])], max_width=one_line.width - 1)  # no room for two side by side
    assert wrapped.width == 2 * MARGIN + 3 * TILE + 2 * 4 and wrapped.height > one_line.height
    red = (np.asarray(wrapped)[..., 0] == 255) & (np.asarray(wrapped)[..., 1] == 0)
    assert red.sum() == 2 * 3 * TILE * TILE  # every tile drawn, at full size
    with pytest.raises(ValueError, match="needs examples"):
        render_overview([Section("empty")])


@pytest.mark.parametrize("module", ["rgbd_world.evaluation.depth", "rgbd_world.world.make_dataset", "rgbd_world.training.finetune_decoder"])
def test_usage_names_the_command_a_reader_types(module):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"usage: python -m {module} ")
