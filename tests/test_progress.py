"""Progress bars: drawn on a terminal (a real pseudo-terminal here), never in logs or JSON."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
import yaml

from .conftest import invoke


def _on_a_terminal(*args) -> tuple[int, str]:
    """Run ``daskgmm ARGS`` with stdin, stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    process = subprocess.Popen([sys.executable, "-m", "daskgmm.jobs.cli", *map(str, args)],
                               stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not data:
            break
        chunks.append(data)
    process.wait()
    os.close(master)
    return process.returncode, b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    code, out = _on_a_terminal("make-data", root / "d.zarr", "--n-samples", 6000,
                               "--n-features", 2, "--n-components", 2, "--chunk-rows", 500)
    assert code == 0, out
    assert "make-data" in out and "100%" in out and "6.00k/6.00k" in out  # its bar, to the end
    config = root / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(root / "d.zarr"), "array": "X"},
        "model": {"n_components": 2, "random_state": 0},
        "output": {"model": str(root / "m.npz"), "predictions": str(root / "p.zarr"),
                   "overwrite": True}}))
    return config


def test_fit_draws_initialisation_and_em_bars_on_a_terminal(job):
    code, out = _on_a_terminal("fit", job)
    assert code == 0, out
    assert "initialisation: " in out and "3 pass" in out  # the 3 passes of init_params='kmeans'
    assert "EM: " in out and "log-lik=" in out
    assert "log-likelihood " not in out.split("summary:")[0]  # no per-iteration lines besides
    assert "summary: converged=True" in out


def test_select_and_predict_draw_bars_on_a_terminal(job, tmp_path):
    code, out = _on_a_terminal("select", job, "--n-components", "1-3",
                               "--set", f"output.model={tmp_path / 'best.npz'}")
    assert code == 0, out
    assert "EM: " in out and "finished=3/3" in out
    code, out = _on_a_terminal("predict", job)
    assert code == 0, out
    assert "predict: 100%" in out


def test_no_bars_in_logs_or_in_json(job, capsys):
    code, _, err = invoke(["fit", job], capsys)  # stderr captured: not a terminal
    assert code == 0, err
    assert "\r" not in err and "EM: " not in err
    assert "log-likelihood" in err  # one line per iteration instead
    code, out = _on_a_terminal("fit", job, "--log-format", "json")
    assert code == 0, out
    for line in out.splitlines():
        json.loads(line)  # every line is an event: no bar drawn between them


def test_predict_on_a_cluster_of_worker_processes_draws_its_bar_from_the_scheduler(job, tmp_path):
    cluster = ["--set", "cluster.kind=local", "--set", "cluster.n_workers=1",
               "--set", "cluster.threads_per_worker=2"]
    model = ["--set", f"output.model={tmp_path / 'm.npz'}"]
    code, out = _on_a_terminal("fit", job, *model)
    assert code == 0, out
    code, out = _on_a_terminal("predict", job, *model, *cluster,
                               "--set", f"output.predictions={tmp_path / 'p.zarr'}")
    assert code == 0, out
    final = out.split("predict: 100%")[-1].split("\n")[0] if "predict: 100%" in out else ""
    assert final, out  # the bar reached its end, drawn from the scheduler's progress feed
    done, total = final.split("|")[2].split()[0].split("/")
    assert done == total and int(total) >= 12  # every task of the pass: 12 chunks read and written
