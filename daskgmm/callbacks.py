"""Callbacks run after each EM iteration: progress lines and checkpoints."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from ._em import IterationInfo
from .persistence import ESTIMATOR, FORMAT, FORMAT_VERSION, dependency_versions, write_model_file


class Checkpoint:
    """Write the fit's state atomically every ``interval`` iterations (and at the last).

    ``GaussianMixture.fit(X, resume_from=path)`` continues from the file and
    ends with the same model as an uninterrupted fit, bitwise, for the same
    data and chunking.

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
        self._params: dict = {}

    def before_fit(self, model) -> None:
        if getattr(model, "n_init", 1) > 1:
            raise ValueError(
                f"A checkpoint holds one model's state, but n_init={model.n_init} fits "
                f"{model.n_init} candidates together; use n_init=1 with a checkpoint."
            )
        self._params = {k: v for k, v in model.get_params().items()
                        if isinstance(v, (int, float, str, bool)) or v is None}

    def __call__(self, info: IterationInfo) -> None:
        if info.n_iter % self.interval and not info.converged:
            return
        p = info.params
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "estimator": ESTIMATOR,
            "params": self._params,
            "fitted": {"converged_": info.converged, "n_iter_": info.n_iter,
                       "lower_bound_": info.lower_bound, "n_features_in_": p.n_features},
            "versions": dependency_versions(),
            "checkpoint": {"n_iter": info.n_iter, "lower_bound": info.lower_bound,
                           "converged": info.converged, "written": time.time()},
        }
        arrays = {"weights": p.weights, "means": p.means, "covariances": info.covariances,
                  "precisions_cholesky": p.precisions_cholesky, "lower_bounds": info.lower_bounds}
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
