"""genre_serve: GENRE recommendation models, exported to ONNX and served on Triton."""

__version__ = "0.1.0"
