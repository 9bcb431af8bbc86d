"""The command's messages name the command's own options, never a Python keyword or an
unsafe numpy option, and a corrupt chunk is named by its stored key."""

from __future__ import annotations

import pickle

import numpy as np
import yaml
import zarr

from .conftest import invoke


def _config(tmp_path, data: dict) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"data": data, "model": {"n_components": 2, "random_state": 0},
                                    "output": {"model": str(tmp_path / "m.npz")}}))
    return str(path)


def test_a_group_of_several_arrays_asks_for_data_array_or_the_array_option(tmp_path, capsys):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", data=np.zeros((10, 2)))
    group.create_array("b", data=np.zeros((10, 2)))
    code, _, err = invoke(["fit", _config(tmp_path, {"path": str(tmp_path / "g.zarr")})], capsys)
    assert code == 3
    assert "set data.array in the config, or --array" in err
    assert "name the one to use" not in err


def test_missing_chunks_name_the_config_key_not_the_python_keyword(tmp_path, capsys):
    store = zarr.create_array(str(tmp_path / "x.zarr"), shape=(40, 2), chunks=(10, 2),
                              dtype="float64", fill_value=0.0)
    store[:20] = np.random.default_rng(0).normal(size=(20, 2))  # chunks 2 and 3 never written
    code, _, err = invoke(["fit", _config(tmp_path, {"path": str(tmp_path / "x.zarr")})], capsys)
    assert code == 3 and "missing" in err
    assert "data.allow_missing_chunks" in err
    assert "allow_missing_chunks=True" not in err


def test_a_pickle_is_not_a_model_file_and_no_allow_pickle_hint_is_relayed(tmp_path, capsys):
    bogus = tmp_path / "model.npy"
    np.save(bogus, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = invoke(["info", bogus], capsys)
    assert code != 0 and code != 1  # an expected error, not a crash
    assert "is not a daskgmm model file" in err and "pickled" in err
    assert "allow_pickle" not in err
    plain = tmp_path / "plain.npz"
    plain.write_bytes(pickle.dumps({"a": 1}))
    code, _, err = invoke(["info", plain], capsys)
    assert "is not a daskgmm model file" in err and "allow_pickle" not in err


def test_a_corrupt_chunk_is_named_by_its_key_with_what_to_do(tmp_path, capsys):
    from daskgmm.jobs.synthetic import make_mixture_zarr

    path = make_mixture_zarr(tmp_path / "d.zarr", 400, 2, 2, chunk_rows=100, seed=0)
    chunk = path / "X" / "c" / "2" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: the CRC32C no longer matches
    chunk.write_bytes(bytes(raw))
    code, _, err = invoke(["fit", _config(tmp_path, {"path": str(path), "array": "X"})], capsys)
    assert code == 3
    assert "rows 200-299" in err and "(chunk c/2/0)" in err
    assert "daskgmm check --verify" in err
