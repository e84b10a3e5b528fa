"""genre_serve: GENRE recommendation models, exported to ONNX and served on Triton."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genre-serve")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
