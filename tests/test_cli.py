"""The daskgmm command end to end, its config errors and its exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from daskgmm import load_model
from daskgmm.persistence import read_model_file

from .conftest import free_port, invoke

KILL_AFTER = Path(__file__).with_name("_kill_after.py")


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.fixture(scope="module")
def data_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "data.zarr"
    from daskgmm.jobs.synthetic import make_mixture_zarr

    make_mixture_zarr(path, 6000, 3, 3, chunk_rows=1000, seed=2, offset=100.0)
    return path


@pytest.fixture()
def job(tmp_path, data_store) -> Path:
    return write_config(
        tmp_path / "job.yaml",
        data={"path": str(data_store), "array": "X"},
        model={"n_components": 3, "random_state": 0},
        output={"model": str(tmp_path / "model.npz"), "predictions": str(tmp_path / "pred.zarr"),
                "probabilities": True, "log_likelihood": True},
        checkpoint={"path": str(tmp_path / "ckpt.npz")},
    )


def test_end_to_end_make_data_fit_predict_score_select_info_report(tmp_path, capsys):
    store = tmp_path / "made.zarr"
    code, out, _ = invoke(["make-data", store, "--n-samples", 4000, "--n-features", 2,
                           "--n-components", 2, "--chunk-rows", 500, "--seed", 1], capsys)
    assert code == 0 and "Wrote 4,000 x 2" in out
    group = zarr.open_group(str(store), mode="r")
    assert set(group.array_keys()) == {"X", "labels", "weights", "means", "covariances"}

    config = write_config(
        tmp_path / "job.yaml", data={"path": str(store), "array": "X"},
        model={"n_components": 2, "random_state": 0},
        output={"model": str(tmp_path / "m.npz"), "predictions": str(tmp_path / "p.zarr"),
                "probabilities": True, "log_likelihood": True},
        checkpoint={"path": str(tmp_path / "c.npz"), "interval": 1})
    code, _, err = invoke(["fit", config, "--log-format", "json"], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    assert any(e["event"] == "iteration" for e in events)
    summary = events[-1]
    assert summary["converged"] and summary["iterations"] >= 1 and "bic" in summary
    model = load_model(tmp_path / "m.npz")
    assert (tmp_path / "c.npz").exists()

    code, out, err = invoke(["predict", config], capsys)
    assert code == 0, err
    pred = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    X = group["X"][:]
    np.testing.assert_array_equal(pred["labels"][:], model.predict(X))
    np.testing.assert_allclose(pred["probabilities"][:], model.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(pred["log_likelihood"][:], model.score_samples(X), rtol=1e-12)
    assert pred["labels"].chunks == (500,)

    code, _, err = invoke(["score", config, "--log-format", "json"], capsys)
    assert code == 0
    scored = json.loads(err.strip().splitlines()[-1])
    assert scored["log_likelihood"] == pytest.approx(model.score(X), rel=1e-12)
    assert scored["bic"] == pytest.approx(model.bic(X), rel=1e-12)

    code, out, err = invoke(["select", config, "--n-components", "1-3", "--covariance-types",
                             "full,spherical", "--table", tmp_path / "sel.json",
                             "--set", f"output.model={tmp_path / 'best.npz'}"], capsys)
    assert code == 0, err
    table = json.loads((tmp_path / "sel.json").read_text())
    assert len(table) == 6
    best = min(table, key=lambda r: r["bic"])
    assert "<- best" in out
    assert load_model(tmp_path / "best.npz").n_components == best["n_components"]

    code, out, _ = invoke(["info", tmp_path / "best.npz", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["selection"]["criterion"] == "bic" and info["format_version"] == 1

    code, out, _ = invoke(["report", tmp_path / "best.npz", "--data", store, "--array", "X",
                           "--out-dir", tmp_path / "report"], capsys)
    assert code == 0
    for name in ("log_likelihood.png", "selection.png", "projection.png"):
        png = (tmp_path / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name


def test_every_subcommand_has_help_with_examples(capsys):
    for command in ("fit", "predict", "score", "select", "make-data", "info", "report"):
        code, out, _ = invoke([command, "--help"], capsys)
        assert code == 0 and "Examples:" in out, command


def test_command_line_overrides_config_values(job, capsys, tmp_path):
    code, _, err = invoke(["fit", job, "--set", "model.n_components=2",
                           "--set", "model.covariance_type=diag"], capsys)
    assert code == 0, err
    model = load_model(tmp_path / "model.npz")
    assert model.n_components == 2 and model.covariance_type == "diag"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"data": {"path": "x.zarr"}, "modle": {}}, "modle: unknown key (allowed here: data, model"),
        ({"data": {"path": "x.zarr"}, "model": {"n_componets": 3}}, "model.n_componets: unknown key"),
        ({"data": {"path": "x.zarr"}, "model": {"n_components": 0}},
         "model.n_components: Input should be greater than or equal to 1 (got 0)"),
        ({"data": {"path": "x.zarr"}, "model": {"tol": "small"}}, "model.tol: Input should be a valid number"),
        ({"data": {"path": "x.zarr"}, "model": {"covariance_type": "ful"}},
         "Input should be 'full', 'tied', 'diag' or 'spherical' (got 'ful')"),
        ({"model": {"n_components": 2}}, "data: Field required"),
        ({"data": {"path": "x.zarr"}, "cluster": {"kind": "address"}}, "needs cluster.address"),
        ({"data": {"path": "x.zarr"}, "cluster": {"kind": "address", "address": "http://a:1"}},
         "must start with tcp:// or tls://"),
        ({"data": {"path": "x.zarr"}, "cluster": {"kind": "address", "address": "tls://a:1"}},
         "needs cluster.tls"),
        ({"data": {"path": "x.zarr"}, "checkpoint": {"path": "c.npz", "interval": 0}},
         "checkpoint.interval: Input should be greater than or equal to 1"),
        ({"data": {"path": "x.zarr"}, "model": {"n_init": 3}, "checkpoint": {"path": "c.npz"}},
         "model.n_init must be 1 with checkpoint, got 3"),
    ],
)
def test_each_config_error_gives_its_message(tmp_path, capsys, sections, message):
    config = write_config(tmp_path / "bad.yaml", **sections)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 2
    assert message in err


def test_initial_parameters_that_do_not_fit_the_data_are_config_errors(job, capsys):
    code, _, err = invoke(["fit", job, "--set", "model.means_init=[[0, 0], [1, 1], [2, 2]]"], capsys)
    assert code == 2
    assert "'means' should have the shape of (3, 3), but got (3, 2)" in err


def test_unreadable_config_files(tmp_path, capsys):
    code, _, err = invoke(["fit", tmp_path / "missing.yaml"], capsys)
    assert code == 2 and "No config file" in err
    (tmp_path / "broken.yaml").write_text("data: [unclosed")
    code, _, err = invoke(["fit", tmp_path / "broken.yaml"], capsys)
    assert code == 2 and "not valid YAML" in err
    (tmp_path / "python.yaml").write_text("data: !!python/object/apply:os.system ['echo pwned']")
    code, _, err = invoke(["fit", tmp_path / "python.yaml"], capsys)
    assert code == 2 and "not valid YAML" in err


def test_exit_codes(tmp_path, capsys, job, data_store):
    # 3: the data are not there.
    missing = write_config(tmp_path / "missing.yaml", data={"path": str(tmp_path / "none.zarr")},
                           output={"model": str(tmp_path / "x.npz")})
    code, _, err = invoke(["fit", missing], capsys)
    assert code == 3 and "No Zarr" in err
    # 4: not converged, with the opt-in flag.
    code, _, err = invoke(["fit", job, "--set", "model.max_iter=1", "--set", "model.tol=0",
                           "--fail-on-no-convergence"], capsys)
    assert code == 4 and "did not converge" in err
    # 5: the output exists and overwriting was not asked for.
    code, _, err = invoke(["fit", job], capsys)
    assert code == 5 and "exists" in err
    code, _, _ = invoke(["fit", job, "--overwrite"], capsys)
    assert code == 0
    # 4: a degenerate component.
    X = np.concatenate([np.random.default_rng(0).normal(size=(50, 2)), np.full((10, 2), 50.0)])
    zarr.create_array(str(tmp_path / "degenerate.zarr"), data=X, chunks=(20, 2))
    degenerate = write_config(
        tmp_path / "degenerate.yaml", data={"path": str(tmp_path / "degenerate.zarr")},
        model={"n_components": 2, "reg_covar": 0.0, "means_init": [[0.0, 0.0], [50.0, 50.0]],
               "weights_init": [0.5, 0.5], "precisions_init": [[[1, 0], [0, 1]], [[1, 0], [0, 1]]]},
        output={"model": str(tmp_path / "d.npz")})
    code, _, err = invoke(["fit", degenerate], capsys)
    assert code == 4 and "component 1" in err and "reg_covar" in err


@pytest.mark.parametrize("command", ["fit", "select"])
def test_fit_and_select_silence_only_the_convergence_warning_they_report(
        job, capsys, monkeypatch, command):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    import daskgmm.estimator

    def warning_first(original):
        def warn_then_run(*args, **kwargs):
            warnings.warn("a warning daskgmm does not report itself", UserWarning, stacklevel=2)
            return original(*args, **kwargs)
        return warn_then_run

    if command == "fit":
        model_class = daskgmm.estimator.GaussianMixture
        monkeypatch.setattr(model_class, "fit", warning_first(model_class.fit))
        args = ["fit", job]
    else:
        monkeypatch.setattr(daskgmm.estimator, "fit_many", warning_first(daskgmm.estimator.fit_many))
        args = ["select", job, "--n-components", "2-3"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = invoke([*args, "--set", "model.max_iter=1", "--set", "model.tol=0"],
                                capsys)
    assert code == 0, err
    # EM stopped before converging: reported by the job, not by a ConvergenceWarning ...
    assert "converged=False" in err if command == "fit" else out.count(" False") == 2
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    # ... while any other warning reaches the user.
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        "a warning daskgmm does not report itself"]


def test_saved_loaded_and_exported_models_predict_exactly_the_same(job, capsys, tmp_path, data_store):
    assert invoke(["fit", job], capsys)[0] == 0
    X = zarr.open_group(str(data_store), mode="r")["X"][:]
    fitted = load_model(tmp_path / "model.npz")
    from daskgmm import save_model

    save_model(fitted, tmp_path / "again.npz")
    reloaded = load_model(tmp_path / "again.npz")
    exported = reloaded.to_sklearn()
    np.testing.assert_array_equal(reloaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(exported.predict(X), fitted.predict(X))
    np.testing.assert_allclose(exported.predict_proba(X), fitted.predict_proba(X), rtol=1e-12,
                               atol=1e-300)


def _daskgmm(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "daskgmm.jobs.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory):
    """A fit of 25 iterations (tol=0) and its uninterrupted result."""
    from daskgmm.jobs.synthetic import make_mixture_zarr

    tmp = tmp_path_factory.mktemp("slow")
    store = make_mixture_zarr(tmp / "slow.zarr", 200_000, 6, 6, chunk_rows=20_000, seed=4,
                              separation=1.0)
    sections = dict(data={"path": str(store), "array": "X"},
                    model={"n_components": 6, "random_state": 0, "tol": 0, "max_iter": 25,
                           "init_params": "random_from_data"},
                    output={"model": str(tmp / "full.npz")},
                    checkpoint={"path": str(tmp / "full-ckpt.npz")})
    config = write_config(tmp / "full.yaml", **sections)
    subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", "fit", str(config)], check=True,
                   capture_output=True)
    full, _ = read_model_file(tmp / "full.npz")
    return sections, full


@pytest.mark.parametrize("kill_after", [1, 6, 14])
def test_fit_killed_with_sigkill_resumes_to_the_identical_model(tmp_path, slow_job, capsys, kill_after):
    sections, full = slow_job
    sections = {**sections, "output": {"model": str(tmp_path / "resumed.npz")},
                "checkpoint": {"path": str(tmp_path / "ckpt.npz")}}
    killed = write_config(tmp_path / "killed.yaml", **sections)
    # The process kills itself right after writing its kill_after-th checkpoint.
    process = subprocess.run([sys.executable, str(KILL_AFTER), "daskgmm.checkpoints:Checkpoint.__call__",
                              str(kill_after), "fit", str(killed)], capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    assert not (tmp_path / "resumed.npz").exists()
    _, meta = read_model_file(tmp_path / "ckpt.npz")
    assert meta["checkpoint"]["n_iter"] == kill_after

    code, _, err = invoke(["fit", killed, "--resume"], capsys)
    assert code == 0, err
    resumed, _ = read_model_file(tmp_path / "resumed.npz")
    for name, array in full.items():
        np.testing.assert_array_equal(resumed[name], array, err_msg=name)



def test_fit_against_dask_scheduler_and_workers_started_by_the_dask_command(job, tmp_path, capsys):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(["dask", "worker", address, "--nthreads", "1",
                                           "--no-dashboard", "--memory-limit", "1GiB"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            code, _, err = invoke(["fit", job, "--set", "cluster.kind=address",
                                   "--set", f"cluster.address={address}",
                                   "--set", f"output.model={tmp_path / 'remote.npz'}"], capsys)
            assert code == 0, err
            prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
            assert any(p.startswith("gmm-estep") for p in prefixes)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    assert invoke(["fit", job], capsys)[0] == 0
    remote = load_model(tmp_path / "remote.npz")
    local = load_model(tmp_path / "model.npz")
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-12)
    np.testing.assert_allclose(remote.covariances_, local.covariances_, rtol=1e-12)
    assert remote.lower_bound_ == pytest.approx(local.lower_bound_, rel=1e-14)


def test_fit_on_a_local_cluster_started_from_the_config_prints_the_dashboard(job, capsys, tmp_path):
    code, _, err = invoke(["fit", job, "--set", "cluster.kind=local", "--set", "cluster.n_workers=2",
                           "--set", "cluster.memory_limit=1GiB"], capsys)
    assert code == 0, err
    assert "Dask dashboard: http" in err
    assert "workers=2" in err


def test_fit_over_tls_with_certificates_from_the_config(job, capsys, tmp_path):
    from distributed import Client, LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    paths = {}
    for key, pem in (("ca_file", security.tls_ca_file), ("cert_file", security.tls_client_cert),
                     ("key_file", security.tls_client_key)):
        paths[key] = tmp_path / f"{key}.pem"
        paths[key].write_text(pem)
    with LocalCluster(n_workers=1, threads_per_worker=1, security=security, protocol="tls://",
                      dashboard_address=None, processes=False) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        code, _, err = invoke(["fit", job, "--set", "cluster.kind=address",
                               "--set", f"cluster.address={address}",
                               "--set", "cluster.tls={" + ", ".join(
                                   f"{k}: {v}" for k, v in paths.items()) + "}"], capsys)
        assert code == 0, err
        # A client without the certificates is refused.
        with pytest.raises((OSError, TypeError, ValueError)):
            Client(address, timeout="3s")


def test_config_sample_weights_fit_score_and_select(tmp_path, capsys, data_store):
    import shutil
    import warnings

    from daskgmm import GaussianMixture, open_zarr_array

    store = tmp_path / "weighted.zarr"
    shutil.copytree(data_store, store)
    counts = np.random.default_rng(0).integers(0, 3, size=6000).astype(np.float64)
    zarr.open_group(str(store), mode="a").create_array("w", data=counts, chunks=(700,))
    config = write_config(
        tmp_path / "w.yaml",
        data={"path": str(store), "array": "X", "sample_weight": "w", "chunk_rows": 1500},
        model={"n_components": 2, "random_state": 0, "max_iter": 30},
        output={"model": str(tmp_path / "model.npz")},
    )
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    X = open_zarr_array(store, "X")[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = GaussianMixture(2, random_state=0, max_iter=30, chunk_size=1500).fit(
            X, sample_weight=counts)
    model = load_model(tmp_path / "model.npz")
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-9)

    code, _, err = invoke(["score", config, "--log-format", "json"], capsys)
    scored = json.loads(err.strip().splitlines()[-1])
    assert code == 0
    assert scored["log_likelihood"] == pytest.approx(reference.score(X, sample_weight=counts),
                                                     rel=1e-10)
    assert scored["n_samples"] == counts.sum()

    code, _, err = invoke(["select", config, "--n-components", "1-3", "--table",
                           tmp_path / "sel.json", "--set", f"output.model={tmp_path / 'best.npz'}"],
                          capsys)
    assert code == 0, err
    row = next(r for r in json.loads((tmp_path / "sel.json").read_text())
               if r["n_components"] == 2)
    assert row["log_likelihood"] == pytest.approx(reference.score(X, sample_weight=counts),
                                                  rel=1e-9)


class Killed(BaseException):
    """Stands for the process being killed: no handler in daskgmm catches it."""


def test_make_data_overwrite_keeps_a_whole_store_in_place_whatever_the_moment_of_a_kill(
        tmp_path, capsys, monkeypatch):
    import shutil

    args = ["--n-samples", 3000, "--n-features", 2, "--n-components", 2, "--chunk-rows", 500]
    for path, seed in ((tmp_path / "data.zarr", 1), (tmp_path / "new.zarr", 2)):
        assert invoke(["make-data", path, *args, "--seed", seed], capsys)[0] == 0
    old = zarr.open_group(str(tmp_path / "data.zarr"), mode="r")["X"][:]
    new = zarr.open_group(str(tmp_path / "new.zarr"), mode="r")["X"][:]

    def whole_store_at_path() -> np.ndarray:
        X = zarr.open_array(str(tmp_path / "data.zarr"), path="X", mode="r")
        assert X.nchunks_initialized == X.nchunks
        return np.asarray(X[:])

    # Killed while the new store is being written: the old one is untouched.
    import daskgmm.jobs.synthetic

    def draw_then_die(spec, n_rows, rng, calls=[]):  # noqa: B006
        calls.append(n_rows)
        if len(calls) == 3:
            raise Killed
        return real_draw(spec, n_rows, rng)

    real_draw = daskgmm.jobs.synthetic.draw_rows
    monkeypatch.setattr(daskgmm.jobs.synthetic, "draw_rows", draw_then_die)
    with pytest.raises(Killed):
        invoke(["make-data", tmp_path / "data.zarr", *args, "--seed", 2, "--overwrite"], capsys)
    monkeypatch.undo()
    np.testing.assert_array_equal(whole_store_at_path(), old)

    # Killed while the replaced store is being deleted: the path holds a whole store, never
    # a half-deleted one.
    real_rmtree = shutil.rmtree

    def delete_one_chunk_then_die(path, *a, **kw):
        chunks = sorted(p for p in Path(path).rglob("*") if p.is_file() and "X" in p.parts
                        and p.name != "zarr.json")
        if not chunks:  # zarr clears a new store's folder before writing to it
            return real_rmtree(path, *a, **kw)
        chunks[-1].unlink()
        raise Killed

    monkeypatch.setattr(shutil, "rmtree", delete_one_chunk_then_die)
    with pytest.raises(Killed):
        invoke(["make-data", tmp_path / "data.zarr", *args, "--seed", 2, "--overwrite"], capsys)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    np.testing.assert_array_equal(whole_store_at_path(), new)


def test_report_select_table_and_predict_do_not_replace_outputs_without_overwrite(
        job, capsys, tmp_path):
    assert invoke(["fit", job], capsys)[0] == 0
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    (out_dir / "log_likelihood.png").write_bytes(b"mine")
    code, out, err = invoke(["report", tmp_path / "model.npz", "--out-dir", out_dir], capsys)
    assert code == 5 and "exists" in err and "--overwrite" in err
    assert (out_dir / "log_likelihood.png").read_bytes() == b"mine"
    assert [p.name for p in out_dir.iterdir()] == ["log_likelihood.png"]  # before any work
    code, _, err = invoke(["report", tmp_path / "model.npz", "--out-dir", out_dir,
                           "--overwrite"], capsys)
    assert code == 0, err
    assert (out_dir / "log_likelihood.png").read_bytes()[:4] == b"\x89PNG"

    table = tmp_path / "table.csv"
    table.write_text("mine")
    select = ["select", job, "--n-components", "1-2", "--table", table,
              "--set", f"output.model={tmp_path / 'best.npz'}", "--log-format", "json"]
    code, out, err = invoke(select, capsys)
    assert code == 5 and "exists" in err and "--overwrite" in err
    assert table.read_text() == "mine"
    assert "candidate" not in err and not (tmp_path / "best.npz").exists()  # before any work
    code, out, err = invoke([*select, "--overwrite"], capsys)
    assert code == 0, err
    assert table.read_text().startswith("n_components,covariance_type")
    # output.overwrite in the config is the same rule as --overwrite.
    code, out, err = invoke([*select, "--set", "output.overwrite=true"], capsys)
    assert code == 0, err

    # And predict, whose store exists: exit 5 (an output error), not 3 (a data error).
    (tmp_path / "pred.zarr").mkdir()
    (tmp_path / "pred.zarr" / "mine").write_text("mine")
    code, _, err = invoke(["predict", job], capsys)
    assert code == 5 and "exists" in err
    assert [p.name for p in (tmp_path / "pred.zarr").iterdir()] == ["mine"]


def test_the_readmes_session_works_after_the_demo(tmp_path, monkeypatch, capsys):
    import re
    import shlex

    from daskgmm.jobs import demo

    monkeypatch.chdir(tmp_path)
    assert demo.main(["--n-samples", "2000", "--n-components", "2"]) == 0
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    session = readme.split("A session, from scratch:", 1)[1].split("```bash", 1)[1].split("```")[0]
    make_data = shlex.split(re.search(r"^daskgmm make-data .*$", session, re.M).group(0))
    make_data[make_data.index("--n-samples") + 1] = "2000"  # the session's own size, made small
    code, _, err = invoke(make_data[1:], capsys)
    assert code == 0, err  # not "exists": the demo's data set is elsewhere
