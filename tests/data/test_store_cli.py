"""`robot-offrl data ...` end to end: exit codes, output and the store afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_support import fill_store
from test_store_robomimic import write_robomimic

from robot_offrl.data import EpisodeStore

Cli = Callable[..., tuple[int, str, str]]

SUBCOMMANDS = ["info", "list", "show", "flag", "validate", "repair", "merge", "split", "delete", "stats",
               "export-video", "import-robomimic"]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help_with_an_example(cli: Cli, name: str) -> None:
    code, out, _ = cli("data", name, "--help")
    assert code == 0 and "Example:" in out and f"robot-offrl data {name}" in out


def test_info_text_and_json(cli: Cli, small_store: EpisodeStore) -> None:
    code, out, _ = cli("data", "info", small_store.url)
    assert code == 0 and "episodes:     4 (2 expert, 2 non-expert)" in out and "agentview_image" in out
    code, out, _ = cli("data", "info", small_store.url, "--json")
    assert code == 0 and json.loads(out)["steps"] == 33


def test_list_and_show(cli: Cli, small_store: EpisodeStore) -> None:
    code, out, _ = cli("data", "list", small_store.url)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 5 and lines[2].split()[:6] == ["1", "7", "12", "no", "play", "unknown"]
    code, out, _ = cli("data", "show", small_store.url, 2)
    assert code == 0 and json.loads(out)["length"] == 5
    code, _, err = cli("data", "show", small_store.url, 9)
    assert code == 2 and "episode 9 does not exist" in err


def test_flag(cli: Cli, small_store: EpisodeStore) -> None:
    small_store.close()  # the fixture's writer; the command is the next one
    code, out, _ = cli("data", "flag", small_store.url, "--episodes", "0,2-3", "--no-expert", "--source", "failed",
                       "--success", "false")
    assert code == 0 and "updated 3 episode(s)" in out
    eps = EpisodeStore.open(small_store.url).episodes
    assert [(m.expert, m.source, m.success) for m in eps] == [
        (False, "failed", False), (False, "play", None), (False, "failed", False), (False, "failed", False)]
    code, _, _ = cli("data", "flag", small_store.url, "--episodes", "1", "--expert", "--success", "unknown")
    assert code == 0 and EpisodeStore.open(small_store.url).episodes[1].expert is True
    code, _, err = cli("data", "flag", small_store.url, "--episodes", "0-7", "--expert")
    assert code == 2 and "episode 7 does not exist" in err
    code, _, err = cli("data", "flag", small_store.url, "--episodes", "0", "--source", "bogus")
    assert code == 2 and "source must be one of" in err
    code, _, _ = cli("data", "flag", small_store.url, "--episodes", "0", "--expert", "--no-expert")
    assert code == 2
    code, _, err = cli("data", "flag", small_store.url, "--episodes", "0", "--source", "play")
    assert code == 2 and "one of the arguments --expert --no-expert is required" in err


def test_validate_exit_codes(cli: Cli, small_store: EpisodeStore, tmp_path: Path) -> None:
    code, out, _ = cli("data", "validate", small_store.url)
    assert code == 0 and "valid (4 episodes, 33 steps)" in out
    import zarr

    arr = zarr.open_array(str(Path(small_store.url) / "obs" / "object"), mode="r+")
    arr[small_store.episodes[3].start + 2, 1] = np.inf
    code, _, err = cli("data", "validate", small_store.url)
    assert code == 1 and "episode 3, key 'object': inf at step 2" in err
    code, _, err = cli("data", "validate", tmp_path / "nothing.zarr")
    assert code == 2 and "no such file or directory" in err
    (tmp_path / "garbage.zarr").mkdir()
    (tmp_path / "garbage.zarr" / "zarr.json").write_text("{{{")
    code, _, err = cli("data", "validate", tmp_path / "garbage.zarr")
    assert code == 2 and "zarr.json is not valid JSON" in err


def test_repair_split_stats_delete(cli: Cli, tmp_path: Path) -> None:
    store = fill_store(tmp_path / "s.zarr", [4, 5, 6, 7, 3, 2], image=False)
    arr = store.action_array()
    arr.append(np.zeros((3, 7), np.float32), axis=0)
    store.close()  # the writer "dies" with its append uncommitted
    code, out, _ = cli("data", "repair", store.url)
    assert code == 0 and "dropped 3 uncommitted steps" in out
    code, out, _ = cli("data", "split", store.url, "--val-fraction", "0.34", "--seed", "1")
    assert code == 0 and "train=4 val=2" in out
    code, out, _ = cli("data", "stats", store.url)
    assert code == 0 and "actions:" in out and "cached in" in out
    assert EpisodeStore.open(store.url).attrs["norm_stats"]["stats"]["num_steps"] == 27
    code, out, _ = cli("data", "delete", store.url, "--episodes", "0,4-5")
    assert code == 0 and "3 remain" in out
    assert [m.length for m in EpisodeStore.open(store.url).episodes] == [5, 6, 7]
    code, _, err = cli("data", "split", store.url, "--val-fraction", "2")
    assert code == 2 and "val_fraction" in err


def test_merge_and_export_video(cli: Cli, tmp_path: Path) -> None:
    a = fill_store(tmp_path / "a.zarr", [3])
    b = fill_store(tmp_path / "b.zarr", [4, 2])
    code, out, _ = cli("data", "merge", tmp_path / "m.zarr", a.url, b.url)
    assert code == 0 and "3 episodes, 9 steps from 2 store(s)" in out
    video = tmp_path / "ep.mp4"
    code, out, _ = cli("data", "export-video", tmp_path / "m.zarr", 1, "--camera", "agentview_image", "--out", video)
    assert code == 0 and video.stat().st_size > 0
    code, _, err = cli("data", "export-video", tmp_path / "m.zarr", 1, "--camera", "nope", "--out", video)
    assert code == 2 and "'nope' is not an image key" in err
    c = fill_store(tmp_path / "c.zarr", [3], image=False)
    code, _, err = cli("data", "merge", tmp_path / "m2.zarr", a.url, c.url)
    assert code == 2 and "schemas differ" in err


def test_import_robomimic(cli: Cli, tmp_path: Path) -> None:
    file = write_robomimic(tmp_path / "lift.hdf5")
    code, out, _ = cli("data", "import-robomimic", file, tmp_path / "r.zarr", "--expert-mask", "expert")
    assert code == 0 and "imported 4 demos (2 expert)" in out
    code, _, err = cli("data", "import-robomimic", file, tmp_path / "r2.zarr", "--expert-mask", "nope")
    assert code == 2 and "filter key 'nope' not found" in err
