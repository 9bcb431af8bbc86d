"""Stores at fsspec URLs are published whole: on fsspec's memory filesystem, which has no rename.

Each test writes under its own memory:// prefix. The rules (see daskgmm._objectstore): a reader
sees the previous store, no store, or the new one, never a mix; the previous store is touched
only once the new one is complete; without overwrite an existing store is refused, even one
that appeared during the write; a claim serialises publishers; a dead run's leftovers are
cleaned (and an interrupted publish finished) by the next run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import fsspec
import numpy as np
import pytest
import zarr

from daskgmm import _objectstore as objectstore
from daskgmm._files import _host
from daskgmm.exceptions import OutputError, OutputExistsError

FS = fsspec.filesystem("memory")


@pytest.fixture()
def url() -> str:
    return f"memory://objectstore-{uuid.uuid4().hex[:8]}/out.zarr"


def _path(url: str) -> str:
    return objectstore.filesystem(url)[1]


def _write(store, labels: np.ndarray, extra: bool = False) -> None:
    group = zarr.open_group(store, mode="w")
    group.attrs["n"] = len(labels)
    group.create_array("labels", shape=labels.shape, chunks=(4,), dtype=labels.dtype)[:] = labels
    if extra:
        group.create_array("probabilities", data=np.ones((len(labels), 2)), chunks=(4, 2))


def _publish(url: str, labels: np.ndarray, overwrite: bool = False, extra: bool = False) -> None:
    with objectstore.atomic_prefix(url, overwrite) as store:
        _write(store, labels, extra)


def _labels(url: str) -> np.ndarray:
    labels = zarr.open_group(url, mode="r")["labels"]
    assert isinstance(labels, zarr.Array)
    return np.asarray(labels[:])


def _siblings(url: str) -> list[str]:
    parent = os.path.dirname(_path(url))
    return sorted(os.path.basename(p) for p in FS.ls(parent, detail=False))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_store_is_published_whole_and_leaves_nothing_beside_it(url):
    _publish(url, np.arange(10))
    np.testing.assert_array_equal(_labels(url), np.arange(10))
    assert _siblings(url) == ["out.zarr"]  # no staging prefix, no claim


def test_overwrite_replaces_every_array_and_chunk_of_the_previous_store(url):
    _publish(url, np.arange(10), extra=True)
    _publish(url, -np.arange(6), overwrite=True)
    group = zarr.open_group(url, mode="r")
    np.testing.assert_array_equal(group["labels"][:], -np.arange(6))
    assert sorted(group.array_keys()) == ["labels"]  # the old probabilities are gone
    keys = sorted(os.path.relpath(p, _path(url)) for p in FS.find(_path(url)))
    assert keys == ["labels/c/0", "labels/c/1", "labels/zarr.json", "zarr.json"]  # no stale chunk


def test_an_existing_store_is_refused_before_the_work_without_overwrite(url):
    _publish(url, np.arange(10))
    ran = False
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with objectstore.atomic_prefix(url, False):
            ran = True
    assert not ran
    np.testing.assert_array_equal(_labels(url), np.arange(10))


def test_a_store_that_appeared_during_the_write_is_kept(url):
    with pytest.raises(OutputExistsError):
        with objectstore.atomic_prefix(url, False) as store:
            _write(store, -np.arange(10))
            _publish(url, np.arange(10))  # another run wins meanwhile
    np.testing.assert_array_equal(_labels(url), np.arange(10))
    assert _siblings(url) == ["out.zarr"]  # our staged store is gone


def test_a_failed_write_leaves_the_previous_store_as_it_was(url):
    _publish(url, np.arange(10))
    with pytest.raises(RuntimeError, match="the work failed"):
        with objectstore.atomic_prefix(url, True) as store:
            _write(store, -np.arange(10))
            raise RuntimeError("the work failed")
    np.testing.assert_array_equal(_labels(url), np.arange(10))
    assert _siblings(url) == ["out.zarr"]


def test_a_reader_never_sees_a_mix_of_old_and_new_chunks(url, monkeypatch):
    old, new = np.arange(12), 100 + np.arange(12)
    _publish(url, old)
    seen = []
    copy = type(FS).copy

    def copy_and_read(self, *args, **kwargs):
        try:
            seen.append(_labels(url).copy())
        except (FileNotFoundError, KeyError):
            seen.append(None)  # no store to open: fine
        return copy(self, *args, **kwargs)

    monkeypatch.setattr(type(FS), "copy", copy_and_read)
    _publish(url, new, overwrite=True)
    monkeypatch.undo()
    assert len(seen) >= 2
    for labels in seen:
        assert labels is None or np.array_equal(labels, old) or np.array_equal(labels, new)
    assert any(labels is None for labels in seen)  # the old store was closed before the copy
    np.testing.assert_array_equal(_labels(url), new)


def test_a_publish_that_fails_part_way_keeps_the_new_store_and_the_next_run_finishes_it(
        url, monkeypatch):
    _publish(url, np.arange(12))
    calls = []
    copy = type(FS).copy

    def copy_then_fail(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise ConnectionError("the connection dropped")
        return copy(self, *args, **kwargs)

    monkeypatch.setattr(type(FS), "copy", copy_then_fail)
    with pytest.raises(OutputError, match="complete at") as caught:
        _publish(url, 100 + np.arange(12), overwrite=True)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        _labels(url)  # cannot be opened, so cannot be misread
    staging = str(caught.value).rsplit("complete at ", 1)[1].strip("'.")
    np.testing.assert_array_equal(zarr.open_group(f"memory://{staging}", mode="r")["labels"][:],
                                  100 + np.arange(12))
    # This process is alive, so its claim stands: as if it had died, give the claim a dead pid.
    claim = f"{os.path.dirname(_path(url))}/.out.zarr.publishing"
    FS.pipe_file(claim, f'{{"host": "{_host()}", "pid": {_dead_pid()}, "staging": "{staging}"}}'
                 .encode())
    with pytest.raises(OutputExistsError):  # the next run finishes the publish, then refuses
        objectstore.check_writable(url, overwrite=False)
    np.testing.assert_array_equal(_labels(url), 100 + np.arange(12))
    assert _siblings(url) == ["out.zarr"]


def test_a_live_claim_of_another_run_refuses_the_publish_and_names_the_claim(url):
    _publish(url, np.arange(10))
    claim = f"{os.path.dirname(_path(url))}/.out.zarr.publishing"
    FS.pipe_file(claim, f'{{"host": "{_host()}", "pid": {os.getppid()}, "staging": "x"}}'.encode())
    with pytest.raises(OutputExistsError, match="publishing") as caught:
        _publish(url, -np.arange(10), overwrite=True)
    assert claim in str(caught.value)
    np.testing.assert_array_equal(_labels(url), np.arange(10))
    assert _siblings(url) == [".out.zarr.publishing", "out.zarr"]  # our staged store is gone


def test_the_leftovers_of_a_dead_run_are_removed_and_those_of_live_runs_kept(url):
    parent = os.path.dirname(_path(url))
    dead = f"{parent}/.out.zarr.tmp-{_host()}-{_dead_pid()}-0123abcd"
    live = f"{parent}/.out.zarr.tmp-{_host()}-{os.getppid()}-0123abcd"
    other_host = f"{parent}/.out.zarr.tmp-elsewhere-{_dead_pid()}-0123abcd"
    for prefix in (dead, live, other_host):
        FS.pipe_file(f"{prefix}/labels/c/0", b"x")
    _publish(url, np.arange(10))
    assert _siblings(url) == sorted([os.path.basename(live), os.path.basename(other_host),
                                     "out.zarr"])


def test_a_single_object_is_put_whole_and_not_replaced_without_overwrite(url):
    target = url.replace("out.zarr", "model.npz")
    objectstore.put_object(target, b"first", overwrite=False)
    with pytest.raises(OutputExistsError):
        objectstore.put_object(target, b"second", overwrite=False)
    assert objectstore.get_object(target) == b"first"
    objectstore.put_object(target, b"second", overwrite=True)
    assert objectstore.get_object(target) == b"second"


def test_a_model_file_round_trips_through_a_url_with_every_parameter(url):
    from daskgmm import GaussianMixture, load_model, save_model

    X = np.random.default_rng(0).normal(size=(300, 2))
    model = GaussianMixture(2, covariance_type="diag", tol=1e-4, reg_covar=1e-5, max_iter=50,
                            random_state=3, chunk_size=100).fit(X)
    target = url.replace("out.zarr", "model.npz")
    assert save_model(model, target, overwrite=False) == target
    loaded = load_model(target)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with pytest.raises(OutputExistsError):
        save_model(model, target, overwrite=False)
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_model(url.replace("out.zarr", "none.npz"))


def test_a_local_only_writer_refuses_a_url_instead_of_making_a_local_folder(tmp_path, monkeypatch):
    from daskgmm._files import atomic_write_bytes
    from daskgmm.exceptions import OutputNotWritableError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputNotWritableError, match="URL"):
        atomic_write_bytes("s3://bucket/table.csv", lambda f: f.write(b"x"))
    assert not os.path.exists(tmp_path / "s3:")


def test_a_checkpoint_at_a_url_is_a_config_error_that_says_why(tmp_path):
    from daskgmm.exceptions import ConfigError
    from daskgmm.jobs.config import load_config

    config = tmp_path / "job.yaml"
    config.write_text("data: {path: data.zarr}\ncheckpoint: {path: 's3://bucket/ckpt.npz'}\n")
    with pytest.raises(ConfigError, match="checkpoint.path.*local path"):
        load_config(config)


def test_output_storage_options_default_to_the_datas(tmp_path):
    from daskgmm.jobs.config import load_config

    config = tmp_path / "job.yaml"
    config.write_text("data: {path: 's3://b/d.zarr', storage_options: {anon: true}}\n")
    assert load_config(config).output_storage_options == {"anon": True}
    assert load_config(config, ["output.storage_options={key: k}"]).output_storage_options == {
        "key": "k"}
