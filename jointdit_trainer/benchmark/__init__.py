"""Depth-estimation benchmarks by Marigold's protocol: ``python -m jointdit_trainer evaluate``.

Modules, one job each: :mod:`.datasets` (what each benchmark is: files, depth range, evaluation mask),
:mod:`.archive` (a tar file or its extracted folder), :mod:`.readers` (samples of each distributed layout),
:mod:`.alignment` (least-squares scale and shift, clipping), :mod:`.metrics` (AbsRel ... SILog),
:mod:`.predictor` (the model run through ``jointdit_core``), :mod:`.runner` (the resumable loop and the
reports), :mod:`.cli` (the command line).
"""
