"""Client SDK of a running genre_serve (tritonserver)."""

from genre_serve.client.async_client import AsyncGenreClient
from genre_serve.client.client import GenreClient, Recommendation
from genre_serve.client.local_scoring import LocalScorer
from genre_serve.errors import (
    ClientError,
    ClientTimeoutError,
    GenreServeError,
    InvalidRequestError,
    ModelUnavailableError,
    ServerOverloadedError,
)

__all__ = [
    "AsyncGenreClient",
    "LocalScorer",
    "ClientError",
    "ClientTimeoutError",
    "GenreClient",
    "GenreServeError",
    "InvalidRequestError",
    "ModelUnavailableError",
    "Recommendation",
    "ServerOverloadedError",
]
