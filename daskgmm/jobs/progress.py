"""Progress bars for the ``daskgmm`` command (tqdm), on a terminal only.

A bar is shown only when stderr is a terminal and the log format is text:
logs written to files, pipes and ``--log-format json`` keep one line per
event. On a terminal, the bars replace the per-iteration lines.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def bars_wanted(log_format: str) -> bool:
    """Whether to draw progress bars: text logs, on a terminal."""
    return log_format == "text" and sys.stderr.isatty()


def _bar(**kwargs: Any):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=True, **kwargs)


class FitProgress:
    """A fit's bars: one step per initialisation pass, then one per EM iteration.

    Use :meth:`watching` around the fit and pass the object as a fit callback.

    Parameters
    ----------
    max_iter : int
        The EM bar's length.
    n_models : int, default=1
        Models fitted together (``select``): the EM bar follows the one with
        the most iterations and counts those that have finished.
    """

    def __init__(self, max_iter: int, n_models: int = 1):
        self.max_iter = max_iter
        self.n_models = n_models
        self._init: Any = None
        self._em: Any = None
        self._finished: set[int] = set()
        self._position = 0

    @contextlib.contextmanager
    def watching(self) -> Iterator[FitProgress]:
        from .._passes import watch_passes

        try:
            with watch_passes(self._pass_done):
                yield self
        finally:
            for bar in (self._init, self._em):
                if bar is not None:
                    bar.close()

    def _pass_done(self, name: str) -> None:
        if name.startswith("gmm-init") and self._em is None:
            if self._init is None:
                self._init = _bar(desc="initialisation", unit=" pass")
            self._init.update(1)

    def __call__(self, info) -> None:
        if self._em is None:
            if self._init is not None:
                self._init.close()
            self._em = _bar(desc="EM", total=self.max_iter, unit=" it")
            self._em.update(info.n_iter - 1)  # resumed: the iterations done before
            self._position = info.n_iter - 1
        if info.finished:
            self._finished.add(info.model)
        if info.n_iter > self._position:
            self._em.update(info.n_iter - self._position)
            self._position = info.n_iter
        postfix = {"log-lik" if info.posterior is None else "bound": f"{info.lower_bound:.6f}"}
        if self.n_models > 1:
            postfix["finished"] = f"{len(self._finished)}/{self.n_models}"
        self._em.set_postfix(postfix, refresh=True)


@contextlib.contextmanager
def task_bar(description: str, wanted: bool) -> Iterator[None]:
    """A bar of the tasks the passes of this block run, on dask's local scheduler or a cluster.

    On dask's local scheduler the bar counts the tasks as they finish (a
    scheduler callback). On a distributed cluster it follows each pass's
    tasks on the scheduler (distributed's own progress feed, which the
    dashboard's progress bars also use).
    """
    if not wanted:
        yield
        return
    from dask.callbacks import Callback

    from .._passes import watch_submissions

    bar = _bar(desc=description, unit=" task")

    class _Tasks(Callback):
        def _start_state(self, dsk, state):
            # The tasks that will run: the graph less what it holds as data already.
            bar.total = (bar.total or 0) + len(state["ready"]) + len(state["waiting"])
            bar.refresh()

        def _posttask(self, key, result, dsk, state, worker_id):
            bar.update(1)

    feeds: list[Any] = []

    def follow(future, name: str) -> None:
        feeds.append(_ClusterFeed(future, bar))

    try:
        with _Tasks(), watch_submissions(follow):
            yield
        for feed in feeds:
            feed.finish()
    finally:
        bar.close()


class _ClusterFeed:
    """Draw one cluster pass's task counts on ``bar``, from the scheduler's progress feed."""

    def __init__(self, future, bar) -> None:
        from distributed.diagnostics.progressbar import ProgressBar

        self._bar = bar
        self._offset = bar.n  # the tasks of earlier passes
        self._last: tuple[int, int] | None = None

        class _Feed(ProgressBar):
            def _draw_bar(feed, remaining, all, **kwargs):  # noqa: N805 (distributed's signature)
                self._draw(all - remaining, all)

        self._feed = _Feed([future], scheduler=future.client.scheduler.address, interval="200ms")
        future.client.loop.add_callback(self._feed.listen)

    def _draw(self, done: int, total: int) -> None:
        self._last = (done, total)
        self._bar.total = self._offset + total
        self._bar.n = self._offset + done
        self._bar.refresh()

    def finish(self) -> None:
        """The pass has finished: show all of its tasks done, whatever the feed's last message."""
        if self._last is not None:
            self._draw(self._last[1], self._last[1])


@contextlib.contextmanager
def row_bar(description: str, total: int, wanted: bool) -> Iterator[Any]:
    """A bar of rows written: yields ``update(rows)`` (a no-op when not ``wanted``)."""
    if not wanted:
        yield None
        return
    bar = _bar(desc=description, total=total, unit=" rows", unit_scale=True)
    try:
        yield bar.update
    finally:
        bar.close()
