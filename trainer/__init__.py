"""JointDiT trainer: preprocessing to a latent cache and accelerate fine-tuning of the JointDiT addons.

Standalone (no ComfyUI import); uses :mod:`jointdit_core` for the model, autoencoder and file formats.
Commands: ``python -m trainer preprocess`` and ``python -m trainer train`` (also under
``accelerate launch -m trainer train``); see ``trainer/README.md``.
"""
