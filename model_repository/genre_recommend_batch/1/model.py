# Thin python-backend entry point; the logic lives in the genre_serve package.
from genre_serve.serving.stubs.recommend import TritonPythonModel  # noqa: F401
