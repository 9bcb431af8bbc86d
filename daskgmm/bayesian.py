"""``BayesianGaussianMixture``: scikit-learn's variational estimator, fitted out of core on dask.

One pass over the data per iteration, through the same E-step kernels and tree reduction as
:class:`daskgmm.GaussianMixture` (see :mod:`daskgmm._variational` for why the variational
E-step is a mixture's E-step); the posterior update and the lower bound run on the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture
from sklearn.utils.validation import check_is_fitted

from . import _variational as vb
from ._data import Dataset
from ._em import EMResult, IterationInfo, Update
from ._param_constraints import BAYESIAN, BAYESIAN_PARAMETER_CONSTRAINTS
from ._params import GMMParams, precisions_from_cholesky
from ._stats import data_covariance
from .estimator import GaussianMixture
from .persistence import FittedModel, VariationalFit


class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian estimation of a Gaussian mixture, out of core.

    A drop-in for :class:`sklearn.mixture.BayesianGaussianMixture`: the same
    parameters, defaults and fitted attributes, with daskgmm's ``split_every``,
    ``persist`` and ``chunk_size``. A generous ``n_components`` lets the data
    switch off the components they do not need (their ``weights_`` go to
    about zero). The data-driven prior defaults (``mean_prior``: the data's
    mean; ``covariance_prior``: their covariance) take one pass, out of core.

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, \
weight_concentration_prior_type, weight_concentration_prior, mean_precision_prior, \
mean_prior, degrees_of_freedom_prior, covariance_prior, random_state, warm_start, verbose, \
verbose_interval
        As scikit-learn's.
    split_every, persist, chunk_size
        As :class:`daskgmm.GaussianMixture`'s.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_, converged_, n_iter_, \
lower_bound_, lower_bounds_, weight_concentration_prior_, weight_concentration_, \
mean_precision_prior_, mean_precision_, mean_prior_, degrees_of_freedom_prior_, \
degrees_of_freedom_, covariance_prior_, n_features_in_
        As scikit-learn's.
    """

    _parameter_constraints: dict = BAYESIAN_PARAMETER_CONSTRAINTS
    _estimator_name = BAYESIAN
    missing = "error"  # NaN is refused (missing entries are not marginalized here yet)

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        split_every=8,
        persist="auto",
        chunk_size="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.split_every = split_every
        self.persist = persist
        self.chunk_size = chunk_size

    # GaussianMixture's initial-parameter keys, which this estimator does not have.
    weights_init = means_init = precisions_init = None
    algorithm = "batch"

    def _check_initial_parameters(self, n_features: int) -> None:
        """scikit-learn's checks of the priors given (shapes, ranges, positive definiteness),
        before any work: a bad prior is a parameter error, not one found after the fit."""
        sk_model = SklearnBayesianGaussianMixture(**self._sklearn_params())
        X = np.zeros((2, n_features))  # only its shape is used for priors that are given
        sk_model._check_means_parameters(X)
        sk_model._check_precision_parameters(X)
        check_covariance_prior = getattr(sk_model, "_check_covariance_prior_parameter", None) \
            or sk_model._checkcovariance_prior_parameter  # scikit-learn's own spelling
        check_covariance_prior(X)
        if self.covariance_type == "spherical" and self.covariance_prior is not None \
                and np.ndim(self.covariance_prior) != 0:
            raise ValueError("The parameter 'spherical covariance_prior' should be a positive "
                             f"number, but got an array of shape {np.shape(self.covariance_prior)}.")

    def _sklearn_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.get_params(deep=False).items()
                if k not in ("split_every", "persist", "chunk_size")}

    def fit(self, X, y=None, *, sample_weight=None, callbacks=(), resume_from=None):
        """Estimate the variational posterior, one pass over the data per iteration.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like, dask.array.Array or zarr.Array of shape (n_samples,), optional
            Non-negative weight of each row, as in :meth:`daskgmm.GaussianMixture.fit`.
        callbacks : sequence of callables, optional
            Each is called with an :class:`daskgmm.IterationInfo` after every
            iteration (its ``lower_bound`` the variational lower bound, its
            ``posterior`` the posterior); :class:`daskgmm.Checkpoint` works as
            for :class:`daskgmm.GaussianMixture`.
        resume_from : str or os.PathLike, optional
            A checkpoint written by :class:`daskgmm.Checkpoint` during a fit
            of this estimator: continue that fit, with the priors it recorded.

        Returns
        -------
        self : BayesianGaussianMixture
        """
        return super().fit(X, y, sample_weight=sample_weight, callbacks=callbacks,
                           resume_from=resume_from)

    def _prepare_update(self, data: Dataset, moments: Callable[[], dict]) -> vb.VariationalUpdate:
        self._set_priors(self._priors(data.n_features, moments))
        return self._update()

    def _resuming(self, saved: GaussianMixture) -> None:
        """The checkpoint's priors (its data-driven ones were computed from the same data)."""
        assert isinstance(saved, BayesianGaussianMixture)
        self._set_priors(saved._fitted_priors())

    def _update(self) -> vb.VariationalUpdate:
        return vb.VariationalUpdate(self._fitted_priors(), self.covariance_type,
                                    self.n_components, self.reg_covar)

    def _priors(self, n_features: int, moments: Callable[[], dict]) -> vb.Priors:
        """The priors, scikit-learn's defaults from one pass over the data when not given
        (those given were checked by :meth:`_check_initial_parameters`)."""
        mean = (moments()["mean"] if self.mean_prior is None
                else np.asarray(self.mean_prior, dtype=np.float64))
        if self.covariance_prior is None:
            cov = data_covariance(moments())  # the matrix, or its diagonal (see _data_moments)
            variances = np.diag(cov).copy() if cov.ndim == 2 else cov
            by_type: dict[str, np.ndarray | float] = {
                "full": cov, "tied": cov, "diag": variances, "spherical": float(variances.mean())}
            covariance: np.ndarray | float = by_type[self.covariance_type]
        else:
            covariance = (np.asarray(self.covariance_prior, dtype=np.float64)
                          if self.covariance_type != "spherical" else float(self.covariance_prior))
        return vb.Priors(
            self.weight_concentration_prior_type,
            (1.0 / self.n_components if self.weight_concentration_prior is None
             else self.weight_concentration_prior),
            1.0 if self.mean_precision_prior is None else self.mean_precision_prior,
            mean,
            float(n_features) if self.degrees_of_freedom_prior is None
            else self.degrees_of_freedom_prior,
            covariance)

    def _set_priors(self, priors: vb.Priors) -> None:
        self.weight_concentration_prior_ = priors.weight_concentration
        self.mean_precision_prior_ = priors.mean_precision
        self.mean_prior_ = priors.mean
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom
        self.covariance_prior_ = priors.covariance

    def _fitted_priors(self) -> vb.Priors:
        return vb.Priors(self.weight_concentration_prior_type, self.weight_concentration_prior_,
                         self.mean_precision_prior_, self.mean_prior_,
                         self.degrees_of_freedom_prior_, self.covariance_prior_)

    def _start(self, initial: GMMParams, covariances: np.ndarray, data: Dataset,
               update: Update | None) -> EMResult:
        """As scikit-learn's ``_initialize``: the posterior of the initial responsibilities'
        ``N_k`` (the weights times n), means and covariances (``reg_covar`` included)."""
        assert isinstance(update, vb.VariationalUpdate)
        params, post = update.start(initial.weights * data.n_samples, initial.means, covariances)
        return EMResult(params, post.covariances, -np.inf, posterior=post)

    def _current_result(self) -> EMResult:
        return replace(super()._current_result(), posterior=self._posterior())

    def _set_fitted(self, result: EMResult) -> None:
        post: vb.Posterior = result.posterior
        self.weight_concentration_ = post.weight_concentration
        self.mean_precision_ = post.mean_precision
        self.means_ = post.means
        self.degrees_of_freedom_ = post.degrees_of_freedom
        self.covariances_ = post.covariances
        self.precisions_cholesky_ = post.precisions_cholesky
        self.precisions_ = precisions_from_cholesky(post.precisions_cholesky, self.covariance_type)
        self.weights_ = vb.mixture_weights(post.weight_concentration,
                                           self.weight_concentration_prior_type)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = list(result.lower_bounds)
        self.n_features_in_ = post.means.shape[1]

    def _posterior(self) -> vb.Posterior:
        check_is_fitted(self)
        return vb.Posterior(self.weight_concentration_, self.mean_precision_, self.means_,
                            self.degrees_of_freedom_, self.covariances_, self.precisions_cholesky_)

    def _fitted_params(self) -> GMMParams:
        """The mixture whose weighted log-densities are scikit-learn's ``_estimate_weighted_log_prob``."""
        return vb.estep_params(self._posterior(), self.covariance_type,
                               self.weight_concentration_prior_type)

    def _log_weight_shift(self) -> float:
        """What :func:`daskgmm._variational.estep_params` took from the log weights, which the
        log-likelihoods of :meth:`score_samples` and :meth:`score` get back."""
        return float(vb.estep_log_weights(self._posterior(),
                                          self.weight_concentration_prior_type).max())

    def score_samples(self, X):
        """scikit-learn's ``score_samples``: each row's ``logsumexp`` of the weighted log
        densities under the posterior (lazy for out-of-core input, as for GaussianMixture)."""
        return super().score_samples(X) + self._log_weight_shift()

    def score(self, X, y=None, sample_weight=None) -> float:
        """The mean (weighted) :meth:`score_samples` of ``X`` (one pass)."""
        return super().score(X, y, sample_weight) + self._log_weight_shift()

    def _params_token(self) -> str:
        from dask.base import tokenize

        params = self._fitted_params()
        return tokenize("bayesian", params.weights, params.means, params.precisions_cholesky,
                        self.covariance_type)

    def _not_here(name: str):  # type: ignore[misc]  # noqa: N805 (a helper of the class body)
        def unavailable(self):
            raise AttributeError(
                f"BayesianGaussianMixture has no {name}: "
                + ("scikit-learn's has none either." if name == "partial_fit" else
                   "its score is a variational bound's, not a likelihood to penalise."))
        return property(unavailable)

    # GaussianMixture's methods that have no meaning here: hidden, so hasattr() is False.
    partial_fit = _not_here("partial_fit")
    bic = _not_here("bic")
    aic = _not_here("aic")
    icl = _not_here("icl")
    information_criteria = _not_here("information_criteria")
    del _not_here

    def _iteration_model(self, info: IterationInfo, params: dict[str, Any]) -> FittedModel:
        """The model file's contents for the posterior after ``info`` under this fit's priors."""
        post: vb.Posterior = info.posterior
        prior_type = params["weight_concentration_prior_type"]
        variational = VariationalFit(
            weight_concentration=np.asarray(post.weight_concentration, dtype=np.float64),
            mean_precision=post.mean_precision,
            degrees_of_freedom=np.asarray(post.degrees_of_freedom, dtype=np.float64),
            weight_concentration_prior=self.weight_concentration_prior_,
            mean_precision_prior=self.mean_precision_prior_, mean_prior=self.mean_prior_,
            degrees_of_freedom_prior=self.degrees_of_freedom_prior_,
            covariance_prior=np.asarray(self.covariance_prior_, dtype=np.float64))
        return FittedModel(
            params=params, weights=vb.mixture_weights(post.weight_concentration, prior_type),
            means=post.means, covariances=post.covariances,
            precisions_cholesky=post.precisions_cholesky, lower_bounds=list(info.lower_bounds),
            converged=info.converged, n_iter=info.n_iter, lower_bound=info.lower_bound,
            n_features=post.means.shape[1], estimator=self._estimator_name,
            variational=variational)

    @classmethod
    def _from_fitted_model(cls, fitted: FittedModel) -> BayesianGaussianMixture:
        """The fitted estimator that a Bayesian model file's contents describe."""
        saved = fitted.variational
        if saved is None or fitted.estimator != BAYESIAN:
            raise TypeError(f"The model file holds a {fitted.estimator}, not a "
                            "BayesianGaussianMixture.")
        model = cls(**fitted.params)
        ct = model.covariance_type
        model._set_priors(vb.Priors(
            model.weight_concentration_prior_type, saved.weight_concentration_prior,
            saved.mean_precision_prior, saved.mean_prior, saved.degrees_of_freedom_prior,
            float(saved.covariance_prior) if ct == "spherical" else saved.covariance_prior))
        process = model.weight_concentration_prior_type == "dirichlet_process"
        concentration = saved.weight_concentration
        post = vb.Posterior(
            (concentration[0], concentration[1]) if process else concentration,
            saved.mean_precision, fitted.means,
            float(saved.degrees_of_freedom) if ct == "tied" else saved.degrees_of_freedom,
            fitted.covariances, fitted.precisions_cholesky)
        model._set_fitted(EMResult(model._update().estep(post), fitted.covariances,
                                   fitted.lower_bound, list(fitted.lower_bounds), fitted.n_iter,
                                   fitted.converged, post))
        return model

    def to_sklearn(self):
        """The equivalent fitted :class:`sklearn.mixture.BayesianGaussianMixture`."""
        check_is_fitted(self)
        model = SklearnBayesianGaussianMixture(**self._sklearn_params())
        for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                     "converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_",
                     "weight_concentration_prior_", "weight_concentration_",
                     "mean_precision_prior_", "mean_precision_", "mean_prior_",
                     "degrees_of_freedom_prior_", "degrees_of_freedom_", "covariance_prior_"):
            setattr(model, name, getattr(self, name))
        return model
