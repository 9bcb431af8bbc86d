"""Spark MLlib and pycave as peers in ``scripts/bench.py``.

Each factory returns a *fitter*: its constructor does all the data preparation
(starting Spark and caching the data in the JVM, or wrapping the data as a
torch tensor), so that :meth:`fit` times EM alone. ``fit(max_iter)`` runs
exactly ``max_iter`` EM iterations, without early stopping, from the same
initial parameters on every call, and returns the mean log-likelihood per row
of ``X`` under the fitted model, computed by scikit-learn from the peer's
fitted weights, means and covariances, so that it is comparable with
``sklearn.mixture.GaussianMixture.score(X)``.

Install the peers with ``pip install -e '.[bench]'`` after
``pip install torch==2.13.0`` (a CPU build) and, for pycave, the steps in
:func:`pycave_fitter`'s notes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import linalg

PEERS = ("spark", "pycave")
SPARK_MASTER = "local[2]"
SPARK_DRIVER_MEMORY = "8g"
REG_COVAR = 1e-6  # scikit-learn's and pycave's default diagonal regularisation


class Fitter(Protocol):
    """What ``scripts/bench.py`` times."""

    def fit(self, max_iter: int) -> float:
        """Run exactly ``max_iter`` EM iterations; return the mean log-likelihood per row."""
        ...

    def close(self) -> None:
        """Release the peer's resources."""
        ...


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def precision_cholesky(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Factors ``C`` with ``C @ C.T`` equal to each precision, in scikit-learn's shapes.

    Parameters
    ----------
    precisions : numpy.ndarray
        Precisions shaped as scikit-learn's ``precisions_init`` for ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        The covariance type.

    Returns
    -------
    numpy.ndarray
        Lower-triangular Cholesky factors (``full``, ``tied``) or square roots
        (``diag``, ``spherical``), in the layout both scikit-learn's
        ``precisions_cholesky_`` and pycave's ``precisions_cholesky`` use.
    """
    if covariance_type == "full":
        return np.stack([linalg.cholesky(p, lower=True) for p in precisions])
    if covariance_type == "tied":
        return linalg.cholesky(precisions, lower=True)
    return np.sqrt(precisions)


def covariance_to_precision_cholesky(covariances: np.ndarray) -> np.ndarray:
    """Upper-triangular ``C`` with ``C @ C.T = inv(S)`` for each full covariance ``S``.

    Parameters
    ----------
    covariances : numpy.ndarray of shape (k, d, d)
        Full covariance matrices.

    Returns
    -------
    numpy.ndarray of shape (k, d, d)
    """
    d = covariances.shape[-1]
    factors = []
    for covariance in covariances:
        lower = linalg.cholesky(covariance, lower=True)
        factors.append(linalg.solve_triangular(lower, np.eye(d), lower=True).T)
    return np.stack(factors)


def mean_log_likelihood(X: np.ndarray, weights: np.ndarray, means: np.ndarray,
                        precisions_cholesky: np.ndarray, covariance_type: str,
                        block_rows: int = 65_536) -> float:
    """Mean per-row log-likelihood of ``X`` under a mixture, as scikit-learn's ``score``.

    Parameters
    ----------
    X : numpy.ndarray of shape (n, d)
        The data.
    weights : numpy.ndarray of shape (k,)
        Mixture weights.
    means : numpy.ndarray of shape (k, d)
        Component means.
    precisions_cholesky : numpy.ndarray
        Factors ``C`` of the precisions (``C @ C.T``), shaped as scikit-learn's
        ``precisions_cholesky_`` for ``covariance_type``; triangular either way.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        The covariance type.
    block_rows : int, default 65536
        Rows scored at a time.

    Returns
    -------
    float
        ``sklearn.mixture.GaussianMixture.score(X)`` of a model with these parameters.
    """
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(len(weights), covariance_type=covariance_type)
    model.weights_ = np.asarray(weights, dtype=np.float64)
    model.means_ = np.asarray(means, dtype=np.float64)
    model.precisions_cholesky_ = np.asarray(precisions_cholesky, dtype=np.float64)
    model.n_features_in_ = X.shape[1]
    model.converged_, model.n_iter_ = True, 0
    # In blocks of rows, so that scoring does not raise the peer's peak memory.
    total = sum(float(model.score_samples(X[start:start + block_rows]).sum())
                for start in range(0, len(X), block_rows))
    return total / len(X)


def _first_line(text: str, limit: int = 240) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _process_tree_peak_rss_mib(pid: int) -> float:
    """Sum of the peak RSS (``VmHWM``) of a process and its live descendants, in MiB.

    0.0 if the process cannot be inspected (no psutil, or it has gone).
    """
    try:
        import psutil

        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except Exception:
        return 0.0
    total_kib = 0
    for process in processes:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                total_kib += next(int(line.split()[1]) for line in status
                                  if line.startswith("VmHWM:"))
        except (OSError, StopIteration, ValueError):
            with contextlib.suppress(Exception):
                total_kib += process.memory_info().rss // 1024
    return total_kib / 1024


# ---------------------------------------------------------------------------
# Spark MLlib
# ---------------------------------------------------------------------------


# Spark's own log4j2 defaults print INFO and WARN lines; keep errors only.
_SPARK_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


class SparkFitter:
    """Spark MLlib's RDD-based ``GaussianMixture`` in ``local[2]``, from a cached RDD.

    ``pyspark.ml.clustering.GaussianMixture`` (the DataFrame API) accepts no
    initial model, so this uses ``pyspark.mllib.clustering.GaussianMixture``,
    whose ``initialModel`` takes the weights, the means and the covariances
    (inverses of ``init['precisions_init']``): the initial parameters are
    identical to scikit-learn's.

    The constructor starts a SparkSession in ``local[2]``, turns ``X`` into an
    RDD of two partitions of MLlib ``DenseVector`` on the JVM side and caches
    and materialises that RDD. :meth:`fit` then makes the JVM call that
    ``pyspark.mllib.clustering.GaussianMixture.train`` makes
    (``PythonMLLibAPI.trainGaussianMixtureModel``) on that cached RDD;
    ``train`` itself would push the data through Python workers again on
    every call. ``convergenceTol=0``: MLlib stops only when two successive
    log-likelihoods are exactly equal, which :meth:`fit` detects from the
    number of Spark jobs the fit ran and reports as an error.

    Parameters
    ----------
    X : numpy.ndarray of shape (n, d)
        The data.
    k : int
        Number of components.
    covariance_type : str
        Must be ``'full'``: MLlib has no other.
    init : dict
        ``weights_init``, ``means_init``, ``precisions_init`` as for scikit-learn.
    master : str, default ``'local[2]'``
        Spark master.
    driver_memory : str, default ``'8g'``
        ``spark.driver.memory``; in local mode the executors live in the driver JVM.
    data_scale : float, default 1.0
        Give Spark ``data_scale * X`` (and means and covariances scaled to
        match) and scale the fitted parameters back. EM is equivariant under
        this, so only MLlib's epsilon floor (see Notes) sees the change: a
        ``data_scale`` below 1 raises every density by ``data_scale ** -d``
        and lets MLlib's EM follow scikit-learn's where it otherwise cannot.
        1.0 is Spark as its users get it.

    Notes
    -----
    MLlib differs from scikit-learn's EM in two ways that can change the
    fitted model: the E-step works with densities, not log-densities, and adds
    machine epsilon (``MLUtils.EPSILON``) to each component's weighted density
    before normalising (so when the densities are of the order of 1e-16 or
    smaller, as in high dimensions, the responsibilities are badly
    distorted); and the M-step adds no ``reg_covar`` to the covariances. The
    log-likelihood that MLlib computes internally (a sum over rows, of the
    parameters *before* the last M-step, with that epsilon) is not exposed by
    the Python API; :meth:`fit` scores the fitted model with scikit-learn.

    When every weighted density is below that epsilon, the responsibilities
    are uniform, every component becomes the data's mean and covariance
    after one iteration, and the log-likelihood sum repeats exactly, so MLlib
    stops after two iterations even with ``convergenceTol=0`` (it rejects a
    negative tolerance). :meth:`fit` then raises ``RuntimeError`` rather than
    time fewer iterations than asked.
    """

    def __init__(self, X: np.ndarray, k: int, covariance_type: str, init: dict, *,
                 master: str = SPARK_MASTER, driver_memory: str = SPARK_DRIVER_MEMORY,
                 data_scale: float = 1.0):
        if covariance_type != "full":
            raise ValueError(f"Spark MLlib fits full covariances only, not {covariance_type!r}")
        reason = unavailable_reason("spark")
        if reason:
            raise RuntimeError(reason)
        from pyspark.mllib.common import _to_java_object_rdd
        from pyspark.mllib.linalg import DenseMatrix, DenseVector
        from pyspark.sql import SparkSession

        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.k = k
        self.d = self.X.shape[1]
        self.data_scale = float(data_scale)
        covariances = np.linalg.inv(np.asarray(init["precisions_init"], dtype=np.float64))
        covariances = (covariances + covariances.transpose(0, 2, 1)) / 2 * self.data_scale**2
        means = np.asarray(init["means_init"], dtype=np.float64) * self.data_scale
        self._initial_weights = [float(w) for w in init["weights_init"]]
        self._initial_means = [DenseVector(m) for m in means]
        # MLlib matrices are column-major; the covariances are symmetric anyway.
        self._initial_covariances = [DenseMatrix(self.d, self.d, c.ravel(order="F"))
                                     for c in covariances]
        self._jvm_pid: int | None = None
        self._peak_rss_mib: float | None = None
        self.last_iterations: int | None = None

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        self._log_config = tempfile.TemporaryDirectory(prefix="bench-spark-")
        log_config = Path(self._log_config.name) / "log4j2.properties"
        log_config.write_text(_SPARK_LOG4J2)
        self.spark = (SparkSession.builder.master(master)
                      .appName("daskgmm-bench")
                      .config("spark.driver.memory", driver_memory)
                      .config("spark.driver.extraJavaOptions",
                              f"-Dlog4j2.configurationFile={log_config.as_uri()}")
                      .config("spark.driver.host", "127.0.0.1")
                      .config("spark.driver.bindAddress", "127.0.0.1")
                      .config("spark.ui.enabled", "false")
                      .config("spark.ui.showConsoleProgress", "false")
                      .config("spark.sql.shuffle.partitions", "2")
                      .getOrCreate())
        self.sc = self.spark.sparkContext
        self.sc.setLogLevel("ERROR")
        gateway_process = getattr(self.sc._gateway, "proc", None)
        self._jvm_pid = getattr(gateway_process, "pid", None)

        # Blocks of rows cross to the JVM once; the JVM keeps one DenseVector per row.
        n_partitions = self.sc.defaultParallelism
        scaled = self.X * self.data_scale if self.data_scale != 1.0 else self.X
        blocks = np.array_split(scaled, max(n_partitions, -(-len(scaled) // 16_384)))
        rows = self.sc.parallelize(blocks, n_partitions).flatMap(
            lambda block: [DenseVector(row) for row in block])
        self._data = _to_java_object_rdd(rows).cache()
        count = self._data.count()
        if count != len(self.X):
            raise RuntimeError(f"Spark cached {count} rows, expected {len(self.X)}")

    def fit(self, max_iter: int) -> float:
        """Run exactly ``max_iter`` EM iterations from the initial parameters.

        Parameters
        ----------
        max_iter : int
            Number of EM iterations.

        Returns
        -------
        float
            Mean log-likelihood per row of ``X`` under the fitted model
            (scikit-learn's ``score``).
        """
        from pyspark.mllib.clustering import GaussianMixtureModel
        from pyspark.mllib.common import callMLlibFunc

        group = f"gmm-{uuid.uuid4().hex}"
        self.sc.setJobGroup(group, "GaussianMixture.train", interruptOnCancel=False)
        try:
            java_model = callMLlibFunc(
                "trainGaussianMixtureModel", self._data, self.k, 0.0, max_iter, 0,
                self._initial_weights, self._initial_means, self._initial_covariances)
        finally:
            self.sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]  # None clears it
        self.last_iterations = self._iterations_run(group)
        if self.last_iterations is not None and self.last_iterations != max_iter:
            raise RuntimeError(
                f"Spark MLlib stopped after {self.last_iterations} of {max_iter} EM iterations "
                "although convergenceTol=0: two successive log-likelihoods were exactly equal, "
                "as happens when every weighted density is far below the machine epsilon that "
                f"MLlib's E-step adds to it (here in {self.d} dimensions; see SparkFitter)")
        model = GaussianMixtureModel(java_model)
        weights = np.asarray(model.weights, dtype=np.float64)
        means = np.stack([g.mu.toArray() for g in model.gaussians]) / self.data_scale
        covariances = np.stack([g.sigma.toArray() for g in model.gaussians]) / self.data_scale**2
        return mean_log_likelihood(self.X, weights, means,
                                   covariance_to_precision_cholesky(covariances), "full")

    def _iterations_run(self, group: str) -> int | None:
        """EM iterations of the last fit, from the Spark jobs it ran.

        MLlib's ``run`` runs one job (``first``) to find the dimension, then
        per iteration one ``treeAggregate`` job and, when it distributes the
        M-step (``(k - 1) / k * d > 25``), one more.
        """
        jobs = len(self.sc.statusTracker().getJobIdsForGroup(group))
        per_iteration = 2 if (self.k - 1) / self.k * self.d > 25 else 1
        if jobs < 1 or (jobs - 1) % per_iteration:
            return None
        return (jobs - 1) // per_iteration

    def peak_rss_mib(self) -> float:
        """Peak RSS of the Spark JVM and its Python workers (summed ``VmHWM``), MiB.

        Read at :meth:`close`, or now if the session is still running; 0.0
        if the JVM could not be inspected. ``scripts/bench.py`` reports the
        larger of this and the driver's own peak RSS.
        """
        if self._peak_rss_mib is not None:
            return self._peak_rss_mib
        return _process_tree_peak_rss_mib(self._jvm_pid) if self._jvm_pid is not None else 0.0

    def close(self) -> None:
        """Record the JVM's peak memory, unpersist the data and stop the session."""
        if self._jvm_pid is not None and self._peak_rss_mib is None:
            self._peak_rss_mib = _process_tree_peak_rss_mib(self._jvm_pid)
        with contextlib.suppress(Exception):
            self._data.unpersist()
        self.spark.stop()
        self._log_config.cleanup()


def spark_fitter(X: np.ndarray, k: int, covariance_type: str, init: dict) -> Fitter:
    """Spark MLlib's ``GaussianMixture`` in ``local[2]`` from identical initial parameters.

    Parameters
    ----------
    X : numpy.ndarray of shape (n, d)
        The data.
    k : int
        Number of components.
    covariance_type : str
        ``'full'`` (MLlib's only covariance type); anything else raises ``ValueError``.
    init : dict
        ``weights_init``, ``means_init``, ``precisions_init`` as for scikit-learn.

    Returns
    -------
    SparkFitter
        See :class:`SparkFitter` for what is timed and how MLlib's EM differs.
    """
    return SparkFitter(X, k, covariance_type, init)


# ---------------------------------------------------------------------------
# pycave
# ---------------------------------------------------------------------------


def _patch_lightkit_for_torch_2() -> None:
    """Let lightkit 0.5's ``RangeBatchSampler`` start on torch >= 2.2.

    Its ``__init__`` calls ``Sampler.__init__(None)``, and ``Sampler`` no
    longer takes an argument. The replacement sets the same attributes
    without that call; nothing else changes.
    """
    from lightkit.data.sampler import RangeBatchSampler
    from torch.utils.data import Sampler

    if getattr(RangeBatchSampler, "_bench_patched", False):
        return
    try:
        Sampler(None)  # type: ignore[call-arg]
        return  # an old torch: lightkit works as it is
    except TypeError:
        pass

    def __init__(self, sampler, batch_size: int, drop_last: bool = False) -> None:
        self.dataset_size = len(sampler)
        self.batch_size = batch_size
        self.drop_last = drop_last

    RangeBatchSampler.__init__ = __init__
    RangeBatchSampler._bench_patched = True


@contextlib.contextmanager
def _torch_default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class PycaveFitter:
    """pycave's ``GaussianMixture`` on the CPU, on the whole data as one batch.

    pycave's estimator accepts initial *means* only (``init_means``); from
    them it runs its own initialisation pass (a hard assignment of every row to
    its nearest mean, then weights, means and covariances of those clusters)
    before EM. With ``init_mode='exact'`` (the default) :meth:`fit` instead builds
    pycave's ``GaussianMixtureModel``, sets its weights, means and precision
    Cholesky factors to ``init``, and runs the EM stage of
    ``pycave.bayes.GaussianMixture.fit`` verbatim: the same
    ``GaussianMixtureLightningModule`` (convergence tolerance 0, so no early
    stopping), the same data loader and a trainer configured by the
    estimator, with ``max_epochs`` set as ``fit`` sets it. The initial
    parameters are then identical to scikit-learn's, and nothing else differs
    from pycave's own EM. With ``init_mode='means'`` it calls the estimator's
    ``fit`` with ``init_means`` only: the EM iterations are the same code,
    from pycave's initialisation (its extra pass is in every fit, so it
    cancels from the time per iteration, not from the log-likelihood).

    Parameters
    ----------
    X : numpy.ndarray of shape (n, d)
        The data.
    k : int
        Number of components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        The covariance type.
    init : dict
        ``weights_init``, ``means_init``, ``precisions_init`` as for scikit-learn.
    dtype : {'float64', 'float32'}, default 'float64'
        Precision of the data and the model. float64 matches scikit-learn and
        daskgmm; pycave's own benchmark runs float32.
    batch_size : int or None, default None
        Rows per batch; None is the whole data, as in pycave's published
        full-batch benchmark.
    init_mode : {'exact', 'means'}, default 'exact'
        See above.
    num_threads : int or None
        torch intra-op threads; default every core.

    Notes
    -----
    With the data in one batch, pycave 3.2.1 runs each EM iteration as *two*
    epochs (two passes over the data, responsibilities computed in both:
    weights and means in the first, covariances in the second), so
    ``max_epochs = 2 * max_iter``; ``num_iter_`` counts EM iterations. With
    several batches it runs one epoch per iteration and builds the
    covariances around means still being accumulated, which is not exact EM.
    The covariance regularisation is pycave's default, 1e-6, as
    scikit-learn's.
    """

    def __init__(self, X: np.ndarray, k: int, covariance_type: str, init: dict, *,
                 dtype: str = "float64", batch_size: int | None = None,
                 init_mode: str = "exact", num_threads: int | None = None):
        reason = unavailable_reason("pycave")
        if reason:
            raise RuntimeError(reason)
        if init_mode not in ("exact", "means"):
            raise ValueError(f"init_mode must be 'exact' or 'means', not {init_mode!r}")
        import torch
        from lightkit.data import DataLoader, collate_tensor, dataset_from_tensors

        torch.set_num_threads(num_threads or os.cpu_count() or 1)
        self.torch_dtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
        self.X = X
        self.k, self.covariance_type = k, covariance_type
        self.batch_size, self.init_mode = batch_size, init_mode
        self.data = torch.from_numpy(np.ascontiguousarray(X, dtype=dtype))
        self.loader = DataLoader(dataset_from_tensors(self.data),
                                 batch_size=batch_size or len(self.data),
                                 collate_fn=collate_tensor)
        as_tensor = functools.partial(torch.as_tensor, dtype=self.torch_dtype)
        self.initial_weights = as_tensor(np.asarray(init["weights_init"], dtype=np.float64))
        self.initial_means = as_tensor(np.asarray(init["means_init"], dtype=np.float64))
        self.initial_precisions_cholesky = as_tensor(
            precision_cholesky(np.asarray(init["precisions_init"], dtype=np.float64),
                               covariance_type))
        self.last_iterations: int | None = None

    def _estimator(self, max_iter: int) -> Any:
        from pycave.bayes import GaussianMixture

        return GaussianMixture(
            self.k, covariance_type=self.covariance_type, init_means=self.initial_means,
            convergence_tolerance=0, covariance_regularization=REG_COVAR,
            batch_size=self.batch_size,
            trainer_params=dict(max_epochs=max_iter, accelerator="cpu", devices=1))

    def _fit_exact(self, max_iter: int) -> Any:
        from pycave.bayes.gmm import GaussianMixtureModel, GaussianMixtureModelConfig
        from pycave.bayes.gmm.lightning_module import GaussianMixtureLightningModule

        estimator = self._estimator(max_iter)
        model = GaussianMixtureModel(GaussianMixtureModelConfig(
            num_components=self.k, num_features=self.data.shape[1],
            covariance_type=self.covariance_type))
        model.component_probs.copy_(self.initial_weights)
        model.means.copy_(self.initial_means)
        model.precisions_cholesky.copy_(self.initial_precisions_cholesky)
        # As pycave's GaussianMixture.fit decides it (one batch: EM over two epochs).
        is_batch_training = estimator._num_batches_per_epoch(self.loader) == 1
        module = GaussianMixtureLightningModule(
            model, convergence_tolerance=0, covariance_regularization=REG_COVAR,
            is_batch_training=is_batch_training)
        epochs_per_iteration = 1 + int(is_batch_training)
        estimator.trainer(max_epochs=max_iter * epochs_per_iteration).fit(module, self.loader)
        self.last_iterations = module.current_epoch // epochs_per_iteration
        return model

    def fit(self, max_iter: int) -> float:
        """Run exactly ``max_iter`` EM iterations from the initial parameters.

        Parameters
        ----------
        max_iter : int
            Number of EM iterations.

        Returns
        -------
        float
            Mean log-likelihood per row of ``X`` under the fitted model
            (scikit-learn's ``score``).
        """
        with _torch_default_dtype(self.torch_dtype), _quiet_lightning():
            if self.init_mode == "exact":
                model = self._fit_exact(max_iter)
            else:
                estimator = self._estimator(max_iter).fit(self.data)
                model, self.last_iterations = estimator.model_, estimator.num_iter_
        if self.last_iterations != max_iter:
            raise RuntimeError(f"pycave ran {self.last_iterations} EM iterations, not {max_iter}")
        return mean_log_likelihood(
            self.X, model.component_probs.double().numpy(), model.means.double().numpy(),
            model.precisions_cholesky.double().numpy(), self.covariance_type)

    def close(self) -> None:
        """Nothing to release."""


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence PyTorch Lightning's and pycave's informational output."""
    import pycave

    pycave.set_logging_level(logging.WARNING)
    loggers = [logging.getLogger(name) for name in
               ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def pycave_fitter(X: np.ndarray, k: int, covariance_type: str, init: dict) -> Fitter:
    """pycave's ``GaussianMixture`` on the CPU, from identical initial parameters.

    Parameters
    ----------
    X : numpy.ndarray of shape (n, d)
        The data.
    k : int
        Number of components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        The covariance type.
    init : dict
        ``weights_init``, ``means_init``, ``precisions_init`` as for scikit-learn.

    Returns
    -------
    PycaveFitter
        float64, the whole data as one batch, every core, ``init_mode='exact'``;
        see :class:`PycaveFitter`.

    Raises
    ------
    RuntimeError
        If pycave cannot run here (the message is :func:`unavailable_reason`'s).

    Notes
    -----
    Every pycave release pins ``torch<2`` (3.2.1 also ``numpy<2``,
    ``pytorch-lightning<2``, ``lightkit<0.6`` and Python < 3.11), so
    ``pip install pycave`` cannot resolve with torch 2.13. What runs here::

        pip install torch==2.13.0                      # the CPU build
        pip install --no-deps --ignore-requires-python \\
            pycave==3.2.1 lightkit==0.5.0 pytorch-lightning==1.9.5 torchmetrics==0.11.4
        pip install tqdm lightning-utilities "setuptools>=77.0.3,<81"

    (pytorch-lightning 1.9 imports ``pkg_resources``, gone from setuptools 81.)
    lightkit 0.5 needs one shim on torch >= 2.2, applied at import; see
    :func:`_patch_lightkit_for_torch_2`.
    """
    return PycaveFitter(X, k, covariance_type, init)


# ---------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------


@functools.cache
def unavailable_reason(library: str) -> str | None:
    """Why ``library`` cannot run here, or None if it can.

    Parameters
    ----------
    library : {'spark', 'pycave'}
        The peer.

    Returns
    -------
    str or None
        A short sentence saying what is missing or broken, or None.
    """
    if library == "spark":
        return _spark_unavailable_reason()
    if library == "pycave":
        return _pycave_unavailable_reason()
    raise ValueError(f"unknown peer {library!r}; expected one of {PEERS}")


def _spark_unavailable_reason() -> str | None:
    try:
        import pyspark
    except ImportError as exc:
        return f"pyspark is not installed ({exc}); pip install '.[bench]'"
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return f"pyspark {pyspark.__version__} needs Java 17 or later, and no java is on PATH"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"java -version failed: {exc}"
    banner = out.stderr + out.stdout
    try:
        version = banner.split('"')[1]
        major = int(version.split(".")[0] if not version.startswith("1.") else version.split(".")[1])
    except (IndexError, ValueError):
        return f"cannot read the Java version from {_first_line(banner)!r}"
    if major < 17:
        return f"pyspark {pyspark.__version__} needs Java 17 or later, found Java {version}"
    return None


def _pycave_unavailable_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return ("pycave needs PyTorch, which is not installed "
                "(pip install torch==2.13.0, the CPU build)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _patch_lightkit_for_torch_2()
            importlib.import_module("pycave.bayes")
    except Exception as exc:  # any import-time incompatibility, not only ImportError
        return (f"pycave does not import with torch {torch.__version__}: "
                f"{type(exc).__name__}: {_first_line(str(exc))} (every pycave release pins "
                "torch<2; see bench_peers.pycave_fitter for the install that works)")
    return None
