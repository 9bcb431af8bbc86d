"""The same fit on the embedded default and on a distributed cluster of worker processes."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture

from .conftest import COVARIANCE_TYPES


def _fit(X, covariance_type):
    return GaussianMixture(3, covariance_type=covariance_type, random_state=0, split_every=3).fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_local_and_distributed_fits_are_equal(covariance_type, X_offset, dask_client):
    X = da.from_array(X_offset, chunks=(150, -1))
    with dask.config.set(scheduler="threads"):
        local = _fit(X, covariance_type)
    remote = _fit(X, covariance_type)  # the current client is used by default
    assert remote.n_iter_ == local.n_iter_
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(remote, attr), getattr(local, attr), rtol=1e-12)
    assert remote.lower_bound_ == pytest.approx(local.lower_bound_, rel=1e-14)


def test_the_current_client_runs_the_passes(X_offset, dask_client):
    _fit(da.from_array(X_offset, chunks=(300, -1)), "diag")
    prefixes = dask_client.run_on_scheduler(
        lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert any(p.startswith("gmm-estep") for p in prefixes), prefixes
    assert any(p.startswith("gmm-init-kmeans") for p in prefixes), prefixes


def test_numpy_input_on_a_cluster_returns_numpy(X_offset, dask_client):
    model = GaussianMixture(3, random_state=0).fit(X_offset)
    labels = model.predict(X_offset)
    assert isinstance(labels, np.ndarray)
    lazy = model.predict_proba(da.from_array(X_offset, chunks=(400, -1)))
    np.testing.assert_allclose(lazy.compute(), model.predict_proba(X_offset), rtol=1e-12)
