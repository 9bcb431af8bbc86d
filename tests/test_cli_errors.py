"""Exit codes and messages that match the README's table, from the real ``daskgmm`` command.

Before: a dead scheduler port waited 31 s and exited 1 with a traceback; missing certificate
files, ``tcp://`` to a TLS scheduler and a wrong certificate exited 1 with a traceback that
did not name the file; ``--set`` with invalid YAML or a Python tag exited 1 with a traceback;
a truncated ``zarr.json`` gave only a JSON parser's message; values near 1e300 were reported as
an "ill-defined empirical covariance" (or as a data error, exit 3).

Also: scikit-learn's own ``test_check_weights`` and ``test_regularisation``, pointed at
``daskgmm.GaussianMixture``, pass (its messages for invalid ``weights_init`` and a degenerate
component are matched to the letter).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import daskgmm
from daskgmm.jobs.synthetic import make_mixture_zarr

from .conftest import COVARIANCE_TYPES, free_port

# Set for every command here: a failed connection ends by it. Generous, so that a
# TLS handshake on a busy machine is never cut short; the dead-port test sets a
# short one of its own.
CONNECT_TIMEOUT = "20s"


def daskgmm_command(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m daskgmm.jobs.cli ARGS`` as a user would, with a bounded connect timeout
    (and a bound on the whole command, so that a hang fails this test instead of the run)."""
    environment = {**os.environ, "DASK_DASKGMM__CONNECT_TIMEOUT": CONNECT_TIMEOUT, **(env or {})}
    return subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=environment, timeout=900)


def expect(process: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Exit ``code``, a one-line error (no traceback) that contains every one of ``words``."""
    assert process.returncode == code, process.stderr
    assert "Traceback" not in process.stderr, process.stderr
    error = [line for line in process.stderr.splitlines() if line.startswith("daskgmm: error:")]
    assert error, process.stderr
    for word in words:
        assert word in error[-1], (word, error[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path | str:
    return make_mixture_zarr(tmp_path_factory.mktemp("cli-errors") / "data.zarr", 2000, 3, 3,
                             chunk_rows=1000, seed=5)


def write_job(folder: Path, store: Path, **sections) -> Path:
    job: dict[str, dict[str, Any]] = {"data": {"path": str(store), "array": "X"},
           "model": {"n_components": 3, "random_state": 0},
           "output": {"model": str(folder / "model.npz")}}
    for name, section in sections.items():
        job[name] = {**job.get(name, {}), **section}
    path = folder / "job.yaml"
    path.write_text(json.dumps(job))  # JSON is YAML
    return path



# ---------------------------------------------------------------------------
# Connecting to a cluster: exit 2, naming the address or the file, in bounded time
# ---------------------------------------------------------------------------

def test_a_dead_scheduler_port_is_exit_2_naming_the_address(store, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    job = write_job(tmp_path, store, cluster={"kind": "address", "address": address})
    short = {"DASK_DASKGMM__CONNECT_TIMEOUT": "2s"}
    fit = daskgmm_command("fit", job, cwd=tmp_path, env=short)
    # Ends by the connect timeout it is given (DASK_DASKGMM__CONNECT_TIMEOUT), not 30 s.
    expect(fit, 2, address, "no answer within 2s", "daskgmm.connect-timeout")
    assert not (tmp_path / "model.npz").exists()
    score = daskgmm_command("score", job, cwd=tmp_path, env=short)
    expect(score, 2, address)


def test_missing_certificate_files_are_exit_2_naming_the_file(store, tmp_path):
    tls = {key: str(tmp_path / f"{key}.pem") for key in ("ca_file", "cert_file", "key_file")}
    for key in ("cert_file", "key_file"):
        Path(tls[key]).write_text("not used")
    job = write_job(tmp_path, store, cluster={"kind": "address", "tls": tls,
                                              "address": f"tls://127.0.0.1:{free_port()}"})
    expect(daskgmm_command("fit", job, cwd=tmp_path), 2, "cluster.tls.ca_file", tls["ca_file"])


def _certificates(folder: Path, name: str) -> dict[str, str]:
    """A self-signed certificate (its own CA) and key, as PEM files."""
    from distributed.security import Security

    security = Security.temporary()
    files = {}
    for key, pem in (("ca_file", security.tls_ca_file), ("cert_file", security.tls_client_cert),
                     ("key_file", security.tls_client_key)):
        files[key] = str(folder / f"{name}-{key}.pem")
        Path(files[key]).write_text(pem)
    return files


@pytest.fixture(scope="module")
def tls_scheduler(tmp_path_factory) -> Iterator[tuple[str, dict, dict]]:
    """A ``dask scheduler`` serving TLS with certificates ``good``; ``other`` are unrelated ones."""
    folder = tmp_path_factory.mktemp("tls")
    good, other = _certificates(folder, "good"), _certificates(folder, "other")
    port = free_port()
    scheduler = subprocess.Popen(
        ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--protocol", "tls",
         "--tls-ca-file", good["ca_file"], "--tls-cert", good["cert_file"],
         "--tls-key", good["key_file"], "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=folder)
    assert scheduler.stderr is not None
    try:
        for line in scheduler.stderr:  # ready when it says where it listens (or dead: EOF)
            if "Scheduler at:" in line:
                break
        assert scheduler.poll() is None, "the TLS scheduler did not start"
        # Keep reading its log, so that a full pipe never blocks the scheduler.
        threading.Thread(target=scheduler.stderr.read, daemon=True).start()
        yield f"tls://127.0.0.1:{port}", good, other
    finally:
        scheduler.terminate()
        scheduler.communicate(timeout=60)


def test_tcp_to_a_tls_scheduler_is_exit_2_saying_to_use_tls(tls_scheduler, store, tmp_path):
    address, _, _ = tls_scheduler
    tcp = address.replace("tls://", "tcp://")
    job = write_job(tmp_path, store, cluster={"kind": "address", "address": tcp})
    expect(daskgmm_command("fit", job, cwd=tmp_path), 2, tcp, "tls://")


def test_a_certificate_the_other_side_does_not_trust_is_exit_2_naming_it(
        tls_scheduler, store, tmp_path):
    address, good, other = tls_scheduler
    # Our CA did not sign the scheduler's certificate.
    job = write_job(tmp_path, store, cluster={"kind": "address", "address": address, "tls": other})
    expect(daskgmm_command("fit", job, cwd=tmp_path), 2, address, "cluster.tls.ca_file",
           other["ca_file"])
    # The scheduler's CA did not sign our certificate.
    mixed = {**other, "ca_file": good["ca_file"]}
    job = write_job(tmp_path, store, cluster={"kind": "address", "address": address, "tls": mixed})
    expect(daskgmm_command("fit", job, cwd=tmp_path), 2, address, "cluster.tls.cert_file",
           other["cert_file"])
    # A key that does not belong to the certificate.
    wrong_key = {**good, "key_file": other["key_file"]}
    job = write_job(tmp_path, store, cluster={"kind": "address", "address": address,
                                              "tls": wrong_key})
    expect(daskgmm_command("fit", job, cwd=tmp_path), 2, address, other["key_file"])
    assert not (tmp_path / "model.npz").exists()


# ---------------------------------------------------------------------------
# --set: a usage error, not a traceback
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["[1,", "{n: 3", "!!python/object/apply:os.system ['touch pwned']"])
def test_a_set_value_that_is_not_yaml_is_a_usage_error(value, store, tmp_path):
    job = write_job(tmp_path, store)
    fit = daskgmm_command("fit", job, "--set", f"model.n_components={value}", cwd=tmp_path)
    expect(fit, 2, "--set", "model.n_components", "not valid YAML")
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "model.npz").exists()


# ---------------------------------------------------------------------------
# Data: a truncated zarr.json is named; values that overflow are said to
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["array", "group"])
def test_a_truncated_zarr_json_is_named(which, store, tmp_path):
    import shutil

    copy = tmp_path / "data.zarr"
    shutil.copytree(store, copy)
    metadata = copy / "X" / "zarr.json" if which == "array" else copy / "zarr.json"
    metadata.write_bytes(metadata.read_bytes()[:60])
    job = write_job(tmp_path, copy)
    expect(daskgmm_command("fit", job, cwd=tmp_path), 3, str(metadata), "not valid JSON")


@pytest.mark.parametrize(("scale", "model"), [
    (1e299, {"covariance_type": "full"}),
    (1e150, {"covariance_type": "tied", "init_params": "random_from_data"}),
])
def test_values_that_overflow_are_a_fit_failure_that_says_so(scale, model, store, tmp_path):
    import zarr

    X = zarr.open_array(store / "X", mode="r")[:]
    big = tmp_path / "big.zarr"
    zarr.create_array(big, data=X * scale, chunks=(1000, 3))
    job = write_job(tmp_path, big, model=model)
    job_data = json.loads(job.read_text())
    job_data["data"].pop("array")
    job.write_text(json.dumps(job_data))
    fit = daskgmm_command("fit", job, cwd=tmp_path)
    expect(fit, 4, "overflow")
    assert not (tmp_path / "model.npz").exists()


def test_select_on_values_that_overflow_is_a_fit_failure(store, tmp_path):
    import zarr

    X = zarr.open_array(store / "X", mode="r")[:]
    big = tmp_path / "big.zarr"
    zarr.create_array(big, data=X * 1e299, chunks=(1000, 3))
    job = write_job(tmp_path, big)
    job_data = json.loads(job.read_text())
    job_data["data"].pop("array")
    job.write_text(json.dumps(job_data))
    expect(daskgmm_command("select", job, "--n-components", "2-3", cwd=tmp_path), 4, "overflow")


# ---------------------------------------------------------------------------
# scikit-learn's messages, to the letter
# ---------------------------------------------------------------------------

def test_scikit_learns_own_weights_and_regularisation_tests_pass(monkeypatch):
    """scikit-learn's ``test_check_weights`` and ``test_regularisation``, run as they are,
    with ``GaussianMixture`` replaced by daskgmm's."""
    sk_tests = pytest.importorskip("sklearn.mixture.tests.test_gaussian_mixture")
    monkeypatch.setattr(sk_tests, "GaussianMixture", daskgmm.GaussianMixture)
    sk_tests.test_check_weights()
    sk_tests.test_regularisation()


# The sentences of sklearn/mixture/_gaussian_mixture.py (_check_weights, _check_shape and
# _compute_precision_cholesky) that its tests match, for installs without its test modules.
ILL_DEFINED = ("Fitting the mixture model failed because some components have ill-defined "
               "empirical covariance (for instance caused by singleton or collapsed samples). "
               "Try to decrease the number of components, increase reg_covar, or scale the "
               "input data.")


def test_weights_init_messages_start_with_scikit_learns_sentences():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 2))
    n = 3
    bad_shape = rng.rand(n, 1)
    with pytest.raises(ValueError, match="^" + re.escape(
            f"The parameter 'weights' should have the shape of ({n},), but got {bad_shape.shape}")):
        daskgmm.GaussianMixture(n, weights_init=bad_shape).fit(X)
    bad_range = rng.rand(n) + 1
    # scikit-learn prints the minimum as "max value" and the maximum as "min value".
    with pytest.raises(ValueError, match="^" + re.escape(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{np.min(bad_range):.5f}, min value {np.max(bad_range):.5f}")):
        daskgmm.GaussianMixture(n, weights_init=bad_range).fit(X)
    bad_sum = rng.rand(n)
    bad_sum = bad_sum / (bad_sum.sum() + 1)
    with pytest.raises(ValueError, match="^" + re.escape(
            f"The parameter 'weights' should be normalized, but got sum(weights) = "
            f"{np.sum(bad_sum):.5f}")):
        daskgmm.GaussianMixture(n, weights_init=bad_sum).fit(X)
    # scikit-learn's tolerance: float32 weights need to sum to 1 within 1e-6 only.
    near = np.array([0.5, 0.3, 0.2 + 5e-7], dtype=np.float32)
    daskgmm.GaussianMixture(n, weights_init=near, random_state=0).fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_degenerate_component_message_starts_with_scikit_learns_sentence(covariance_type):
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    gmm = daskgmm.GaussianMixture(n_components=10, reg_covar=0, covariance_type=covariance_type,
                                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="^" + re.escape(ILL_DEFINED)) as info:
            gmm.fit(X)
    assert "overflow" in str(info.value)  # the clearer sentence that follows names the other cause
