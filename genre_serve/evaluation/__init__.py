"""Evaluation: metrics, baselines, GENRE variants on a split, and the report of `genre-serve evaluate`."""
