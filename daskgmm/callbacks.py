"""Callbacks run after each EM iteration: progress lines (checkpoints: :mod:`daskgmm.checkpoints`)."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from ._em import IterationInfo


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
        """Write one line for an iteration to ``stream``, and flush it.

        Parameters
        ----------
        info : IterationInfo
            The iteration just done: its number, mean log-likelihood, change and
            seconds (and convergence, in 'json'); prefixed by the model's index
            when several models are fitted together.
        """
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
