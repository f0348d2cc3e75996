"""Store operations on real stores: summary, delete, merge, split, statistics, video export."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from store_support import fill_store, make_episode, make_schema

from robot_offrl.data import EpisodeStore, NormStats, SchemaError, StoreError, StoreExistsError
from robot_offrl.data.ops import delete_episodes, describe_episode, merge_stores, summarize
from robot_offrl.data.validate import find_problems
from robot_offrl.data.video import export_video


def test_summary_counts(small_store: EpisodeStore) -> None:
    s = summarize(small_store)
    assert s["episodes"] == 4 and s["steps"] == 33
    assert s["expert_episodes"] == 2 and s["expert_steps"] == 12
    assert s["by_source"] == {"play": 2, "scripted": 2}
    assert s["by_success"] == {"true": 2, "unknown": 2}
    assert {k["name"]: k["shape"] for k in s["keys"]}["agentview_image"] == [84, 84, 3]
    assert s["size_bytes"] > 0 and s["size_bytes_by_key"]["agentview_image"] > 0
    assert s["split"] is None and s["norm_stats_cached"] is False


def test_describe_episode(small_store: EpisodeStore) -> None:
    d = describe_episode(small_store, 1)
    assert d["length"] == 12 and d["duration_s"] == 0.6 and d["expert"] is False
    assert d["keys"]["agentview_image"]["shape"] == [12, 84, 84, 3]
    obs, _ = make_episode(1, 12)
    np.testing.assert_allclose(d["keys"]["object"]["min"], obs["object"].min(axis=0), atol=1e-4)


def test_delete_keeps_everything_else(tmp_path: Path) -> None:
    root = tmp_path / "s.zarr"
    store = fill_store(root, [7, 12, 5, 9, 4])
    store.set_split(0.4, seed=3)
    store.update_attrs(3, {"notes": "keep me"})
    kept_before = {m.uid: store.read_episode(m.index) for m in store.episodes if m.index not in (1, 2)}
    val_uids = set(store.split["val_uids"])
    store.close()
    after = delete_episodes(str(root), [1, 2])
    assert after.num_episodes == 3 and after.num_steps == 20
    assert [m.uid for m in after.episodes] == [0, 3, 4]
    for m in after.episodes:
        ep, old = after.read_episode(m.index), kept_before[m.uid]
        assert (m.expert, m.source, m.success, m.attrs) == (old.meta.expert, old.meta.source,
                                                            old.meta.success, old.meta.attrs)
        np.testing.assert_array_equal(ep.actions, old.actions)
        for key in ep.obs:
            np.testing.assert_array_equal(ep.obs[key], old.obs[key])
    assert {after.episodes[i].uid for i in after.split_indices("val")} == val_uids - {1, 2}
    assert find_problems(EpisodeStore.open(root)) == []
    assert [p.name for p in tmp_path.glob(".s.zarr*")] == [".s.zarr.lock"]  # the lock file stays, nothing else
    # New episodes never reuse a deleted uid, so an old split cannot claim them.
    obs, actions = make_episode(9, 3)
    after.append_episode(obs, actions, expert=True, source="teleop")
    assert after.episodes[-1].uid == 5


def test_delete_rejects_bad_selection(small_store: EpisodeStore) -> None:
    small_store.close()
    with pytest.raises(StoreError, match="no episodes selected"):
        delete_episodes(small_store.url, [])
    with pytest.raises(StoreError, match="episode 7 does not exist"):
        delete_episodes(small_store.url, [7])


def test_merge_concatenates_and_tracks_origin(tmp_path: Path) -> None:
    a = fill_store(tmp_path / "a.zarr", [4, 5])
    b = fill_store(tmp_path / "b.zarr", [6])
    merged = merge_stores(str(tmp_path / "m.zarr"), [a.url, b.url])
    assert merged.num_episodes == 3 and merged.num_steps == 15
    assert merged.episodes[2].attrs["merged_from"] == {"store": b.url, "episode": 0}
    np.testing.assert_array_equal(merged.read_episode(2).obs["agentview_image"],
                                  b.read_episode(0).obs["agentview_image"])
    assert [m.uid for m in merged.episodes] == [0, 1, 2]
    with pytest.raises(StoreExistsError):
        merge_stores(str(tmp_path / "m.zarr"), [a.url])


def test_merge_refuses_different_schemas(tmp_path: Path) -> None:
    a = fill_store(tmp_path / "a.zarr", [4])
    b = fill_store(tmp_path / "b.zarr", [4], image=False)
    with pytest.raises(SchemaError, match="observation key 'agentview_image' only in the first store"):
        merge_stores(str(tmp_path / "m.zarr"), [a.url, b.url])
    assert not (tmp_path / "m.zarr").exists()


def test_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    a = fill_store(tmp_path / "a.zarr", [3] * 20, image=False)
    b = fill_store(tmp_path / "b.zarr", [3] * 20, image=False)
    a.set_split(0.2, seed=7)
    b.set_split(0.2, seed=7)
    val = a.split_indices("val")
    assert val == b.split_indices("val") and len(val) == 4
    assert sum(a.episodes[i].expert for i in val) == 2  # 10 expert, 10 not: 2 of each
    assert sorted(val + a.split_indices("train")) == list(range(20))
    assert EpisodeStore.open(a.url).split_indices("val") == val
    a.set_split(0.2, seed=8)
    assert a.split_indices("val") != val
    assert a.select_episodes(expert=True, split="val") == [i for i in a.split_indices("val") if i % 2 == 0]
    with pytest.raises(StoreError, match="val_fraction"):
        a.set_split(1.5)


def test_no_split_means_all_train(small_store: EpisodeStore) -> None:
    assert small_store.split_indices("train") == [0, 1, 2, 3]
    assert small_store.split_indices("val") == []
    with pytest.raises(StoreError, match="split name"):
        small_store.split_indices("test")  # type: ignore[arg-type]


def test_norm_stats_are_cached_and_invalidated(tmp_path: Path) -> None:
    store = fill_store(tmp_path / "s.zarr", [7, 12], image=False)
    stats = store.norm_stats()
    everything = np.concatenate([make_episode(i, n, image=False)[1] for i, n in enumerate([7, 12])])
    np.testing.assert_allclose(stats["actions"].mean, everything.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["actions"].std, everything.std(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(stats["actions"].min, everything.min(axis=0))
    assert set(stats.keys) == {"robot0_eef_pos", "object", "actions"}
    assert summarize(EpisodeStore.open(store.url))["norm_stats_cached"] is True
    cached = EpisodeStore.open(store.url).norm_stats()
    np.testing.assert_array_equal(cached["object"].max, stats["object"].max)
    store.set_flags([0], expert=False)  # labels do not change statistics
    assert summarize(EpisodeStore.open(store.url))["norm_stats_cached"] is True
    obs, actions = make_episode(5, 4, image=False)
    store.append_episode(obs, actions * 0.5, expert=True, source="teleop")
    assert summarize(EpisodeStore.open(store.url))["norm_stats_cached"] is False
    assert store.norm_stats().num_steps == 23


def test_normalize_maps_range_to_unit_interval(small_store: EpisodeStore) -> None:
    stats = small_store.norm_stats()
    s = stats["actions"]
    np.testing.assert_allclose(stats.normalize("actions", s.min), -1.0, atol=1e-6)
    np.testing.assert_allclose(stats.normalize("actions", s.max), 1.0, atol=1e-6)
    x = small_store.read_episode(0).actions
    np.testing.assert_allclose(stats.unnormalize("actions", stats.normalize("actions", x)), x, atol=1e-6)
    torch = pytest.importorskip("torch")
    t = torch.as_tensor(x)
    np.testing.assert_allclose(stats.normalize("actions", t).numpy(), stats.normalize("actions", x), atol=1e-6)
    assert NormStats.from_dict(stats.to_dict()).keys["object"].std.tolist() == stats["object"].std.tolist()
    with pytest.raises(StoreError, match="no normalisation statistics for key 'agentview_image'"):
        stats["agentview_image"]


def test_export_video(small_store: EpisodeStore, tmp_path: Path) -> None:
    out = export_video(small_store, 1, "agentview_image", tmp_path / "ep1.mp4")
    reader = imageio.get_reader(out)
    frames = [f for f in reader]
    assert len(frames) == 12 and frames[0].shape == (84, 84, 3)
    assert reader.get_meta_data()["fps"] == pytest.approx(20.0)
    with pytest.raises(StoreError, match="'object' is not an image key.*agentview_image"):
        export_video(small_store, 1, "object", tmp_path / "x.mp4")
    with pytest.raises(StoreError, match="must end in .mp4"):
        export_video(small_store, 1, "agentview_image", tmp_path / "x.avi")
    with pytest.raises(StoreError, match="does not exist"):
        export_video(small_store, 1, "agentview_image", tmp_path / "missing" / "x.mp4")


def test_store_without_episodes_has_no_stats(tmp_path: Path) -> None:
    store = EpisodeStore.create(str(tmp_path / "e.zarr"), make_schema())
    with pytest.raises(StoreError, match="no episodes"):
        store.norm_stats()
