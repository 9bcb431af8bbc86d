"""Every public exception of daskgmm, in one place.

Importing this module costs nothing beyond Python itself, so any module
(workers' task modules included) can raise these.
"""

from __future__ import annotations

from collections.abc import Sequence


class NonFiniteError(FloatingPointError, ValueError):
    """Finite data produced a non-finite log-likelihood or statistics.

    Raised when a pass over data whose values are all finite yields a NaN or
    infinite log-likelihood or sufficient statistics (``nk``, ``s1``,
    ``s2``): values whose squares overflow float64, or a degenerate
    component (a collapsed covariance, an extreme ``precisions_init``). The
    message names the EM iteration (or the initialisation) and the
    components involved, and suggests a remedy (scale the data, increase
    ``reg_covar``). Non-finite *input* is reported as a ``ValueError``
    naming its rows instead.

    A ``FloatingPointError`` by nature, and also a ``ValueError``, which is
    what scikit-learn raises for a fit that fails on its data (so
    ``except ValueError`` keeps working).

    Attributes
    ----------
    iteration : int or None
        1-based EM iteration whose pass produced the values (None during
        initialisation).
    components : tuple of int
        Indices of the components involved.
    model : int or None
        Which of the models fitted together (``n_init`` or a grid) it was,
        when more than one shared the passes.
    """

    def __init__(self, message: str, iteration: int | None = None,
                 components: Sequence[int] = (), model: int | None = None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.components = tuple(int(k) for k in components)
        self.model = model

    def __reduce__(self):
        # Keep the attributes through pickling (e.g. from a dask worker).
        return type(self), (self.args[0], self.iteration, self.components, self.model)


class CheckpointMismatchError(ValueError):
    """A checkpoint belongs to another job, so resuming from it is refused.

    Raised before any work for parameters, shape, dtype, row chunking,
    location or weighting that differ, and as soon as the first resumed pass
    has read every chunk for a content digest that differs (before any
    result is used or written). The message names what differs and how to
    start afresh.

    Attributes
    ----------
    path : str
        The checkpoint.
    differences : dict
        What differs: name to ``(in the checkpoint, now)``.
    """

    def __init__(self, message: str, path: str = "", differences: dict | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.differences = dict(differences or {})

    def __reduce__(self):
        return type(self), (self.args[0], self.path, self.differences)


class CheckpointParamsError(CheckpointMismatchError):
    """The checkpoint was written by a fit with other estimator parameters (CLI exit 2)."""


class CheckpointDataError(CheckpointMismatchError):
    """The checkpoint was written by a fit of other data (CLI exit 3)."""


class DegenerateComponentError(ValueError):
    """A component's covariance is not positive definite.

    A subclass of ``ValueError`` (scikit-learn raises ``ValueError`` in the same
    situation) whose message names the component and the remedy.
    """


class MissingChunksError(ValueError):
    """A Zarr array has chunks that were never written."""


class CorruptChunkError(ValueError):
    """A Zarr chunk could not be read or decoded (a checksum mismatch, say)."""


class WorkerLostError(RuntimeError):
    """A pass's task kept killing the workers that ran it."""


class NoWorkersError(WorkerLostError):
    """A pass waited longer than the no-workers timeout with no worker able to run its tasks.

    No worker was connected to the scheduler, or every one was paused
    (distributed pauses a worker whose memory passes its pause threshold).
    The bound is the dask config value ``daskgmm.no-workers-timeout``
    (default ten minutes); a scheduler started with
    distributed's own ``distributed.scheduler.no-workers-timeout`` fails the
    tasks itself, and that failure is reported as this error too.
    """


class ModelFileError(ValueError):
    """A model file is not a daskgmm model, is corrupt, or is of a newer format."""


class ConfigError(ValueError):
    """A config file or override is invalid; the message lists every problem."""


class OutputError(OSError):
    """An output cannot be written where it was asked for (the command's exit code 5)."""


class OutputExistsError(OutputError, FileExistsError):
    """The destination exists and overwriting was not asked for."""


class OutputNotWritableError(OutputError, PermissionError):
    """The destination's folder does not exist as a folder, or files cannot be created in it."""


class ClusterConnectionError(ConnectionError):
    """The scheduler a config names cannot be connected to.

    The message names the address, or the certificate file, and the likely
    cause: a missing certificate file, ``tcp://`` to a TLS scheduler, a
    certificate the other side does not trust, no answer within the connect
    timeout (:func:`connect_timeout`).
    """


class SmallChunksWarning(UserWarning):
    """The data come in so many small row chunks that scheduling them costs more than reading them.

    Every pass pays about a millisecond of scheduling per chunk (0.6 ms on the
    local scheduler, 1.2 ms on a 2-worker LocalCluster, measured on 16-row
    chunks); the message gives the count, the chunk size, and the remedy.
    """
