"""LeRobot datasets in and out, through the lerobot package's own writer and loader (real files, tiny sizes).

A dataset written by ``LeRobotDataset.create/add_frame/save_episode`` imports with every value and
trains; our store exported is re-read by ``LeRobotDataset`` itself; STORE -> LeRobot -> STORE keeps
every value (PNG frames exactly, AV1 video within the measured bound); bad inputs are one-line errors
that leave the target untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from store_support import fill_store, run_cli_without, tree_digest

from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema

LeRobotDataset = pytest.importorskip("lerobot.datasets.lerobot_dataset").LeRobotDataset

# lerobot 0.3.2 encodes AV1 (libsvtav1, crf 30, yuv420p); on smooth 32x32 gradients the measured error
# was max 4, mean 0.76 grey levels (2026-12-02). Noise-like frames lose far more: use PNG for exactness.
VIDEO_MAX_ERROR = 8
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory: pytest.TempPathFactory):
    """This module's own LeRobotDataset loads cache their Arrow copies here, not in ~/.cache."""
    import datasets.config

    before = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_datasets_cache")
    yield datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = before



def _smooth_frames(length: int, seed: int, size: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([
        np.stack([np.clip(x * 3 + y * 2 + t * 4 + c * 25 + seed * 10, 0, 255) for c in range(3)], -1)
        for t in range(length)
    ]).astype(np.uint8)


def write_lerobot_dataset(root: Path, lengths: list[int], *, video_camera: bool = True,
                          extra_features: dict | None = None, expert_column: list[bool] | None = None) -> dict:
    """A LeRobot dataset written by lerobot itself; returns what was written, per episode."""
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "observation.images.top": {"dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["vx", "vy"]},
        **(extra_features or {}),
    }
    if video_camera:
        features["observation.images.wrist"] = {"dtype": "video", "shape": (32, 32, 3),
                                                "names": ["height", "width", "channels"]}
    if expert_column is not None:
        features["expert"] = {"dtype": "bool", "shape": (1,), "names": None}
    ds = LeRobotDataset.create("test/tiny", fps=15, features=features, root=root, robot_type="so100",
                               use_videos=video_camera, video_backend="pyav")
    rng = np.random.default_rng(0)
    written = []
    for e, length in enumerate(lengths):
        ep = {"state": rng.normal(size=(length, 3)).astype(np.float32),
              "top": rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8),
              "wrist": _smooth_frames(length, e),
              "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32)}
        for t in range(length):
            frame = {"observation.state": ep["state"][t], "observation.images.top": ep["top"][t],
                     "action": ep["action"][t]}
            if video_camera:
                frame["observation.images.wrist"] = ep["wrist"][t]
            if expert_column is not None:
                frame["expert"] = np.array([expert_column[e]])
            for name, ft in (extra_features or {}).items():
                frame[name] = np.zeros(ft["shape"], dtype=ft["dtype"])
            ds.add_frame(frame, task="push the block" if e % 2 == 0 else "lift the block")
        ds.save_episode()
        written.append(ep)
    return {"episodes": written}


@pytest.fixture(scope="module")
def lerobot_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("le") / "tiny"
    return root, write_lerobot_dataset(root, [6, 9, 7])


def test_a_lerobot_written_dataset_imports_and_trains(lerobot_dir, tmp_path, cli, monkeypatch, datasets_cache):
    root, written = lerobot_dir
    cached_before = sorted(datasets_cache.rglob("*"))
    code, out, err = cli("data", "import-lerobot", root, tmp_path / "t.zarr", "--non-expert-episodes", "1")
    assert code == 0, err
    assert sorted(datasets_cache.rglob("*")) == cached_before  # the import's Arrow copy was temporary
    assert "3 episodes (2 expert), 22 steps" in out
    store = EpisodeStore.open(str(tmp_path / "t.zarr"))
    schema = store.schema
    assert schema.control_rate_hz == 15.0 and schema.robot == "so100"
    assert {k.name: k.kind for k in schema.obs} == {"state": "lowdim", "top": "rgb", "wrist": "rgb"}
    assert schema.action.names == ["vx", "vy"]
    assert [m.expert for m in store.episodes] == [True, False, True]
    assert {m.source for m in store.episodes} == {"imported"}
    assert [m.attrs["task"] for m in store.episodes] == ["push the block", "lift the block", "push the block"]
    for i, ep in enumerate(written["episodes"]):
        got = store.read_episode(i)
        np.testing.assert_array_equal(got.obs["state"], ep["state"])
        np.testing.assert_array_equal(got.actions, ep["action"])
        np.testing.assert_array_equal(got.obs["top"], ep["top"])  # PNG frames: exact
        diff = np.abs(got.obs["wrist"].astype(int) - ep["wrist"].astype(int))
        assert diff.max() <= VIDEO_MAX_ERROR, diff.max()
    store.close()

    # A few real training steps on the imported store (low-dim + both cameras).
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "learn"))
    from learn_support import optimise, tiny_cfg

    from robot_offrl.algos import build_agent
    from robot_offrl.train.windows import build_window_dataset

    torch.manual_seed(0)
    cfg = tiny_cfg("rise")
    cfg["algo"]["nn_augment"]["threshold"] = 2.0
    ds = build_window_dataset(EpisodeStore.open(str(tmp_path / "t.zarr")), cfg)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    assert ds.obs_info.lowdim == {"state": 3} and set(ds.obs_info.rgb) == {"top", "wrist"}
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    opt = torch.optim.AdamW([{"params": p, "lr": 1e-3} for p in agent.param_groups().values()])
    optimise(agent, ds, opt, steps=3, batch_size=4, rng=np.random.default_rng(0))
    assert any(not torch.equal(v, agent.state_dict()[k]) for k, v in before.items())


def test_flag_column_decides_expert(tmp_path, cli):
    root = tmp_path / "flagged"
    write_lerobot_dataset(root, [3, 4], video_camera=False, expert_column=[False, True])
    assert cli("data", "import-lerobot", root, tmp_path / "f.zarr")[0] == 0
    store = EpisodeStore.open(str(tmp_path / "f.zarr"))
    assert [m.expert for m in store.episodes] == [False, True]
    assert "expert" not in store.schema.obs_keys


def test_channels_first_images_and_next_success(tmp_path, cli):
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,), "names": None},
        "observation.images.cam": {"dtype": "image", "shape": (3, 8, 10), "names": ["channels", "height", "width"]},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    ds = LeRobotDataset.create("test/chw", fps=10, features=features, root=tmp_path / "chw", use_videos=False)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 3, 3, 8, 10), dtype=np.uint8)
    for e in range(2):
        for t in range(3):
            ds.add_frame({"observation.state": np.full(2, t, np.float32), "observation.images.cam": frames[e, t],
                          "action": np.zeros(2, np.float32), "next.success": np.array([e == 0 and t == 2])},
                         task="reach")
        ds.save_episode()
    assert cli("data", "import-lerobot", tmp_path / "chw", tmp_path / "c.zarr")[0] == 0
    store = EpisodeStore.open(str(tmp_path / "c.zarr"))
    assert store.schema.key("cam").shape == (8, 10, 3) and store.schema.obs_keys == ["state", "cam"]
    assert store.schema.action.names == ["a0", "a1"] and store.schema.task == "reach"
    assert [m.success for m in store.episodes] == [True, False]
    np.testing.assert_array_equal(store.read_episode(1).obs["cam"], frames[1].transpose(0, 2, 3, 1))


def test_depth_keys_round_trip(tmp_path, cli):
    schema = StoreSchema(
        obs=[KeySpec("pos", "float32", (2,), "lowdim"), KeySpec("d16", "uint16", (6, 5), "depth"),
             KeySpec("dm", "float32", (6, 5, 1), "depth")],
        action=ActionSpace(["vx", "vy"], ["m/s", "m/s"], "absolute", [-2.0, -2.0], [2.0, 2.0]),
        control_rate_hz=30, robot="ur5", task="place",
    )
    rng = np.random.default_rng(4)
    with EpisodeStore.create(str(tmp_path / "a.zarr"), schema) as store:
        for length in (3, 5):
            store.append_episode({"pos": rng.normal(size=(length, 2)),
                                  "d16": rng.integers(0, 65535, (length, 6, 5), dtype=np.uint16),
                                  "dm": rng.uniform(0, 3, (length, 6, 5, 1)).astype(np.float32)},
                                 rng.uniform(-2, 2, (length, 2)), expert=False, source="policy_rollout")
    assert cli("data", "export-lerobot", tmp_path / "a.zarr", tmp_path / "le")[0] == 0
    loaded = LeRobotDataset("robot_offrl/le", root=tmp_path / "le")
    a = EpisodeStore.open(str(tmp_path / "a.zarr"))
    np.testing.assert_array_equal(loaded[4]["observation.depth.d16"].numpy(), a.read_episode(1).obs["d16"][1])
    assert cli("data", "import-lerobot", tmp_path / "le", tmp_path / "b.zarr")[0] == 0
    b = EpisodeStore.open(str(tmp_path / "b.zarr"))
    assert b.schema == a.schema
    for i in range(2):
        for key in ("pos", "d16", "dm"):
            np.testing.assert_array_equal(a.read_episode(i).obs[key], b.read_episode(i).obs[key])
    assert [(m.expert, m.source) for m in b.episodes] == [(False, "policy_rollout")] * 2


def test_store_round_trip_through_lerobot_keeps_every_value(tmp_path, cli):
    src = fill_store(tmp_path / "a.zarr", [4, 6, 3])
    src.close()
    code, out, err = cli("data", "export-lerobot", tmp_path / "a.zarr", tmp_path / "le")
    assert code == 0, err
    assert not (tmp_path / "le" / "images").exists()  # lerobot's scratch PNGs are gone; parquet holds them

    # lerobot's own loader reads what we wrote.
    a = EpisodeStore.open(str(tmp_path / "a.zarr"))
    loaded = LeRobotDataset("robot_offrl/le", root=tmp_path / "le")
    assert len(loaded) == a.num_steps and loaded.meta.total_episodes == 3 and loaded.fps == 20
    assert loaded.meta.features["action"]["names"] == a.schema.action.names
    ep1 = a.read_episode(1)
    item = loaded[a.episode(1).start + 2]
    assert int(item["episode_index"]) == 1 and int(item["frame_index"]) == 2 and item["task"] == "lift"
    np.testing.assert_array_equal(item["action"].numpy(), ep1.actions[2])
    np.testing.assert_array_equal(item["observation.object"].numpy(), ep1.obs["object"][2])
    img = (item["observation.images.agentview_image"] * 255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(img, ep1.obs["agentview_image"][2])

    assert cli("data", "import-lerobot", tmp_path / "le", tmp_path / "b.zarr")[0] == 0
    b = EpisodeStore.open(str(tmp_path / "b.zarr"))
    assert b.schema == a.schema  # names, units, bounds, mode, kinds, rate, robot, task
    for ma, mb in zip(a.episodes, b.episodes, strict=True):
        assert (ma.expert, ma.source, ma.success, ma.attrs) == (mb.expert, mb.source, mb.success, mb.attrs)
        ea, eb = a.read_episode(ma.index), b.read_episode(mb.index)
        np.testing.assert_array_equal(ea.actions, eb.actions)
        for key in a.schema.obs_keys:
            np.testing.assert_array_equal(ea.obs[key], eb.obs[key])


def test_video_round_trip_within_the_stated_bound(tmp_path, cli):
    schema = StoreSchema(obs=[KeySpec("pos", "float32", (2,), "lowdim"), KeySpec("cam", "uint8", (32, 32, 3), "rgb")],
                         action=ActionSpace.unbounded(2), control_rate_hz=10, robot="r", task="t")
    store = EpisodeStore.create(str(tmp_path / "a.zarr"), schema)
    rng = np.random.default_rng(3)
    for e in range(2):
        store.append_episode({"pos": rng.normal(size=(8, 2)), "cam": _smooth_frames(8, e)},
                             rng.normal(size=(8, 2)), expert=e == 0, source="teleop")
    store.close()
    assert cli("data", "export-lerobot", tmp_path / "a.zarr", tmp_path / "v", "--video")[0] == 0
    assert list((tmp_path / "v" / "videos").rglob("*.mp4"))
    assert cli("data", "import-lerobot", tmp_path / "v", tmp_path / "b.zarr")[0] == 0
    a, b = EpisodeStore.open(str(tmp_path / "a.zarr")), EpisodeStore.open(str(tmp_path / "b.zarr"))
    for i in range(2):
        ea, eb = a.read_episode(i), b.read_episode(i)
        np.testing.assert_array_equal(ea.obs["pos"], eb.obs["pos"])
        np.testing.assert_array_equal(ea.actions, eb.actions)
        assert np.abs(ea.obs["cam"].astype(int) - eb.obs["cam"].astype(int)).max() <= VIDEO_MAX_ERROR
    assert [m.expert for m in b.episodes] == [True, False]


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_features_that_do_not_fit_are_refused_and_nothing_is_written(tmp_path, cli):
    root = tmp_path / "grid"
    write_lerobot_dataset(root, [3], video_camera=False,
                          extra_features={"observation.grid": {"dtype": "float32", "shape": (2, 2), "names": None}})
    before = tree_digest(root)
    code, _, err = cli("data", "import-lerobot", root, tmp_path / "g.zarr")
    _one_line_error(code, err, "observation.grid", "does not fit")
    assert not (tmp_path / "g.zarr").exists() and not list(tmp_path.glob(".g.zarr*staging"))
    assert tree_digest(root) == before


def test_existing_target_store_is_refused_and_untouched(lerobot_dir, tmp_path, cli):
    target = fill_store(tmp_path / "t.zarr", [3], image=False)
    target.close()
    before = tree_digest(tmp_path / "t.zarr")
    code, _, err = cli("data", "import-lerobot", lerobot_dir[0], tmp_path / "t.zarr")
    _one_line_error(code, err, "already exists")
    assert tree_digest(tmp_path / "t.zarr") == before
    code, _, err = cli("data", "export-lerobot", tmp_path / "t.zarr", lerobot_dir[0])
    _one_line_error(code, err, "already exists")


def test_not_a_dataset_or_incomplete_dataset_is_refused_without_downloading(lerobot_dir, tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("data", "import-lerobot", empty, tmp_path / "x.zarr")
    _one_line_error(code, err, "missing meta/info.json", "never downloaded")
    assert list(empty.iterdir()) == []  # lerobot would have made meta/ and asked the hub
    code, _, err = cli("data", "import-lerobot", tmp_path / "nope", tmp_path / "x.zarr")
    _one_line_error(code, err, "no such folder")
    # A complete dataset copy with one video file removed.
    copy = tmp_path / "copy"
    shutil.copytree(lerobot_dir[0], copy)
    video = next(copy.rglob("episode_000001.mp4"))
    video.unlink()
    code, _, err = cli("data", "import-lerobot", copy, tmp_path / "x.zarr")
    _one_line_error(code, err, "episode 1 lacks", "nothing is downloaded")
    assert not (tmp_path / "x.zarr").exists()


def test_non_integer_rate_and_bad_ranges_are_one_line_errors(lerobot_dir, tmp_path, cli):
    code, _, err = cli("data", "import-lerobot", lerobot_dir[0], tmp_path / "x.zarr", "--expert-episodes", "0-7")
    _one_line_error(code, err, "episode 7 does not exist")
    schema = StoreSchema(obs=[KeySpec("pos", "float32", (2,), "lowdim")], action=ActionSpace.unbounded(2),
                         control_rate_hz=12.5, robot="r", task="t")
    with EpisodeStore.create(str(tmp_path / "r.zarr"), schema) as store:
        store.append_episode({"pos": np.zeros((2, 2))}, np.zeros((2, 2)), expert=True, source="teleop")
    code, _, err = cli("data", "export-lerobot", tmp_path / "r.zarr", tmp_path / "r_le")
    _one_line_error(code, err, "12.5 Hz is not a whole number")
    assert not (tmp_path / "r_le").exists()


def test_missing_extra_is_a_one_line_error(lerobot_dir, tmp_path):
    """A real process in which lerobot cannot be imported (as on a base install)."""
    proc = run_cli_without("lerobot", ["data", "import-lerobot", lerobot_dir[0], tmp_path / "m.zarr"])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "optional 'lerobot' extra" in lines[0], proc.stderr
    assert not (tmp_path / "m.zarr").exists()
