"""JointDiT trainer: preprocessing to a latent cache and accelerate fine-tuning of the JointDiT addons.

Standalone (no ComfyUI import); uses :mod:`jointdit_core` for the model, autoencoder and file formats.
Commands: ``python -m jointdit_trainer preprocess`` and ``python -m jointdit_trainer train`` (also under
``accelerate launch -m jointdit_trainer train``); see ``jointdit_trainer/README.md``.
"""
