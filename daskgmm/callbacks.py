"""Callbacks run after each EM iteration: progress lines (checkpoints: :mod:`daskgmm.checkpoints`)."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np

from ._em import IterationInfo


def _strict(value: Any) -> Any:
    """``value`` with numpy scalars made Python ones and non-finite floats made None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, dict):
        return {str(key): _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def json_event(event: str, **fields: Any) -> str:
    """One log event as one line of strict JSON (RFC 8259).

    Parameters
    ----------
    event : str
        What happened (``"iteration"``, ``"summary"``, ``"error"``, ...).
    **fields
        The event's values. A number that is not finite (the first
        iteration's change, say) is written as ``null``: JSON has no
        ``Infinity`` or ``NaN``, and strict parsers reject them. Values JSON
        does not know (paths, say) are written as their ``str``.

    Returns
    -------
    str
        ``{"time": <UTC ISO 8601, milliseconds>, "event": event, **fields}``.
    """
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
              "event": event}
    record.update({key: _strict(value) for key, value in fields.items()})
    return json.dumps(record, allow_nan=False, default=str)


class ProgressLog:
    """One line per iteration: iteration, mean log-likelihood (a variational fit's lower
    bound, named so), its change, seconds.

    Parameters
    ----------
    stream : file, default=sys.stderr
    fmt : {'text', 'json'}
        'json' writes one strict JSON object per line (:func:`json_event`: a
        UTC timestamp, ``null`` for the first iteration's change), for
        schedulers and log collectors.
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
        # A variational fit's bound is not a log-likelihood: named as the fit's summary names it.
        bound = "log_likelihood" if info.posterior is None else "lower_bound"
        if self.fmt == "json":
            record: dict[str, Any] = {
                "iteration": info.n_iter, bound: info.lower_bound,
                "change": info.change, "seconds": round(info.seconds, 4),
                "converged": info.converged}
            if info.n_models > 1:
                record["model"] = info.model
            line = json_event("iteration", **record)
        else:
            line = (f"iteration {info.n_iter:4d}  {bound.replace('_', '-')} "
                    f"{info.lower_bound: .6f}  change {info.change: .3e}  {info.seconds:.2f} s")
            if info.n_models > 1:
                line = f"model {info.model:3d}  " + line
        print(line, file=self.stream, flush=True)
