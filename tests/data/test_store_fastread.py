"""The direct chunk reader returns exactly what zarr returns, and falls back where it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from store_support import fill_store

from robot_offrl.data import EpisodeStore, StoreError
from robot_offrl.data.errors import ChunkCorruptError
from robot_offrl.data.fastread import ChunkReader


def test_read_steps_matches_zarr_slices(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "s.zarr", [7, 12, 5, 9, 40])
    rng = np.random.default_rng(0)
    for key in [*store.schema.obs_keys, "actions"]:
        array = store.action_array() if key == "actions" else store.obs_array(key)
        for _ in range(30):
            start = int(rng.integers(0, store.num_steps))
            stop = int(rng.integers(start, store.num_steps + 1))
            got = store.read_steps(key, start, stop)
            want = np.asarray(array[start:stop])
            assert got.dtype == want.dtype and got.flags.writeable
            np.testing.assert_array_equal(got, want)
    assert store._readers["agentview_image"].enabled


def test_read_steps_bounds_and_keys(small_store: EpisodeStore) -> None:
    with pytest.raises(StoreError, match="outside the committed range"):
        small_store.read_steps("actions", 30, 40)
    with pytest.raises(StoreError, match="'nope' is not an observation key"):
        small_store.read_steps("nope", 0, 1)


@pytest.mark.parametrize(("compressors", "fast"), [(None, True), (zarr.codecs.GzipCodec(), False)])
def test_other_codecs(tmp_path: Path, compressors: object, fast: bool) -> None:
    data = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    array = zarr.create_array(str(tmp_path / "a"), shape=data.shape, chunks=(8, 4), dtype="float32",
                              compressors=compressors, fill_value=0)
    array[:40] = data[:40]  # chunks past 40 are partly or wholly never written: fill value
    reader = ChunkReader(array, tmp_path / "a", strict=False)
    assert reader.enabled is fast
    for start, stop in [(0, 50), (3, 9), (39, 50), (48, 50), (5, 5)]:
        np.testing.assert_array_equal(reader.read(start, stop), np.asarray(array[start:stop]))
        np.testing.assert_array_equal(reader.take(np.arange(start, stop)), np.asarray(array[start:stop]))
    # Strict (the store's readers): a chunk without a file is an error on both paths, never zeros.
    strict = ChunkReader(array, tmp_path / "a")
    np.testing.assert_array_equal(strict.read(3, 40), data[3:40])
    with pytest.raises(ChunkCorruptError, match="c/5/0: the chunk file is missing") as err:
        strict.read(39, 42)
    assert err.value.chunk == 5 and err.value.steps == (40, 48)
    with pytest.raises(ChunkCorruptError, match="c/6/0: the chunk file is missing"):
        strict.take(np.array([1, 49]))
