"""Training windows on real zarr stores: boundaries, padding, rewards, next_obs/done, filters, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learn_support import counting_episode, make_schema, tiny_cfg, write_store
from torch.utils.data import DataLoader

from robot_offrl.data import EpisodeStore
from robot_offrl.data.sampler import WindowDataset, collate_windows
from robot_offrl.data.selection import EpisodeSelection
from robot_offrl.errors import ConfigError
from robot_offrl.train.windows import build_window_dataset

LENGTHS = (5, 3, 7)
EXPERT = (True, False, True)


@pytest.fixture
def counting_store(tmp_path):
    schema = make_schema({"pos": 2, "const": 1}, rgb={"cam_image": (8, 8, 3)})
    episodes = []
    for e, (length, expert) in enumerate(zip(LENGTHS, EXPERT, strict=True)):
        ep = counting_episode(100.0 * e, length, expert, rgb_key="cam_image")
        ep["obs"]["const"] = np.full((length, 1), 3.0, dtype=np.float32)
        ep["source"] = "scripted" if expert else "failed"
        episodes.append(ep)
    return write_store(tmp_path / "count.zarr", schema, episodes)


def _raw(ds: WindowDataset, key: str, x: np.ndarray) -> np.ndarray:
    return np.asarray(ds.norm_stats.unnormalize(key, x))


def test_windows_pad_at_both_ends_and_never_cross_episodes(counting_store):
    ds = WindowDataset(counting_store, obs_horizon=3, pred_horizon=4, cache_in_ram=False)
    assert len(ds) == sum(LENGTHS) and ds.num_augmented == 0
    seen = set()
    for i in range(len(ds)):
        e, t, neighbor = ds.locate(i)
        assert neighbor is None
        seen.add((e, t))
        length, base = LENGTHS[e], 100.0 * e
        item = ds[i]
        want_obs = [base + max(s, 0) for s in (t - 2, t - 1, t)]
        np.testing.assert_allclose(_raw(ds, "pos", item["obs"]["pos"])[:, 0], want_obs, atol=1e-3)
        want_act = [base + min(s, length - 1) for s in range(t, t + 4)]
        np.testing.assert_allclose(_raw(ds, "actions", item["actions"])[:, 0], want_act, atol=1e-3)
        nt = min(t + 1, length - 1)
        want_next = [base + max(s, 0) for s in (nt - 2, nt - 1, nt)]
        np.testing.assert_allclose(_raw(ds, "pos", item["next_obs"]["pos"])[:, 0], want_next, atol=1e-3)
        # images come straight from zarr (no RAM cache) and are uint8 frames of the same steps
        assert item["obs"]["cam_image"].dtype == np.uint8
        np.testing.assert_array_equal(item["obs"]["cam_image"][:, 0, 0, 0], np.array(want_obs, dtype=np.int64) % 256)
        assert item["reward"] == float(EXPERT[e])
        assert item["done"] == 0.0 and not item["augmented"]
    assert seen == {(e, t) for e, n in enumerate(LENGTHS) for t in range(n)}


def test_done_marks_only_episode_ends_when_configured(counting_store):
    ds = WindowDataset(counting_store, obs_horizon=2, pred_horizon=2, terminal="done")
    batch = ds.gather(np.arange(len(ds)))
    ends = np.array([ds.locate(i)[1] == LENGTHS[ds.locate(i)[0]] - 1 for i in range(len(ds))])
    np.testing.assert_array_equal(batch["done"], ends.astype(np.float32))
    # at the end the next window is the step's own window (bootstraps from itself if not done)
    for key in ("pos", "cam_image"):
        np.testing.assert_array_equal(batch["next_obs"][key][ends], batch["obs"][key][ends])


@pytest.mark.parametrize("terminal", ["absorbing", "done"])
def test_n_step_windows_bootstrap_n_steps_ahead_and_count_rewards_to_the_end(counting_store, terminal):
    """A critic scoring 3 actions gets next_obs at t+3 (clamped to the last step) and, under 'done',
    only the rewards before the episode's end."""
    ds = WindowDataset(counting_store, obs_horizon=2, pred_horizon=4, terminal=terminal, td_steps=3)
    batch = ds.gather(np.arange(len(ds)))
    for i in range(len(ds)):
        e, t, _ = ds.locate(i)
        length, base = LENGTHS[e], 100.0 * e
        nt = min(t + 3, length - 1)
        want_next = [base + max(s, 0) for s in (nt - 1, nt)]
        np.testing.assert_allclose(_raw(ds, "pos", batch["next_obs"]["pos"][i])[:, 0], want_next, atol=1e-3)
        reaches_end = t + 3 >= length
        if terminal == "done":
            assert batch["done"][i] == float(reaches_end) and batch["reward_steps"][i] == min(3, length - t)
        else:
            assert batch["done"][i] == 0.0 and batch["reward_steps"][i] == 3
    with pytest.raises(ConfigError, match="action_steps"):
        WindowDataset(counting_store, obs_horizon=2, pred_horizon=4, td_steps=5)


def test_episode_filters(counting_store):
    expert = WindowDataset(counting_store, selection=EpisodeSelection("expert"), obs_horizon=1, pred_horizon=1)
    assert expert.episodes == [0, 2] and len(expert) == LENGTHS[0] + LENGTHS[2]
    assert set(expert.gather(np.arange(len(expert)))["reward"]) == {1.0}
    failed = WindowDataset(counting_store, selection=EpisodeSelection("sources", ("failed",)), obs_horizon=1, pred_horizon=1)
    assert failed.episodes == [1] and set(failed.gather(np.arange(len(failed)))["reward"]) == {0.0}
    subset = WindowDataset(counting_store, episodes=[1, 2], obs_horizon=1, pred_horizon=1)
    assert subset.episodes == [1, 2]


def test_normalisation_to_unit_range_and_constant_dims(counting_store):
    ds = WindowDataset(counting_store, obs_horizon=1, pred_horizon=1)
    batch = ds.gather(np.arange(len(ds)))
    pos, act = batch["obs"]["pos"], batch["actions"]
    assert pos.min() == pytest.approx(-1.0) and pos.max() == pytest.approx(1.0)
    assert act.min() == pytest.approx(-1.0) and act.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(batch["obs"]["const"], 0.0)  # constant dim: no division by zero
    assert pos.dtype == np.float32 and act.dtype == np.float32


def test_ram_cache_and_zarr_reads_agree(counting_store):
    kw = {"obs_horizon": 2, "pred_horizon": 3}
    a = WindowDataset(counting_store, cache_in_ram=True, **kw)
    b = WindowDataset(counting_store, cache_in_ram=False, **kw)
    assert a.images_in_ram and not b.images_in_ram
    idx = np.array([0, 14, 3, 3, 7])
    ba, bb = a.gather(idx), b.gather(idx)
    for key in ("pos", "cam_image"):
        np.testing.assert_array_equal(ba["obs"][key], bb["obs"][key])
        np.testing.assert_array_equal(ba["next_obs"][key], bb["next_obs"][key])


def test_dataloader_workers_match_in_process_batches(counting_store):
    ds = WindowDataset(counting_store, obs_horizon=2, pred_horizon=3, cache_in_ram=False)
    order = [[0, 5, 9], [14, 1, 2], [7, 8, 3]]
    loader = DataLoader(ds, batch_sampler=order, num_workers=2, collate_fn=collate_windows)
    for indices, batch in zip(order, loader, strict=True):
        want = ds.get_batch(indices)
        assert batch["actions"].shape == (3, 3, 2) and batch["obs"]["cam_image"].dtype == torch.uint8
        for key in ("actions", "reward", "done", "augmented"):
            torch.testing.assert_close(batch[key], want[key])
        for key in ds.obs_keys:
            torch.testing.assert_close(batch["obs"][key], want["obs"][key])
            torch.testing.assert_close(batch["next_obs"][key], want["next_obs"][key])


def test_obs_info_describes_the_windows(counting_store):
    ds = WindowDataset(counting_store, obs_keys=["pos", "cam_image"], obs_horizon=2, pred_horizon=4)
    info = ds.obs_info
    assert info.lowdim == {"pos": 2} and info.rgb == {"cam_image": (8, 8, 3)}
    assert (info.obs_horizon, info.pred_horizon) == (2, 4) and ds.action_dim == 2


def test_bad_inputs_are_clear_errors(counting_store, tmp_path):
    with pytest.raises(ConfigError, match="'gripper_cam_image' is not in the store"):
        WindowDataset(counting_store, obs_keys=["gripper_cam_image"])
    with pytest.raises(ConfigError, match="obs_horizon must be a positive integer"):
        WindowDataset(counting_store, obs_horizon=-1)
    with pytest.raises(ConfigError, match="pred_horizon"):
        WindowDataset(counting_store, pred_horizon=0)
    with pytest.raises(ConfigError, match="terminal"):
        WindowDataset(counting_store, terminal="sometimes")
    with pytest.raises(ConfigError, match="no episodes match data_filter=sources"):
        WindowDataset(counting_store, selection=EpisodeSelection("sources", ("teleop",)))
    cfg = tiny_cfg("bc", task__lowdim_keys=["pos", "robot0_eef_pos"])
    with pytest.raises(ConfigError, match="'robot0_eef_pos' is not in the store"):
        build_window_dataset(counting_store, cfg)
    with pytest.raises(IndexError):
        WindowDataset(counting_store).gather([100])
    no_expert = write_store(
        tmp_path / "none.zarr", make_schema(), [{**counting_episode(0.0, 4, False)}]
    )
    with pytest.raises(ConfigError, match="no episodes match data_filter=expert"):
        build_window_dataset(no_expert, tiny_cfg("bc"))


def test_build_from_config_reads_keys_horizons_and_filter(counting_store):
    cfg = tiny_cfg("bc", obs_horizon=3, pred_horizon=4, task__lowdim_keys=["pos"])
    ds = build_window_dataset(EpisodeStore.open(counting_store.url), cfg)
    assert ds.obs_keys == ["pos"] and ds.episodes == [0, 2]
    batch = ds.get_batch(range(len(ds)))
    assert batch["obs"]["pos"].shape == (len(ds), 3, 2) and batch["actions"].shape == (len(ds), 4, 2)


def test_obs_info_from_a_schema_alone(counting_store):
    from robot_offrl.data.sampler import obs_info_for

    info = obs_info_for(counting_store.schema, ["cam_image", "pos"], 2, 8)
    assert info.lowdim == {"pos": 2} and info.rgb == {"cam_image": (8, 8, 3)} and info.pred_horizon == 8
    with pytest.raises(ConfigError, match="'wrist_image' is not in the schema"):
        obs_info_for(counting_store.schema, ["wrist_image"], 2, 8)
