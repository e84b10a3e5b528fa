"""The GENRE model family (PyTorch)."""

from genre_serve.models.genre import GenreModel, ModelConfig, Ranker, cross_features_torch, right_align

__all__ = ["GenreModel", "ModelConfig", "Ranker", "cross_features_torch", "right_align"]
