"""Round trips through real zarr stores: local paths, file:// and memory:// URLs, buffers, labels."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
from store_support import IMG, fill_store, make_episode, make_schema

from robot_offrl.data import EpisodeBuffer, EpisodeStore, StoreSchema
from robot_offrl.data.layout import LOWDIM_CHUNK_STEPS, chunk_steps


def _assert_episode_equal(store: EpisodeStore, index: int, seed: int, length: int) -> None:
    obs, actions = make_episode(seed, length)
    ep = store.read_episode(index)
    assert ep.meta.length == length
    assert set(ep.obs) == set(obs)
    for key, values in obs.items():
        assert ep.obs[key].dtype == values.dtype
        np.testing.assert_array_equal(ep.obs[key], values)
    np.testing.assert_array_equal(ep.actions, actions)


def test_images_and_lowdim_read_back_exactly(tmp_path: Path) -> None:
    lengths = [7, 12, 5, 9]
    fill_store(tmp_path / "s.zarr", lengths)
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.num_episodes == 4 and store.num_steps == sum(lengths)
    for i, length in enumerate(lengths):
        _assert_episode_equal(store, i, i, length)
    starts = [m.start for m in store.episodes]
    assert starts == [0, 7, 19, 24]
    assert store.obs_array("agentview_image").shape == (sum(lengths), *IMG)
    assert store.episodes[1].attrs == {"operator": "test", "seed": 1}
    assert store.episodes[1].expert is False and store.episodes[1].success is None
    assert store.episodes[0].source == "scripted" and store.episodes[0].success is True


def test_store_attributes_describe_the_data(small_store: EpisodeStore) -> None:
    attrs = json.loads((Path(small_store.url) / "zarr.json").read_text())["attributes"]
    assert attrs["format"] == "robot_offrl.episodes" and attrs["format_version"] == 1
    assert attrs["created_by"].startswith("robot-offrl ")
    schema = StoreSchema.from_dict(attrs["schema"])
    assert schema == make_schema()
    assert schema.action.mode == "delta" and schema.action.low == [-1.0] * 7
    assert attrs["schema"]["control_rate_hz"] == 20.0


def test_chunking_follows_the_documented_policy(small_store: EpisodeStore) -> None:
    image = small_store.obs_array("agentview_image")
    assert image.chunks == (3, *IMG)  # 64 KiB / 21 KiB per 84x84 frame
    assert small_store.obs_array("object").chunks == (LOWDIM_CHUNK_STEPS, 10)
    assert small_store.action_array().chunks == (LOWDIM_CHUNK_STEPS, 7)
    codec = image.metadata.codecs[-1].to_dict()
    assert codec["configuration"]["cname"] == "zstd"
    big = make_schema().obs[0].__class__("cam", "uint8", (480, 640, 3), "rgb")
    assert chunk_steps(big) == 1


def test_float64_lowdim_is_stored_as_float32(tmp_path: Path) -> None:
    store = EpisodeStore.create(str(tmp_path / "s.zarr"), make_schema(image=False))
    obs, actions = make_episode(0, 6, image=False)
    store.append_episode({k: v.astype(np.float64) for k, v in obs.items()}, actions.astype(np.float64),
                         expert=True, source="teleop")
    ep = EpisodeStore.open(tmp_path / "s.zarr").read_episode(0)
    assert ep.obs["object"].dtype == np.float32
    np.testing.assert_array_equal(ep.obs["object"], obs["object"])


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_url_stores(tmp_path: Path, scheme: str) -> None:
    url = f"memory://stores/{uuid.uuid4().hex}.zarr" if scheme == "memory" else f"file://{tmp_path}/u.zarr"
    store = EpisodeStore.create(url, make_schema())
    for i, length in enumerate([4, 6]):
        obs, actions = make_episode(i, length)
        store.append_episode(obs, actions, expert=True, source="teleop", success=False)
    store.close()
    reopened = EpisodeStore.open(url)
    assert reopened.num_episodes == 2
    for i, length in enumerate([4, 6]):
        _assert_episode_equal(reopened, i, i, length)
    reopened_rw = EpisodeStore.open(url, mode="r+")
    reopened_rw.set_flags([1], expert=False)
    assert EpisodeStore.open(url).episodes[1].expert is False
    if scheme == "file":
        assert (tmp_path / "u.zarr" / "index" / "zarr.json").is_file()


def test_open_mode_a_creates_then_opens(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    store = EpisodeStore.open(path, mode="a", schema=make_schema())
    obs, actions = make_episode(0, 3)
    store.append_episode(obs, actions, expert=True, source="teleop")
    store.close()
    again = EpisodeStore.open(path, mode="a", schema=make_schema())
    assert again.num_episodes == 1 and again.mode == "r+"


def test_episode_buffer_commit_and_clear(tmp_path: Path) -> None:
    store = EpisodeStore.create(str(tmp_path / "b.zarr"), make_schema())
    obs, actions = make_episode(3, 5)
    buf = EpisodeBuffer()
    scratch = {k: np.zeros_like(v[0]) for k, v in obs.items()}
    for t in range(5):
        for k in obs:  # a recorder reusing one buffer per key must not corrupt earlier steps
            scratch[k][...] = obs[k][t]
        buf.add(scratch, actions[t])
    assert len(buf) == 5
    index = buf.commit(store, expert=True, source="teleop", success=True, attrs={"notes": "ok"})
    assert index == 0 and len(buf) == 0
    _assert_episode_equal(store, 0, 3, 5)
    buf.add({k: v[0] for k, v in obs.items()}, actions[0])
    buf.clear()
    assert len(buf) == 0 and store.num_episodes == 1


def test_set_flags_does_not_rewrite_data(small_store: EpisodeStore) -> None:
    root = Path(small_store.url)
    data_files = {p: p.stat().st_mtime_ns for p in root.rglob("c/*") if p.is_file()}
    data_files |= {p: p.stat().st_mtime_ns for p in (root / "obs").rglob("*") if p.is_file()}
    small_store.set_flags([0, 2], expert=False, source="failed", success=None)
    small_store.update_attrs(1, {"notes": "wobbly grasp"})
    reopened = EpisodeStore.open(root)
    assert [m.expert for m in reopened.episodes] == [False, False, False, False]
    assert reopened.episodes[0].source == "failed" and reopened.episodes[0].success is None
    assert reopened.episodes[3].source == "play"  # untouched episodes keep their labels
    assert reopened.episodes[1].attrs == {"operator": "test", "seed": 1, "notes": "wobbly grasp"}
    assert {p: p.stat().st_mtime_ns for p in data_files} == data_files


def test_select_episodes_filters(small_store: EpisodeStore) -> None:
    assert small_store.select_episodes(expert=True) == [0, 2]
    assert small_store.select_episodes(sources=["play"]) == [1, 3]
    assert small_store.select_episodes(success=None) == [1, 3]
    assert small_store.select_episodes() == [0, 1, 2, 3]


def test_pickled_store_reopens_read_only(small_store: EpisodeStore) -> None:
    clone = pickle.loads(pickle.dumps(small_store))
    assert clone.mode == "r" and clone.num_episodes == small_store.num_episodes
    np.testing.assert_array_equal(clone.read_episode(2).actions, small_store.read_episode(2).actions)


def test_obs_array_slices_are_committed_windows(small_store: EpisodeStore) -> None:
    meta = small_store.episodes[1]
    window = small_store.obs_array("agentview_image")[meta.start + 3 : meta.start + 5]
    np.testing.assert_array_equal(window, make_episode(1, 12)[0]["agentview_image"][3:5])
