"""Run the ``daskgmm`` command, SIGKILLing its own process from its own progress.

Usage::

    python tests/_kill_after.py MODULE:QUALNAME N [daskgmm arguments ...]

The callable ``MODULE:QUALNAME`` (a function, or ``Class.method``) is wrapped so
that the process kills itself with SIGKILL as soon as the ``N``-th call returns.
Tests use it to interrupt a real ``daskgmm`` process at a chosen point of its
work (after the N-th checkpoint write, after the N-th predicted block), so that
the moment of the kill does not depend on how fast the machine is.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import threading


def _install(target: str, n_calls: int) -> None:
    module_name, qualname = target.split(":")
    owner = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for name in path:
        owner = getattr(owner, name)
    original = getattr(owner, attr)
    lock = threading.Lock()
    calls = [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        with lock:
            calls[0] += 1
            if calls[0] >= n_calls:
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attr, wrapper)


if __name__ == "__main__":
    _install(sys.argv[1], int(sys.argv[2]))
    from daskgmm.jobs.cli import run

    sys.argv = ["daskgmm", *sys.argv[3:]]
    run()
