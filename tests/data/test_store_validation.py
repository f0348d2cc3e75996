"""Every bad input gets a clear error naming the episode and key, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_support import fill_store, make_episode, make_schema

from robot_offrl.data import (
    ActionSpace,
    EpisodeBuffer,
    EpisodeIndexError,
    EpisodeStore,
    EpisodeValidationError,
    KeySpec,
    SchemaError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    StoreReadOnlyError,
    StoreVersionError,
)
from robot_offrl.data.episode_ranges import parse_episode_ranges
from robot_offrl.data.migrations import MIGRATIONS
from robot_offrl.data.validate import find_problems
from robot_offrl.errors import UserError

Mutation = Callable[[dict[str, np.ndarray], np.ndarray], tuple[dict[str, Any], Any]]


def _drop_key(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {k: v for k, v in obs.items() if k != "object"}, a


def _extra_key(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {**obs, "wrist_image": obs["agentview_image"]}, a


def _wrong_shape(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {**obs, "object": obs["object"][:, :9]}, a


def _float_image(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {**obs, "agentview_image": obs["agentview_image"].astype(np.float32) / 255}, a


def _int_lowdim(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {**obs, "robot0_eef_pos": obs["robot0_eef_pos"].astype(np.int64)}, a


def _short_key(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {**obs, "robot0_eef_pos": obs["robot0_eef_pos"][:-1]}, a


def _nan_action(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    a = a.copy()
    a[4, 2] = np.nan
    return obs, a


def _inf_lowdim(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    o = obs["object"].copy()
    o[2, 0] = np.inf
    return {**obs, "object": o}, a


def _empty(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return {k: v[:0] for k, v in obs.items()}, a[:0]


def _wrong_action_dim(obs: dict[str, np.ndarray], a: np.ndarray) -> tuple[dict[str, Any], Any]:
    return obs, a[:, :6]


CASES: list[tuple[Mutation, str, str]] = [
    (_drop_key, "object", "missing"),
    (_extra_key, "wrist_image", "not in the schema"),
    (_wrong_shape, "object", "shape (8, 9)"),
    (_float_image, "agentview_image", "dtype float32"),
    (_int_lowdim, "robot0_eef_pos", "dtype int64"),
    (_short_key, "robot0_eef_pos", "7 steps but actions have 8"),
    (_nan_action, "actions", "NaN at step 4"),
    (_inf_lowdim, "object", "inf at step 2"),
    (_empty, "actions", "empty"),
    (_wrong_action_dim, "actions", "expected (T, 7)"),
]


@pytest.mark.parametrize(("mutate", "key", "phrase"), CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_bad_append_is_refused_before_writing(tmp_path: Path, mutate: Mutation, key: str, phrase: str) -> None:
    store = fill_store(tmp_path / "s.zarr", [5, 6])
    before = {k: store.obs_array(k).shape for k in store.schema.obs_keys}
    obs, actions = mutate(*make_episode(9, 8))
    with pytest.raises(EpisodeValidationError) as info:
        store.append_episode(obs, actions, expert=True, source="teleop")
    err = info.value
    assert isinstance(err, UserError)
    assert err.episode == 2 and err.key == key
    assert "episode 2" in str(err) and f"'{key}'" in str(err) and phrase in str(err)
    reopened = EpisodeStore.open(tmp_path / "s.zarr")
    assert reopened.num_episodes == 2 and reopened.uncommitted_steps == 0
    assert {k: reopened.obs_array(k).shape for k in reopened.schema.obs_keys} == before


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"source": "dreamt"}, "source 'dreamt' is not one of"),
        ({"success": "yes"}, "success must be True, False or None"),
        ({"expert": 1}, "expert must be True or False"),
        ({"attrs": {"when": object()}}, "not JSON-serialisable"),
        ({"attrs": {"x": np.float32(1.0)}}, "not JSON-serialisable"),
    ],
)
def test_bad_labels_are_refused(tmp_path: Path, kwargs: dict[str, Any], phrase: str) -> None:
    store = fill_store(tmp_path / "s.zarr", [4])
    obs, actions = make_episode(1, 4)
    call = {"expert": True, "source": "teleop", **kwargs}
    with pytest.raises(StoreError, match=phrase) as info:
        store.append_episode(obs, actions, **call)
    assert "episode 1" in str(info.value)
    assert EpisodeStore.open(tmp_path / "s.zarr").num_episodes == 1


def test_set_flags_rejects_bad_values(small_store: EpisodeStore) -> None:
    with pytest.raises(EpisodeIndexError, match="episode 9 does not exist"):
        small_store.set_flags([9], expert=True)
    with pytest.raises(SchemaError, match="source"):
        small_store.set_flags([0], source="unknown-source")
    with pytest.raises(SchemaError, match="success"):
        small_store.set_flags([0], success="maybe")


def test_buffer_refuses_changing_keys_and_empty_commit(tmp_path: Path) -> None:
    store = EpisodeStore.create(str(tmp_path / "b.zarr"), make_schema())
    obs, actions = make_episode(0, 2)
    buf = EpisodeBuffer()
    with pytest.raises(EpisodeValidationError, match="empty episode"):
        buf.commit(store, expert=True, source="teleop")
    buf.add({k: v[0] for k, v in obs.items()}, actions[0])
    with pytest.raises(EpisodeValidationError, match="missing \\['object'\\]"):
        buf.add({k: v[1] for k, v in obs.items() if k != "object"}, actions[1])
    buf.add({**{k: v[1] for k, v in obs.items()}, "object": np.zeros(4, np.float32)}, actions[1])
    with pytest.raises(EpisodeValidationError, match="'object'"):
        buf.commit(store, expert=True, source="teleop")


def test_read_only_store_refuses_writes(small_store: EpisodeStore) -> None:
    ro = EpisodeStore.open(small_store.url)
    obs, actions = make_episode(0, 3)
    with pytest.raises(StoreReadOnlyError, match="mode='r\\+'"):
        ro.append_episode(obs, actions, expert=True, source="teleop")
    with pytest.raises(StoreReadOnlyError):
        ro.set_flags([0], expert=False)


def test_missing_path_and_existing_path(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="nope.zarr"):
        EpisodeStore.open(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreNotFoundError, match="zarr.json is missing"):
        EpisodeStore.open(tmp_path / "plain")
    fill_store(tmp_path / "s.zarr", [3])
    with pytest.raises(StoreExistsError, match="already exists"):
        EpisodeStore.create(str(tmp_path / "s.zarr"), make_schema())
    with pytest.raises(SchemaError, match="different schema"):
        EpisodeStore.open(tmp_path / "s.zarr", mode="a", schema=make_schema(image=False))


@pytest.mark.parametrize(("target", "phrase"), [("zarr.json", "zarr.json is not valid JSON"),
                                                ("index/zarr.json", "index/zarr.json is not valid JSON")])
def test_garbage_metadata_is_reported_as_corrupt(small_store: EpisodeStore, target: str, phrase: str) -> None:
    (Path(small_store.url) / target).write_bytes(b"\x00{not json")
    with pytest.raises(StoreCorruptError, match=phrase):
        EpisodeStore.open(small_store.url)


def _edit_attrs(root: Path, key: str, edit: Callable[[dict[str, Any]], None]) -> None:
    file = root / key
    meta = json.loads(file.read_text())
    edit(meta["attributes"])
    file.write_text(json.dumps(meta))


def test_not_a_robot_offrl_store(small_store: EpisodeStore) -> None:
    _edit_attrs(Path(small_store.url), "zarr.json", lambda a: a.update(format="something.else"))
    with pytest.raises(StoreCorruptError, match="not a robot_offrl episode store"):
        EpisodeStore.open(small_store.url)


def test_index_inconsistent_with_arrays(small_store: EpisodeStore) -> None:
    def grow(attrs: dict[str, Any]) -> None:
        attrs["episodes"][-1]["length"] += 100
        attrs["num_steps"] += 100

    _edit_attrs(Path(small_store.url), "index/zarr.json", grow)
    with pytest.raises(StoreCorruptError, match="committed data is missing"):
        EpisodeStore.open(small_store.url)


def test_newer_format_version_asks_to_upgrade(small_store: EpisodeStore) -> None:
    _edit_attrs(Path(small_store.url), "zarr.json", lambda a: a.update(format_version=2))
    with pytest.raises(StoreVersionError, match="newer robot-offrl.*Upgrade robot-offrl"):
        EpisodeStore.open(small_store.url)


@pytest.fixture
def v0_migration() -> Iterator[list[int]]:
    calls: list[int] = []

    def upgrade(attrs: dict[str, Any]) -> dict[str, Any]:
        calls.append(attrs["format_version"])
        attrs["schema"] = attrs.pop("schema_v0")
        return attrs

    MIGRATIONS[0] = upgrade
    yield calls
    del MIGRATIONS[0]


def _make_v0(root: Path) -> None:
    def downgrade(attrs: dict[str, Any]) -> None:
        attrs["format_version"] = 0
        attrs["schema_v0"] = attrs.pop("schema")

    _edit_attrs(root, "zarr.json", downgrade)


def test_older_format_without_migration_is_refused(small_store: EpisodeStore) -> None:
    _make_v0(Path(small_store.url))
    with pytest.raises(StoreVersionError, match="version 0 has no migration"):
        EpisodeStore.open(small_store.url)


def test_older_format_is_migrated(small_store: EpisodeStore, v0_migration: list[int]) -> None:
    root = Path(small_store.url)
    small_store.close()
    _make_v0(root)
    ro = EpisodeStore.open(root)  # read-only: migrated in memory, file untouched
    assert ro.written_format_version == 0 and ro.num_episodes == 4
    assert json.loads((root / "zarr.json").read_text())["attributes"]["format_version"] == 0
    rw = EpisodeStore.open(root, mode="r+")  # writable: upgraded on disk once
    assert rw.attrs["format_version"] == 1
    on_disk = json.loads((root / "zarr.json").read_text())["attributes"]
    assert on_disk["format_version"] == 1 and "schema" in on_disk
    assert v0_migration == [0, 0]
    assert EpisodeStore.open(root).written_format_version == 1


def test_validate_finds_bad_values_already_in_a_store(small_store: EpisodeStore) -> None:
    assert find_problems(EpisodeStore.open(small_store.url)) == []
    # Write a NaN behind the store's back, as a buggy external tool would.
    import zarr

    actions = zarr.open_array(str(Path(small_store.url) / "actions"), mode="r+")
    start = small_store.episodes[2].start
    actions[start + 1, 3] = np.nan
    problems = find_problems(EpisodeStore.open(small_store.url))
    assert len(problems) == 1
    assert problems[0].episode == 2 and problems[0].key == "actions"
    assert str(problems[0]).startswith("episode 2, key 'actions': NaN at step 1")


@pytest.mark.parametrize(
    ("build", "phrase"),
    [
        (lambda: KeySpec("cam", "uint8", (84, 84, 3), "video"), "kind 'video'"),
        (lambda: KeySpec("cam", "float32", (84, 84, 3), "rgb"), "dtype float32 is not allowed"),
        (lambda: KeySpec("pos", "float32", (3, 2), "lowdim"), "shape \\(D,\\)"),
        (lambda: KeySpec("actions", "float32", (3,), "lowdim"), "reserved"),
        (lambda: KeySpec("a/b", "float32", (3,), "lowdim"), "without '/'"),
        (lambda: ActionSpace(["x", "x"], ["m", "m"], "delta", [0, 0], [1, 1]), "duplicates"),
        (lambda: ActionSpace(["x"], ["m"], "relative", [0], [1]), "'absolute' or 'delta'"),
        (lambda: ActionSpace(["x"], ["m"], "delta", [1], [0]), "not an interval"),
        (lambda: ActionSpace(["x", "y"], ["m"], "delta", [0, 0], [1, 1]), "units has 1 entries"),
    ],
)
def test_malformed_schema_parts(build: Callable[[], object], phrase: str) -> None:
    with pytest.raises(SchemaError, match=phrase):
        build()


def test_schema_rate_and_duplicates() -> None:
    base = make_schema()
    with pytest.raises(SchemaError, match="control_rate_hz"):
        type(base)(obs=base.obs, action=base.action, control_rate_hz=0, robot="r", task="t")
    with pytest.raises(SchemaError, match="duplicates"):
        type(base)(obs=[base.obs[0], base.obs[0]], action=base.action, control_rate_hz=10, robot="r", task="t")


def test_unbounded_actions_round_trip_through_json(tmp_path: Path) -> None:
    base = make_schema(image=False)
    schema = type(base)(obs=base.obs, action=ActionSpace.unbounded(7), control_rate_hz=10, robot="r", task="t")
    EpisodeStore.create(str(tmp_path / "u.zarr"), schema)
    assert EpisodeStore.open(tmp_path / "u.zarr").schema.action.high == [float("inf")] * 7


def test_bad_episode_numbers(small_store: EpisodeStore) -> None:
    with pytest.raises(EpisodeIndexError, match="episode 4 does not exist.*0..3"):
        small_store.read_episode(4)
    with pytest.raises(EpisodeIndexError, match="not an integer"):
        small_store.read_episode("1")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [("0,3-5", [0, 3, 4, 5]), ("2", [2]), (" 1 , 1-2 ", [1, 2])])
def test_episode_ranges(text: str, expected: list[int]) -> None:
    assert parse_episode_ranges(text, 6) == expected


@pytest.mark.parametrize(("text", "phrase"), [("", "empty"), ("1,,2", "empty item"), ("a", "not a number"),
                                              ("5-3", "ascending"), ("0-9", "episode 9 does not exist")])
def test_bad_episode_ranges(text: str, phrase: str) -> None:
    with pytest.raises(EpisodeIndexError, match=phrase):
        parse_episode_ranges(text, 6)
