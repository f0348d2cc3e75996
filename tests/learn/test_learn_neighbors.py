"""The RISE neighbour index on a real store with planted neighbours: threshold, gripper, pool, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from learn_support import make_schema, tiny_cfg, write_store

from robot_offrl.data import EpisodeStore
from robot_offrl.data.neighbors import (
    CACHE_ENTRIES,
    NeighborSettings,
    gripper_closed,
    load_or_build_neighbor_index,
    resolve_gripper_mode,
)
from robot_offrl.errors import ConfigError
from robot_offrl.train.windows import build_window_dataset

# global step offsets of the episodes written below
E0, E1, N2, N3 = 0, 11, 14, 20


def _ep(pos, gripper, expert):
    pos = np.asarray(pos, dtype=np.float32)
    actions = np.zeros((len(pos), 3), dtype=np.float32)
    actions[:, 0] = np.arange(len(pos))  # marks the step, to recognise action chunks
    actions[:, 2] = gripper
    return {"obs": {"pos": pos}, "actions": actions, "expert": expert}


@pytest.fixture
def planted(tmp_path):
    """E0 expert along y=0 (gripper closes at its step 5); E1 expert far away (also fixes the
    normalisation to the identity); N2 and N3 non-expert, 0.01 beside E0's first six steps, with N2's
    gripper closed at its last step."""
    line = np.stack([-1 + 0.2 * np.arange(11), np.zeros(11)], axis=1)
    e0 = _ep(line, np.where(np.arange(11) < 5, -1.0, 1.0), True)
    e1 = _ep([[-1, -1], [1, 1], [1, 1]], -1.0, True)
    near = line[:6] + [0.01, 0.0]
    n2 = _ep(near, np.where(np.arange(6) == 4, 1.0, -1.0), False)
    n3 = _ep(near, -1.0, False)
    schema = make_schema({"pos": 2}, action_names=("dx", "dy", "gripper"))
    return write_store(tmp_path / "planted.zarr", schema, [e0, e1, n2, n3])


def _settings(**kw):
    base = {"k": 15, "threshold": 0.1, "skip_first": 1, "feature_keys": ("pos",), "gripper": "action"}
    return NeighborSettings(**{**base, **kw})


def _pairs(index):
    return {(int(q), int(n)) for q, n in zip(index.query, index.neighbor, strict=True)}


def test_finds_planted_neighbours_with_gripper_and_threshold(planted):
    stats = planted.norm_stats()
    index, cached = load_or_build_neighbor_index(planted, range(4), _settings(), stats)
    assert not cached
    want = {(N2 + t, E0 + t) for t in range(1, 5)} | {(N2 + t, N3 + t) for t in range(1, 5)}
    want |= {(N3 + t, E0 + t) for t in range(1, 6)} | {(N3 + t, N2 + t) for t in range(1, 5)}
    # N2's step 5 is closed: no open E0/N3 step may serve it; step 0 is skipped; experts never query
    assert _pairs(index) == want
    assert np.all(index.distance < 0.1)


def test_pool_k_and_threshold_settings(planted):
    stats = planted.norm_stats()
    experts_only, _ = load_or_build_neighbor_index(planted, range(4), _settings(neighbors_from="expert"), stats)
    assert _pairs(experts_only) == {(N2 + t, E0 + t) for t in range(1, 5)} | {(N3 + t, E0 + t) for t in range(1, 6)}
    nearest, _ = load_or_build_neighbor_index(planted, range(4), _settings(k=1), stats)
    # the other non-expert copy sits at distance 0, closer than E0 at 0.01 / sqrt(2)
    assert {(q, n) for q, n in _pairs(nearest) if q < N3} == {(N2 + t, N3 + t) for t in range(1, 5)}
    tight, _ = load_or_build_neighbor_index(planted, range(4), _settings(threshold=0.005), stats)
    assert all(n >= N2 for _, n in _pairs(tight))
    skip_more, _ = load_or_build_neighbor_index(planted, range(4), _settings(skip_first=3), stats)
    assert min(q - (N3 if q >= N3 else N2) for q, _ in _pairs(skip_more)) == 3


def test_gripper_state_sources(planted, tmp_path):
    steps = np.arange(N2, N2 + 6)
    closed = gripper_closed(planted, steps, np.arange(6), "action", planted.norm_stats())
    np.testing.assert_array_equal(closed, [False, False, False, False, False, True])  # previous command
    assert resolve_gripper_mode(planted, "auto") == "action"
    with pytest.raises(ConfigError, match="no 'robot0_gripper_qpos'"):
        resolve_gripper_mode(planted, "qpos")
    schema = make_schema({"robot0_gripper_qpos": 2}, action_names=("dx", "dy"))
    qpos = np.array([[0.04, -0.04], [0.03, -0.03], [0.005, -0.005], [0.0, 0.0]], dtype=np.float32)
    store = write_store(tmp_path / "q.zarr", schema, [_ep_q(qpos)])
    assert resolve_gripper_mode(store, "auto") == "qpos"
    with pytest.raises(ConfigError, match="no 'gripper' dimension"):
        resolve_gripper_mode(store, "action")
    np.testing.assert_array_equal(
        gripper_closed(store, np.arange(4), np.arange(4), "qpos", store.norm_stats()), [False, False, True, True]
    )


def _ep_q(qpos):
    return {"obs": {"robot0_gripper_qpos": qpos}, "actions": np.zeros((len(qpos), 2), np.float32), "expert": True}


def test_cache_is_reused_and_invalidated(planted):
    stats = planted.norm_stats()
    first, cached = load_or_build_neighbor_index(planted, range(4), _settings(), stats)
    assert not cached
    reopened = EpisodeStore.open(planted.url, mode="r")
    again, cached = load_or_build_neighbor_index(reopened, range(4), _settings(), reopened.norm_stats())
    assert cached and _pairs(again) == _pairs(first)
    np.testing.assert_allclose(again.distance, first.distance)
    # another setting: rebuilt, then cached under the new key
    assert not load_or_build_neighbor_index(planted, range(4), _settings(k=1), stats)[1]
    assert load_or_build_neighbor_index(planted, range(4), _settings(k=1), stats)[1]
    # relabelling an episode changes the index (N3 becomes expert: it stops querying)
    planted.set_flags([3], expert=True)
    relabelled, cached = load_or_build_neighbor_index(planted, range(4), _settings(k=1), stats)
    assert not cached and all(q < N3 for q, _ in _pairs(relabelled))
    # appending an episode invalidates it too
    planted.append_episode(obs={"pos": np.zeros((3, 2), np.float32)}, actions=np.zeros((3, 3), np.float32),
                           expert=False, source="play")
    assert not load_or_build_neighbor_index(planted, range(5), _settings(k=1), planted.norm_stats())[1]
    # a different episode selection is a different index, cached beside the first one
    stats = planted.norm_stats()
    assert not load_or_build_neighbor_index(planted, [0, 2], _settings(k=1), stats)[1]
    assert load_or_build_neighbor_index(planted, range(5), _settings(k=1), stats)[1]
    # only the newest CACHE_ENTRIES entries are kept
    for k in range(2, 2 + CACHE_ENTRIES):
        load_or_build_neighbor_index(planted, range(5), _settings(k=k), stats)
    assert not load_or_build_neighbor_index(planted, [0, 2], _settings(k=1), stats)[1]
    assert (Path(planted.url) / "cache" / "neighbors").is_dir()


def test_no_cache_written_when_disabled(planted):
    stats = planted.norm_stats()
    load_or_build_neighbor_index(planted, range(4), _settings(), stats, write_cache=False)
    assert not load_or_build_neighbor_index(planted, range(4), _settings(), stats)[1]


def test_sampler_adds_augmented_pairs_for_the_policy_only(planted):
    cfg = tiny_cfg("rise", obs_horizon=1, pred_horizon=3, task__lowdim_keys=["pos"])
    cfg["algo"]["nn_augment"] = {"enabled": True, "k": 15, "threshold": 0.1, "skip_first": 1, "max_fraction": 0.45}
    ds = build_window_dataset(planted, cfg)
    assert ds.num_base == planted.num_steps and ds.num_augmented == 17  # every planted pair (cap: 21)
    batch = ds.gather(np.arange(ds.num_base, len(ds)))
    assert batch["augmented"].all() and not ds.gather(np.arange(ds.num_base))["augmented"].any()
    stats = ds.norm_stats
    for j, i in enumerate(range(ds.num_base, len(ds))):
        episode, t, neighbor = ds.locate(i)
        assert episode in (2, 3) and neighbor is not None
        n_ep = next(m for m in planted.episodes if m.start <= neighbor < m.end)
        raw = stats.unnormalize("actions", batch["actions"][j])
        want = [min(neighbor - n_ep.start + s, n_ep.length - 1) for s in range(3)]
        np.testing.assert_allclose(raw[:, 0], want, atol=1e-4)  # the neighbour's chunk, padded at its end
        raw_obs = stats.unnormalize("pos", batch["obs"]["pos"][j, -1])
        np.testing.assert_allclose(raw_obs, planted.read_episode(episode).obs["pos"][t], atol=1e-5)
    cfg["algo"]["nn_augment"]["max_fraction"] = 0.1
    capped = build_window_dataset(planted, cfg)
    assert capped.num_augmented == int(0.1 / 0.9 * planted.num_steps)
    assert build_window_dataset(planted, cfg, augment=False).num_augmented == 0
