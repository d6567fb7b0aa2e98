"""The procedural RGB-D world: its scenes (ray cast with exact depth and a caption), the dataset writer and a mesh rasteriser for new views."""
