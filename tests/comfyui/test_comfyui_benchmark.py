"""benchmarks/comfyui_speed.py runs (its small CPU preset, every variant) and prints its table: it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from comfyui_harness import REPO, comfyui_path


def test_speed_benchmark_cpu_preset_prints_one_row_per_variant():
    path = comfyui_path()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    cmd = [sys.executable, str(REPO / "benchmarks" / "comfyui_speed.py"), "--comfyui", str(path), "--preset", "cpu", "--compile-backend", "eager", "--repeats", "1"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == ["flux", "joint", "joint+cache", "joint+compile", "joint fp8 base", "joint fp8 addons"]
    for row in rows:
        ms, _, evaluations = (cell.strip() for cell in row.split("|")[2:5])
        assert float(ms) > 0 and re.fullmatch(r"\d+/3", evaluations)
