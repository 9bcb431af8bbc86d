"""Checkpoints: the fit's state written every few iterations, and read back to resume.

A checkpoint is a model file (:mod:`daskgmm.persistence`) with a
``checkpoint`` section: the iteration state and the fingerprint of the data
the fit read. :class:`Checkpoint` writes one after EM iterations;
:func:`open_checkpoint` reads one and refuses it, before any work, unless it
belongs to the job at hand (same parameters, same data); :func:`check_digest`
compares the content digest once the first resumed pass has read the chunks.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._data import Dataset
from ._em import EMResult, IterationInfo, Update, run_em
from ._param_constraints import ADDED_PARAMETER_DEFAULTS, GAUSSIAN
from ._passes import data_digest
from .exceptions import CheckpointDataError, CheckpointParamsError
from .persistence import (
    FittedModel,
    encode_params,
    fitted_model_contents,
    read_fitted_model_and_metadata,
    read_model_file,
    write_model_file,
)

RUN_OPTIONS = ("verbose", "verbose_interval", "persist")
"""Parameters that do not change a fit's result: they may differ when resuming."""

_AFRESH = ("To start afresh, fit without resume_from (`daskgmm fit` without --resume): the new "
           "fit overwrites the checkpoint.")


class Checkpoint:
    """Write the fit's state atomically every ``interval`` iterations (and at the last).

    ``GaussianMixture.fit(X, resume_from=path)`` continues from the file and
    ends with the same model as an uninterrupted fit, bitwise, for the same
    data and chunking.

    A checkpoint is a model file with a ``checkpoint`` section, built by the
    same function as :func:`daskgmm.save_model`'s files: it records every
    constructor parameter as it was when the fit started (``before_fit``).
    It holds one candidate's state, so it needs ``n_init=1``, and
    :func:`daskgmm.fit_many` accepts it only for a single candidate.

    A checkpoint names its job. Its ``checkpoint`` section holds, beside the
    iteration state, ``data``: the fingerprint of the data the fit read
    (shape, dtype, row chunking, the resolved location of the Zarr store,
    whether rows are weighted, and a content digest: a CRC-32 of every
    chunk's bytes taken by the first EM pass's chunk tasks and folded in
    chunk order, so no extra pass). Resuming with other parameters or other
    data is refused (:class:`daskgmm.CheckpointParamsError`,
    :class:`daskgmm.CheckpointDataError`).

    The last write of a fit that ends by itself (converged, or ``max_iter``
    reached) marks the checkpoint ``finished``; one stopped by a callback or
    killed stays unfinished. The file is kept: it is the model as well.
    ``scripts/cron_fit.sh`` resumes only an unfinished checkpoint and removes
    the checkpoint once the model file is in place. Resuming a finished
    checkpoint runs no iteration: one pass checks the data's digest, and
    the fit ends with the checkpoint's model.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (a model file with a ``checkpoint`` section).
    interval : int, default=1
    """

    def __init__(self, path: str | os.PathLike, interval: int = 1):
        if interval < 1:
            raise ValueError(f"interval must be at least 1, got {interval}.")
        self.path = Path(path)
        self.interval = interval
        self._params: dict[str, Any] | None = None
        self._describe: Callable[[IterationInfo, dict[str, Any]], FittedModel] | None = None

    def before_fit(self, model) -> None:
        """Record the parameters of the model whose fit starts; refuse ``n_init > 1``.

        Parameters
        ----------
        model : GaussianMixture or BayesianGaussianMixture

        Raises
        ------
        ValueError
            ``n_init > 1``, or a parameter a model file cannot record.
        """
        if getattr(model, "n_init", 1) > 1:
            raise ValueError(
                f"A checkpoint holds one model's state, but n_init={model.n_init} fits "
                f"{model.n_init} candidates together; use n_init=1 with a checkpoint."
            )
        params = model.get_params(deep=False)
        encode_params(params)  # refuse, before any work, what a model file cannot record
        # A copy: the fit draws from a RandomState random_state, and the checkpoint records
        # its state as the fit started, which resuming compares with the resuming model's.
        self._params = copy.deepcopy(params)
        self._describe = model._iteration_model

    def __call__(self, info: IterationInfo) -> None:
        """Write the checkpoint after an iteration whose number is a multiple of
        ``interval``, or that ends the fit (converged or ``max_iter``).

        Parameters
        ----------
        info : IterationInfo
            The iteration just done: its state, the history of lower bounds and
            the data's fingerprint are written to ``path``, replacing the
            previous checkpoint.

        Raises
        ------
        RuntimeError
            :meth:`before_fit` was not called first.
        ModelFileError
            The state does not pass the model file schema; nothing is written.
        """
        if self._params is None or self._describe is None:
            raise RuntimeError("Checkpoint.before_fit(model) was not called before the first "
                               "iteration: the checkpoint would not know its model's parameters.")
        finished = info.converged or info.finished
        if info.n_iter % self.interval and not finished:
            return
        arrays, metadata = fitted_model_contents(
            self._describe(info, self._params),
            checkpoint={"n_iter": info.n_iter, "lower_bound": info.lower_bound,
                        "converged": info.converged, "finished": bool(finished),
                        "data": info.fingerprint, "written": time.time()},
        )
        write_model_file(self.path, arrays, metadata)


    @staticmethod
    def status(path: str | os.PathLike) -> str:
        """Whether a checkpoint file holds a fit to resume.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        {'missing', 'finished', 'unfinished'}
            'finished' for a fit that ended by itself (converged or
            ``max_iter``), also in checkpoints of earlier releases that
            recorded only ``converged``.

        Raises
        ------
        daskgmm.ModelFileError
            The file is not a readable model file.
        ValueError
            The file is a model file without a checkpoint section.
        """
        if not Path(path).exists():
            return "missing"
        _, metadata = read_model_file(path)
        state = metadata.get("checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"{str(path)!r} is a model file, not a checkpoint.")
        return "finished" if checkpoint_finished(state) else "unfinished"


def _shown(name: str, value: Any) -> str:
    """A parameter's value for a message: arrays and RandomState states summarised."""
    if isinstance(value, dict) and name == "random_state":
        return "a RandomState"
    if isinstance(value, list):
        return f"an array of {len(value)} rows"
    return repr(value)


def check_params(path: str | os.PathLike, saved: Any, current: dict[str, Any]) -> None:
    """Refuse a checkpoint written with other estimator parameters.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint, named in the message.
    saved : dict
        Its ``params`` section.
    current : dict
        :func:`daskgmm.persistence.encode_params` of the model being fitted.

    Raises
    ------
    CheckpointParamsError
        Naming every parameter that differs (except :data:`RUN_OPTIONS`), its
        two values, and how to start afresh.
    """
    saved = saved if isinstance(saved, dict) else {}
    # A parameter added since the checkpoint was written had its default then.
    saved = {**ADDED_PARAMETER_DEFAULTS, **saved}
    differences = {name: (saved.get(name), value) for name, value in current.items()
                   if name not in RUN_OPTIONS and saved.get(name) != value}
    if not differences:
        return
    listed = "; ".join(f"{name}: {_shown(name, old)} in the checkpoint, {_shown(name, new)} now"
                       for name, (old, new) in differences.items())
    raise CheckpointParamsError(
        f"The checkpoint {str(path)!r} belongs to another job: it was written by a fit with "
        f"other parameters ({listed}). Resuming it would continue that fit as if it were this "
        f"one. Resume with the checkpoint's parameters instead, or start afresh. {_AFRESH}",
        str(path), differences,
    )


def _chunks_shown(runs: Any) -> str:
    if not isinstance(runs, list) or not runs:
        return repr(runs)
    parts = [f"{count} chunk{'s' if count > 1 else ''} of {rows} rows" for rows, count in runs[:3]]
    more = f", ... ({len(runs)} runs of equal chunks)" if len(runs) > 3 else ""
    return ", ".join(parts) + more


def _where(fingerprint: dict) -> str:
    location = fingerprint.get("location")
    return f"the data at {location!r}" if location else "the data"


def check_data(path: str | os.PathLike, recorded: Any, current: dict[str, Any]) -> None:
    """Refuse a checkpoint written for other data, from what is known without reading them.

    Compares shape, dtype, row chunking, weighting and (when both are known)
    location; the content digest is compared by :func:`check_digest` once the
    first resumed pass has read the chunks.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint, named in the message.
    recorded : dict or None
        The ``data`` fingerprint of its ``checkpoint`` section.
    current : dict
        :meth:`daskgmm._data.Dataset.fingerprint` of the data being fitted.

    Raises
    ------
    CheckpointDataError
        Naming what differs and how to start afresh; also for a checkpoint
        that recorded no fingerprint (earlier releases, online EM).
    """
    if not isinstance(recorded, dict):
        raise CheckpointDataError(
            f"The checkpoint {str(path)!r} records no fingerprint of the data it was written "
            f"for (it comes from an earlier daskgmm, or from online EM), so it cannot be checked "
            f"against {_where(current)}. {_AFRESH}", str(path), {"fingerprint": (None, current)})
    labels = {"shape": "shape", "dtype": "dtype", "row_chunks": "row chunking",
              "weighted": "sample weights", "location": "location"}
    differences = {}
    for key in labels:
        old, new = recorded.get(key), current.get(key)
        if key == "location" and (old is None or new is None):
            continue  # unknown on one side: the content digest decides
        if old != new:
            differences[key] = (old, new)
    if not differences:
        return
    shown = {"row_chunks": _chunks_shown, "weighted": lambda v: "given" if v else "none"}
    listed = "; ".join(
        f"{labels[key]}: {shown.get(key, repr)(old)} in the checkpoint, {shown.get(key, repr)(new)} now"
        for key, (old, new) in differences.items())
    raise CheckpointDataError(
        f"The checkpoint {str(path)!r} belongs to another job: it records other data than "
        f"this fit reads ({listed}). Resuming it would continue a fit of those data on "
        f"{_where(current)}. {_AFRESH}", str(path), differences)


def check_digest(path: str | os.PathLike, recorded: dict, current: dict[str, Any],
                 digest: str) -> None:
    """Refuse a checkpoint whose data had other contents (the first resumed pass's digest).

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint, named in the message.
    recorded : dict
        The ``data`` fingerprint of its ``checkpoint`` section, with the
        ``digest`` of the data it was written for.
    current : dict
        :meth:`daskgmm._data.Dataset.fingerprint` of the data being fitted,
        named in the message.
    digest : str
        The content digest the first resumed pass took of those data
        (:func:`daskgmm._passes.run_pass_with_digest`).

    Raises
    ------
    CheckpointDataError
        Naming the data, both digests, and how to start afresh.
    """
    if recorded.get("digest") == digest:
        return
    raise CheckpointDataError(
        f"The checkpoint {str(path)!r} belongs to another job: {_where(current)} have the shape, "
        f"dtype and chunking it records but other contents (content digest "
        f"{recorded.get('digest')} in the checkpoint, {digest} now): they were rewritten or "
        f"replaced since the checkpoint was written. Nothing was resumed or written. {_AFRESH}",
        str(path), {"digest": (recorded.get("digest"), digest)})


def checkpoint_finished(state: dict) -> bool:
    """Whether a ``checkpoint`` section records a fit that ended by itself (converged or
    ``max_iter``; checkpoints of earlier releases recorded only ``converged``).

    Parameters
    ----------
    state : dict
        The ``checkpoint`` section of a checkpoint's metadata.

    Returns
    -------
    bool
        Its ``finished`` flag; where that is absent (earlier releases), its
        ``converged`` flag; False if it has neither.
    """
    return bool(state.get("finished", state.get("converged", False)))


@dataclass(frozen=True)
class CheckpointState:
    """A checkpoint as read back: the model so far and what it records of its job.

    Attributes
    ----------
    path : str
    fitted : FittedModel
        The model after the last iteration written (its ``n_iter``,
        ``lower_bound`` and ``converged`` are the iteration state).
    finished : bool
        The fit ended by itself (see :func:`checkpoint_finished`).
    data : dict
        The fingerprint of the data the fit read.
    """

    path: str
    fitted: FittedModel
    finished: bool
    data: dict[str, Any]


def open_checkpoint(path: str | os.PathLike, params: dict[str, Any], fingerprint: dict[str, Any],
                    *, n_init: int, algorithm: str, estimator: str = GAUSSIAN
                    ) -> CheckpointState:
    """Read a checkpoint and refuse it unless it is this job's, before any work.

    Parameters
    ----------
    path : str or os.PathLike
    params : dict
        The constructor parameters of the model to resume (``get_params(deep=False)``).
    fingerprint : dict
        :meth:`daskgmm._data.Dataset.fingerprint` of the data to fit.
    n_init : int
    algorithm : str
        The fit's ``n_init`` and ``algorithm``; a checkpoint resumes ``n_init=1``
        batch EM only.
    estimator : str
        The estimator resuming (a model file's name for it); a checkpoint of
        another estimator is refused.

    Returns
    -------
    CheckpointState

    Raises
    ------
    ValueError
        Not a checkpoint, ``n_init > 1``, or online EM.
    CheckpointParamsError
        Another estimator, or other estimator parameters.
    CheckpointDataError
        Other shape, dtype, row chunking, weighting or location.
    """
    fitted, metadata = read_fitted_model_and_metadata(path)
    state = metadata.get("checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} is a model file, not a checkpoint; it cannot be resumed.")
    if n_init != 1:
        raise ValueError("Resuming from a checkpoint needs n_init=1: a checkpoint holds one "
                         "initialisation's state.")
    if algorithm != "batch":
        raise ValueError("Resuming from a checkpoint needs algorithm='batch': online EM's "
                         "running statistics are not saved in checkpoints.")
    if fitted.estimator != estimator:
        raise CheckpointParamsError(
            f"The checkpoint {str(path)!r} belongs to another job: it was written by a fit of a "
            f"{fitted.estimator}, and this fit is a {estimator}. {_AFRESH}", str(path),
            {"estimator": (fitted.estimator, estimator)})
    check_params(path, metadata.get("params"), encode_params(params))
    check_data(path, state.get("data"), fingerprint)
    return CheckpointState(str(path), fitted, checkpoint_finished(state), state["data"])



def resume_em(data: Dataset, checkpoint: CheckpointState, start: EMResult,
              update: Update | None, *, tol: float, reg_covar: float, max_iter: int,
              split_every: int, callbacks: Sequence[Callable]) -> EMResult:
    """Continue the fit that ``checkpoint`` holds, on ``data``.

    The first resumed pass also takes the data's content digest; a digest
    that differs from the checkpoint's stops the fit before its statistics
    are used (no M-step, no callback, no checkpoint written). A finished
    checkpoint has no iteration left: one pass takes the digest, and the
    fit ends with the checkpoint's model.

    Parameters
    ----------
    data : Dataset
        The data, already checked against the checkpoint by :func:`open_checkpoint`.
    checkpoint : CheckpointState
    start : EMResult
        The checkpoint's model as the state of its fit (parameters,
        covariances, history, iterations done, and a variational posterior).
    update : Update or None
        Its update: EM's M-step (None), or the variational one under the
        checkpoint's priors.
    tol, reg_covar, max_iter, split_every
        As the estimator's parameters (equal to the checkpoint's).
    callbacks : sequence of callables
        Called after each resumed iteration, as in a fit.

    Returns
    -------
    EMResult

    Raises
    ------
    CheckpointDataError
        The data's contents differ from those the checkpoint was written for.
    """
    current = data.fingerprint()

    def verify(digest: str) -> None:
        check_digest(checkpoint.path, checkpoint.data, current, digest)

    if checkpoint.finished or start.converged or start.n_iter >= max_iter:
        verify(data_digest(data, split_every))
        return start
    return run_em(data, start.params, start.covariances, tol=tol, reg_covar=reg_covar,
                  max_iter=max_iter, split_every=split_every, lower_bound=start.lower_bound,
                  callbacks=callbacks, start_iter=start.n_iter, history=start.lower_bounds,
                  check_digest=verify, update=update, posterior=start.posterior)
