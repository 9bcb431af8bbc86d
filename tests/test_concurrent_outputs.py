"""The overwrite rule under concurrency, writability before any work, and no leftovers.

Real ``daskgmm`` processes race for one output: each is held just before the
step that puts its output in place (so both have passed every earlier check)
and released by the test through its stdin, so the order of events is fixed by
the test and not by the machine's speed. Kills are triggered from the program's
own progress (``tests/_kill_after.py``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from daskgmm import GaussianMixture, save_model
from daskgmm.persistence import read_model_file

from .conftest import invoke

KILL_AFTER = Path(__file__).with_name("_kill_after.py")

# Runs the daskgmm command with MODULE:QUALNAME wrapped: before each call, the
# process prints READY on stdout and waits for a line on stdin (or its end).
HOLD_BEFORE = '''
import functools, importlib, sys

module_name, qualname = sys.argv[1].split(":")
owner = importlib.import_module(module_name)
*path, attr = qualname.split(".")
for name in path:
    owner = getattr(owner, name)
original = getattr(owner, attr)

@functools.wraps(original)
def held(*args, **kwargs):
    sys.stdout.write("READY\\n")
    sys.stdout.flush()
    sys.stdin.readline()
    return original(*args, **kwargs)

setattr(owner, attr, held)
from daskgmm.jobs.cli import run
sys.argv = ["daskgmm", *sys.argv[2:]]
run()
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A data set and two models of it (2 and 3 components)."""
    from daskgmm.jobs.synthetic import make_mixture_zarr

    root = tmp_path_factory.mktemp("race")
    make_mixture_zarr(root / "data.zarr", 4000, 2, 3, chunk_rows=1000, seed=5)
    X = zarr.open_array(str(root / "data.zarr"), path="X", mode="r")[:]
    for k in (2, 3):
        save_model(GaussianMixture(k, random_state=0).fit(X), root / f"m{k}.npz")
    return root


def _config(path: Path, data: Path, model: Path) -> Path:
    """A fit of two components writing ``model`` (without overwrite, no checkpoint)."""
    path.write_text(yaml.safe_dump({"data": {"path": str(data), "array": "X"},
                                    "model": {"n_components": 2, "random_state": 0},
                                    "output": {"model": str(model)}}))
    return path


class Held:
    """A daskgmm process held before MODULE:QUALNAME until released."""

    def __init__(self, tmp_path: Path, name: str, target: str, *args):
        script = tmp_path / "_hold_before.py"
        if not script.exists():
            script.write_text(HOLD_BEFORE)
        self.stderr_path = tmp_path / f"{name}.err"
        with open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen([sys.executable, str(script), target, *map(str, args)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=err, text=True)

    def wait_until_held(self) -> None:
        assert self.process.stdout is not None and self.process.stdin is not None
        line = self.process.stdout.readline()  # EOF if the process ended instead
        assert line == "READY\n", (line, self.stderr_path.read_text())

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[int, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.read()
        return self.process.wait(), self.stderr_path.read_text()


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


# --------------------------------------------------------------------------
# Two runs racing for one output
# --------------------------------------------------------------------------


@pytest.mark.parametrize("release", ["one after the other", "together"])
def test_two_fits_racing_for_one_model_file_exactly_one_wins(tmp_path, workspace, release):
    out = tmp_path / "out"
    out.mkdir()
    model = out / "model.npz"
    runs = {}
    for k in (2, 3):
        config = tmp_path / f"fit{k}.yaml"
        config.write_text(yaml.safe_dump({
            "data": {"path": str(workspace / "data.zarr"), "array": "X"},
            "model": {"n_components": k, "random_state": 0, "max_iter": 5},
            "output": {"model": str(model)}}))  # overwrite: false
        runs[k] = Held(tmp_path, f"fit{k}", "daskgmm._files:_put_file_in_place", "fit", config)
    for held in runs.values():  # both have fitted and passed every check before this point
        held.wait_until_held()
    assert not model.exists()

    if release == "together":
        for held in runs.values():
            held.release()
        results = {k: held.finish() for k, held in runs.items()}
    else:
        runs[2].release()
        results = {2: runs[2].finish()}
        winner_bytes = model.read_bytes()
        runs[3].release()
        results[3] = runs[3].finish()
        assert model.read_bytes() == winner_bytes  # the winner's file is untouched
    codes = {k: code for k, (code, _) in results.items()}
    assert sorted(codes.values()) == [0, 5], results
    winner = min(codes, key=codes.get)
    loser = max(codes, key=codes.get)
    if release != "together":
        assert winner == 2
    _, err = results[loser]
    assert str(model) in err and "exists" in err and "--overwrite" in err
    _, metadata = read_model_file(model)
    assert metadata["params"]["n_components"] == winner
    assert sorted(p.name for p in out.iterdir()) == ["model.npz"]  # no temporary left behind


@pytest.mark.parametrize("release", ["one after the other", "together"])
def test_two_predicts_racing_for_one_store_exactly_one_wins(tmp_path, workspace, release):
    out = tmp_path / "out"
    out.mkdir()
    store = out / "pred.zarr"
    runs = {k: Held(tmp_path, f"predict{k}", "daskgmm.jobs.outputs:_put_directory_in_place",
                    "predict", "--model", workspace / f"m{k}.npz", "--data", workspace / "data.zarr",
                    "--array", "X", "--out", store, "--probabilities")
            for k in (2, 3)}
    for held in runs.values():
        held.wait_until_held()
    assert not store.exists()

    if release == "together":
        for held in runs.values():
            held.release()
        results = {k: held.finish() for k, held in runs.items()}
    else:
        runs[2].release()
        results = {2: runs[2].finish()}
        winner_files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
        runs[3].release()
        results[3] = runs[3].finish()
        assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == winner_files
    codes = {k: code for k, (code, _) in results.items()}
    assert sorted(codes.values()) == [0, 5], results
    winner = min(codes, key=codes.get)
    loser = max(codes, key=codes.get)
    if release != "together":
        assert winner == 2
    _, err = results[loser]
    assert str(store) in err and "exists" in err
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["n_components"] == winner
    assert group["probabilities"].shape == (4000, winner)
    assert sorted(p.name for p in out.iterdir()) == ["pred.zarr"]


# --------------------------------------------------------------------------
# Writability, before any work
# --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["output.model", "checkpoint.path"])
def test_an_output_or_checkpoint_that_cannot_be_written_is_exit_5_before_the_fit(
        tmp_path, workspace, capsys, where):
    (tmp_path / "blocker").write_text("a file, where a folder is needed")
    unwritable = tmp_path / "blocker" / "sub" / "file.npz"
    output = {"model": str(tmp_path / "model.npz")}
    checkpoint = {"path": str(tmp_path / "ckpt.npz")}
    if where == "output.model":
        output["model"] = str(unwritable)
    else:
        checkpoint["path"] = str(unwritable)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(workspace / "data.zarr"), "array": "X"},
                                      "model": {"n_components": 2, "random_state": 0},
                                      "output": output, "checkpoint": checkpoint}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 5, err
    assert str(tmp_path / "blocker") in err and "not a folder" in err
    assert "start:" not in err and "iteration" not in err  # found before the fit started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "job.yaml"]


def test_a_prediction_store_that_cannot_be_written_is_exit_5_before_any_work(
        tmp_path, workspace, capsys, monkeypatch):
    import daskgmm.model_files

    def no_model_may_be_loaded(path, storage_options=None):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(daskgmm.model_files, "load_model", no_model_may_be_loaded)
    (tmp_path / "blocker").write_text("a file")
    code, _, err = invoke(["predict", "--model", workspace / "m2.npz", "--data", workspace / "data.zarr",
                           "--array", "X", "--out", tmp_path / "blocker" / "pred.zarr"], capsys)
    assert code == 5, err
    assert "not a folder" in err and str(tmp_path / "blocker" / "pred.zarr") in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_output_folder_is_exit_5_before_the_fit(tmp_path, workspace, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        config = _config(tmp_path / "job.yaml", workspace / "data.zarr", folder / "m2.npz")
        code, _, err = invoke(["fit", config], capsys)
    finally:
        folder.chmod(0o755)
    assert code == 5 and "cannot create files" in err and "start:" not in err, err


# --------------------------------------------------------------------------
# Leftovers of killed runs
# --------------------------------------------------------------------------


def _run_killed(target: str, *args) -> subprocess.Popen:
    """Run the command, SIGKILLed by itself after the first call of ``target`` returns."""
    process = subprocess.Popen([sys.executable, str(KILL_AFTER), target, "1", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, err.decode()
    return process


def _predict_args(workspace: Path, store: Path, k: int = 2):
    return ["predict", "--model", workspace / f"m{k}.npz", "--data", workspace / "data.zarr",
            "--array", "X", "--out", store]


def test_temporaries_name_their_owner_and_the_next_run_removes_those_of_dead_processes(
        tmp_path, workspace, capsys):
    host = socket.gethostname()
    store = tmp_path / "pred.zarr"
    # A predict killed while writing its store (right after creating its first array).
    killed = _run_killed("daskgmm.jobs.outputs:checksummed_compressors", *_predict_args(workspace, store))
    (left,) = _leftovers(tmp_path, "pred.zarr")
    assert left.startswith(f".pred.zarr.tmp-{host}-{killed.pid}-"), left
    assert (tmp_path / left / "zarr.json").exists()
    # Temporaries of a live process (this one) and of another host are not touched.
    live = tmp_path / f".pred.zarr.tmp-{host}-{os.getpid()}-0123abcd"
    elsewhere = tmp_path / f".pred.zarr.tmp-not-{host}-{killed.pid}-0123abcd"
    unowned = tmp_path / ".pred.zarr.tmp-89abcdef"  # an older daskgmm's name: whose is unknown
    for path in (live, elsewhere, unowned):
        path.mkdir()

    code, _, err = invoke(_predict_args(workspace, store), capsys)
    assert code == 0, err
    assert _leftovers(tmp_path, "pred.zarr") == sorted(p.name for p in (live, elsewhere, unowned))
    labels = zarr.open_group(str(store), mode="r")["labels"]
    assert labels.nchunks_initialized == labels.nchunks

    # A fit killed right after its model file is in place, before its temporary name is removed.
    config = _config(tmp_path / "job.yaml", workspace / "data.zarr", tmp_path / "m2.npz")
    killed = _run_killed("daskgmm._files:_put_file_in_place", "fit", config)
    (left,) = _leftovers(tmp_path, "m2.npz")
    assert left.startswith(f".m2.npz.tmp-{host}-{killed.pid}-"), left
    code, _, err = invoke(["fit", config, "--overwrite"], capsys)
    assert code == 0, err
    assert _leftovers(tmp_path, "m2.npz") == []


@pytest.mark.parametrize(("killed_after", "expected"), [
    ("_move_aside", "old"),  # the new store never got in: the old one is put back
    ("_move_in", "new"),  # the new store is in: the old one, moved aside, is deleted
])
def test_a_replacement_killed_between_its_renames_is_repaired_by_the_next_run(
        tmp_path, workspace, capsys, killed_after, expected):
    store = tmp_path / "pred.zarr"
    assert invoke([*_predict_args(workspace, store, 2), "--probabilities"], capsys)[0] == 0
    old = zarr.open_group(str(store), mode="r")["probabilities"][:]

    _run_killed(f"daskgmm.jobs.outputs:{killed_after}", *_predict_args(workspace, store, 3),
                "--probabilities", "--overwrite")
    kinds = sorted(name.removeprefix(".pred.zarr.").split("-")[0]
                   for name in _leftovers(tmp_path, "pred.zarr"))
    assert kinds == (["old", "tmp"] if expected == "old" else ["old"])
    assert store.exists() == (expected == "new")

    # The next run, without --overwrite: the repaired store is there, so it is refused (exit 5).
    code, _, err = invoke([*_predict_args(workspace, store, 2), "--probabilities"], capsys)
    assert code == 5 and "exists" in err, err
    assert _leftovers(tmp_path, "pred.zarr") == []
    probabilities = zarr.open_group(str(store), mode="r")["probabilities"]
    assert probabilities.nchunks_initialized == probabilities.nchunks
    assert probabilities.shape[1] == (2 if expected == "old" else 3)
    if expected == "old":
        np.testing.assert_array_equal(probabilities[:], old)
