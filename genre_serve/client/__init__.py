"""Client SDK of a running genre_serve (tritonserver)."""

from genre_serve.client.client import GenreClient, Recommendation
from genre_serve.errors import (
    ClientError,
    ClientTimeoutError,
    GenreServeError,
    InvalidRequestError,
    ModelUnavailableError,
)

__all__ = [
    "ClientError",
    "ClientTimeoutError",
    "GenreClient",
    "GenreServeError",
    "InvalidRequestError",
    "ModelUnavailableError",
    "Recommendation",
]
