"""``GaussianMixture``: scikit-learn's estimator, fitted out-of-core on dask."""

from __future__ import annotations

import time
import warnings
from numbers import Integral, Real
from typing import Any

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import delayed
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, check_is_fitted, validate_data

from ._data import Dataset, as_dataset, as_sample_weight, input_is_lazy, is_dask_dataframe
from ._em import (
    EMResult,
    IterationInfo,
    check_finite_stats,
    combine_many,
    estep_chunk,
    run_em,
    run_em_many,
    total_loglik,
)
from ._init import initial_stats
from ._kernels import (
    GMMParams,
    compute_precision_cholesky,
    covariances_from_cholesky,
    m_step,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
)
from ._passes import run_pass, single_threaded_blas
from ._predict import checked_block, labels_block, log_likelihood_block, proba_block

PERSIST_MEMORY_FRACTION = 0.5


def _is_out_of_core_input(X: Any) -> bool:
    """Whether ``X`` is read chunk by chunk: dask and Zarr arrays, paths, dask DataFrames,
    dask-backed xarray DataArrays. Raises ``TypeError`` for lazy containers that cannot be
    (see :func:`daskgmm._data.input_is_lazy`): nothing lazy is ever gathered into the client."""
    return input_is_lazy(X)


def _check_lazy_feature_names(estimator, X: Any, *, reset: bool) -> None:
    """scikit-learn's feature-name rules for lazy input: a dask DataFrame's columns are
    ``feature_names_in_`` as a pandas DataFrame's would be; other lazy input has none."""
    if is_dask_dataframe(X) and hasattr(X, "columns"):
        import pandas as pd

        _check_feature_names(estimator, pd.DataFrame(columns=X.columns), reset=reset)
    else:
        _check_feature_names(estimator, np.empty((0, 0)), reset=reset)


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM, one pass over the data per iteration.

    A drop-in for :class:`sklearn.mixture.GaussianMixture` with the same
    parameters, methods and fitted attributes, for data that do not fit in
    memory: numpy arrays, dask arrays or Zarr arrays (a ``zarr.Array`` or a
    path). Each EM iteration maps an E-step over the row chunks, which yields
    per-chunk sufficient statistics, tree-reduces them and runs the M-step
    on the client. It runs on the current ``distributed.Client`` if there is
    one, else on dask's local threaded scheduler.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        The form of the covariance matrices.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    max_iter : int, default=100
        The number of EM iterations (passes over the data) at most.
    n_init : int, default=1
        The number of initialisations; the best lower bound is kept. All of
        them are fitted together, sharing each pass over the data (see
        :func:`daskgmm.fit_many`).
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial responsibilities are chosen. 'kmeans' runs a scalable
        k-means (k-means|| seeding then Lloyd passes) over the whole data;
        'k-means++' seeds on a uniform sample of rows; 'random_from_data'
        picks rows; 'random' draws random responsibilities.
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        User-given initial parameters, as in scikit-learn.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Start from the previous fit's parameters (``n_init`` is then 1).
    verbose : int, default=0
    verbose_interval : int, default=10
    split_every : int, default=8
        Fan-in of the tree reduction of per-chunk statistics.
    persist : 'auto' or bool, default='auto'
        Keep the data in cluster memory for the fit. 'auto' does on a
        distributed client when the data take at most half the workers'
        memory (numpy input always: it is in memory already), and streams
        otherwise, re-reading every chunk at each pass.
    chunk_size : int or 'auto', default='auto'
        Rows per chunk for numpy input ('auto': about 32 MiB of float64, or
        less so that there are at least 8 chunks of at least 4096 rows, which
        keeps every core busy). Dask and Zarr input keep their own row chunks.
    algorithm : {'batch', 'online'}, default='batch'
        'batch' is EM: one pass over the data per iteration, until ``tol``
        or ``max_iter``. 'online' is stepwise online EM (Cappé & Moulines,
        2009; see :meth:`partial_fit`): ``online_passes`` sweeps over the data
        in mini-batches of ``batch_size`` rows, in a random order of batches,
        with an M-step after every batch. For data so large that even a few
        dozen passes cost too much; ``tol`` and ``max_iter`` are then unused.
    online_passes : int, default=2
        Sweeps over the data of ``algorithm='online'``.
    batch_size : int or 'auto', default='auto'
        Rows per mini-batch of ``algorithm='online'`` ('auto': each row
        chunk of the data is a batch).
    learning_decay : float in (0.5, 1], default=0.6
    learning_offset : float >= 0, default=1.0
        The step-size schedule of online EM: the t-th mini-batch (t = 0, 1,
        ...) is blended into the running statistics with weight
        ``(t + learning_offset) ** -learning_decay`` (1 for the first). A
        decay in (0.5, 1] is what the convergence theory needs; smaller
        decays forget old batches faster.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        The fitted parameters, shaped as in scikit-learn.
    converged_ : bool
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Mean log-likelihood of the data computed in the last E-step of the
        best initialisation.
    lower_bounds_ : list of float
        ``lower_bound_`` after each iteration of the best initialisation.
    n_features_in_ : int

    Notes
    -----
    With the same initial parameters the fit equals scikit-learn's up to
    rounding; the statistics are accumulated in float64 about the current
    means (shifted moments), so data far from the origin lose no precision.
    """

    _parameter_constraints: dict = {
        **SklearnGaussianMixture._parameter_constraints,
        "split_every": [Interval(Integral, 2, None, closed="left")],
        "persist": [StrOptions({"auto"}), "boolean"],
        "chunk_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "algorithm": [StrOptions({"batch", "online"})],
        "online_passes": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        split_every=8,
        persist="auto",
        chunk_size="auto",
        algorithm="batch",
        online_passes=2,
        batch_size="auto",
        learning_decay=0.6,
        learning_offset=1.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.split_every = split_every
        self.persist = persist
        self.chunk_size = chunk_size
        self.algorithm = algorithm
        self.online_passes = online_passes
        self.batch_size = batch_size
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------

    def _fit_dataset(self, X) -> Dataset:
        if _is_out_of_core_input(X):
            _check_lazy_feature_names(self, X, reset=True)
            data = as_dataset(X, self.chunk_size)
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
            data = as_dataset(X, self.chunk_size)
        self._fit_dataset_checks(data)
        return data

    def _fit_dataset_checks(self, data: Dataset) -> None:
        """Record the number of features; refuse data with too few rows."""
        self.n_features_in_ = data.n_features
        if data.n_samples < 2:
            raise ValueError(
                f"Found array with {data.n_samples} sample(s) (shape={data.array.shape}) "
                "while a minimum of 2 is required by GaussianMixture."
            )
        if data.n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {data.n_samples}"
            )

    def _check_n_features(self, n_features: int) -> None:
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _maybe_persist(self, data: Dataset) -> Dataset:
        client = _current_client()
        if self.persist is False or (client is None and self.persist == "auto"):
            return data
        if client is None:
            return data.persist(lambda arrays: dask.persist(*arrays))
        if self.persist == "auto" and not data.in_memory:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            memory = sum(w.get("memory_limit") or 0 for w in workers)
            if data.array.nbytes > PERSIST_MEMORY_FRACTION * memory:
                return data
        return data.persist(client.persist)

    # ------------------------------------------------------------------
    # Fitting
    # ------------------------------------------------------------------

    def fit(self, X, y=None, *, sample_weight=None, callbacks=(), resume_from=None):
        """Estimate the model parameters with the EM algorithm.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
            The data. Dask and Zarr input are read chunk by chunk, never whole.
        y : Ignored
        sample_weight : array-like, dask.array.Array, zarr.Array or path of shape (n_samples,), optional
            Non-negative weight of each row (default: one). A row of weight
            ``w`` counts as ``w`` copies of it (integer weights equal repeated
            rows; zero drops the row) in EM. Dask and Zarr weights must have
            X's row chunks. The initialisation (``init_params``) does not use
            the weights: give ``means_init`` (and the others) to start from
            weighted estimates.
        callbacks : sequence of callables, optional
            Each is called with an :class:`daskgmm.IterationInfo` after every
            iteration (returning True stops the fit); one with a
            ``before_fit(model)`` method gets that call first. See
            :class:`daskgmm.Checkpoint` and :class:`daskgmm.ProgressLog`.
        resume_from : str or os.PathLike, optional
            A checkpoint file written by :class:`daskgmm.Checkpoint`: continue
            that fit instead of initialising. The result equals the
            uninterrupted fit for the same data and chunking.

        Returns
        -------
        self : GaussianMixture
        """
        self._validate_params()
        # One BLAS thread in this process for the whole fit, not toggled per
        # pass: see daskgmm._passes.single_threaded_blas (reproducibility).
        with single_threaded_blas:
            return self._fit(X, sample_weight, callbacks, resume_from)

    def _fit(self, X, sample_weight, callbacks, resume_from) -> GaussianMixture:
        data = self._fit_dataset(X).with_weights(sample_weight)
        self._check_initial_parameters(data.n_features)
        # A checkpoint of another job is refused before any work (persist included).
        checkpoint = None if resume_from is None else self._open_checkpoint(resume_from, data)
        data = self._maybe_persist(data)
        callbacks = list(callbacks)
        if self.verbose:
            callbacks.append(self._verbose_callback())
        for callback in callbacks:
            if hasattr(callback, "before_fit"):
                callback.before_fit(self)
        if checkpoint is not None:
            return self._resume(data, resume_from, checkpoint, callbacks)
        self.__dict__.pop("_online", None)  # a new fit starts online EM afresh
        if self.algorithm == "online":
            return self._fit_online(data, callbacks)

        if self.warm_start and hasattr(self, "converged_"):
            start = EMResult(self._fitted_params(), self.covariances_, self.lower_bound_)
            self._finish(self._run_em(data, [start], callbacks)[0])
            return self
        # Every initialisation first, then one EM run that advances all of
        # them together: each pass over the data serves all n_init models.
        random_state = check_random_state(self.random_state)
        starts = []
        for _ in range(self.n_init):
            params, covariances = self._initial_parameters(data.with_weights(None), random_state)
            starts.append(EMResult(params, covariances, -np.inf))
        started = time.perf_counter()
        results = self._run_em(data, starts, callbacks)
        if self.verbose and self.max_iter > 0:
            for init, result in enumerate(results):
                status = "converged" if result.converged else "did not converge"
                print(f"Initialization {init}: {status} after {result.n_iter} iterations, "
                      f"lower bound {result.lower_bound:.5f}")
            print(f"time lapse {time.perf_counter() - started:.5f}s")
        # The first of equal lower bounds wins, as in scikit-learn's loop.
        best = max(range(len(results)), key=lambda i: (results[i].lower_bound, -i))
        self._finish(results[best])
        return self

    def _run_em(self, data: Dataset, starts: list[EMResult], callbacks) -> list[EMResult]:
        return run_em_many(data, starts, tol=self.tol, reg_covar=self.reg_covar,
                           max_iter=self.max_iter, split_every=self.split_every,
                           callbacks=callbacks)

    # ------------------------------------------------------------------
    # Online EM
    # ------------------------------------------------------------------

    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of stepwise online EM on a mini-batch (Cappé & Moulines, 2009).

        The E-step of the batch (one pass over it) gives its sufficient
        statistics per unit weight; they are blended into the running
        statistics with the step size ``(t + learning_offset) **
        -learning_decay`` for the t-th call (1 for the first), and the M-step
        is taken from the running statistics.

        The first call starts from the fitted parameters if the model is
        fitted, else initialises on this batch with ``init_params`` (or the
        ``*_init`` parameters). Later calls continue; :meth:`fit` starts over.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
            The mini-batch.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional
            As in :meth:`fit`.

        Returns
        -------
        self : GaussianMixture
            ``n_iter_`` counts the batches seen; ``lower_bound_`` is the mean
            log-likelihood of this batch under the parameters before its step.
        """
        self._validate_params()
        with single_threaded_blas:
            first = not hasattr(self, "_online")
            if first and not hasattr(self, "converged_"):
                data = self._fit_dataset(X).with_weights(sample_weight)
                self._check_initial_parameters(data.n_features)
                params, covariances = self._initial_parameters(
                    data.with_weights(None), check_random_state(self.random_state))
                self._set_fitted(EMResult(params, covariances, -np.inf))
            else:
                data = as_dataset(X, self.chunk_size).with_weights(sample_weight)
                self._check_n_features(data.n_features)
            self._online_step(data)
        return self

    def _online_step(self, batch: Dataset) -> float:
        """E-step on ``batch``, blend, M-step; returns the batch's mean log-likelihood."""
        from ._online import blend, normalised, shift_stats, step_size

        params = self._fitted_params()
        running, centres, step = getattr(self, "_online", (None, None, 0))
        (stats,) = run_pass(batch, estep_chunk, (params,), name="gmm-online-estep",
                            split_every=self.split_every, combine=combine_many)
        check_finite_stats(stats, self.covariance_type, iteration=step + 1, params=params)
        if running is not None:
            running = shift_stats(running, centres, params.means, self.covariance_type)
        gamma = step_size(step, self.learning_decay, self.learning_offset)
        running = blend(running, normalised(stats), gamma)
        weights, means, covariances = m_step(running, params.means, self.covariance_type,
                                             self.reg_covar)
        prec_chol = compute_precision_cholesky(covariances, self.covariance_type)
        lower_bound = float(stats["loglik"] / stats["n"])
        history = list(getattr(self, "lower_bounds_", []))[: step] + [lower_bound]
        self._set_fitted(EMResult(GMMParams(weights, means, prec_chol, self.covariance_type),
                                  covariances, lower_bound, history, step + 1, False))
        self._online = (running, params.means, step + 1)
        return lower_bound

    def _fit_online(self, data: Dataset, callbacks) -> GaussianMixture:
        """``online_passes`` sweeps of online EM over ``data`` in mini-batches."""
        random_state = check_random_state(self.random_state)
        params, covariances = self._initial_parameters(data.with_weights(None), random_state)
        self._set_fitted(EMResult(params, covariances, -np.inf))
        if self.batch_size != "auto":
            data = data.rechunk_rows(self.batch_size)
        for _ in range(self.online_passes):
            for index in random_state.permutation(data.n_chunks):
                started = time.perf_counter()
                previous = self.lower_bound_
                lower_bound = self._online_step(data.chunk(index))
                info = IterationInfo(self.n_iter_, lower_bound, lower_bound - previous,
                                     time.perf_counter() - started, self._fitted_params(),
                                     self.covariances_, False, list(self.lower_bounds_))
                if any([bool(callback(info)) for callback in callbacks]):
                    return self
        return self

    def _finish(self, best: EMResult) -> None:
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning, stacklevel=2,
            )
        self._set_fitted(best)

    def _open_checkpoint(self, path, data: Dataset) -> tuple[dict, dict]:
        """Read a checkpoint and refuse it unless it is this job's, before any work.

        Returns
        -------
        arrays, state : dict
            The checkpoint's arrays and its ``checkpoint`` section.

        Raises
        ------
        ValueError
            Not a checkpoint, ``n_init > 1``, or online EM.
        CheckpointParamsError
            Other estimator parameters.
        CheckpointDataError
            Other shape, dtype, row chunking, weighting or location.
        """
        from .callbacks import check_data, check_params
        from .persistence import encode_params, read_model_file

        arrays, metadata = read_model_file(path)
        state = metadata.get("checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"{str(path)!r} is a model file, not a checkpoint; it cannot be resumed.")
        if self.n_init != 1:
            raise ValueError("Resuming from a checkpoint needs n_init=1: a checkpoint holds one "
                             "initialisation's state.")
        if self.algorithm != "batch":
            raise ValueError("Resuming from a checkpoint needs algorithm='batch': online EM's "
                             "running statistics are not saved in checkpoints.")
        check_params(path, metadata.get("params"), encode_params(self))
        check_data(path, state.get("data"), data.fingerprint())
        return arrays, state

    def _resume(self, data: Dataset, path, checkpoint: tuple[dict, dict],
                callbacks) -> GaussianMixture:
        """Continue the fit a checkpoint (checked by :meth:`_open_checkpoint`) holds.

        The first resumed pass also takes the data's content digest; a digest
        that differs from the checkpoint's stops the fit before its statistics
        are used (no M-step, no callback, no checkpoint written). A finished
        checkpoint has no iteration left: one pass takes the digest, and the
        fit ends with the checkpoint's model.
        """
        from ._passes import data_digest
        from .callbacks import check_digest, checkpoint_finished

        arrays, state = checkpoint
        recorded = state["data"]
        current = data.fingerprint()

        def verify(digest: str) -> None:
            check_digest(path, recorded, current, digest)

        params = GMMParams(arrays["weights"], arrays["means"], arrays["precisions_cholesky"],
                           self.covariance_type)
        history = [float(v) for v in arrays["lower_bounds"]]
        result = EMResult(params, arrays["covariances"], float(state["lower_bound"]),
                          history, int(state["n_iter"]), bool(state["converged"]))
        if checkpoint_finished(state) or result.converged or result.n_iter >= self.max_iter:
            verify(data_digest(data, self.split_every))
        else:
            result = run_em(
                data, params, arrays["covariances"],
                tol=self.tol, reg_covar=self.reg_covar, max_iter=self.max_iter,
                split_every=self.split_every, lower_bound=result.lower_bound,
                callbacks=callbacks, start_iter=result.n_iter, history=history,
                check_digest=verify,
            )
        self._finish(result)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then label ``X`` with the fitted model (one more pass).

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Lazy for dask and Zarr input.
        """
        return self.fit(X).predict(X)

    def _check_initial_parameters(self, n_features: int) -> None:
        k = self.n_components
        if self.weights_init is not None:
            weights = _checked_array(self.weights_init, (k,), "weights")
            if not np.isfinite(weights).all():
                raise ValueError("The parameter 'weights' contains NaN or infinity; weights_init "
                                 "must be finite proportions in [0, 1] that sum to 1.")
            # scikit-learn's sentences first, to the letter (its own tests match them; the
            # range one prints the minimum as "max value" and the maximum as "min value"),
            # then a clearer one.
            if np.any(weights < 0) or np.any(weights > 1):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got max "
                    f"value {weights.min():.5f}, min value {weights.max():.5f}. The weights "
                    f"range from {weights.min():.6g} to {weights.max():.6g}; each must lie in "
                    "[0, 1]."
                )
            # scikit-learn's tolerance: 1e-6 for float32 weights, 1e-8 otherwise.
            atol = 1e-6 if np.asarray(self.weights_init).dtype == np.float32 else 1e-8
            if not np.allclose(np.abs(1.0 - weights.sum()), 0.0, atol=atol):
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got sum(weights) = "
                    f"{weights.sum():.5f}. The weights must sum to 1 (within {atol:g}): "
                    "divide them by their sum."
                )
        if self.means_init is not None:
            _checked_array(self.means_init, (k, n_features), "means")
        if self.precisions_init is not None:
            shape = {
                "full": (k, n_features, n_features),
                "tied": (n_features, n_features),
                "diag": (k, n_features),
                "spherical": (k,),
            }[self.covariance_type]
            precisions = _checked_array(self.precisions_init, shape, f"{self.covariance_type} precision")
            if self.covariance_type in ("diag", "spherical"):
                if np.any(precisions <= 0):
                    raise ValueError(f"'{self.covariance_type} precision' should be positive")
            else:
                matrices = precisions.reshape(-1, n_features, n_features)
                if not np.allclose(matrices, np.swapaxes(matrices, 1, 2)) or np.any(
                    np.linalg.eigvalsh(matrices) <= 0
                ):
                    raise ValueError(
                        f"'{self.covariance_type} precision' should be symmetric, positive-definite"
                    )

    def _initial_parameters(self, data: Dataset, random_state) -> tuple[GMMParams, np.ndarray]:
        ct = self.covariance_type
        weights = means = covariances = None
        if self.weights_init is None or self.means_init is None or self.precisions_init is None:
            init = initial_stats(data, self.init_params, self.n_components, ct,
                                 random_state, self.split_every)
            weights, means, covariances = m_step(
                init.stats, init.centres, ct, self.reg_covar, weight_normaliser=data.n_samples
            )
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
        if self.precisions_init is None:
            prec_chol = compute_precision_cholesky(covariances, ct)
        else:
            prec_chol = precision_cholesky_from_precisions(self.precisions_init, ct)
            covariances = covariances_from_cholesky(prec_chol, ct)
        return GMMParams(weights, means, prec_chol, ct), covariances

    def _verbose_callback(self):
        def report(info: IterationInfo) -> None:
            if info.n_iter % self.verbose_interval == 0:
                if self.verbose == 1:
                    print(f"  Iteration {info.n_iter}")
                else:
                    print(f"  Iteration {info.n_iter}\t time lapse {info.seconds:.5f}s"
                          f"\t ll change {info.change:.5f}")
        return report

    def _set_fitted(self, result: EMResult) -> None:
        params = result.params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = result.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = precisions_from_cholesky(params.precisions_cholesky, params.covariance_type)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = list(result.lower_bounds)

    def _fitted_params(self) -> GMMParams:
        check_is_fitted(self)
        return GMMParams(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type)

    # ------------------------------------------------------------------
    # Prediction and scoring
    # ------------------------------------------------------------------

    def _map(self, X, kernel, kind: str):
        """Apply a per-row kernel: eagerly on in-memory input, lazily chunk by chunk otherwise.

        A dask DataFrame gives a dask Series (or, for ``proba``, a DataFrame)
        with its partitions and index; other lazy input a dask array with its
        row chunks.
        """
        params = self._fitted_params()
        if not _is_out_of_core_input(X):
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
            return kernel(X, params)
        _check_lazy_feature_names(self, X, reset=False)
        if is_dask_dataframe(X):
            return self._map_partitions(X, kernel, kind, params)
        data = as_dataset(X, self.chunk_size)
        self._check_n_features(data.n_features)
        params_token = self._params_token()
        params_key = delayed(params, pure=True, name=f"gmm-params-{params_token}")
        # The output's name depends on the parameters, the input and the kernel:
        # two outputs in one graph must never share keys.
        name = f"gmm-{kind}-{tokenize(params_token, data.array.name, kind)}"
        if kind == "proba":
            return data.array.map_blocks(
                checked_block, kernel, params_key, chunks=(data.array.chunks[0], (self.n_components,)),
                dtype=np.float64, name=name,
            )
        return data.array.map_blocks(
            checked_block, kernel, params_key, drop_axis=1,
            dtype=np.int64 if kind == "labels" else np.float64, name=name,
        )

    def _map_partitions(self, X, kernel, kind: str, params: GMMParams):
        """``_map`` for a dask DataFrame: partition by partition, keeping its index and partitions."""
        import pandas as pd

        from ._predict import frame_partition

        n_features = len(X.columns) if hasattr(X, "columns") else 1
        self._check_n_features(n_features)
        if kind == "proba":
            meta = pd.DataFrame({k: np.empty(0, dtype=np.float64) for k in range(self.n_components)},
                                index=X._meta.index)
        else:
            meta = pd.Series(np.empty(0, dtype=np.int64 if kind == "labels" else np.float64),
                             index=X._meta.index, name=kind)
        params_token = self._params_token()
        # One graph key for the parameters, which every partition's task depends on.
        params_key = delayed(params, pure=True, name=f"gmm-params-{params_token}")
        # The name depends on the parameters, the kernel and (through map_partitions) the input.
        return X.map_partitions(frame_partition, kernel, params_key, kind, meta=meta,
                                token=f"gmm-{kind}-{tokenize(params_token, kind)}")

    def _params_token(self) -> str:
        return tokenize(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type)

    def score_samples(self, X):
        """Log-likelihood of each sample.

        Returns
        -------
        log_prob : ndarray or dask.array.Array of shape (n_samples,)
            Lazy for dask and Zarr input.
        """
        return self._map(X, log_likelihood_block, "score-samples")

    def predict(self, X):
        """The most probable component of each sample.

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Lazy for dask and Zarr input.
        """
        return self._map(X, labels_block, "labels")

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Returns
        -------
        resp : ndarray or dask.array.Array of shape (n_samples, n_components)
            Lazy for dask and Zarr input.
        """
        return self._map(X, proba_block, "proba")

    def _total_loglik(self, X, sample_weight=None) -> tuple[float, float]:
        """Summed (weighted) log-likelihood of ``X`` and the total weight (rows if unweighted)."""
        params = self._fitted_params()
        if not _is_out_of_core_input(X):
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
            log_prob = log_likelihood_block(X, params)
            if sample_weight is None:
                return float(log_prob.sum()), X.shape[0]
            weights = as_sample_weight(sample_weight, (X.shape[0],)).compute()
            return float(log_prob @ weights), float(weights.sum())
        _check_lazy_feature_names(self, X, reset=False)
        data = as_dataset(X, self.chunk_size).with_weights(sample_weight)
        self._check_n_features(data.n_features)
        (result,) = total_loglik(data, [params], self.split_every)
        return float(result["loglik"]), float(result["n"])

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean (weighted) log-likelihood of the data under the model (one pass).

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like, dask.array.Array, zarr.Array or path of shape (n_samples,), optional
            As in :meth:`fit`: the score is ``sum(w * log p(x)) / sum(w)``.

        Returns
        -------
        log_likelihood : float
        """
        total, n = self._total_loglik(X, sample_weight)
        return total / n

    def _n_parameters(self) -> int:
        n_features = self.means_.shape[1]
        k = self.n_components
        cov_params = {
            "full": k * n_features * (n_features + 1) / 2.0,
            "diag": k * n_features,
            "tied": n_features * (n_features + 1) / 2.0,
            "spherical": k,
        }[self.covariance_type]
        return int(cov_params + n_features * k + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (one pass); lower is better."""
        total, n = self._total_loglik(X)
        return -2 * total + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (one pass); lower is better."""
        total, _ = self._total_loglik(X)
        return -2 * total + 2 * self._n_parameters()

    def sample(self, n_samples: int = 1):
        """Draw samples from the fitted mixture, as scikit-learn's ``sample`` does.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component labels.
        """
        return self.to_sklearn().sample(n_samples)

    def to_sklearn(self) -> SklearnGaussianMixture:
        """An equivalent, fitted :class:`sklearn.mixture.GaussianMixture`."""
        check_is_fitted(self)
        sk_params = SklearnGaussianMixture().get_params()
        model = SklearnGaussianMixture(**{k: v for k, v in self.get_params().items() if k in sk_params})
        for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                     "converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_"):
            setattr(model, attr, getattr(self, attr))
        return model


def _checked_array(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}")
    return array


def _current_client():
    """The ``distributed.Client`` that dask would compute on now, or None.

    Follows dask's own choice, so ``dask.config.set(scheduler="threads")``
    selects the local scheduler even while a client exists.
    """
    from dask.base import get_scheduler

    try:
        from distributed import Client
    except ImportError:
        return None
    client = getattr(get_scheduler(), "__self__", None)
    return client if isinstance(client, Client) else None


def fit_many(models, X, *, sample_weight=None, callbacks=()) -> list[GaussianMixture]:
    """Fit several Gaussian mixtures together, one pass over the data per iteration.

    The models may differ in ``n_components``, ``covariance_type``,
    initialisation, ``tol``, ``reg_covar`` and ``max_iter``. Each is
    initialised as its own ``fit`` would (initialisation passes are not
    shared), then every EM pass reads each chunk once and computes the
    statistics of every model still running from it; each model stops on its
    own convergence test. Each ends equal, up to rounding, to the same model
    fitted alone from the same initialisation. For data larger than memory,
    where a pass costs mostly reading, a sweep costs little more than its
    largest model.

    Parameters
    ----------
    models : sequence of GaussianMixture
        Unfitted or fitted (they are refitted; ``warm_start`` is ignored).
        Their ``split_every``, ``persist`` and ``chunk_size`` are taken from
        the first.
    X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
    sample_weight : array-like, dask.array.Array, zarr.Array or path of shape (n_samples,), optional
        As in :meth:`GaussianMixture.fit`.
    callbacks : sequence of callables, optional
        Called after each iteration of each model's candidates with an
        :class:`daskgmm.IterationInfo` whose ``model`` is the index of the
        candidate (models in order, ``n_init`` candidates each). A callback
        with a ``before_fit(model)`` method, such as
        :class:`daskgmm.Checkpoint`, follows one model's fit: it gets that
        call first when there is a single candidate (one model, ``n_init=1``),
        and is refused with a ValueError, before any work, otherwise.

    Returns
    -------
    list of GaussianMixture
        ``models``, fitted.

    Examples
    --------
    >>> from daskgmm import GaussianMixture, fit_many
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(1000, 2))
    >>> sweep = fit_many([GaussianMixture(k, random_state=0) for k in range(1, 4)], X)
    >>> best = min(sweep, key=lambda m: m.bic(X))
    """
    models = list(models)
    if not models or not all(isinstance(m, GaussianMixture) for m in models):
        raise TypeError("fit_many takes a non-empty sequence of daskgmm.GaussianMixture models.")
    first = models[0]
    callbacks = list(callbacks)
    with single_threaded_blas:
        for model in models:
            model._validate_params()
        _before_fit_many(models, callbacks)
        data = first._maybe_persist(first._fit_dataset(X).with_weights(sample_weight))
        owners, starts = [], []
        for index, model in enumerate(models):
            if model is not first:
                model._fit_dataset_checks(data)
            model._check_initial_parameters(data.n_features)
            random_state = check_random_state(model.random_state)
            for _ in range(model.n_init):
                params, covariances = model._initial_parameters(data.with_weights(None), random_state)
                starts.append(EMResult(params, covariances, -np.inf))
                owners.append(index)
        results = run_em_many(
            data, starts,
            tol=[models[o].tol for o in owners], reg_covar=[models[o].reg_covar for o in owners],
            max_iter=[models[o].max_iter for o in owners], split_every=first.split_every,
            callbacks=callbacks,
        )
    for index, model in enumerate(models):
        candidates = [(r.lower_bound, -i, r) for i, (o, r) in enumerate(zip(owners, results, strict=True))
                      if o == index]
        model._finish(max(candidates, key=lambda c: c[:2])[2])
    return models


def _before_fit_many(models: list[GaussianMixture], callbacks: list) -> None:
    """Give per-model callbacks (with ``before_fit``) their call, or refuse them before any work.

    Such a callback follows one model's fit; a checkpoint, say, holds one
    candidate's state. With several candidates in shared passes each of them
    would overwrite the others' state, so they are refused.
    """
    per_model = [c for c in callbacks if hasattr(c, "before_fit")]
    if not per_model:
        return
    n_candidates = sum(model.n_init for model in models)
    if n_candidates > 1:
        names = ", ".join(sorted({type(c).__name__ for c in per_model}))
        raise ValueError(
            f"fit_many fits {n_candidates} candidates ({len(models)} models, n_init "
            f"{[model.n_init for model in models]}) in shared passes, but {names} follows one "
            "model's fit (a checkpoint holds one candidate's state, and every candidate would "
            "write the same file). Fit each model on its own with its checkpoint, or drop the "
            "checkpoint from fit_many."
        )
    for callback in per_model:
        callback.before_fit(models[0])
