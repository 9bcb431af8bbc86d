"""Callbacks run after each EM iteration: progress lines and checkpoints."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ._em import IterationInfo
from .persistence import encode_params, model_file_contents, write_model_file


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

    def before_fit(self, model) -> None:
        """Record the parameters of the model whose fit starts; refuse ``n_init > 1``.

        Parameters
        ----------
        model : GaussianMixture

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
        self._params = encode_params(model)

    def __call__(self, info: IterationInfo) -> None:
        if self._params is None:
            raise RuntimeError("Checkpoint.before_fit(model) was not called before the first "
                               "iteration: the checkpoint would not know its model's parameters.")
        if info.n_iter % self.interval and not info.converged:
            return
        p = info.params
        arrays, metadata = model_file_contents(
            self._params, weights=p.weights, means=p.means, covariances=info.covariances,
            precisions_cholesky=p.precisions_cholesky, lower_bounds=info.lower_bounds,
            converged=info.converged, n_iter=info.n_iter, lower_bound=info.lower_bound,
            n_features=p.n_features,
            checkpoint={"n_iter": info.n_iter, "lower_bound": info.lower_bound,
                        "converged": info.converged, "written": time.time()},
        )
        write_model_file(self.path, arrays, metadata)


class ProgressLog:
    """One line per iteration: iteration, mean log-likelihood, its change, seconds.

    Parameters
    ----------
    stream : file, default=sys.stderr
    fmt : {'text', 'json'}
        'json' writes one JSON object per line, for schedulers and log collectors.
    """

    def __init__(self, stream: TextIO | None = None, fmt: str = "text"):
        if fmt not in ("text", "json"):
            raise ValueError(f"fmt must be 'text' or 'json', got {fmt!r}.")
        self.stream = stream or sys.stderr
        self.fmt = fmt

    def __call__(self, info: IterationInfo) -> None:
        if self.fmt == "json":
            record = {"event": "iteration", "iteration": info.n_iter,
                      "log_likelihood": info.lower_bound, "change": info.change,
                      "seconds": round(info.seconds, 4), "converged": info.converged}
            if info.n_models > 1:
                record["model"] = info.model
            line = json.dumps(record)
        else:
            line = (f"iteration {info.n_iter:4d}  log-likelihood {info.lower_bound: .6f}  "
                    f"change {info.change: .3e}  {info.seconds:.2f} s")
            if info.n_models > 1:
                line = f"model {info.model:3d}  " + line
        print(line, file=self.stream, flush=True)
