"""Checkpoints and resume under damage and misuse, on real runs and real files (issue #15).

Every run here is a real (tiny) training run; damage is done to the files on disk; CLI checks go
through `robot_offrl_cli.main.main` and assert one "error:" line, no traceback, and that the good
checkpoints are still there afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from train_support import rehash_checkpoint, small_overrides, write_store

from robot_offrl.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from robot_offrl.config import compose
from robot_offrl.data import EpisodeStore
from robot_offrl.errors import ConfigError
from robot_offrl.runtime.policy import NonFiniteActionError, PolicyRuntime
from robot_offrl.train.loop import train
from robot_offrl_cli.main import main

STEP2, STEP4 = "step_0000002", "step_0000004"


def _overrides(store: Path, out: Path, algo: str = "bc", steps: int = 4) -> list[str]:
    return small_overrides(store, out, algo, steps=steps) + ["trainer.checkpoint_every=2", "trainer.val_fraction=0"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "lowdim.zarr")


@pytest.fixture(scope="module")
def base_run(store, tmp_path_factory) -> Path:
    """A bc run with checkpoints at steps 2 and 4; tests work on copies of it."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert train(compose("train", _overrides(store, out))).step == 4
    return out


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "checkpoints").rglob("*")) if p.is_file()}


def _cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and exactly one stderr line: the error."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert ": error: " in err
    return err


def _obs(store: Path) -> dict[str, np.ndarray]:
    ep = EpisodeStore.open(str(store)).read_episode(0)
    return {k: v[0] for k, v in ep.obs.items()}


# -- 1. damaged checkpoints ---------------------------------------------------------------------------
def test_truncated_newest_checkpoint_is_an_error_and_nothing_is_lost(store, run, capsys):
    model = run / "checkpoints" / STEP4 / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="damaged.*resume_fallback=true"):
        train(compose("train", _overrides(store, run, steps=6)))
    err = _cli_error(capsys, ["train", *_overrides(store, run, steps=6)])
    assert STEP4 in err and "resume_fallback" in err
    assert _snapshot(run) == before, "a refused resume writes nothing"


def test_flipped_bytes_are_detected_by_the_digest(run):
    folder = run / "checkpoints" / STEP4
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sha256"]["model.safetensors"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert set(meta["sha256"]) >= {"model.safetensors", "optim.safetensors", "config.yaml", "normalization.json"}
    for name in ("model.safetensors", "optim.safetensors", "normalization.json"):
        data = bytearray((folder / name).read_bytes())
        data[-3] ^= 0x01  # inside the tensor data / JSON text: still parses, wrong values
        (folder / name).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=f"{name}' does not match the SHA-256"):
            load_checkpoint(folder)
        data[-3] ^= 0x01
        (folder / name).write_bytes(bytes(data))
    load_checkpoint(folder)


def test_fallback_resumes_from_the_previous_good_checkpoint_and_says_so(store, base_run, run, capsys):
    model = run / "checkpoints" / STEP4 / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    result = train(compose("train", _overrides(store, run) + ["trainer.resume_fallback=true"]))
    assert result.step == 4
    assert "skipped" in capsys.readouterr().err and STEP2 in str(result.checkpoint.parent / STEP2)
    # Resuming from step 2 reproduces the lost step 4 exactly (batches are a function of the step).
    a = load_file(str(base_run / "checkpoints" / STEP4 / "model.safetensors"))
    b = load_checkpoint(run).model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_damaged_latest_pointer_is_an_error(store, run):
    (run / "checkpoints" / "latest").write_bytes(b"\x00\xff garbage")
    with pytest.raises(CheckpointError, match="latest' is damaged"):
        train(compose("train", _overrides(store, run, steps=6)))
    (run / "checkpoints" / "latest").write_text("step_0000009\n")
    with pytest.raises(CheckpointError, match="does not exist"):
        train(compose("train", _overrides(store, run, steps=6)))


def test_pruning_is_by_step_number_and_never_removes_latest(tmp_path):
    state = {"policy.w": torch.ones(2)}
    cfg = compose("train", ["data=x"])
    for step in (9_999_998, 9_999_999, 10_000_000):
        save_checkpoint(tmp_path, step, state, cfg, {}, {}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_10000000", "step_9999999"]
    assert resolve_checkpoint(tmp_path).name == "step_10000000"
    # A folder written with other zero padding sorts by its number too.
    shutil.copytree(tmp_path / "checkpoints" / "step_9999999", tmp_path / "checkpoints" / "step_001500")
    save_checkpoint(tmp_path, 10_000_001, state, cfg, {}, {}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_10000000", "step_10000001"]


def test_saving_a_step_again_replaces_it_whole(tmp_path):
    cfg = compose("train", ["data=x"])
    save_checkpoint(tmp_path, 5, {"policy.w": torch.zeros(2)}, cfg, {}, {})
    save_checkpoint(tmp_path, 5, {"policy.w": torch.ones(2)}, cfg, {}, {})
    assert torch.equal(load_checkpoint(tmp_path).model_state["policy.w"], torch.ones(2))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []


WRITER = """
import sys, torch
from omegaconf import OmegaConf
from robot_offrl.checkpoint import save_checkpoint
cfg = OmegaConf.create({"algo": {"name": "bc"}})
for i in range(int(sys.argv[2])):
    save_checkpoint(sys.argv[1], 5, {"policy.w": torch.full((64, 64), float(i))}, cfg, {}, {})
"""


def test_a_reader_never_sees_the_step_missing_while_it_is_saved_again(tmp_path):
    """A second process re-saves step 5 again and again; this one must always find a whole step_5."""
    cfg = compose("train", ["data=x"])
    save_checkpoint(tmp_path, 5, {"policy.w": torch.zeros(64, 64)}, cfg, {}, {})
    final = tmp_path / "checkpoints" / "step_0000005"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "15"])
    missing = looks = 0
    deadline = time.monotonic() + 300  # a bound, not a timing claim: a hung writer fails instead of hanging CI
    while writer.poll() is None and time.monotonic() < deadline:
        looks += 1
        if not ((final / "model.safetensors").is_file() and (final / "meta.json").is_file()):
            missing += 1
        time.sleep(0.0002)  # yield: on one shared core a tight loop starved the writer it waits for
    if writer.poll() is None:
        writer.kill()
    assert writer.wait() == 0
    assert looks > 0 and missing == 0, f"step_0000005 was incomplete in {missing} of {looks} looks"
    assert float(load_checkpoint(final).model_state["policy.w"][0, 0]) == 14.0


def test_garbage_config_yaml_is_one_line_naming_the_file(run):
    folder = run / "checkpoints" / STEP4
    (folder / "config.yaml").write_bytes(b"algo: [unclosed\n  - {: :\n\xff\xfe")
    with pytest.raises(CheckpointError, match="config.yaml' does not match"):
        load_checkpoint(folder)
    rehash_checkpoint(folder)  # written that way (e.g. by another tool): the parser's turn
    with pytest.raises(CheckpointError, match=r"config.yaml' is not a readable YAML") as info:
        load_checkpoint(folder)
    assert "\n" not in str(info.value)


# -- 2. resume with other settings ------------------------------------------------------------------
@pytest.mark.parametrize(("change", "key"), [("algo=rise", "algo.name"), ("policy.hidden_dim=32", "policy.hidden_dim"),
                                            ("trainer.lr=1e-3", "trainer.lr")])
def test_resume_with_other_settings_is_refused_naming_the_keys(store, run, capsys, change, key):
    before = _snapshot(run)
    err = _cli_error(capsys, ["train", *_overrides(store, run, steps=6), change])
    assert key in err and "cannot resume" in err
    if key == "trainer.lr":
        assert "trainer.resume_changes=[trainer.lr]" in err
    assert _snapshot(run) == before


def test_an_accepted_lr_change_reaches_the_optimiser(store, run, capsys):
    overrides = _overrides(store, run, steps=8) + ["trainer.lr=1e-3", "trainer.resume_changes=[trainer.lr]"]
    result = train(compose("train", overrides))
    assert "trainer.lr=0.001 applied from step 4" in capsys.readouterr().err
    # warm-up 2 of 8 steps, cosine after: at step 5 the factor is 0.5, of the NEW base lr.
    at_5 = next(h for h in result.loss_history if h["step"] == 5)
    assert at_5["lr/policy"] == pytest.approx(0.5e-3, rel=1e-6)
    saved = load_checkpoint(run)
    assert saved.config.trainer.lr == pytest.approx(1e-3)
    assert saved.meta["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="cannot change"):
        train(compose("train", _overrides(store, run, steps=10) + ["trainer.resume_changes=[algo.name]"]))


# -- 3. nonsense settings are one-line errors ---------------------------------------------------------
def test_nonsense_training_settings_are_refused(store, tmp_path, capsys):
    for bad in ("trainer.lr=-1", "trainer.lr=0", "trainer.lr=5"):
        assert "trainer.lr must be a number in (0, 1]" in _cli_error(
            capsys, ["train", *_overrides(store, tmp_path / "lr"), bad])
    assert not (tmp_path / "lr").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert "is an existing file" in _cli_error(capsys, ["train", *_overrides(store, a_file)])
    assert a_file.read_text() == "keep me"


def test_a_store_of_another_task_is_refused(store, tmp_path, capsys):
    err = _cli_error(capsys, ["train", *_overrides(store, tmp_path / "can"), "task=can"])
    assert "recorded for task 'lift'" in err and "task=can" in err


@pytest.mark.parametrize("algo", ["rise", "idql"])
def test_a_critic_on_a_store_without_expert_episodes_is_refused(tmp_path, capsys, algo):
    path = write_store(tmp_path / "noexpert.zarr", episodes=4, length=20)
    writable = EpisodeStore.open(str(path), mode="r+")
    writable.set_flags(list(range(writable.num_episodes)), expert=False)
    err = _cli_error(capsys, ["train", *_overrides(path, tmp_path / "run", algo)])
    assert "nothing to reward" in err and f"algo={algo}" in err


# -- 4. the runtime refuses non-finite weights, statistics and actions --------------------------------
def test_runtime_refuses_nan_weights_and_stats(run):
    folder = run / "checkpoints" / STEP4
    good_weights = (folder / "model.safetensors").read_bytes()
    weights = load_file(str(folder / "model.safetensors"))
    weights["ema_policy.denoiser.out.2.weight"][0, 0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"))
    rehash_checkpoint(folder)
    with pytest.raises(CheckpointError, match="weight tensor 'ema_policy.denoiser.out.2.weight' holds NaN"):
        PolicyRuntime.load(folder)
    (folder / "model.safetensors").write_bytes(good_weights)
    norm = json.loads((folder / "normalization.json").read_text())
    norm["keys"]["actions"]["max"][2] = float("nan")
    (folder / "normalization.json").write_text(json.dumps(norm))
    rehash_checkpoint(folder)
    with pytest.raises(CheckpointError, match="normalisation statistic 'actions.max' holds NaN"):
        PolicyRuntime.load(folder)


def test_runtime_raises_on_non_finite_actions(store, run):
    folder = run / "checkpoints" / STEP4
    weights = load_file(str(folder / "model.safetensors"))
    weights["ema_policy.denoiser.out.2.weight"].fill_(3e38)  # finite, but the output overflows
    save_file(weights, str(folder / "model.safetensors"))
    rehash_checkpoint(folder)
    policy = PolicyRuntime.load(folder)
    obs = _obs(store)
    with pytest.raises(NonFiniteActionError, match="non-finite action"):
        policy.act(obs)
    with pytest.raises(NonFiniteActionError):
        policy.plan(obs)
    assert not policy._queue, "nothing non-finite is queued for later steps"


# -- a damaged chunk read inside a DataLoader worker ---------------------------------------------------
def test_garbage_image_chunk_read_by_a_worker_is_one_line(tmp_path, capsys):
    """Images not cached in RAM are read in the workers; torch re-raises there with a traceback as text."""
    store = write_store(tmp_path / "img.zarr", episodes=4, length=12, image=(32, 32))
    before = {(i, k): hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
              for i in (0, 1) for k, v in EpisodeStore.open(str(store)).read_episode(i).obs.items()}
    for chunk in (store / "obs" / "agentview_image" / "c").rglob("*"):
        if chunk.is_file() and int(chunk.parts[-4]) >= 6:  # episodes 2 and 3 (12 steps each, 4 frames a chunk)
            chunk.write_bytes(b"not a zstd frame")
    overrides = small_overrides(store, tmp_path / "run", "bc", steps=4) + [
        "task.image_keys=[agentview_image]", "trainer.batch_size=4", "trainer.val_fraction=0",
        "encoder.feature_dim=16", "encoder.num_keypoints=8", "trainer.num_workers=1", "trainer.cache_in_ram=false",
    ]
    err = _cli_error(capsys, ["train", *overrides])
    assert "agentview_image" in err and "chunk" in err
    after = {(i, k): hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
             for i in (0, 1) for k, v in EpisodeStore.open(str(store)).read_episode(i).obs.items()}
    assert after == before


@pytest.mark.parametrize("edit", ["drop_all", "drop_model", "drop_config"])
def test_removing_digests_by_hand_is_damage_not_a_bypass(run, edit):
    """Format 2 requires a SHA-256 for every file: deleting the entry does not switch the check off."""
    folder = run / "checkpoints" / STEP4
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format_version"] == 2 and "model.safetensors" in meta["sha256"]
    if edit == "drop_all":
        del meta["sha256"]
    else:
        del meta["sha256"]["model.safetensors" if edit == "drop_model" else "config.yaml"]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(folder)
