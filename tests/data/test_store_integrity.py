"""Store integrity on real stores on disk: lost or garbage chunks, strict index records, non-finite
statistics, builds that are killed midway, and bad inputs that must be one-line errors.

Every damaging test checks that the committed episodes it did not damage read back bit-identical
and that a refused command wrote nothing (the store's files hash the same before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from store_support import fill_store, make_episode, make_schema

from robot_offrl.data import (
    EpisodeStore,
    StoreCorruptError,
    StoreError,
    StoreNotFoundError,
    UncommittedDataWarning,
)
from robot_offrl.data.ops import merge_stores
from robot_offrl.data.staging import MARKER, STAGING_SUFFIX
from robot_offrl.data.validate import find_problems

Cli = Callable[..., tuple[int, str, str]]
REPO = Path(__file__).resolve().parents[2]
# 150 + 140 + 30 steps: actions chunk 1 (steps 128-255) holds the end of episode 0 and the start of 1;
# chunk 2 holds the end of episode 1 and all of episode 2.
LENGTHS = [150, 140, 30]


def episode_hashes(store: EpisodeStore, indices: list[int] | None = None) -> dict[tuple[int, str], str]:
    out = {}
    for i in range(store.num_episodes) if indices is None else indices:
        ep = store.read_episode(i)
        for key, values in {**ep.obs, "actions": ep.actions}.items():
            out[(i, key)] = hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()
    return out


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_line_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


@pytest.fixture
def store3(tmp_path: Path) -> EpisodeStore:
    store = fill_store(tmp_path / "s.zarr", LENGTHS)
    store.close()  # the filling writer is done: release the store's write lock for the commands under test
    return store


# ---------------------------------------------------------------------------------- chunks
def test_new_stores_keep_all_zero_chunks(tmp_path: Path) -> None:
    """zarr skips writing all-zero chunks by default; a store must not, or a lost file reads as valid zeros."""
    store = EpisodeStore.create(str(tmp_path / "z.zarr"), make_schema(), durable=False)
    obs, actions = make_episode(0, 10)
    obs = {k: np.zeros_like(v) for k, v in obs.items()}
    store.append_episode(obs, np.zeros_like(actions), expert=True, source="teleop")
    assert store.attrs["dense_chunks"] is True
    assert (tmp_path / "z.zarr" / "actions" / "c" / "0" / "0").is_file()
    assert (tmp_path / "z.zarr" / "obs" / "agentview_image" / "c" / "3" / "0" / "0" / "0").is_file()
    assert store.missing_chunks() == [] and find_problems(store) == []


def test_missing_chunk_is_an_error_on_every_read_path(store3: EpisodeStore, tmp_path: Path, cli: Cli) -> None:
    root = Path(store3.url)
    before = episode_hashes(store3)
    (root / "actions" / "c" / "1" / "0").unlink()
    files = file_hashes(root)
    store = EpisodeStore.open(store3.url)
    phrase = "episodes 0, 1, key 'actions': chunk actions/c/1/0: the chunk file is missing"
    with pytest.raises(StoreCorruptError, match=phrase):
        store.read_episode(0)
    with pytest.raises(StoreCorruptError, match=phrase):
        store.read_steps("actions", 140, 141)  # one step of episode 0 inside the lost chunk
    with pytest.raises(StoreCorruptError, match=phrase):
        store.norm_stats(recompute=True)
    # Steps outside the lost chunk, and episode 2 (chunk 2), still read bit-identical.
    assert episode_hashes(store, [2]) == {k: v for k, v in before.items() if k[0] == 2}
    code, _, err = cli("data", "validate", store3.url)
    assert code == 1 and "chunk file actions/c/1/0 is missing" in err and "episodes 0, 1" in err
    for argv in (["show", store3.url, "1"], ["stats", store3.url], ["merge", tmp_path / "m.zarr", store3.url],
                 ["delete", store3.url, "--episodes", "2"]):
        code, _, err = cli("data", *argv)
        one_line_error(code, err, "chunk actions/c/1/0", "missing")
    assert not (tmp_path / "m.zarr").exists() and not list(tmp_path.glob(f"*{STAGING_SUFFIX}"))
    assert file_hashes(root) == files  # nothing was written by any refused command


def test_missing_chunk_stops_training_reads(store3: EpisodeStore) -> None:
    from robot_offrl.data.sampler import WindowDataset

    stats = store3.norm_stats()
    image_chunk = Path(store3.url) / "obs" / "agentview_image" / "c" / "60" / "0" / "0" / "0"  # steps 180-182
    image_chunk.unlink()
    store = EpisodeStore.open(store3.url)
    windows = WindowDataset(store, obs_keys=["object", "agentview_image"], norm_stats=stats, cache_in_ram=False)
    windows.gather([0, 5])  # episode 0's first windows: fine
    with pytest.raises(StoreCorruptError, match="episode 1, key 'agentview_image': chunk obs/agentview_image/c/60"):
        windows.gather([0, 181])
    with pytest.raises(StoreCorruptError, match="episode 1, key 'agentview_image'"):
        WindowDataset(store, obs_keys=["object", "agentview_image"], norm_stats=stats, cache_in_ram=True)
    (Path(store3.url) / "obs" / "object" / "c" / "0" / "0").unlink()
    with pytest.raises(StoreCorruptError, match="episode 0, key 'object': chunk obs/object/c/0/0"):
        WindowDataset(EpisodeStore.open(store3.url), obs_keys=["object"], norm_stats=stats)


def test_missing_chunk_in_a_remote_store(tmp_path: Path) -> None:
    """Remote stores read through zarr, which fills lost chunks; the presence check refuses them there too."""
    import fsspec

    url = f"memory://integrity-{os.getpid()}.zarr"
    store = EpisodeStore.create(url, make_schema(image=False))
    for i, length in enumerate(LENGTHS):
        obs, actions = make_episode(i, length, image=False)
        store.append_episode(obs, actions, expert=True, source="teleop")
    fs = fsspec.filesystem("memory")
    fs.rm(f"/integrity-{os.getpid()}.zarr/obs/object/c/2/0")
    try:
        store = EpisodeStore.open(url)
        assert not store._reader("object").enabled  # really the zarr path
        with pytest.raises(StoreCorruptError, match="episodes 1, 2, key 'object': chunk obs/object/c/2/0"):
            store.read_episode(2)
        assert store.read_episode(0).obs["object"].shape == (150, 10)
        assert [str(p) for p in find_problems(store)] == [
            "episodes 1, 2, key 'object': chunk file obs/object/c/2/0 is missing (committed data lost; zarr would "
            "read it as zeros); restore from a backup or delete the episode(s)"
        ]
    finally:
        fs.rm(f"/integrity-{os.getpid()}.zarr", recursive=True)


def test_garbage_chunk_is_a_one_line_error(store3: EpisodeStore, tmp_path: Path, cli: Cli) -> None:
    root = Path(store3.url)
    before = episode_hashes(store3)
    (root / "obs" / "robot0_eef_pos" / "c" / "2" / "0").write_bytes(b"this is not a blosc frame")
    files = file_hashes(root)
    code, _, err = cli("data", "validate", store3.url)
    assert code == 1 and "episodes 1, 2, key 'robot0_eef_pos': chunk obs/robot0_eef_pos/c/2/0: the chunk does not decode" in err
    for argv in (["show", store3.url, "2"], ["stats", store3.url], ["merge", tmp_path / "m.zarr", store3.url],
                 ["delete", store3.url, "--episodes", "0"]):
        code, _, err = cli("data", *argv)
        one_line_error(code, err, "key 'robot0_eef_pos'", "does not decode")
    assert file_hashes(root) == files
    store = EpisodeStore.open(store3.url)
    assert episode_hashes(store, [0]) == {k: v for k, v in before.items() if k[0] == 0}


# ---------------------------------------------------------------------------------- staging
def _index_episodes(root: Path) -> int:
    try:
        return len(json.loads((root / "index" / "zarr.json").read_text())["attributes"]["episodes"])
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_merge_leaves_no_store_at_the_output(tmp_path: Path, cli: Cli) -> None:
    source = fill_store(tmp_path / "a.zarr", [10] * 40, image=False)
    want = episode_hashes(source)
    out = tmp_path / "out.zarr"
    staged = tmp_path / f".out.zarr{STAGING_SUFFIX}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sim"), str(REPO / "hardware"), str(REPO / "cli")])}
    child = subprocess.Popen(
        [sys.executable, "-m", "robot_offrl_cli.main", "data", "merge", str(out), *[source.url] * 6], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _index_episodes(staged / "out.zarr") < 5:  # killed after a few of its 240 episodes
            assert child.poll() is None and time.monotonic() < deadline, "merge ended before it could be killed"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert not out.exists() and (staged / MARKER).is_file()
    with pytest.raises(StoreNotFoundError, match="interrupted build left the incomplete store .*data merge"):
        EpisodeStore.open(str(out))
    code, _, err = cli("data", "validate", out)
    one_line_error(code, err, "interrupted build", "data repair")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncommittedDataWarning)  # the killed append's tail, also reported
        partial = EpisodeStore.open(str(staged / "out.zarr"))
    assert any("incomplete store of a build" in str(p) for p in find_problems(partial))
    code, out_text, _ = cli("data", "repair", out)
    assert code == 0 and "1 stale folders" in out_text and not staged.exists() and not out.exists()
    # A rerun after another kill removes the leftover itself and builds the whole store.
    staged.mkdir()
    (staged / MARKER).write_text(json.dumps({"pid": 999999999, "what": "data merge"}))
    with pytest.warns(UserWarning, match="interrupted earlier build"):
        merged = merge_stores(str(out), [source.url, source.url])
    assert not staged.exists() and merged.num_episodes == 80
    assert episode_hashes(merged, list(range(40))) == want
    assert find_problems(EpisodeStore.open(str(out))) == []


def test_outputs_that_exist_are_refused(store3: EpisodeStore, tmp_path: Path, cli: Cli) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    code, _, err = cli("data", "merge", file, store3.url)
    one_line_error(code, err, "already exists")
    code, _, err = cli("data", "merge", store3.url, store3.url)
    one_line_error(code, err, "already exists")
    code, _, err = cli("data", "merge", file / "x.zarr", store3.url)
    one_line_error(code, err, "is a file")
    assert file.read_text() == "keep me"


# ---------------------------------------------------------------------------------- index records
@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda eps: eps[1].update(expert="false"), "episode 1: .*expert is 'false', not true or false"),
        (lambda eps: eps[2].update(source="magic"), "episode 2: source 'magic' is not one of"),
        (lambda eps: eps[2].update(uid=0), "episode 2: uid 0 is also the uid of episode 0"),
        (lambda eps: eps.__setitem__(1, None), "episode 1: index record None is not an object"),
        (lambda eps: eps[0].pop("success"), "episode 0: .* lacks field\\(s\\) success"),
        (lambda eps: eps[0].update(length="150"), "episode 0: .*length is '150', not an integer"),
        (lambda eps: eps[0].update(success="yes"), "episode 0: success must be True, False or None"),
        (lambda eps: eps[2].update(uid=7), "episode 2: uid 7 is not below the index's next_uid 3"),
    ],
)
def test_index_records_are_parsed_strictly(store3: EpisodeStore, cli: Cli, edit: Callable[[list], object],
                                           phrase: str) -> None:
    root = Path(store3.url)
    before = episode_hashes(store3)
    original = (root / "index" / "zarr.json").read_text()
    index = json.loads(original)
    edit(index["attributes"]["episodes"])
    (root / "index" / "zarr.json").write_text(json.dumps(index))
    files = file_hashes(root)
    with pytest.raises(StoreCorruptError, match=phrase):
        EpisodeStore.open(store3.url)
    code, _, err = cli("data", "list", store3.url)
    one_line_error(code, err, "index/zarr.json was edited or damaged")
    assert file_hashes(root) == files
    # Put the record back: the data was never touched.
    (root / "index" / "zarr.json").write_text(original)
    assert episode_hashes(EpisodeStore.open(store3.url)) == before


# ---------------------------------------------------------------------------------- statistics
def test_stats_refuse_non_finite_values_and_never_cache_them(store3: EpisodeStore, cli: Cli) -> None:
    array = zarr.open_array(str(Path(store3.url) / "obs" / "object"), mode="r+")
    array[300, 4] = np.nan  # episode 2 (steps 290-319), written behind the store's back
    array[10, 0] = np.inf  # episode 0
    files = file_hashes(Path(store3.url))
    code, _, err = cli("data", "stats", store3.url)
    one_line_error(code, err, "key 'object' has NaN or inf at 2 step(s) in episode(s) 0, 2", "not computed or cached")
    assert "norm_stats" not in EpisodeStore.open(store3.url).attrs and file_hashes(Path(store3.url)) == files
    # A non-finite cache written by an older version is not handed out either.
    root = Path(store3.url)
    meta = json.loads((root / "zarr.json").read_text())
    bad = {"min": [float("nan")] * 10, "max": [1.0] * 10, "mean": [0.0] * 10, "std": [1.0] * 10}
    meta["attributes"]["norm_stats"] = {"generation": store3.generation, "stats": {"keys": {"object": bad}}}
    (root / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreCorruptError, match="key 'object' has NaN or inf"):
        EpisodeStore.open(store3.url).norm_stats()


# ---------------------------------------------------------------------------------- bad inputs
def test_bad_selections_splits_and_seeds(store3: EpisodeStore, cli: Cli) -> None:
    root = Path(store3.url)
    files = file_hashes(root)
    code, _, err = cli("data", "flag", store3.url, "--episodes", "0-99999999999999", "--no-expert")
    one_line_error(code, err, "episode 99999999999999 does not exist (the store has 3 episodes")
    code, _, err = cli("data", "delete", store3.url, "--episodes", "1,5-99999999999999")
    one_line_error(code, err, "does not exist")
    code, _, err = cli("data", "split", store3.url, "--val-fraction", "0.99")
    one_line_error(code, err, "every episode in validation", "2 of 2 expert and 1 of 1 non-expert")
    code, _, err = cli("data", "split", store3.url, "--val-fraction", "0.1", "--seed", "-5")
    one_line_error(code, err, "seed must be a non-negative integer, got -5")
    assert file_hashes(root) == files


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("task: lift\nparts: [{kind: expert, episodes: 1}\n", "not valid YAML at line"),
        ("task: lift\nparts:\n  - {kind: expert, episodes: ten}\n", "parts[0].episodes must be an integer"),
        ("task: lift\nseed: -1\nparts:\n  - {kind: expert, episodes: 1}\n", "seed must be an integer >= 0"),
        ("task: lift\nhorizon: soon\nparts:\n  - {kind: expert, episodes: 1}\n", "horizon must be an integer"),
        ("task: lift\ncameras: agentview\nparts:\n  - {kind: expert, episodes: 1}\n", "cameras must be a list"),
        ("task: lift\nparts:\n  - {kind: expert, episodes: 1, regoin: wide}\n", "parts[0] has unknown field(s) regoin"),
        ("task: lift\nseeds: 3\nparts:\n  - {kind: expert, episodes: 1}\n", "unknown field(s) seeds"),
        ("task: lift\nparts: {kind: expert}\n", "parts must be a non-empty list"),
        ("task: [lift]\nparts:\n  - {kind: expert, episodes: 1}\n", "task must be a non-empty string"),
    ],
)
def test_bad_recipes_name_the_file_and_field(tmp_path: Path, text: str, phrase: str) -> None:
    recipes = pytest.importorskip("robot_offrl_sim.recipes")
    from robot_offrl.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        recipes.build_dataset(path, str(tmp_path / "out.zarr"))
    assert str(err.value).startswith(str(path)) and phrase in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.zarr").exists()


def test_errors_are_store_errors() -> None:
    from robot_offrl.data.errors import ChunkCorruptError

    assert issubclass(ChunkCorruptError, StoreCorruptError) and issubclass(StoreCorruptError, StoreError)


def test_killed_build_dataset_leaves_no_store_at_the_output(tmp_path: Path, cli: Cli) -> None:
    """sim build-dataset killed after its first episode: `out` does not exist, so nothing trains on half a recipe."""
    pytest.importorskip("robosuite")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ntask: lift\nseed: 0\nhorizon: 20\nparts:\n  - {kind: play, episodes: 50}\n")
    out = tmp_path / "built.zarr"
    staged = tmp_path / f".built.zarr{STAGING_SUFFIX}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sim"), str(REPO / "hardware"), str(REPO / "cli")])}
    child = subprocess.Popen(
        [sys.executable, "-m", "robot_offrl_cli.main", "sim", "build-dataset", str(recipe), "--quiet",
         "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _index_episodes(staged / "built.zarr") < 1:
            assert child.poll() is None and time.monotonic() < deadline, "build ended before it could be killed"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert not out.exists() and json.loads((staged / MARKER).read_text())["what"] == "sim build-dataset"
    code, _, err = cli("data", "info", out)
    one_line_error(code, err, "interrupted build", "sim build-dataset")
    code, _, _ = cli("data", "repair", out)
    assert code == 0 and not staged.exists() and not out.exists()
