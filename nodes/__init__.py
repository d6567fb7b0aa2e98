"""ComfyUI nodes of the JointDiT pack (imported by the pack's ``__init__.py`` only inside ComfyUI).

Modules: :mod:`.folders` (the ``models/jointdit`` folder), :mod:`.loader` (LoadJointDiT),
:mod:`.model_patch` (the patch of a FLUX MODEL), :mod:`.joint_call` (one JointDiT call inside ComfyUI's Flux),
:mod:`.sampler` (JointSampler), :mod:`.depth` (EncodeDepth, DecodeDepth; pure tensor helpers in
:mod:`.depth_maps`, which does not need ComfyUI).
"""
