"""The exception tree of genre_serve: everything it raises on purpose derives from
:class:`GenreServeError`, and also from the builtin a caller would expect
(``ValueError`` for bad values, ``RuntimeError`` for an unusable environment)."""


class GenreServeError(Exception):
    """Base of every error genre_serve raises on purpose."""


class CudaUnavailableError(GenreServeError, RuntimeError):
    """CUDA was asked for but this build or machine has no usable GPU."""


class DataError(GenreServeError, ValueError):
    """Input data (a file, a column, a row) is missing or malformed."""


class ClientError(GenreServeError):
    """A request to a genre_serve server failed."""


class ClientTimeoutError(ClientError, TimeoutError):
    """The server did not answer within the timeout."""


class ModelUnavailableError(ClientError):
    """The server is down, not ready, or does not serve the model."""


class ServerOverloadedError(ClientError):
    """The server turned the request away because its queue is full, or the
    request waited in the queue past the server's queue timeout. Nothing was
    computed; the caller may retry later (the client does not, by default:
    retrying into a saturated server only adds load)."""


class InvalidRequestError(ClientError, ValueError):
    """The server rejected the request; the message is the server's."""
