"""Evaluation on the world's held-out scenes: the metrics, the caption classifier and one command per task."""
