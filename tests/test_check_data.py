"""Say which data cannot be checked: `daskgmm check`, the no-checksum warning, `daskgmm rewrite`.

A chunk compressed without a checksum decodes, after a flipped byte, to wrong
numbers with no error: no reader can detect it. daskgmm says so, and rewrites
a store with checksums on request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from daskgmm.jobs.synthetic import make_mixture_zarr

from .conftest import invoke

ROWS, CHUNK = 3000, 500


def _plain_store(path: Path, sharded: bool = False) -> np.ndarray:
    """A group written with zarr's default codecs (zstd, no checksum), as most writers do."""
    X = np.random.default_rng(0).normal(size=(ROWS, 2)) + np.repeat([[0.0], [8.0]], ROWS // 2, axis=0)
    group = zarr.open_group(str(path), mode="w")
    group.attrs["source"] = "a plain writer"
    array = group.create_array("X", shape=X.shape, dtype="f8", chunks=(CHUNK, 2),
                               attributes={"units": "m"},
                               shards=(2 * CHUNK, 2) if sharded else None)
    array[:] = X
    group.create_array("w", data=np.ones(ROWS), chunks=(CHUNK,))
    return X


def _flip_a_byte(chunk_file: Path) -> None:
    raw = bytearray(chunk_file.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk_file.write_bytes(bytes(raw))


def test_check_reports_shape_chunking_missing_chunks_codecs_and_checksum(tmp_path, capsys):
    _plain_store(tmp_path / "plain.zarr")
    make_mixture_zarr(tmp_path / "ours.zarr", ROWS, 2, 2, chunk_rows=CHUNK)

    code, out, err = invoke(["check", tmp_path / "plain.zarr", "--array", "X", "--json"], capsys)
    assert code == 0, err
    (report,) = json.loads(out)
    assert report["shape"] == [ROWS, 2] and report["chunks"] == [CHUNK, 2]
    assert report["dtype"] == "float64" and report["shards"] is None
    assert report["n_chunks"] == ROWS // CHUNK and report["n_missing"] == 0
    assert report["codecs"] == ["bytes", "zstd"] and report["checksum"] is False
    code, out, err = invoke(["check", tmp_path / "plain.zarr"], capsys)
    assert code == 0, err
    assert out.count("checksum: NO") == 2 and "daskgmm rewrite" in out  # X and w

    code, out, err = invoke(["check", tmp_path / "ours.zarr", "--array", "X", "--json"], capsys)
    assert code == 0, err
    (report,) = json.loads(out)
    assert report["codecs"] == ["bytes", "blosc(lz4)", "crc32c"] and report["checksum"] is True

    # A chunk never written: named with its rows, exit 3 (a data error).
    (tmp_path / "ours.zarr" / "X" / "c" / "4" / "0").unlink()
    code, out, err = invoke(["check", tmp_path / "ours.zarr", "--array", "X"], capsys)
    assert code == 3, err
    assert "missing chunks: 1 of 6" in out and "chunk (4, 0) (rows 2000-2499)" in out
    assert "missing or unreadable chunks" in err


@pytest.mark.parametrize("sharded", [False, True])
def test_check_verify_reads_every_chunk_once_and_names_those_that_fail(
        tmp_path, capsys, monkeypatch, sharded):
    store = tmp_path / "ours.zarr"
    make_mixture_zarr(store, ROWS, 2, 2, chunk_rows=CHUNK)
    if sharded:  # the same data with checksums, in shards of two chunks
        _plain_store(tmp_path / "sharded.zarr", sharded=True)
        assert invoke(["rewrite", tmp_path / "sharded.zarr", store, "--overwrite"], capsys)[0] == 0
    bad_file = store / "X" / "c" / ("1" if sharded else "3") / "0"
    _flip_a_byte(bad_file)

    reads = []
    real_getitem = zarr.Array.__getitem__

    def counted(self, selection):
        if self.path == "X":
            reads.append(selection)
        return real_getitem(self, selection)

    monkeypatch.setattr(zarr.Array, "__getitem__", counted)
    code, out, err = invoke(["check", store, "--array", "X", "--verify"], capsys)
    monkeypatch.undo()
    assert code == 3, err
    stored = 2 * CHUNK if sharded else CHUNK
    first_reads = [r for r in reads if r[0].stop - r[0].start == stored]
    assert [r[0].start for r in first_reads] == list(range(0, ROWS, stored))  # each once, in order
    assert all(r[0].stop - r[0].start <= stored for r in reads)  # never more than a chunk (shard)
    if sharded:  # the shard that failed is read again chunk by chunk, to name the chunk
        assert "1 of 3 chunk(s) failed" in out
        assert "chunk (2, 0) (rows 1000-1499)" in out or "chunk (3, 0) (rows 1500-1999)" in out
    else:
        assert "1 of 6 chunk(s) failed" in out and "chunk (3, 0) (rows 1500-1999)" in out
        assert "checksum" in out.split("chunk (3, 0)")[1].lower()


def test_verify_says_that_chunks_without_a_checksum_cannot_be_shown_intact(tmp_path, capsys):
    X = _plain_store(tmp_path / "plain.zarr")
    # zstd without a checksum: find a flip that decodes without error, to wrong numbers.
    chunk = tmp_path / "plain.zarr" / "X" / "c" / "2" / "0"
    original = chunk.read_bytes()
    for position in range(len(original) - 1, 0, -1):
        raw = bytearray(original)
        raw[position] ^= 0x01
        chunk.write_bytes(bytes(raw))
        try:
            values = zarr.open_group(str(tmp_path / "plain.zarr"), mode="r")["X"][1000:1500]
        except Exception:
            continue
        if not np.array_equal(values, X[1000:1500]):
            break
    else:
        pytest.fail("no silent flip found")
    code, out, err = invoke(["check", tmp_path / "plain.zarr", "--array", "X", "--verify"], capsys)
    assert code == 0, err  # nothing a reader can detect ...
    assert "does not show that they are intact" in out and "checksum: NO" in out  # ... and it says so


def _job(tmp_path: Path, data: Path, fmt: str = "text") -> Path:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(data), "array": "X"},
        "model": {"n_components": 2, "random_state": 0},
        "output": {"model": str(tmp_path / "m.npz"), "predictions": str(tmp_path / "p.zarr"),
                   "overwrite": True}}))
    return config


def test_fit_and_predict_warn_once_when_the_input_has_no_checksum(tmp_path, capsys):
    _plain_store(tmp_path / "plain.zarr")
    config = _job(tmp_path, tmp_path / "plain.zarr")
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    assert err.count("warning") == 1 and "no checksum" in err and "daskgmm rewrite" in err
    code, _, err = invoke(["fit", config, "--log-format", "json"], capsys)
    assert code == 0, err
    warnings = [json.loads(line) for line in err.splitlines() if '"warning"' in line]
    assert len(warnings) == 1 and "no checksum" in warnings[0]["message"]
    assert all(json.loads(line) for line in err.splitlines())  # still one JSON object per line
    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    assert err.count("warning") == 1 and "no checksum" in err

    make_mixture_zarr(tmp_path / "ours.zarr", ROWS, 2, 2, chunk_rows=CHUNK)
    config = _job(tmp_path, tmp_path / "ours.zarr")
    for command in ("fit", "predict"):
        code, _, err = invoke([command, config], capsys)
        assert code == 0 and "warning" not in err, err


def test_rewrite_adds_checksums_keeping_values_chunks_shards_and_attributes(tmp_path, capsys):
    X = _plain_store(tmp_path / "plain.zarr", sharded=True)
    code, out, err = invoke(["rewrite", tmp_path / "plain.zarr", tmp_path / "checked.zarr"], capsys)
    assert code == 0, err
    group = zarr.open_group(str(tmp_path / "checked.zarr"), mode="r")
    assert dict(group.attrs) == {"source": "a plain writer"}
    assert group["X"].chunks == (CHUNK, 2) and group["X"].shards == (2 * CHUNK, 2)
    assert dict(group["X"].attrs) == {"units": "m"}
    np.testing.assert_array_equal(group["X"][:], X)
    np.testing.assert_array_equal(group["w"][:], np.ones(ROWS))
    code, out, _ = invoke(["check", tmp_path / "checked.zarr", "--json"], capsys)
    assert code == 0 and all(report["checksum"] for report in json.loads(out))

    # Now a flipped byte is found by every reader: fit exits 3 naming the rows.
    _flip_a_byte(tmp_path / "checked.zarr" / "X" / "c" / "1" / "0")
    code, _, err = invoke(["fit", _job(tmp_path, tmp_path / "checked.zarr")], capsys)
    assert code == 3 and re.search(r"rows 1[05]00-1[49]99", err) and "checksum" in err, err

    # In place, with --overwrite; the old store is replaced only when the new one is complete.
    code, _, err = invoke(["rewrite", tmp_path / "plain.zarr", tmp_path / "plain.zarr"], capsys)
    assert code == 5 and "exists" in err
    code, _, err = invoke(["rewrite", tmp_path / "plain.zarr", tmp_path / "plain.zarr", "--overwrite"],
                          capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "plain.zarr"), mode="r")["X"][:], X)

    # A source with chunks never written is refused: a copy would store the fill value as data.
    make_mixture_zarr(tmp_path / "holes.zarr", ROWS, 2, 2, chunk_rows=CHUNK)
    (tmp_path / "holes.zarr" / "X" / "c" / "2" / "0").unlink()
    code, _, err = invoke(["rewrite", tmp_path / "holes.zarr", tmp_path / "out.zarr"], capsys)
    assert code == 3 and "missing" in err and not (tmp_path / "out.zarr").exists(), err
    code, _, err = invoke(["rewrite", tmp_path / "holes.zarr", tmp_path / "out.zarr",
                           "--allow-missing-chunks"], capsys)
    assert code == 0, err
