"""`robot-offrl data import-bag`: real rosbag2 files (MCAP and sqlite3) written by rosbags' own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from bag_support import T0, BagSpec, expected_joint, write_bag  # noqa: E402
from store_support import tree_digest  # noqa: E402

from robot_offrl_cli.main import main  # noqa: E402
from robot_offrl.data import EpisodeStore  # noqa: E402
from robot_offrl.data.validate import find_problems  # noqa: E402
from robot_offrl_ros.record_inputs import load_recorder_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hardware" / "config" / "record.yaml"


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["data", *[str(a) for a in argv]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    return lines[0]



def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir()), list(out.parent.iterdir())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_one_bag_per_episode_imports_aligned_and_validates(
    storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bags = tmp_path / "bags"
    bags.mkdir()
    write_bag(bags / "ep_a", storage)
    write_bag(bags / "ep_b", storage, BagSpec(spans=((0.0, 0.8),)))
    out = tmp_path / "arm.zarr"
    code, stdout, err = _cli(capsys, "import-bag", bags, out, "--config", CONFIG, "--non-expert", "--source", "play")
    assert code == 0, err
    assert "imported 2 episodes (0 expert)" in stdout
    assert _cli(capsys, "validate", out)[0] == 0
    cfg = load_recorder_yaml(CONFIG)
    store = EpisodeStore.open(str(out))
    assert find_problems(store) == []
    assert store.schema.obs_keys == ["joint_pos", "robot0_gripper_qpos", "agentview_image"]
    for index, meta in enumerate(store.episodes):
        assert meta.expert is False and meta.source == "play"
        attrs = meta.attrs
        assert attrs["recorder"] == "ros2_bag" and attrs["bag_storage"] == storage
        assert attrs["bag"] == ("ep_a", "ep_b")[index] and attrs["refused_steps"] == 0
        ep = store.read_episode(index)
        obs, actions = ep.obs, ep.actions
        n = len(actions)
        assert n == int((attrs["ros_time_end"] - attrs["ros_time_start"]) * cfg.control_rate_hz + 0.5) + 1
        assert n >= 14  # ~0.8-1 s at 20 Hz, less the start-up
        ticks = attrs["ros_time_start"] + np.arange(n) / cfg.control_rate_hz
        # Each step holds the newest follower state stamped at or before tick - alignment delay.
        want = np.array([expected_joint(t, cfg.alignment_delay_s) for t in ticks], dtype=np.float32)
        np.testing.assert_allclose(obs["joint_pos"][:, 0], want, atol=1e-4)
        np.testing.assert_allclose(obs["joint_pos"][:, 1:], np.tile(np.arange(1, 7) * 0.1, (n, 1)), atol=1e-6)
        np.testing.assert_allclose(obs["robot0_gripper_qpos"], np.tile([0.7, 0.8], (n, 1)), atol=1e-6)
        # The leader arm (action) is aligned the same way: its stamps run 1 ms behind the follower's.
        assert np.all(np.abs(actions[:, 0] + obs["joint_pos"][:, 0]) < 0.021)
        # Frames were decoded and resized to the schema's 84x84; uniform colour = frame number (30 Hz).
        imgs = obs["agentview_image"]
        assert imgs.shape == (n, 84, 84, 3) and imgs.dtype == np.uint8
        frames = imgs[:, 42, 42, 0].astype(int)
        assert np.all(np.diff(frames) >= 0) and np.all(np.abs(frames / 30.0 - (ticks - T0)) < 0.08)


def test_marker_topic_and_gap_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    markers = [(0.2, "start"), (0.9, "stop success=true"), (1.2, "start expert=false source=failed"),
               (1.9, "stop success=false")]
    write_bag(tmp_path / "marked", "mcap", BagSpec(spans=((0.0, 2.0),), markers=markers))
    code, _, err = _cli(capsys, "import-bag", tmp_path / "marked", tmp_path / "m.zarr", "--config", CONFIG,
                        "--split", "topic:/episode")
    assert code == 0, err
    store = EpisodeStore.open(str(tmp_path / "m.zarr"))
    labels = [(m.expert, m.source, m.success) for m in store.episodes]
    assert labels == [(True, "teleop", True), (False, "failed", False)]
    for meta, (t_start, t_stop) in zip(store.episodes, [(0.2, 0.9), (1.2, 1.9)], strict=True):
        assert T0 + t_start <= meta.attrs["ros_time_start"] < T0 + t_start + 0.05
        assert T0 + t_stop - 0.05 <= meta.attrs["ros_time_end"] < T0 + t_stop
        assert meta.attrs["split"] == "topic:/episode"

    write_bag(tmp_path / "bool", "sqlite3", BagSpec(spans=((0.0, 1.2),), markers=[(0.3, True), (0.8, False)]))
    code, _, err = _cli(capsys, "import-bag", tmp_path / "bool", tmp_path / "b.zarr", "--config", CONFIG,
                        "--split", "topic:/episode", "--source", "play", "--success", "false")
    assert code == 0, err
    (meta,) = EpisodeStore.open(str(tmp_path / "b.zarr")).episodes
    assert (meta.expert, meta.source, meta.success, meta.length) == (False, "play", False, 10)

    write_bag(tmp_path / "bursts", "sqlite3", BagSpec(spans=((0.0, 0.6), (1.6, 2.4))))
    code, _, err = _cli(capsys, "import-bag", tmp_path / "bursts", tmp_path / "g.zarr", "--config", CONFIG,
                        "--split", "gap:0.5", "--expert")
    assert code == 0, err
    store = EpisodeStore.open(str(tmp_path / "g.zarr"))
    assert store.num_episodes == 2 and all(m.expert for m in store.episodes)
    assert store.episodes[1].attrs["ros_time_start"] > T0 + 1.6
    assert find_problems(store) == []


def test_bag_with_a_missing_topic_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_bag(tmp_path / "nocam", "mcap", BagSpec(drop_topics=("/camera/image_raw",)))
    out = tmp_path / "out.zarr"
    line = _one_line_error(*_cli(capsys, "import-bag", tmp_path / "nocam", out, "--config", CONFIG)[::2])
    assert "no topic /camera/image_raw in the bag" in line and "/joint_states" in line
    _assert_nothing_written(out)


def test_undecodable_image_encoding_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_bag(tmp_path / "good", "sqlite3")
    write_bag(tmp_path / "depth", "sqlite3", BagSpec(encoding="16UC1"))
    out = tmp_path / "out.zarr"
    # The good bag is imported first; the bad one must still discard the whole staged store.
    line = _one_line_error(*_cli(capsys, "import-bag", tmp_path / "good", tmp_path / "depth", out,
                                 "--config", CONFIG)[::2])
    assert "image encoding '16UC1' is not supported" in line and "depth" in line
    _assert_nothing_written(out)


def test_existing_target_store_is_refused_and_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_bag(tmp_path / "bag", "mcap")
    out = tmp_path / "arm.zarr"
    assert _cli(capsys, "import-bag", tmp_path / "bag", out, "--config", CONFIG)[0] == 0
    before = tree_digest(out)
    line = _one_line_error(*_cli(capsys, "import-bag", tmp_path / "bag", out, "--config", CONFIG)[::2])
    assert "already exists" in line
    assert tree_digest(out) == before


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--split", "every:3"], "--split must be"),
        (["--split", "topic:/episode"], "no topic /episode in the bag"),
        ([], "not a rosbag2 recording"),
    ],
)
def test_bad_arguments_are_one_line(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = write_bag(tmp_path / "bag", "mcap", BagSpec(spans=((0.0, 0.3),)))
    target = tmp_path / "empty" if match.startswith("not a") else bag
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out.zarr"
    line = _one_line_error(*_cli(capsys, "import-bag", target, out, "--config", CONFIG, *argv)[::2])
    assert match in line
    _assert_nothing_written(out)


def test_damaged_bag_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_bag(tmp_path / "cut", "mcap")
    (mcap,) = bag.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])  # a copy that stopped halfway
    out = tmp_path / "out.zarr"
    line = _one_line_error(*_cli(capsys, "import-bag", bag, out, "--config", CONFIG)[::2])
    assert "cut" in line and ("cannot be read as a rosbag2 recording" in line or "damaged" in line)
    _assert_nothing_written(out)
