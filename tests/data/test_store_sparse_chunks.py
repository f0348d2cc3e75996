"""Stores written before dense chunks: a missing chunk reads as zeros with one warning, `validate`
warns instead of failing, and `repair --densify` makes the store dense (strict) from then on."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_support import make_episode, make_schema

from robot_offrl.data import EpisodeStore, SparseChunksWarning
from robot_offrl.data.errors import StoreCorruptError
from robot_offrl.data.validate import find_problems, find_warnings

Cli = Callable[..., tuple[int, str, str]]
IMAGE = "agentview_image"


def _old_store(tmp_path: Path) -> tuple[Path, list[dict[str, np.ndarray]], str]:
    """A store as older versions wrote it: no dense_chunks attr, and its all-zero image chunk never written."""
    root = tmp_path / "old.zarr"
    store = EpisodeStore.create(str(root), make_schema(), durable=False)
    n = store._reader(IMAGE).steps_per_chunk
    originals = []
    for seed in range(2):
        obs, actions = make_episode(seed, n + 3)
        if seed == 0:
            obs[IMAGE][:n] = 0  # camera warm-up: black frames filling the first image chunk
        store.append_episode(obs, actions, expert=True, source="teleop")
        originals.append({**obs, "actions": actions})
    store.close()
    meta = json.loads((root / "zarr.json").read_text())
    del meta["attributes"]["dense_chunks"]
    (root / "zarr.json").write_text(json.dumps(meta))
    chunk = f"obs/{IMAGE}/c/0/0/0/0"
    (root / chunk).unlink()  # what zarr skipped writing
    return root, originals, chunk


def test_old_store_reads_missing_chunks_as_zeros_with_one_warning(tmp_path: Path) -> None:
    root, originals, chunk = _old_store(tmp_path)
    store = EpisodeStore.open(root)
    assert not store.dense_chunks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, original in enumerate(originals):
            ep = store.read_episode(i)
            for key, values in original.items():
                got = ep.actions if key == "actions" else ep.obs[key]
                np.testing.assert_array_equal(got, values)
        assert not store.read_at(IMAGE, np.arange(3)).any()  # the sampler's image path
        store.norm_stats()  # training's statistics work on such stores
    sparse = [w for w in caught if issubclass(w.category, SparseChunksWarning)]
    assert len(sparse) == 1, [str(w.message) for w in caught]
    message = str(sparse[0].message)
    assert chunk in message and "either all-zero" in message and "or lost" in message and "--densify" in message


def test_validate_warns_about_an_old_stores_missing_chunks_and_passes(tmp_path: Path, cli: Cli) -> None:
    root, _, chunk = _old_store(tmp_path)
    store = EpisodeStore.open(root)
    assert find_problems(store) == []
    assert len(find_warnings(store)) == 1 and chunk in find_warnings(store)[0]
    code, out, err = cli("data", "validate", root)
    assert code == 0 and "valid (2 episodes" in out, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": warning: " in lines[0] and chunk in lines[0], err


def test_repair_densify_makes_an_old_store_strict(tmp_path: Path, cli: Cli) -> None:
    root, originals, chunk = _old_store(tmp_path)
    code, out, err = cli("data", "repair", root, "--densify")
    assert code == 0 and "wrote 1 missing chunk(s) as zeros (the store is now dense)" in out, err
    assert (root / chunk).is_file()
    store = EpisodeStore.open(root)
    assert store.dense_chunks and store.missing_chunks() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning any more: every chunk has its file
        np.testing.assert_array_equal(store.read_episode(0).obs[IMAGE], originals[0][IMAGE])
    code, out, err = cli("data", "validate", root)
    assert code == 0 and err.strip() == "", err
    (root / "actions" / "c" / "0" / "0").unlink()  # now a missing chunk is lost data, as in new stores
    with pytest.raises(StoreCorruptError, match="chunk actions/c/0/0: the chunk file is missing"):
        EpisodeStore.open(root).read_episode(0)
    code, _, err = cli("data", "validate", root)
    assert code == 1 and "chunk file actions/c/0/0 is missing" in err
