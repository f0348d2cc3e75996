"""robomimic HDF5 import, on files built here with robomimic's layout (data/demo_N, mask/<filter>)."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from robot_offrl.data import (
    EpisodeStore,
    EpisodeValidationError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
)
from robot_offrl.data.robomimic_import import import_robomimic

ENV_ARGS = {
    "env_name": "Lift",
    "type": 1,
    "env_kwargs": {
        "robots": ["Panda"],
        "control_freq": 20,
        "controller_configs": {"type": "BASIC", "body_parts": {"right": {"type": "OSC_POSE", "control_delta": True}}},
    },
}
LENGTHS = {"demo_0": 6, "demo_1": 4, "demo_2": 5, "demo_10": 3}


def _demo_data(name: str, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(int(name.split("_")[1]))
    return {
        "obs/agentview_image": rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8),
        "obs/object": rng.normal(size=(length, 10)),
        "obs/robot0_eef_pos": rng.normal(size=(length, 3)),
        "actions": rng.uniform(-1, 1, (length, 7)),
        "states": rng.normal(size=(length, 32)),
        "dones": np.eye(1, length, length - 1, dtype=np.int64)[0],
    }


def write_robomimic(path: Path, *, rewards: bool = True, nan_in: str | None = None) -> Path:
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        data.attrs["total"] = sum(LENGTHS.values())
        for name, length in LENGTHS.items():
            demo = data.create_group(name)
            demo.attrs["num_samples"] = length
            demo.attrs["model_file"] = f"<mujoco model='{name}'/>"
            for key, values in _demo_data(name, length).items():
                if nan_in == name and key == "actions":
                    values = values.copy()
                    values[1, 0] = np.nan
                demo.create_dataset(key, data=values)
            if rewards:
                r = np.zeros(length)
                r[-1] = 1.0 if name != "demo_1" else 0.0
                demo.create_dataset("rewards", data=r)
        mask = f.create_group("mask")
        mask.create_dataset("expert", data=np.array([b"demo_0", b"demo_10"]))
        mask.create_dataset("train", data=np.array([b"demo_0", b"demo_1", b"demo_2"]))
    return path


def test_import_with_expert_mask(tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5")
    store = import_robomimic(file, str(tmp_path / "lift.zarr"), ["expert"])
    store = EpisodeStore.open(store.url)
    assert [m.attrs["demo"] for m in store.episodes] == ["demo_0", "demo_1", "demo_2", "demo_10"]
    assert [m.expert for m in store.episodes] == [True, False, False, True]
    assert {m.source for m in store.episodes} == {"imported"}
    assert [m.success for m in store.episodes] == [True, False, True, True]
    assert store.episodes[0].attrs["model_file"] == "<mujoco model='demo_0'/>"
    assert store.episodes[0].attrs["num_samples"] == 6
    assert len(store.episodes[0].attrs["initial_state"]) == 32
    schema = store.schema
    assert schema.task == "Lift" and schema.robot == "Panda" and schema.control_rate_hz == 20.0
    assert schema.action.names == ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
    kinds = {k.name: (k.kind, k.dtype, k.shape) for k in schema.obs}
    assert kinds == {
        "agentview_image": ("rgb", "uint8", (32, 32, 3)),
        "object": ("lowdim", "float32", (10,)),
        "robot0_eef_pos": ("lowdim", "float32", (3,)),
    }
    for i, name in enumerate(["demo_0", "demo_1", "demo_2", "demo_10"]):
        expected = _demo_data(name, LENGTHS[name])
        ep = store.read_episode(i)
        np.testing.assert_array_equal(ep.obs["agentview_image"], expected["obs/agentview_image"])
        np.testing.assert_array_equal(ep.obs["object"], expected["obs/object"].astype(np.float32))
        np.testing.assert_array_equal(ep.actions, expected["actions"].astype(np.float32))


def test_several_masks_and_no_mask(tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5", rewards=False)
    both = import_robomimic(file, str(tmp_path / "both.zarr"), ["expert", "train"])
    assert all(m.expert for m in both.episodes)
    assert all(m.success is None for m in both.episodes)  # no rewards: success unknown
    none = import_robomimic(file, str(tmp_path / "none.zarr"))
    assert not any(m.expert for m in none.episodes)


def test_unknown_mask_names_available_ones(tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5")
    with pytest.raises(StoreError, match="filter key 'golden' not found.*available: expert, train"):
        import_robomimic(file, str(tmp_path / "x.zarr"), ["golden"])
    assert not (tmp_path / "x.zarr").exists()


def test_bad_demo_aborts_the_whole_import(tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5", nan_in="demo_2")
    with pytest.raises(EpisodeValidationError, match="episode demo_2, key 'actions'.*NaN at step 1"):
        import_robomimic(file, str(tmp_path / "x.zarr"), ["expert"])
    assert not (tmp_path / "x.zarr").exists()


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no such file"):
        import_robomimic(tmp_path / "missing.hdf5", str(tmp_path / "x.zarr"))
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="cannot be read as HDF5"):
        import_robomimic(junk, str(tmp_path / "x.zarr"))
    empty = tmp_path / "empty.hdf5"
    with h5py.File(empty, "w") as f:
        f.create_group("stuff")
    with pytest.raises(StoreError, match="no 'data' group"):
        import_robomimic(empty, str(tmp_path / "x.zarr"))
    file = write_robomimic(tmp_path / "lift.hdf5")
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(StoreExistsError):
        import_robomimic(file, str(tmp_path / "exists.zarr"))


def _edit_demo(file: Path, demo: str, edit: Callable[[h5py.Group], None]) -> Path:
    with h5py.File(file, "a") as f:
        edit(f["data"][demo])
    return file


def test_key_that_first_appears_in_a_later_demo_is_an_error(tmp_path: Path) -> None:
    """The schema comes from demo_0; a key only demo_2 has used to be dropped without a word."""
    file = _edit_demo(write_robomimic(tmp_path / "lift.hdf5"), "demo_2",
                      lambda d: d.create_dataset("obs/robot0_joint_pos", data=np.zeros((5, 7))))
    with pytest.raises(EpisodeValidationError, match="episode demo_2, key 'robot0_joint_pos'.*first appears in this demo"):
        import_robomimic(file, str(tmp_path / "x.zarr"))
    assert list(tmp_path.iterdir()) == [file]  # no store, no staging folder
    file = _edit_demo(write_robomimic(tmp_path / "b.hdf5"), "demo_10", lambda d: d.__delitem__("obs/object"))
    with pytest.raises(EpisodeValidationError, match="episode demo_10, key 'object'.*missing from this demo"):
        import_robomimic(file, str(tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()


def test_one_dimensional_actions_and_bad_control_rate(tmp_path: Path) -> None:
    def flat_actions(demo: h5py.Group) -> None:
        del demo["actions"]
        demo.create_dataset("actions", data=np.zeros(4))

    file = _edit_demo(write_robomimic(tmp_path / "lift.hdf5"), "demo_1", flat_actions)
    with pytest.raises(EpisodeValidationError, match=r"episode demo_1, key 'actions'.*shape \(4,\)"):
        import_robomimic(file, str(tmp_path / "x.zarr"))
    file = write_robomimic(tmp_path / "rate.hdf5")
    with h5py.File(file, "a") as f:
        args = json.loads(f["data"].attrs["env_args"])
        args["env_kwargs"]["control_freq"] = "fast"
        f["data"].attrs["env_args"] = json.dumps(args)
    with pytest.raises(StoreError, match="control_freq is 'fast', not a number"):
        import_robomimic(file, str(tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()


def test_import_failing_midway_leaves_nothing_at_the_output(tmp_path: Path) -> None:
    """demo_10 (imported last) holds a NaN: three demos are in the staging store when the import fails."""
    file = write_robomimic(tmp_path / "lift.hdf5", nan_in="demo_10")
    with pytest.raises(EpisodeValidationError, match="episode demo_10, key 'actions'.*NaN"):
        import_robomimic(file, str(tmp_path / "x.zarr"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift.hdf5"]


def test_import_into_an_existing_file_is_refused(tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5")
    with pytest.raises(StoreExistsError, match="already exists"):
        import_robomimic(file, str(file))
    assert h5py.is_hdf5(file)


def _lock_fds() -> list[str]:
    """Open descriptors of this process on store lock files (a writable handle left open holds one)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.split(" ")[0].endswith(".lock"):
            out.append(target)
    return out


def test_import_closes_the_store_it_built_without_waiting_for_gc(tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5")
    bad = write_robomimic(tmp_path / "bad.hdf5", nan_in="demo_10")
    gc.disable()  # a handle dropped without close() would hold its lock (a descriptor) until collected
    try:
        before = _lock_fds()
        import_robomimic(file, str(tmp_path / "x.zarr")).close()
        with pytest.raises(EpisodeValidationError) as failed:  # its traceback holds the import's frames
            import_robomimic(bad, str(tmp_path / "y.zarr"))
        assert _lock_fds() == before, failed.value
    finally:
        gc.enable()
