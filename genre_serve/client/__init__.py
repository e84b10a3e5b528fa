"""Client SDK of a running genre_serve (tritonserver).

Importing it loads tritonclient and numpy, never model code (torch, onnx,
the export or training code): a service that only calls the server stays
light. :class:`LocalScorer` (client-side scoring with the extension) is
imported on first use.
"""

from typing import TYPE_CHECKING, Any

from genre_serve.client.async_client import AsyncGenreClient
from genre_serve.client.client import GenreClient
from genre_serve.client.core import Recommendation
from genre_serve.errors import (
    ClientError,
    ClientTimeoutError,
    GenreServeError,
    InvalidRequestError,
    ModelUnavailableError,
    ServerOverloadedError,
)

if TYPE_CHECKING:
    from genre_serve.client.local_scoring import LocalScorer

__all__ = [
    "AsyncGenreClient",
    "ClientError",
    "ClientTimeoutError",
    "GenreClient",
    "GenreServeError",
    "InvalidRequestError",
    "LocalScorer",
    "ModelUnavailableError",
    "Recommendation",
    "ServerOverloadedError",
]


def __getattr__(name: str) -> Any:
    if name == "LocalScorer":
        from genre_serve.client.local_scoring import LocalScorer

        return LocalScorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
