"""A small procedural RGB-D world (scenes, dataset writer, tiny text encoders) for
training and testing JointDiT end to end on CPU."""
