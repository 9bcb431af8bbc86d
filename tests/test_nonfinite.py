"""Nothing non-finite passes silently (issue 12, item 5).

Finite data can still give a non-finite log-likelihood or statistics:
values whose squares overflow float64, or extreme precisions. The fit must
stop with a :class:`NonFiniteError` naming the iteration and the
components, not go on (or fail later with a misleading message).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from daskgmm import GaussianMixture, _em
from daskgmm._data import as_dataset
from daskgmm._params import (
    GMMParams,
    covariances_from_cholesky,
    precision_cholesky_from_precisions,
)
from daskgmm._stats import empty_stats
from daskgmm.exceptions import NonFiniteError

from .conftest import COVARIANCE_TYPES


def _params(weights, means, precisions, covariance_type: str) -> GMMParams:
    prec_chol = precision_cholesky_from_precisions(np.asarray(precisions, dtype=np.float64),
                                                   covariance_type)
    return GMMParams(np.asarray(weights, dtype=np.float64), np.asarray(means, dtype=np.float64),
                     prec_chol, covariance_type)


def _unit_precisions(covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    return {
        "full": np.tile(np.eye(n_features), (n_components, 1, 1)),
        "tied": np.eye(n_features),
        "diag": np.ones((n_components, n_features)),
        "spherical": np.ones(n_components),
    }[covariance_type]


def test_loglik_overflowing_with_finite_statistics_raises():
    """Extreme precisions: every row's log-likelihood is finite, their sum is -inf.

    The statistics stay finite, so the M-step alone would carry on with a -inf
    lower bound in the history.
    """
    X = np.random.default_rng(0).normal(size=(200, 2))
    seen = []
    gm = GaussianMixture(2, covariance_type="diag", weights_init=[0.5, 0.5],
                         means_init=[[0.0, 0.0], [0.5, 0.5]],
                         precisions_init=np.full((2, 2), 1e307), max_iter=5, chunk_size=50)
    with pytest.raises(NonFiniteError, match=r"EM iteration 1 produced a non-finite "
                                             r"log-likelihood") as excinfo:
        gm.fit(X, callbacks=[seen.append])
    err = excinfo.value
    assert err.iteration == 1
    assert err.components == (0, 1)
    message = str(err)
    assert "components 0, 1" in message
    assert "-inf" in message
    assert "reg_covar" in message and "Scale the data" in message
    assert seen == []  # no callback saw the non-finite iteration


def test_overflowing_second_moment_names_the_component():
    """Only component 1 (huge spread, far out) has squares beyond float64."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(100, 2)),
                        1e155 + rng.normal(size=(100, 2)) * 1e154])
    gm = GaussianMixture(2, covariance_type="full", weights_init=[0.5, 0.5],
                         means_init=[[0.0, 0.0], [1e155, 1e155]],
                         precisions_init=[np.eye(2), np.eye(2) * 1e-300], max_iter=3,
                         chunk_size=64)
    with pytest.raises(NonFiniteError, match="EM iteration 1") as excinfo:
        gm.fit(X)
    err = excinfo.value
    assert err.iteration == 1
    assert err.components == (1,)
    assert "component 1 has non-finite s2" in str(err)
    assert "component 0" not in str(err)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_huge_finite_values_raise_a_named_error(covariance_type):
    """Data near 1e160: every square overflows, every component is involved."""
    X = np.random.default_rng(2).normal(size=(200, 2)) * 1e160
    assert np.isfinite(X).all()
    gm = GaussianMixture(2, covariance_type=covariance_type, weights_init=[0.5, 0.5],
                         means_init=np.zeros((2, 2)),
                         precisions_init=_unit_precisions(covariance_type, 2, 2),
                         max_iter=3, chunk_size=50)
    with pytest.raises(NonFiniteError, match="EM iteration 1 produced a non-finite") as excinfo:
        gm.fit(X)
    assert excinfo.value.components == (0, 1)
    # Catchable as scikit-learn's failed fits are, and as a floating-point failure.
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, FloatingPointError)


def test_iteration_number_continues_when_resuming():
    X = np.random.default_rng(3).normal(size=(120, 2)) * 1e160
    params = _params([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 2)), "diag")
    covariances = covariances_from_cholesky(params.precisions_cholesky, "diag")
    with pytest.raises(NonFiniteError, match="EM iteration 5 ") as excinfo:
        _em.run_em(as_dataset(X, chunk_size=40), params, covariances, tol=1e-3, reg_covar=1e-6,
                   max_iter=10, split_every=4, start_iter=4, history=[-1.0] * 4)
    assert excinfo.value.iteration == 5


def test_names_the_model_among_several():
    """Two models share the pass; only the second one's precisions are extreme."""
    X = np.random.default_rng(4).normal(size=(200, 2))
    good = _params([0.5, 0.5], [[0.0, 0.0], [0.5, 0.5]], np.ones((2, 2)), "diag")
    bad = _params([0.5, 0.5], [[0.0, 0.0], [0.5, 0.5]], np.full((2, 2), 1e307), "diag")
    starts = [_em.EMResult(p, covariances_from_cholesky(p.precisions_cholesky, "diag"), -np.inf)
              for p in (good, bad)]
    with pytest.raises(NonFiniteError, match="EM iteration 1 of model 1 ") as excinfo:
        _em.run_em_many(as_dataset(X, chunk_size=50), starts, tol=1e-3, reg_covar=1e-6,
                        max_iter=5, split_every=4)
    assert excinfo.value.model == 1


def test_initialisation_overflow_is_named():
    X = np.random.default_rng(5).normal(size=(400, 2)) * 1e160
    gm = GaussianMixture(2, init_params="kmeans", chunk_size=100, random_state=0)
    with pytest.raises(NonFiniteError, match=r"initialisation \(init_params='kmeans'\)") \
            as excinfo:
        gm.fit(X)
    assert excinfo.value.iteration is None
    assert excinfo.value.components


def test_nonfinite_input_is_still_reported_by_its_rows():
    X = np.random.default_rng(6).normal(size=(200, 2))
    X[150, 1] = np.nan
    params = _params([0.5, 0.5], [[0.0, 0.0], [0.5, 0.5]], np.ones((2, 2)), "diag")
    covariances = covariances_from_cholesky(params.precisions_cholesky, "diag")
    with pytest.raises(ValueError, match="row 150") as excinfo:
        _em.run_em(as_dataset(X, chunk_size=50), params, covariances, tol=1e-3,
                   reg_covar=1e-6, max_iter=3, split_every=4)
    assert not isinstance(excinfo.value, NonFiniteError)


def test_check_finite_stats_per_component():
    stats = empty_stats(3, 2, "full")
    _em.check_finite_stats(stats, "full", iteration=1)  # all finite: no error
    stats["s1"][2, 0] = np.inf
    with pytest.raises(NonFiniteError, match="component 2 has non-finite s1") as excinfo:
        _em.check_finite_stats(stats, "full", iteration=7)
    assert excinfo.value.components == (2,)
    assert excinfo.value.iteration == 7

    tied = empty_stats(3, 3, "tied")  # s2 (D, D) is shared: every component is involved
    tied["s2"][0, 1] = np.nan
    with pytest.raises(NonFiniteError, match="components 0, 1, 2 have non-finite s2"):
        _em.check_finite_stats(tied, "tied", iteration=1)


def test_error_survives_pickling():
    err = NonFiniteError("message", iteration=3, components=(1, 4), model=2)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.iteration, copy.components, copy.model) == ("message", 3, (1, 4), 2)


@pytest.mark.parametrize("lazy", [False, True])
def test_predictions_on_overflowing_rows_raise_instead_of_nan(lazy):
    """Finite rows whose squared distances overflow: no NaN probabilities, no
    silent label 0, no NaN log-likelihood."""
    import dask.array as da

    rng = np.random.default_rng(0)
    model = GaussianMixture(2, random_state=0).fit(rng.normal(size=(200, 2)))
    X = rng.normal(size=(40, 2))
    X[25] = [1e200, -1e200]
    X_in = da.from_array(X, chunks=(20, -1)) if lazy else X
    for method in ("predict", "predict_proba"):
        with pytest.raises(NonFiniteError, match="row 25"):
            np.asarray(getattr(model, method)(X_in))
    scores = np.asarray(model.score_samples(X_in))
    assert not np.isnan(scores).any()
    assert scores[25] == -np.inf and np.isfinite(np.delete(scores, 25)).all()
