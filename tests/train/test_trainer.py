"""The trainer on real stores: checkpoints, exact resume, NaN stop, runtime round trip, CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from train_support import rehash_checkpoint, small_overrides, write_store

from robot_offrl.checkpoint import load_checkpoint
from robot_offrl.config import compose
from robot_offrl.errors import ObservationError
from robot_offrl.runtime import Camera, PolicyRuntime
from robot_offrl.train.loop import TrainingDiverged, train
from robot_offrl_cli.main import main


def _first_obs(store_path):
    from robot_offrl.data import EpisodeStore

    ep = EpisodeStore.open(str(store_path)).read_episode(0)
    return {k: v[0] for k, v in ep.obs.items()}


@pytest.mark.parametrize("algo", ["bc", "rise"])
def test_train_writes_a_loadable_checkpoint_and_logs(lowdim_store, tmp_path, algo):
    out = tmp_path / "run"
    result = train(compose("train", small_overrides(lowdim_store, out, algo)))
    assert result.step == 20
    assert (out / "checkpoints" / "step_0000020" / "model.safetensors").is_file()
    assert (out / "train_log.jsonl").read_text().count('"event": "train"') == 4
    assert list((out / "tensorboard").iterdir()), "TensorBoard events are written"
    assert np.isfinite(result.losses["loss"])
    if algo == "rise":
        assert {"q_loss", "v_loss", "lr/critic"} <= set(result.losses)
        assert result.val_losses, "a validation loss on held-out episodes"
    ckpt = load_checkpoint(out)
    assert ckpt.config.algo.name == algo and ckpt.schema["obs_keys"]


def test_resume_continues_exactly(lowdim_store, tmp_path):
    full = tmp_path / "full"
    train(compose("train", small_overrides(lowdim_store, full, "rise")))
    # Simulate a crash right after the step-10 checkpoint, then resume.
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    shutil.rmtree(crashed / "checkpoints" / "step_0000020")
    (crashed / "checkpoints" / "latest").write_text("step_0000010\n")
    resumed = train(compose("train", small_overrides(lowdim_store, crashed, "rise")))
    assert resumed.step == 20
    a = load_file(str(full / "checkpoints" / "step_0000020" / "model.safetensors"))
    b = load_file(str(crashed / "checkpoints" / "step_0000020" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(lowdim_store, tmp_path):
    out = tmp_path / "run"
    train(compose("train", small_overrides(lowdim_store, out, "bc", steps=10)))
    good = out / "checkpoints" / "step_0000010" / "model.safetensors"
    weights = load_file(str(good))
    name = next(k for k in weights if k.startswith("policy.denoiser") and weights[k].dim() == 2)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(good))
    rehash_checkpoint(good.parent)  # weights that went NaN in training, not damage on disk
    before = good.read_bytes()
    with pytest.raises(TrainingDiverged, match="non-finite at step 10"):
        train(compose("train", small_overrides(lowdim_store, out, "bc", steps=20)))
    assert good.read_bytes() == before
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000010"


def test_runtime_round_trip_gives_identical_actions(lowdim_store, tmp_path):
    out = tmp_path / "run"
    train(compose("train", small_overrides(lowdim_store, out, "rise")))
    obs = _first_obs(lowdim_store)
    first = PolicyRuntime.load(out)
    second = PolicyRuntime.load(out / "checkpoints" / "step_0000020")
    actions_a = np.stack([first.act(obs) for _ in range(6)])
    actions_b = np.stack([second.act(obs) for _ in range(6)])
    assert actions_a.shape == (6, 7)
    np.testing.assert_array_equal(actions_a, actions_b)
    chunk = first.plan(obs)
    assert chunk.shape == (4, 7) and np.isfinite(chunk).all()
    assert PolicyRuntime.load(out, num_candidates=1, n_action_steps=2).plan(obs).shape == (2, 7)
    ddpm = PolicyRuntime.load(out, scheduler="ddpm", num_inference_steps=100)
    assert ddpm.describe()["scheduler"] == "ddpm" and np.isfinite(ddpm.plan(obs)).all()


def test_runtime_rejects_bad_observations(lowdim_store, tmp_path):
    out = tmp_path / "run"
    train(compose("train", small_overrides(lowdim_store, out, "bc", steps=10)))
    policy = PolicyRuntime.load(out)
    obs = _first_obs(lowdim_store)
    with pytest.raises(ObservationError, match="missing key 'object'"):
        policy.act({k: v for k, v in obs.items() if k != "object"})
    with pytest.raises(ObservationError, match="'robot0_eef_pos' has shape \\(4,\\), expected \\(3,\\)"):
        policy.act({**obs, "robot0_eef_pos": np.zeros(4, np.float32)})
    with pytest.raises(ObservationError, match="NaN"):
        policy.act({**obs, "object": np.full(10, np.nan, np.float32)})
    from robot_offrl.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a critic"):
        PolicyRuntime.load(out, num_candidates=8)
    # A checkpoint whose config asks for K > 1 but trained no critic acts with K = 1.
    bc_many = tmp_path / "bc_many"
    train(compose("train", small_overrides(lowdim_store, bc_many, "bc", steps=2) + ["algo.selection.num_candidates=16"]))
    assert PolicyRuntime.load(bc_many).num_candidates == 1
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        PolicyRuntime.load(out, scheduler="euler")


def test_image_observations_train_through_the_trainer(tmp_path):
    store = write_store(tmp_path / "img.zarr", episodes=4, length=12, image=(32, 32))
    overrides = small_overrides(store, tmp_path / "run", "rise", steps=2) + [
        "task.image_keys=[agentview_image]", "trainer.batch_size=4", "trainer.val_fraction=0",
        "trainer.checkpoint_every=2", "encoder.feature_dim=16", "encoder.num_keypoints=8",
    ]
    result = train(compose("train", overrides))
    assert result.step == 2
    policy = PolicyRuntime.load(tmp_path / "run")
    assert "agentview_image" in [s.name for s in policy.obs_schema]
    assert policy.cameras == (Camera("agentview", 32, 32),)
    from robot_offrl_sim.sweep import policy_cameras  # what a sweep builds its simulator's cameras from

    assert policy_cameras(policy) == (["agentview"], 32)
    obs = _first_obs(store)
    assert policy.plan(obs).shape == (4, 7)


def test_train_cli(lowdim_store, tmp_path, capsys):
    assert main(["train", "--cfg", "algo=idql", f"data={lowdim_store}"]) == 0
    assert "name: idql" in capsys.readouterr().out
    assert main(["train", "algo=nope", f"data={lowdim_store}"]) == 2
    assert "bad config override" in capsys.readouterr().err
    assert main(["train", "algo=bc"]) == 2
    assert "missing required config value 'data'" in capsys.readouterr().err
    assert main(["train", *small_overrides(lowdim_store, tmp_path / "cli", "bc", steps=5)]) == 0
    assert (tmp_path / "cli" / "train_summary.json").is_file()
    assert main(["train", f"data={tmp_path / 'missing.zarr'}", f"out={tmp_path / 'x'}"]) == 2


def test_lipschitz_hinge_keeps_the_policy_conditioned(lowdim_store, tmp_path):
    """A plain lambda * sigma penalty has no minimum and collapses the head (the policy then ignores
    its observation); the hinge at algo.lipschitz_max stops at the bound."""
    sigmas = {}
    for bound in (1.0, 0.0):
        overrides = small_overrides(lowdim_store, tmp_path / f"run{bound}", "rise", steps=100) + [
            "trainer.lr=5e-2", "trainer.val_fraction=0", "algo.lipschitz_weight=5.0", f"algo.lipschitz_max={bound}",
            "algo.lipschitz_form=hinge",
        ]
        sigmas[bound] = train(compose("train", overrides)).losses["lipschitz_sigma"]
    assert sigmas[1.0] > 0.8, sigmas
    assert sigmas[0.0] < 0.5 * sigmas[1.0], sigmas
