"""``GaussianMixture``: scikit-learn's estimator, fitted out-of-core on dask."""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import delayed
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names, check_is_fitted, validate_data

from ._data import Dataset, as_dataset, as_sample_weight, input_is_lazy, is_dask_dataframe
from ._em import EMResult, IterationInfo, Update, loglik_sums, run_em_many, total_loglik
from ._init import InitRequest, UserInit, filled_for_initialisation, initial_parameters_many
from ._missing import impute_block
from ._online import online_step, run_online_em
from ._param_constraints import GAUSSIAN, PARAMETER_CONSTRAINTS
from ._params import GMMParams, information_criteria, n_parameters, precisions_from_cholesky
from ._passes import run_pass, single_threaded_blas
from ._predict import checked_block, labels_block, log_likelihood_block, proba_block
from ._stats import data_moments_chunk, merge_data_moments
from .checkpoints import CheckpointState, open_checkpoint, resume_em
from .persistence import FittedModel

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
        k-means over the whole data in three passes (a lightweight coreset,
        k-means on it, one Lloyd pass); 'k-means++' seeds on a uniform sample
        of rows; 'random_from_data' picks rows; 'random' draws random
        responsibilities (one pass). Every candidate of ``n_init`` shares the
        passes.
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

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS
    _estimator_name = GAUSSIAN  # in model files and checkpoints

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
        missing="error",
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
        self.missing = missing

    # ------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------

    def _fit_dataset(self, X) -> Dataset:
        if _is_out_of_core_input(X):
            _check_lazy_feature_names(self, X, reset=True)
            data = as_dataset(X, self.chunk_size)
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2,
                              ensure_all_finite=self._finite_rule())
            data = as_dataset(X, self.chunk_size)
        _check_fit_data(data, self.n_components)
        self.n_features_in_ = data.n_features
        return data

    def _finite_rule(self) -> bool | str:
        """scikit-learn's ``ensure_all_finite`` for in-memory input: NaN allowed if marginalized."""
        return "allow-nan" if self.missing == "marginalize" else True

    def _check_n_features(self, n_features: int) -> None:
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

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
        # One BLAS thread in this process for the whole fit, not only per pass: see
        # daskgmm._passes.single_threaded_blas (measured: 12% faster per iteration).
        with single_threaded_blas:
            return self._fit(X, sample_weight, callbacks, resume_from)

    def _fit(self, X, sample_weight, callbacks, resume_from) -> GaussianMixture:
        data = self._fit_dataset(X).with_weights(sample_weight)
        self._check_initial_parameters(data.n_features)
        # A checkpoint of another job is refused before any work (persist included).
        checkpoint = None if resume_from is None else open_checkpoint(
            resume_from, self.get_params(deep=False), data.fingerprint(), n_init=self.n_init,
            algorithm=self.algorithm, estimator=self._estimator_name)
        data = _persisted(data, self.persist)
        callbacks = list(callbacks)
        if self.verbose:
            callbacks.append(self._verbose_callback())
        for callback in callbacks:
            if hasattr(callback, "before_fit"):
                callback.before_fit(self)
        if checkpoint is not None:
            return self._resume(data, checkpoint, callbacks)
        self.__dict__.pop("_online", None)  # a new fit starts online EM afresh
        if self.algorithm == "online":
            return self._fit_online(data, callbacks)

        update = self._prepare_update(data, _data_moments(data, self.split_every, [self]))
        if self.warm_start and hasattr(self, "converged_"):
            start = replace(self._current_result(), lower_bounds=[], n_iter=0, converged=False)
            (result,) = run_em_many(data, [start], tol=self.tol, reg_covar=self.reg_covar,
                                    max_iter=self.max_iter, split_every=self.split_every,
                                    callbacks=callbacks, updates=[update])
            self._finish(result)
            return self
        started = time.perf_counter()
        (candidates,) = _fit_candidates([self], [update], data, callbacks)
        if self.verbose and self.max_iter > 0:
            for init, result in enumerate(candidates):
                status = "converged" if result.converged else "did not converge"
                print(f"Initialization {init}: {status} after {result.n_iter} iterations, "
                      f"lower bound {result.lower_bound:.5f}")
            print(f"time lapse {time.perf_counter() - started:.5f}s")
        self._finish(_best(candidates))
        return self

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
                params, covariances = _initial_parameters(
                    self.get_params(deep=False), data.with_weights(None),
                    check_random_state(self.random_state))
                self._set_fitted(EMResult(params, covariances, -np.inf))
            else:
                data = as_dataset(X, self.chunk_size).with_weights(sample_weight)
                self._check_n_features(data.n_features)
            self._online_step(data)
        return self

    def _online_step(self, batch: Dataset) -> None:
        """One online EM step on ``batch``, continuing this model's running statistics."""
        current = EMResult(self._fitted_params(), self.covariances_, self.lower_bound_,
                           list(getattr(self, "lower_bounds_", [])), self.n_iter_, False)
        result, self._online = online_step(
            batch, current, getattr(self, "_online", None), reg_covar=self.reg_covar,
            learning_decay=self.learning_decay, learning_offset=self.learning_offset,
            split_every=self.split_every)
        self._set_fitted(result)

    def _fit_online(self, data: Dataset, callbacks) -> GaussianMixture:
        """``online_passes`` sweeps of online EM over ``data`` in mini-batches."""
        random_state = check_random_state(self.random_state)
        params, covariances = _initial_parameters(self.get_params(deep=False),
                                                  data.with_weights(None), random_state)
        start = EMResult(params, covariances, -np.inf)
        self._set_fitted(start)  # the model a failed first step leaves, as before
        result, state = run_online_em(
            data, start, passes=self.online_passes,
            batch_size=self.batch_size, random_state=random_state, reg_covar=self.reg_covar,
            learning_decay=self.learning_decay, learning_offset=self.learning_offset,
            split_every=self.split_every, callbacks=callbacks)
        self._set_fitted(result)
        if state is not None:
            self._online = state
        return self

    def _finish(self, best: EMResult) -> None:
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning, stacklevel=2,
            )
        self._set_fitted(best)

    def _resume(self, data: Dataset, checkpoint: CheckpointState, callbacks) -> GaussianMixture:
        """Continue the fit that a checkpoint (checked by :func:`open_checkpoint`) holds."""
        saved = type(self)._from_fitted_model(checkpoint.fitted)
        self._resuming(saved)
        self._finish(resume_em(data, checkpoint, saved._current_result(), saved._update(),
                               tol=self.tol, reg_covar=self.reg_covar, max_iter=self.max_iter,
                               split_every=self.split_every, callbacks=callbacks))
        return self

    # What the EM driver needs of an estimator, which BayesianGaussianMixture overrides.

    def _prepare_update(self, data: Dataset, moments: Callable[[], dict]) -> Update | None:
        """The update of this fit's iterations, before the first: EM's M-step (None) here.

        ``moments()`` gives the data's mean and scatter (:func:`_data_moments`),
        from one pass shared by the models fitted together, if any needs them.
        """
        return None

    def _resuming(self, saved: GaussianMixture) -> None:
        """Take what the iterations need from a checkpoint's model (EM needs nothing)."""

    def _update(self) -> Update | None:
        """The update of this fitted model's iterations (resuming a checkpoint): EM's (None)."""
        return None

    def _start(self, initial: GMMParams, covariances: np.ndarray, data: Dataset,
               update: Update | None) -> EMResult:
        """The first iteration's state from the initial parameters (one candidate)."""
        return EMResult(replace(initial, marginalize=self.missing == "marginalize"), covariances,
                        -np.inf)

    def _current_result(self) -> EMResult:
        """This fitted model as the state of its fit: to continue it (warm start, resume)."""
        return EMResult(self._fitted_params(), self.covariances_, self.lower_bound_,
                        list(self.lower_bounds_), self.n_iter_, self.converged_)

    def _iteration_model(self, info: IterationInfo, params: dict[str, Any]) -> FittedModel:
        """The model after iteration ``info`` of a fit with constructor ``params``, as a
        model file holds it (what a :class:`daskgmm.Checkpoint` writes)."""
        p = info.params
        return FittedModel(
            params=params, weights=p.weights, means=p.means, covariances=info.covariances,
            precisions_cholesky=p.precisions_cholesky, lower_bounds=list(info.lower_bounds),
            converged=info.converged, n_iter=info.n_iter, lower_bound=info.lower_bound,
            n_features=p.n_features, estimator=self._estimator_name,
        )

    def fit_predict(self, X, y=None):
        """Fit, then label ``X`` with the fitted model (one more pass).

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
            As in :meth:`fit`.
        y : Ignored

        Returns
        -------
        labels : ndarray or dask.array.Array of shape (n_samples,)
            Lazy for dask and Zarr input.
        """
        return self.fit(X).predict(X)

    def _check_initial_parameters(self, n_features: int) -> None:
        """scikit-learn's own checks of ``weights_init``, ``means_init`` and ``precisions_init``.

        Its messages come first, to the letter (its tests match them), then a
        sentence that says what the parameter must be.
        """
        _check_initial_parameters_as_sklearn(self.get_params(deep=False), n_features)

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
        self.n_features_in_ = params.n_features

    def _fitted_params(self) -> GMMParams:
        check_is_fitted(self)
        return GMMParams(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type,
                         self.missing == "marginalize")

    def _fitted_model(self) -> FittedModel:
        """This fitted model as plain data, for model files."""
        check_is_fitted(self)
        return self._iteration_model(self._fitted_info(), self.get_params(deep=False))

    def _fitted_info(self) -> IterationInfo:
        """This fitted model as the last iteration of its fit."""
        result = self._current_result()
        return IterationInfo(result.n_iter, result.lower_bound, 0.0, 0.0, result.params,
                             result.covariances, result.converged, result.lower_bounds,
                             posterior=result.posterior)

    @classmethod
    def _from_fitted_model(cls, fitted: FittedModel) -> GaussianMixture:
        """The fitted estimator that plain data (a model file's contents) describe."""
        model = cls(**fitted.params)
        model._set_fitted(EMResult(
            GMMParams(fitted.weights, fitted.means, fitted.precisions_cholesky,
                      model.covariance_type, model.missing == "marginalize"),
            fitted.covariances, fitted.lower_bound, list(fitted.lower_bounds), fitted.n_iter,
            fitted.converged,
        ))
        model.n_features_in_ = fitted.n_features
        return model

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
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                              ensure_all_finite=self._finite_rule())
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
        if kind in ("proba", "impute"):
            columns = self.n_components if kind == "proba" else data.n_features
            return da.map_blocks(
                checked_block, data.array, kernel, params_key,
                chunks=(data.array.chunks[0], (columns,)), dtype=np.float64, name=name,
            )
        return da.map_blocks(
            checked_block, data.array, kernel, params_key, drop_axis=1,
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
        elif kind == "impute":
            meta = X._meta.astype(np.float64)
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
        return tokenize(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type,
                        self.missing)

    def score_samples(self, X):
        """Log-likelihood of each sample under the mixture.

        Parameters
        ----------
        X : array-like, dask.array.Array, dask DataFrame, xarray.DataArray, zarr.Array or path \
of shape (n_samples, n_features)
            The rows to score. Out-of-core input is read chunk by chunk.

        Returns
        -------
        log_prob : ndarray, dask.array.Array or dask Series of shape (n_samples,)
            ``log p(x)`` of each row. Lazy for out-of-core input: a dask array
            with X's row chunks (a dask Series with X's index for a dask
            DataFrame), whose graph keys name the parameters and the input.

        Raises
        ------
        daskgmm.NonFiniteError
            A row's log-likelihood is not finite (values that overflow float64).
        """
        return self._map(X, log_likelihood_block, "score-samples")

    def predict(self, X):
        """The most probable component of each sample.

        Parameters
        ----------
        X : array-like, dask.array.Array, dask DataFrame, xarray.DataArray, zarr.Array or path \
of shape (n_samples, n_features)
            The rows to label. Out-of-core input is read chunk by chunk.

        Returns
        -------
        labels : ndarray, dask.array.Array or dask Series of shape (n_samples,)
            Component index of each row (int64). Lazy for out-of-core input,
            as in :meth:`score_samples`.
        """
        return self._map(X, labels_block, "labels")

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like, dask.array.Array, dask DataFrame, xarray.DataArray, zarr.Array or path \
of shape (n_samples, n_features)
            The rows to assign. Out-of-core input is read chunk by chunk.

        Returns
        -------
        resp : ndarray, dask.array.Array or dask DataFrame of shape (n_samples, n_components)
            Each row sums to one. Lazy for out-of-core input, as in
            :meth:`score_samples` (one column chunk; a DataFrame with a column
            per component for a dask DataFrame).
        """
        return self._map(X, proba_block, "proba")

    def impute(self, X):
        """``X`` with each missing entry (NaN) replaced by its conditional mean under the mixture.

        ``E[x_m | x_o] = sum_k p(k | x_o) E[x_m | x_o, k]``, with each
        component's conditional mean ``mu_m + S_mo S_oo^-1 (x_o - mu_o)``.
        Observed entries are returned as they are; a row with nothing
        observed gets the mixture's mean. Needs ``missing='marginalize'``.

        Parameters
        ----------
        X : array-like, dask.array.Array, dask DataFrame, xarray.DataArray, zarr.Array or path \
of shape (n_samples, n_features)
            Rows with missing entries as NaN.

        Returns
        -------
        X_imputed : ndarray or dask.array.Array of shape (n_samples, n_features)
            float64. Lazy for out-of-core input: a dask array with X's row
            chunks, which :func:`dask.array.to_zarr` can store chunk by chunk.
        """
        if self.missing != "marginalize":
            raise ValueError("impute needs a model fitted with missing='marginalize'; this one "
                             f"has missing={self.missing!r}.")
        return self._map(X, impute_block, "impute")

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
        ((total, n, _),) = _total_logliks([self], X, sample_weight)
        return total / _positive_weight(n)

    def information_criteria(self, X, sample_weight=None) -> dict[str, float]:
        """Log-likelihood, BIC, AIC and ICL of ``X`` under the model, from one pass.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
        sample_weight : array-like, dask.array.Array, zarr.Array or path of shape (n_samples,), optional
            As in :meth:`fit`: the log-likelihood is the weighted sum, and the
            number of samples is the total weight.

        Returns
        -------
        dict
            ``log_likelihood`` (mean per unit weight, as :meth:`score`),
            ``n_samples``, ``bic``, ``aic`` and ``icl`` (see :meth:`icl`).
        """
        return information_criteria_many([self], X, sample_weight)[0]

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (one pass); lower is better.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)

        Returns
        -------
        bic : float
            ``-2 log L + p log n``, with ``p`` free parameters (:func:`daskgmm._params.n_parameters`).
        """
        return self.information_criteria(X)["bic"]

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (one pass); lower is better.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)

        Returns
        -------
        aic : float
            ``-2 log L + 2 p``.
        """
        return self.information_criteria(X)["aic"]

    def icl(self, X, sample_weight=None) -> float:
        """Integrated completed likelihood criterion on ``X`` (one pass); lower is better.

        BIC penalised by the entropy of the hard classification, as mclust
        computes it (Biernacki, Celeux and Govaert, 2000): a mixture whose
        components overlap pays for the rows it cannot assign clearly, so ICL
        prefers well-separated clusters where BIC prefers the best density.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
        sample_weight : array-like, dask.array.Array, zarr.Array or path of shape (n_samples,), optional

        Returns
        -------
        icl : float
            ``BIC - 2 sum_n log max_k p(k | x_n)``.
        """
        return self.information_criteria(X, sample_weight)["icl"]

    def sample(self, n_samples: int = 1):
        """Draw samples from the fitted mixture, as scikit-learn's ``sample`` does.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component labels.
        """
        return self.to_sklearn().sample(n_samples)

    def to_sklearn(self) -> SklearnGaussianMixture:
        """An equivalent, fitted :class:`sklearn.mixture.GaussianMixture`.

        Returns
        -------
        sklearn.mixture.GaussianMixture
            With this model's shared parameters and fitted attributes (in memory).
        """
        check_is_fitted(self)
        sk_params = SklearnGaussianMixture().get_params()
        model = SklearnGaussianMixture(**{k: v for k, v in self.get_params().items() if k in sk_params})
        for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                     "converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_"):
            setattr(model, attr, getattr(self, attr))
        return model


_INITIAL_PARAMETER_ADVICE = {
    "weights_init": "weights_init must be {k} finite proportions in [0, 1] that sum to 1.",
    "means_init": "means_init must be a finite array of shape (n_components, n_features) = "
                  "({k}, {d}).",
    "precisions_init": "precisions_init must hold finite, symmetric positive-definite "
                       "precisions of the shape covariance_type={ct!r} gives.",
}


def _check_initial_parameters_as_sklearn(params: dict[str, Any], n_features: int) -> None:
    """Run :meth:`sklearn.mixture.GaussianMixture._check_parameters` on these parameters.

    One parameter at a time, so that the sentence appended to scikit-learn's
    message names the parameter at fault.
    """
    from sklearn.utils._array_api import get_namespace

    # scikit-learn >= 1.8 passes its array namespace through; 1.6 takes X alone.
    takes_xp = "xp" in inspect.signature(SklearnGaussianMixture._check_parameters).parameters
    X = np.empty((1, n_features))
    extra = {"xp": get_namespace(X)[0]} if takes_xp else {}
    for name, advice in _INITIAL_PARAMETER_ADVICE.items():
        if params[name] is None:
            continue
        sk_model = SklearnGaussianMixture(n_components=params["n_components"],
                                          covariance_type=params["covariance_type"],
                                          init_params="random", **{name: params[name]})
        try:
            sk_model._check_parameters(X, **extra)
        except ValueError as error:
            sentence = advice.format(k=params["n_components"], d=n_features,
                                     ct=params["covariance_type"])
            raise ValueError(f"{str(error).rstrip('.')}. {sentence}") from None


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
    initialisation, ``tol``, ``reg_covar`` and ``max_iter``, and may include
    :class:`daskgmm.BayesianGaussianMixture` models, whose variational
    iterations share the same passes (their data-driven priors share one
    pass too). Each is initialised as its own ``fit`` would, in shared
    initialisation passes, then every pass reads each chunk once and computes
    the statistics of every model still running from it; each model stops on
    its own convergence test. Each ends equal, up to rounding, to the same
    model fitted alone from the same initialisation. For data larger than
    memory, where a pass costs mostly reading, a sweep costs little more than
    its largest model.

    Parameters
    ----------
    models : sequence of GaussianMixture or BayesianGaussianMixture
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
        raise TypeError("fit_many takes a non-empty sequence of daskgmm.GaussianMixture or "
                        "daskgmm.BayesianGaussianMixture models.")
    first = models[0]
    callbacks = list(callbacks)
    with single_threaded_blas:
        for model in models:
            model._validate_params()
        if len({model.missing for model in models}) > 1:
            raise ValueError("fit_many: every model must have the same missing (they share the "
                             "passes over the data), got "
                             f"{sorted({model.missing for model in models})}.")
        _before_fit_many(models, callbacks)
        data = first._fit_dataset(X).with_weights(sample_weight)
        for model in models:
            _check_fit_data(data, model.n_components)
            model._check_initial_parameters(data.n_features)
        data = _persisted(data, first.persist)
        moments = _data_moments(data, first.split_every, models)
        updates = [model._prepare_update(data, moments) for model in models]
        candidates = _fit_candidates(models, updates, data, callbacks)
    for model, results in zip(models, candidates, strict=True):
        model._finish(_best(results))
    return models


def information_criteria_many(models, X, sample_weight=None) -> list[dict[str, float]]:
    """:meth:`GaussianMixture.information_criteria` of several fitted models, from one pass.

    Parameters
    ----------
    models : sequence of GaussianMixture
        Fitted models of the same number of features; ``chunk_size`` and
        ``split_every`` are taken from the first.
    X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
    sample_weight : array-like, dask.array.Array, zarr.Array or path of shape (n_samples,), optional

    Returns
    -------
    list of dict
        Per model: ``log_likelihood`` (mean per unit weight), ``n_samples``
        (the total weight), ``bic``, ``aic`` and ``icl``.
    """
    models = list(models)
    if any(not hasattr(model, "information_criteria") for model in models):
        raise TypeError("information_criteria_many: a BayesianGaussianMixture has no likelihood "
                        "to penalise (as its hidden information_criteria says).")
    if len({model.missing for model in models}) > 1:
        raise ValueError("information_criteria_many: every model must have the same missing, "
                         f"got {sorted({model.missing for model in models})}.")
    out = []
    for model, (total, n, assignment) in zip(models, _total_logliks(models, X, sample_weight),
                                             strict=True):
        _positive_weight(n)
        p = n_parameters(model.n_components, model.n_features_in_, model.covariance_type)
        out.append({"log_likelihood": total / n, "n_samples": n,
                    **information_criteria(total, n, p, assignment)})
    return out


def _positive_weight(n: float) -> float:
    """The data's total weight, refused if zero: no row weighs anything, or observed anything."""
    if n <= 0:
        raise ValueError("The data have no weight to score: every row has weight zero, or "
                         "(with missing='marginalize') no row has an observed entry.")
    return n


def _total_logliks(models: list[GaussianMixture], X, sample_weight,
                   ) -> list[tuple[float, float, float]]:
    """Each model's summed (weighted) log-likelihood of ``X``, the total weight, and the sum
    of ``log max_k p(k | x)`` (ICL's classification term), from one pass."""
    params = [model._fitted_params() for model in models]
    first = models[0]
    if not _is_out_of_core_input(X):
        X = validate_data(first, X, reset=False, dtype=[np.float64, np.float32],
                          ensure_all_finite=first._finite_rule())
        for model in models[1:]:
            model._check_n_features(X.shape[1])
        weights = None
        if sample_weight is not None:
            weights = as_sample_weight(sample_weight, (X.shape[0],)).compute()
        results = [loglik_sums(X, p, 0, weights) for p in params]
    else:
        for model in models:
            _check_lazy_feature_names(model, X, reset=False)
        data = as_dataset(X, first.chunk_size).with_weights(sample_weight)
        for model in models:
            model._check_n_features(data.n_features)
        results = total_loglik(data, params, first.split_every)
    return [(float(r["loglik"]), float(r["n"]), float(r["assignment"])) for r in results]


def _check_fit_data(data: Dataset, n_components: int) -> None:
    """Refuse data with too few rows for a fit (scikit-learn's messages)."""
    if data.n_samples < 2:
        raise ValueError(
            f"Found array with {data.n_samples} sample(s) (shape={data.array.shape}) "
            "while a minimum of 2 is required by GaussianMixture."
        )
    if data.n_samples < n_components:
        raise ValueError(
            "Expected n_samples >= n_components but got "
            f"n_components = {n_components}, n_samples = {data.n_samples}"
        )


def _persisted(data: Dataset, persist: bool | str) -> Dataset:
    """The data kept in (cluster) memory for the fit, or as they are (see ``persist``)."""
    client = _current_client()
    if persist is False or (client is None and persist == "auto"):
        return data
    if client is None:
        return data.persist(lambda arrays: dask.persist(*arrays))
    if persist == "auto" and not data.in_memory:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
        if data.array.nbytes > PERSIST_MEMORY_FRACTION * memory:
            return data
    return data.persist(client.persist)


def _init_request(params: dict[str, Any], random_state: np.random.RandomState) -> InitRequest:
    return InitRequest.make(params["init_params"], params["n_components"],
                            params["covariance_type"], random_state,
                            reg_covar=params["reg_covar"], needed=not _user_init(params).complete)


def _user_init(params: dict[str, Any]) -> UserInit:
    """The given initial parameters (a Bayesian mixture has no such parameters)."""
    return UserInit(params.get("weights_init"), params.get("means_init"),
                    params.get("precisions_init"))


def _data_moments(data: Dataset, split_every: int,
                  models: list[GaussianMixture]) -> Callable[[], dict[str, Any]]:
    """The data's row count, mean and scatter about the mean, from one pass taken at the
    first call only (a Bayesian mixture's data-driven priors). Weighted rows count as copies
    (integer weights are repeated rows), as in the fit itself. The scatter is the whole
    matrix if one of ``models`` has full or tied covariances, else its diagonal."""
    full = any(model.covariance_type in ("full", "tied") for model in models)

    @cache
    def moments() -> dict[str, Any]:
        return run_pass(data, data_moments_chunk, full,
                        name="gmm-data-moments", split_every=split_every,
                        combine=merge_data_moments)
    return moments


def _initial_parameters(params: dict[str, Any], data: Dataset,
                        random_state: np.random.RandomState) -> tuple[GMMParams, np.ndarray]:
    """A model's initial parameters, given its constructor parameters (one candidate).

    With missing entries marginalized, the initialisation runs on the data
    with each missing entry replaced by its column's mean.
    """
    marginalize = params["missing"] == "marginalize"
    if marginalize:
        data = filled_for_initialisation(data, params["split_every"])
    start, covariances = initial_parameters_many(data, [_init_request(params, random_state)],
                                                 [_user_init(params)], [params["reg_covar"]],
                                                 params["split_every"])[0]
    return replace(start, marginalize=marginalize), covariances


def _fit_candidates(models: list[GaussianMixture], updates: list[Update | None], data: Dataset,
                    callbacks) -> list[list[EMResult]]:
    """Every initialisation of every model, all iterated together in shared passes.

    The initialisations share their passes too: every candidate of a
    strategy is started in the same passes over the data.

    Parameters
    ----------
    models : list of GaussianMixture
        Model ``i`` has ``n_init`` candidates.
    updates : list of (Update or None)
        Each model's update (:meth:`GaussianMixture._prepare_update`).

    Returns
    -------
    list of list of EMResult
        Each model's candidates, in order.
    """
    params = [model.get_params(deep=False) for model in models]
    split_every = models[0].split_every
    init_data = data.with_weights(None)
    if models[0].missing == "marginalize":
        init_data = filled_for_initialisation(init_data, split_every)
    owners, requests = [], []
    for index, model_params in enumerate(params):
        random_state = check_random_state(model_params["random_state"])
        for _ in range(model_params["n_init"]):
            requests.append(_init_request(model_params, random_state))
            owners.append(index)
    initial = initial_parameters_many(
        init_data, requests, [_user_init(params[o]) for o in owners],
        [params[o]["reg_covar"] for o in owners], split_every)
    starts = [models[o]._start(start, covariances, data, updates[o])
              for o, (start, covariances) in zip(owners, initial, strict=True)]
    results = run_em_many(
        data, starts, tol=[params[o]["tol"] for o in owners],
        reg_covar=[params[o]["reg_covar"] for o in owners],
        max_iter=[params[o]["max_iter"] for o in owners], split_every=split_every,
        callbacks=callbacks, updates=[updates[o] for o in owners],
    )
    return [[r for o, r in zip(owners, results, strict=True) if o == index]
            for index in range(len(models))]


def _best(candidates: list[EMResult]) -> EMResult:
    """The candidate of the highest lower bound; the first of equal ones, as in scikit-learn."""
    return max(enumerate(candidates), key=lambda c: (c[1].lower_bound, -c[0]))[1]


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
