"""The exception tree of genre_serve: everything it raises on purpose derives
from :class:`GenreServeError`, and also from the builtin a caller would expect
(``ValueError`` for bad values, ``RuntimeError`` for an unusable environment),
so ``except ValueError`` keeps working where it did.

    GenreServeError
    +-- ConfigError (ValueError)            a configuration file or value
    +-- DataError (ValueError)              input data: a file, a column, a row
    +-- RunDirError (ValueError)            a training run directory
    +-- ExportError (ValueError)            a model repository or an export request
    +-- ExportCheckError                    an exported ONNX model failed its checks
    +-- RequestError (ValueError)           a request the server answers with an error naming the field
    +-- UsageError (ValueError)             an inconsistent command line
    +-- LoadTestError (ValueError)          a load test asked for what it refuses to do
    +-- CudaUnavailableError (RuntimeError) CUDA asked for, none usable
    +-- ServerError (RuntimeError)          tritonserver could not be started or stopped
    +-- StuckWorkerError (RuntimeError)     a traffic worker hung past its timeout
    +-- ClientError                         a request to a genre_serve server failed
        +-- ClientTimeoutError (TimeoutError)
        +-- ModelUnavailableError
        +-- ServerOverloadedError
        +-- InvalidRequestError (ValueError)

Kept free of imports: the client and the Triton stubs import it.
"""


class GenreServeError(Exception):
    """Base of every error genre_serve raises on purpose."""


class ConfigError(GenreServeError, ValueError):
    """A configuration file or value is invalid."""


class DataError(GenreServeError, ValueError):
    """Input data (a file, a column, a row) is missing or malformed."""


class RunDirError(GenreServeError, ValueError):
    """A run directory is missing, incomplete or of an unknown format."""


class ExportError(GenreServeError, ValueError):
    """The model repository or the export request is invalid."""


class RepositoryBusyError(ExportError):
    """Another process is writing a version into the same model repository."""


class ExportCheckError(GenreServeError):
    """An exported model failed onnx.checker or disagreed with PyTorch."""


class RequestError(GenreServeError, ValueError):
    """A request the server answers with an error naming the field (HTTP 400)."""


class UsageError(GenreServeError, ValueError):
    """The command line asked for something inconsistent."""


class LoadTestError(GenreServeError, ValueError):
    """The load test was asked for something it refuses to do."""


class CudaUnavailableError(GenreServeError, RuntimeError):
    """CUDA was asked for but this build or machine has no usable GPU."""


class ServerError(GenreServeError, RuntimeError):
    """tritonserver could not be started or stopped."""


class StuckWorkerError(GenreServeError, RuntimeError):
    """A traffic worker did not finish: a request hung past its timeout."""


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
