"""``--log-format json``: strict JSON on every line, a timestamp on every event, errors as
events with their exit code, and the option on every subcommand."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pytest
import yaml

from .conftest import invoke


def _strict(line: str) -> dict:
    """Parse one line as RFC 8259 JSON: Python's parser accepts NaN and Infinity unless told."""
    def reject(token: str):
        raise ValueError(f"not JSON: {token}")

    record = json.loads(line, parse_constant=reject)
    assert isinstance(record, dict)
    return record


def _events(err: str) -> list[dict]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no log lines"
    return [_strict(line) for line in lines]  # every line, not only the ones we look at


def _check_times(events: list[dict]) -> None:
    times = [datetime.fromisoformat(event["time"]) for event in events]
    for time in times:
        assert time.utcoffset() == timedelta(0)  # UTC, with its offset written
    assert times == sorted(times)


@pytest.fixture(scope="module")
def data_store(tmp_path_factory):
    from daskgmm.jobs.synthetic import make_mixture_zarr

    path = tmp_path_factory.mktemp("json") / "data.zarr"
    make_mixture_zarr(path, 3000, 2, 2, chunk_rows=500, seed=1)
    return path


@pytest.fixture()
def job(tmp_path, data_store):
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(data_store), "array": "X"},
        "model": {"n_components": 2, "random_state": 0},
        "output": {"model": str(tmp_path / "model.npz"), "predictions": str(tmp_path / "p.zarr")},
    }))
    return config


def test_json_event_is_strict_and_stamped():
    from daskgmm.callbacks import json_event

    line = json_event("iteration", change=float("inf"), loss=np.float64("nan"), n=np.int64(3),
                      ok=np.bool_(True), values=[1.0, -np.inf], nested={"a": np.float32(0.5)})
    record = _strict(line)
    assert record["event"] == "iteration"
    assert record["change"] is None and record["loss"] is None
    assert record["n"] == 3 and record["ok"] is True
    assert record["values"] == [1.0, None] and record["nested"] == {"a": 0.5}
    _check_times([record])


def test_fit_writes_only_strict_json_with_null_for_the_first_change(job, capsys):
    code, _, err = invoke(["fit", job, "--log-format", "json"], capsys)
    assert code == 0, err
    events = _events(err)
    _check_times(events)
    iterations = [e for e in events if e["event"] == "iteration"]
    assert iterations and iterations[0]["iteration"] == 1
    assert iterations[0]["change"] is None  # was the token Infinity
    assert all(math.isfinite(e["log_likelihood"]) for e in iterations)
    assert events[-1]["event"] == "summary"
    passes = [e for e in events if e["event"] == "pass"]
    assert [e["phase"] for e in passes[:3]] == ["init"] * 3  # init_params='kmeans': 3 passes
    assert [e["number"] for e in passes] == list(range(1, len(passes) + 1))
    em = [e for e in passes if e["phase"] == "em"]
    assert len(em) == len(iterations)  # one pass per EM iteration
    first_iteration = events.index(iterations[0])
    assert all(events.index(e) < first_iteration for e in passes[:3])  # before EM starts


def test_an_error_is_a_json_event_with_its_exit_code(tmp_path, capsys):
    config = tmp_path / "missing.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(tmp_path / "none.zarr")},
                                      "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config, "--log-format", "json"], capsys)
    assert code == 3
    error = _events(err)[-1]
    assert error["event"] == "error" and error["exit_code"] == 3
    assert "No Zarr" in error["message"]
    # The same error in text mode keeps its plain line.
    code, _, err = invoke(["fit", config], capsys)
    assert code == 3 and err.startswith("daskgmm: error: ")


def test_predict_accepts_the_option_and_reports_an_existing_output_as_exit_5(job, capsys, tmp_path):
    assert invoke(["fit", job], capsys)[0] == 0
    code, out, err = invoke(["predict", job, "--log-format", "json"], capsys)
    assert code == 0, err
    (done,) = [e for e in _events(err) if e["event"] == "predictions"]
    assert done["n_samples"] == 3000 and done["out"] == str(tmp_path / "p.zarr")
    code, _, err = invoke(["predict", job, "--log-format", "json"], capsys)
    assert code == 5
    error = _events(err)[-1]
    assert error["event"] == "error" and error["exit_code"] == 5 and "exists" in error["message"]


def test_every_subcommand_accepts_log_format():
    import click

    from daskgmm.jobs.cli import main

    commands = main.commands
    assert len(commands) >= 9
    missing = [name for name, command in commands.items()
               if not any(isinstance(p, click.Option) and "--log-format" in p.opts
                          for p in command.params)]
    assert missing == []


def test_info_on_a_file_that_is_not_a_model_file_is_a_json_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a model file")
    code, _, err = invoke(["info", bogus, "--log-format", "json"], capsys)
    assert code != 0
    error = _events(err)[-1]
    assert error["event"] == "error" and error["exit_code"] == code


def test_the_summary_separates_initialisation_from_em_and_a_resume_says_where(job, capsys,
                                                                             tmp_path):
    config = yaml.safe_load(job.read_text())
    config["checkpoint"] = {"path": str(tmp_path / "ckpt.npz")}
    config["model"].update(max_iter=2, tol=0.0)
    job.write_text(yaml.safe_dump(config))
    code, _, err = invoke(["fit", job, "--log-format", "json"], capsys)
    assert code == 0, err
    events = _events(err)
    iterations = [e for e in events if e["event"] == "iteration"]
    (summary,) = [e for e in events if e["event"] == "summary"]
    assert summary["iterations"] == summary["iterations_run"] == 2
    em = sum(e["seconds"] for e in iterations)
    assert summary["seconds_per_iteration"] == pytest.approx(em / 2, abs=2e-3)
    assert summary["init_seconds"] == pytest.approx(summary["seconds"] - em, abs=2e-3)

    # A run of the same job killed after its second iteration (its checkpoint written),
    # then resumed: it says from where, and the per-iteration time counts only the
    # iterations the resumed run made.
    from daskgmm import Checkpoint, GaussianMixture

    config["model"]["max_iter"] = 4
    job.write_text(yaml.safe_dump(config))

    class Killed(Exception):
        pass

    def kill_after_two(info):
        if info.n_iter == 2:
            raise Killed

    model = GaussianMixture(2, random_state=0, max_iter=4, tol=0.0)
    with pytest.raises(Killed):
        model.fit(config["data"]["path"] + "/X",
                  callbacks=[Checkpoint(config["checkpoint"]["path"], 1), kill_after_two])
    code, _, err = invoke(["fit", job, "--resume", "--overwrite", "--log-format", "json"], capsys)
    assert code == 0, err
    events = _events(err)
    (resume,) = [e for e in events if e["event"] == "resume"]
    assert resume["from_iteration"] == 2
    (summary,) = [e for e in events if e["event"] == "summary"]
    assert summary["iterations"] == 4 and summary["iterations_run"] == 2
    with pytest.raises(Killed):
        model.fit(config["data"]["path"] + "/X",
                  callbacks=[Checkpoint(config["checkpoint"]["path"], 1), kill_after_two])
    code, _, err = invoke(["fit", job, "--resume", "--overwrite"], capsys)
    assert code == 0, err
    assert f"resuming from iteration 2 ({tmp_path / 'ckpt.npz'})" in err


def test_n_init_candidates_count_each_iteration_once(job, capsys):
    code, _, err = invoke(["fit", job, "--log-format", "json", "--set", "model.n_init=3",
                           "--set", "model.init_params=random_from_data", "--overwrite"], capsys)
    assert code == 0, err
    events = _events(err)
    iterations = [e for e in events if e["event"] == "iteration"]
    (summary,) = [e for e in events if e["event"] == "summary"]
    # Three candidates share each pass: their callbacks come three times per iteration.
    assert summary["iterations_run"] == max(e["iteration"] for e in iterations)
    assert len(iterations) > summary["iterations_run"]


def test_a_local_cluster_announces_its_dashboard_as_a_json_event(job, capsys):
    code, _, err = invoke(["fit", job, "--log-format", "json", "--overwrite",
                           "--set", "cluster.kind=local", "--set", "cluster.n_workers=1",
                           "--set", "cluster.memory_limit=1GiB"], capsys)
    assert code == 0, err
    events = _events(err)  # every line JSON: the dashboard line too
    (dashboard,) = [e for e in events if e["event"] == "dashboard"]
    assert dashboard["serving"] is True and dashboard["url"].startswith("http")
    assert dashboard["problem"] is None
