"""EM with missing entries (NaN), missing at random, against a row-by-row reference written here.

The reference is plain EM for incomplete data (Ghahramani & Jordan, 1994), one row at a time:
each row's marginal density over its observed features by scipy, its expected completion and
conditional covariance by explicit inverses, and the M-step with second moments taken about the
new means (two passes, in memory), so that it shares no code and no arithmetic with daskgmm.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from daskgmm import GaussianMixture

from .conftest import COVARIANCE_TYPES

K, D = 3, 4

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _mixture(n: int, seed: int = 0, offset: float = 0.0, scales=None):
    """Rows of a mixture of K correlated Gaussians, its labels, means and covariances."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(K, D)) + offset
    factors = rng.normal(size=(K, D, D))
    covs = factors @ factors.transpose(0, 2, 1) / D + 0.3 * np.eye(D)
    labels = rng.choice(K, size=n, p=[0.5, 0.3, 0.2])
    X = np.array([rng.multivariate_normal(means[k], covs[k]) for k in labels])
    if scales is not None:
        X = (X - offset) * scales + offset
        means = (means - offset) * scales + offset
        covs = covs * np.outer(scales, scales)
    return X, labels, means, covs


def _hide(X: np.ndarray, fraction: float, seed: int = 1) -> np.ndarray:
    """X with a fraction of entries set to NaN, completely at random."""
    out = X.copy()
    out[np.random.default_rng(seed).random(X.shape) < fraction] = np.nan
    return out


def _hide_block(X: np.ndarray) -> np.ndarray:
    """X with a whole block of one column missing (a sensor that dropped out), and a few more."""
    out = _hide(X, 0.05, seed=2)
    out[len(X) // 4 : len(X) // 2, 2] = np.nan
    return out


# --- the reference ---------------------------------------------------------------------------

def _logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """log N(x | mean, cov) by a general solve and slogdet (scipy's refuses condition > 1e9)."""
    sign, log_det = np.linalg.slogdet(cov)
    assert sign > 0
    diff = x - mean
    return float(-0.5 * (len(x) * np.log(2 * np.pi) + log_det + diff @ np.linalg.solve(cov, diff)))


def _as_full(covariances, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.array(covariances)
    if covariance_type == "tied":
        return np.repeat(np.asarray(covariances)[np.newaxis], K, axis=0)
    if covariance_type == "diag":
        return np.array([np.diag(c) for c in covariances])
    return np.array([c * np.eye(D) for c in covariances])


def reference_em(X, weights, means, covariances, covariance_type, n_iter, reg_covar=1e-6):
    """``n_iter`` EM steps for incomplete data, row by row; returns the parameters and the
    mean log-likelihood of each E-step (rows with nothing observed are left out)."""
    X = np.asarray(X, dtype=np.float64)
    rows = [x for x in X if (~np.isnan(x)).any()]
    weights, means = np.array(weights, dtype=float), np.array(means, dtype=float)
    full = _as_full(covariances, covariance_type)
    bounds = []
    for _ in range(n_iter):
        resp = np.zeros((len(rows), K))
        completed = np.zeros((len(rows), K, D))
        cond = np.zeros((len(rows), K, D, D))
        total = 0.0
        for i, x in enumerate(rows):
            o, m = ~np.isnan(x), np.isnan(x)
            log_p = np.array([np.log(weights[k]) + _logpdf(x[o], means[k][o],
                                                           full[k][np.ix_(o, o)])
                              for k in range(K)])
            total += logsumexp(log_p)
            resp[i] = np.exp(log_p - logsumexp(log_p))
            for k in range(K):
                s = full[k]
                gain = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)])
                completed[i, k] = x
                completed[i, k, m] = means[k][m] + gain @ (x[o] - means[k][o])
                cond[i, k][np.ix_(m, m)] = s[np.ix_(m, m)] - gain @ s[np.ix_(o, m)]
        bounds.append(total / len(rows))
        nk = resp.sum(axis=0)
        weights = nk / len(rows)
        means = np.einsum("nk,nkd->kd", resp, completed) / nk[:, np.newaxis]
        y = completed - means[np.newaxis]  # about the new means: no cancellation
        scatter = (np.einsum("nk,nki,nkj->kij", resp, y, y)
                   + np.einsum("nk,nkij->kij", resp, cond))
        if covariance_type == "full":
            covariances = scatter / nk[:, None, None] + reg_covar * np.eye(D)
        elif covariance_type == "tied":
            covariances = scatter.sum(axis=0) / len(rows) + reg_covar * np.eye(D)
        elif covariance_type == "diag":
            covariances = np.array([np.diag(s) for s in scatter]) / nk[:, None] + reg_covar
        else:
            covariances = np.array([np.diag(s).mean() for s in scatter]) / nk + reg_covar
        full = _as_full(covariances, covariance_type)
    return weights, means, np.asarray(covariances), bounds


def _initial(covariance_type: str, seed: int = 5):
    rng = np.random.default_rng(seed)
    weights = np.array([0.4, 0.35, 0.25])
    means = rng.normal(scale=3.0, size=(K, D))
    covs = {"full": np.array([np.eye(D) * (1 + k) + 0.2 for k in range(K)]),
            "tied": np.eye(D) * 2 + 0.3, "diag": np.array([np.full(D, 1.0 + k) for k in range(K)]),
            "spherical": np.array([1.0, 2.0, 3.0])}[covariance_type]
    if covariance_type in ("full", "tied"):
        precisions = np.linalg.inv(covs)
    else:
        precisions = 1.0 / covs
    return weights, means, covs, precisions


def _model(covariance_type, n_iter, chunk_size="auto", **kwargs):
    weights, means, _, precisions = _initial(covariance_type)
    return GaussianMixture(K, covariance_type=covariance_type, missing="marginalize", tol=0.0,
                           max_iter=n_iter, weights_init=weights, means_init=means,
                           precisions_init=precisions, chunk_size=chunk_size, **kwargs)


MISSINGNESS = {"10% at random": lambda X: _hide(X, 0.10), "40% at random": lambda X: _hide(X, 0.40),
               "a column's block": _hide_block}


@pytest.mark.parametrize("missingness", sorted(MISSINGNESS))
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_equals_the_row_by_row_reference(covariance_type, missingness):
    X = MISSINGNESS[missingness](_mixture(300, seed=3)[0])
    weights, means, covs, _ = _initial(covariance_type)
    ref_w, ref_m, ref_c, ref_bounds = reference_em(X, weights, means, covs, covariance_type, 4)
    for data in (X, da.from_array(X, chunks=(37, D))):  # in memory; many uneven chunks
        model = _model(covariance_type, 4, chunk_size=37).fit(data)
        np.testing.assert_allclose(model.weights_, ref_w, rtol=1e-6)
        np.testing.assert_allclose(model.means_, ref_m, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(model.covariances_, ref_c, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(model.lower_bounds_, ref_bounds, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_data_far_from_zero_at_mixed_scales_in_float32_equal_the_reference(covariance_type):
    scales = np.array([1e-3, 1.0, 1e3, 1e6])
    X = _hide(_mixture(200, seed=4, offset=1e6, scales=scales)[0], 0.25)
    weights, _, _, _ = _initial(covariance_type)
    X_loc = np.nanmean(X, axis=0)
    X_scale = np.nanstd(X, axis=0)
    means = X_loc + np.random.default_rng(6).normal(size=(K, D)) * X_scale
    covs = {"full": np.array([np.diag(X_scale**2)] * K), "tied": np.diag(X_scale**2),
            "diag": np.array([X_scale**2] * K),
            "spherical": np.full(K, np.mean(X_scale**2))}[covariance_type]
    precisions = (np.linalg.inv(covs) if covariance_type in ("full", "tied") else 1.0 / covs)
    ref = reference_em(X, weights, means, covs, covariance_type, 3)
    model = GaussianMixture(K, covariance_type=covariance_type, missing="marginalize", tol=0.0,
                            max_iter=3, weights_init=weights, means_init=means,
                            precisions_init=precisions, chunk_size=50).fit(da.from_array(X, 50))
    np.testing.assert_allclose(model.means_, ref[1], rtol=1e-6)
    np.testing.assert_allclose(model.covariances_, ref[2], rtol=1e-6,
                               atol=1e-6 * np.max(np.abs(ref[2])))
    # float32 input: the arithmetic is float64, so it equals the float64 fit of the rounded rows.
    X32 = X.astype(np.float32)
    fitted32 = GaussianMixture(K, covariance_type=covariance_type, missing="marginalize", tol=0.0,
                               max_iter=3, weights_init=weights, means_init=means,
                               precisions_init=precisions, chunk_size=50).fit(X32)
    ref32 = reference_em(X32.astype(np.float64), weights, means, covs, covariance_type, 3)
    np.testing.assert_allclose(fitted32.means_, ref32[1], rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_without_nan_marginalize_is_exactly_the_standard_fit(covariance_type):
    X = _mixture(500, seed=7)[0]
    standard = GaussianMixture(K, covariance_type=covariance_type, random_state=0,
                               chunk_size=100).fit(X)
    marginal = GaussianMixture(K, covariance_type=covariance_type, random_state=0,
                               chunk_size=100, missing="marginalize").fit(X)
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(marginal, name), getattr(standard, name))
    np.testing.assert_array_equal(marginal.predict_proba(X), standard.predict_proba(X))


@pytest.mark.parametrize("seed", range(6))
def test_the_log_likelihood_never_decreases(seed):
    rng = np.random.default_rng(seed)
    covariance_type = COVARIANCE_TYPES[seed % 4]
    X = _hide(_mixture(400, seed=seed)[0], rng.uniform(0.05, 0.5), seed=seed + 10)
    model = GaussianMixture(K, covariance_type=covariance_type, missing="marginalize",
                            random_state=seed, tol=0.0, max_iter=25, chunk_size=90).fit(X)
    bounds = np.array(model.lower_bounds_)
    assert len(bounds) == 25
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:])), np.diff(bounds)


def _matched_distance(means, covs, true_means, true_covs) -> tuple[float, float]:
    from scipy.optimize import linear_sum_assignment

    cost = np.linalg.norm(means[:, None] - true_means[None], axis=2)
    pairs = list(zip(*linear_sum_assignment(cost), strict=True))
    return (float(sum(np.linalg.norm(means[r] - true_means[c]) for r, c in pairs)),
            float(sum(np.linalg.norm(covs[r] - true_covs[c]) for r, c in pairs)))


def test_marginalizing_recovers_the_mixture_better_than_complete_rows_or_mean_imputation():
    X_true, _, true_means, true_covs = _mixture(8000, seed=11)
    X = _hide(X_true, 0.30, seed=12)
    fit = dict(n_components=K, random_state=0, n_init=2, chunk_size=1000)
    marginal = GaussianMixture(missing="marginalize", **fit).fit(X)
    complete_rows = GaussianMixture(**fit).fit(X[~np.isnan(X).any(axis=1)])
    mean_imputed = GaussianMixture(**fit).fit(np.where(np.isnan(X), np.nanmean(X, axis=0), X))
    distances = {name: _matched_distance(m.means_, m.covariances_, true_means, true_covs)
                 for name, m in [("marginalize", marginal), ("complete rows", complete_rows),
                                 ("mean imputation", mean_imputed)]}
    for name, (mean_distance, cov_distance) in distances.items():
        print(f"{name:16s} means {mean_distance:.4f}  covariances {cov_distance:.4f}")
    for other in ("complete rows", "mean imputation"):
        assert distances["marginalize"][0] < distances[other][0], distances
        assert distances["marginalize"][1] < distances[other][1], distances


def test_impute_recovers_held_out_entries_better_than_column_means():
    X_true = _mixture(5000, seed=13)[0]
    X = _hide(X_true, 0.30, seed=14)
    hidden = np.isnan(X)
    model = GaussianMixture(K, random_state=0, missing="marginalize", chunk_size=1000).fit(X)
    imputed = model.impute(X)
    np.testing.assert_array_equal(imputed[~hidden], X[~hidden])
    rmse = np.sqrt(np.mean((imputed[hidden] - X_true[hidden]) ** 2))
    column_means = np.where(hidden, np.nanmean(X, axis=0), X)
    rmse_means = np.sqrt(np.mean((column_means[hidden] - X_true[hidden]) ** 2))
    print(f"impute RMSE {rmse:.4f}, column means RMSE {rmse_means:.4f}")
    assert rmse < 0.8 * rmse_means


def _reference_posterior(model, X):
    full = _as_full(model.covariances_, model.covariance_type)
    out, logs = [], []
    for x in X:
        o = ~np.isnan(x)
        log_p = np.array([np.log(model.weights_[k]) + (multivariate_normal(
            model.means_[k][o], full[k][np.ix_(o, o)]).logpdf(x[o]) if o.any() else 0.0)
            for k in range(K)])
        logs.append(logsumexp(log_p))
        out.append(np.exp(log_p - logsumexp(log_p)))
    return np.array(out), np.array(logs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predictions_on_rows_with_nan_are_the_marginal_posterior_eager_and_lazy(covariance_type):
    X = _hide(_mixture(300, seed=15)[0], 0.3, seed=16)
    X[5] = np.nan  # nothing observed
    model = GaussianMixture(K, covariance_type=covariance_type, random_state=0,
                            missing="marginalize", chunk_size=64).fit(X)
    proba, log_lik = _reference_posterior(model, X)
    np.testing.assert_allclose(model.predict_proba(X), proba, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.score_samples(X), log_lik, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(proba[5], model.weights_)  # the prior: nothing observed
    assert log_lik[5] == pytest.approx(0.0, abs=1e-12)
    lazy = da.from_array(X, chunks=(64, D))
    labels, probabilities, scores, imputed = dask.compute(
        model.predict(lazy), model.predict_proba(lazy), model.score_samples(lazy),
        model.impute(lazy))
    np.testing.assert_array_equal(labels, model.predict(X))
    np.testing.assert_allclose(probabilities, proba, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scores, log_lik, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(imputed, model.impute(X), rtol=1e-12)  # per-chunk BLAS rounding


def test_rows_with_nothing_observed_are_left_out_of_the_fit():
    X = _hide(_mixture(300, seed=17)[0], 0.2, seed=18)
    with_empty = np.insert(X, [10, 100, 200], np.nan, axis=0)
    fit = dict(missing="marginalize", tol=0.0, max_iter=5)
    weights, means, _, precisions = _initial("full")
    init = dict(weights_init=weights, means_init=means, precisions_init=precisions)
    a = GaussianMixture(K, chunk_size=1000, **fit, **init).fit(X)
    b = GaussianMixture(K, chunk_size=1000, **fit, **init).fit(with_empty)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-12)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-12)  # n excludes them


def test_a_feature_never_observed_is_refused_by_name():
    X = _mixture(200, seed=19)[0]
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"never observed.*column\(s\) 2"):
        GaussianMixture(K, missing="marginalize", random_state=0).fit(da.from_array(X, 50))


def test_nan_without_marginalize_is_refused_with_the_way_out():
    X = _hide(_mixture(200, seed=20)[0], 0.1)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        GaussianMixture(K, random_state=0).fit(da.from_array(X, 50))
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(K, random_state=0).fit(X)  # scikit-learn's own check, in memory
    model = GaussianMixture(K, random_state=0).fit(_mixture(200, seed=20)[0])
    with pytest.raises(ValueError, match="impute needs"):
        model.impute(X)


def test_infinity_is_still_refused_when_marginalizing():
    X = _hide(_mixture(200, seed=21)[0], 0.1)
    X[7, 1] = np.inf
    with pytest.raises(ValueError, match="infinity.*row 7"):
        GaussianMixture(K, missing="marginalize", random_state=0).fit(da.from_array(X, 50))


def test_integer_weights_equal_repeated_rows_with_missing_entries():
    X = _hide(_mixture(200, seed=22)[0], 0.3)
    counts = np.random.default_rng(0).integers(0, 3, size=len(X))
    weights, means, _, precisions = _initial("diag")
    fit = dict(covariance_type="diag", missing="marginalize", tol=0.0, max_iter=4,
               weights_init=weights, means_init=means, precisions_init=precisions)
    weighted = GaussianMixture(K, **fit).fit(X, sample_weight=counts.astype(float))
    repeated = GaussianMixture(K, **fit).fit(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)


def test_a_model_file_keeps_missing_and_predicts_rows_with_nan(tmp_path):
    from daskgmm import load_model, save_model

    X = _hide(_mixture(300, seed=23)[0], 0.2)
    model = GaussianMixture(K, covariance_type="tied", missing="marginalize", random_state=1,
                            tol=1e-4).fit(X)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.impute(X), model.impute(X))


def test_fit_many_shares_the_passes_with_missing_entries():
    from daskgmm import fit_many

    X = _hide(_mixture(300, seed=24)[0], 0.2)
    models = [GaussianMixture(k, covariance_type=ct, missing="marginalize", random_state=0,
                              chunk_size=100) for k, ct in [(2, "full"), (3, "diag")]]
    together = fit_many(models, da.from_array(X, 100))
    alone = [GaussianMixture(k, covariance_type=ct, missing="marginalize", random_state=0,
                             chunk_size=100).fit(da.from_array(X, 100))
             for k, ct in [(2, "full"), (3, "diag")]]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.means_, b.means_)
    with pytest.raises(ValueError, match="same missing"):
        fit_many([GaussianMixture(2, missing="marginalize"), GaussianMixture(2)], X)


def test_a_dask_dataframe_with_nulls_is_predicted_and_imputed_on_its_index():
    import dask.dataframe as dd
    import pandas as pd

    X = _hide(_mixture(300, seed=25)[0], 0.2)
    frame = pd.DataFrame(X, columns=list("abcd"), index=np.arange(300) * 10)
    lazy = dd.from_pandas(frame, npartitions=4)
    model = GaussianMixture(K, missing="marginalize", random_state=0).fit(X)
    imputed, proba = dask.compute(model.impute(lazy), model.predict_proba(lazy))
    assert list(imputed.columns) == list("abcd") and list(imputed.index) == list(frame.index)
    np.testing.assert_allclose(imputed.to_numpy(), model.impute(X), rtol=1e-12)
    np.testing.assert_allclose(proba.to_numpy(), model.predict_proba(X), rtol=1e-12, atol=1e-15)


def test_online_em_and_partial_fit_marginalize_too():
    X = _hide(_mixture(2000, seed=26)[0], 0.2)
    online = GaussianMixture(K, missing="marginalize", algorithm="online", random_state=0,
                             chunk_size=250, online_passes=3).fit(X)
    batch = GaussianMixture(K, missing="marginalize", random_state=0, chunk_size=250).fit(X)
    assert online.n_iter_ == 3 * 8 and np.all(np.isfinite(online.means_))
    assert online.score(X) > batch.score(X) - 0.05  # close to the batch optimum
    streamed = GaussianMixture(K, missing="marginalize", random_state=0)
    for start in range(0, len(X), 500):
        streamed.partial_fit(X[start : start + 500])
    assert streamed.n_iter_ == 4 and np.all(np.isfinite(streamed.predict_proba(X)))


def test_parquet_nulls_are_missing_entries_when_marginalizing(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from daskgmm import open_parquet

    from .conftest import invoke

    X = _hide(_mixture(600, seed=27)[0], 0.2)
    table = pa.table({name: pa.array(X[:, j], from_pandas=True)  # NaN written as null
                      for j, name in enumerate("abcd")})
    assert table.column("a").null_count > 0
    pq.write_table(table, tmp_path / "holes.parquet", row_group_size=200)
    with pytest.raises(ValueError, match="null value.*missing='marginalize'"):
        open_parquet(tmp_path / "holes.parquet").compute()
    lazy = open_parquet(tmp_path / "holes.parquet", nulls_as_nan=True)
    np.testing.assert_array_equal(np.isnan(lazy.compute()), np.isnan(X))
    fit = dict(random_state=0, missing="marginalize", chunk_size=200)
    from_parquet = GaussianMixture(K, **fit).fit(lazy)
    np.testing.assert_allclose(from_parquet.means_, GaussianMixture(K, **fit).fit(X).means_,
                               rtol=1e-9)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(tmp_path / "holes.parquet"), "columns": list("abcd")},
        "model": {"n_components": K, "random_state": 0, "missing": "marginalize"},
        "output": {"model": str(tmp_path / "m.npz"), "imputed": str(tmp_path / "f.zarr")}}))
    for command in ("fit", "impute"):
        code, _, err = invoke([command, config], capsys)
        assert code == 0, (command, err)
    code, _, err = invoke(["impute", config, "--out", str(tmp_path / "holes.parquet"),
                           "--overwrite"], capsys)
    assert code == 2 and "would replace the data" in err  # never the input itself


def test_impute_refuses_a_row_whose_likelihood_overflows():
    from daskgmm.exceptions import NonFiniteError

    X = _hide(_mixture(300, seed=28)[0], 0.2)
    model = GaussianMixture(K, random_state=0, missing="marginalize").fit(X)
    bad = X[:5].copy()
    bad[3] = [1e200, np.nan, 0.0, 0.0]
    with pytest.raises(NonFiniteError, match="row 3"):
        model.impute(bad)


def test_scoring_rows_that_observe_nothing_is_a_clear_error():
    X = _hide(_mixture(300, seed=29)[0], 0.2)
    model = GaussianMixture(K, random_state=0, missing="marginalize").fit(X)
    empty = np.full((4, D), np.nan)
    with pytest.raises(ValueError, match="no row has an observed entry"):
        model.score(empty)
    with pytest.raises(ValueError, match="no row has an observed entry"):
        model.score(da.from_array(empty, chunks=2))
    np.testing.assert_array_equal(model.score_samples(empty), 0.0)


def test_an_online_batch_that_observes_nothing_takes_no_step():
    X = _hide(_mixture(600, seed=30)[0], 0.2)
    model = GaussianMixture(K, random_state=0, missing="marginalize").partial_fit(X)
    means, n_iter = model.means_.copy(), model.n_iter_
    model.partial_fit(np.full((50, D), np.nan))
    np.testing.assert_array_equal(model.means_, means)
    assert model.n_iter_ == n_iter
    model.partial_fit(X)
    assert model.n_iter_ == n_iter + 1 and np.all(np.isfinite(model.means_))


def test_a_checkpoint_written_before_missing_existed_still_resumes(tmp_path):
    from daskgmm.checkpoints import check_params
    from daskgmm.persistence import encode_params

    current = encode_params(GaussianMixture(K, random_state=0).get_params())
    older = {name: value for name, value in current.items() if name != "missing"}
    check_params(tmp_path / "old.npz", older, current)  # no difference: it meant "error"
    with pytest.raises(Exception, match="missing"):
        check_params(tmp_path / "old.npz", older,
                     {**current, "missing": "marginalize"})
