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
