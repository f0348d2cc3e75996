"""Checkpoint files, device choice, config composition and step-indexed batching (no store needed)."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from robot_offrl.checkpoint import (
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from robot_offrl.config import compose, require
from robot_offrl.device import autocast_dtype, maybe_compile, select_device
from robot_offrl.errors import ConfigError
from robot_offrl.train.batching import StepBatchSampler


def _save(tmp_path, step=10, keep=3, optimizer=None):
    state = {"policy.w": torch.arange(6.0).reshape(2, 3), "critic.b": torch.ones(4)}
    cfg = OmegaConf.create({"algo": {"name": "rise"}, "seed": 3})
    return save_checkpoint(
        tmp_path, step, state, cfg, {"actions": {"min": [0.0]}}, {"obs": []}, optimizer=optimizer, keep=keep
    )


def test_checkpoint_round_trip_and_latest(tmp_path):
    folder = _save(tmp_path, step=10)
    assert folder.name == "step_0000010"
    ckpt = load_checkpoint(tmp_path)  # a run folder resolves through checkpoints/latest
    assert ckpt.step == 10
    assert torch.equal(ckpt.model_state["policy.w"], torch.arange(6.0).reshape(2, 3))
    assert ckpt.config.algo.name == "rise"
    assert ckpt.normalization == {"actions": {"min": [0.0]}}
    assert ckpt.meta["code_version"]["package"]
    assert not list((tmp_path / "checkpoints").glob(".tmp*")), "no temporary folder is left behind"


def test_checkpoint_keeps_only_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step=step, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_0000003", "step_0000004"]
    assert resolve_checkpoint(tmp_path).name == "step_0000004"


def test_optimizer_state_survives_the_round_trip(tmp_path):
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([param], lr=1e-2)
    param.grad = torch.full((3,), 0.5)
    opt.step()
    _save(tmp_path, optimizer=opt)
    ckpt = load_checkpoint(tmp_path, with_optimizer=True)
    restored = unflatten_optimizer_state(ckpt.optim_state, ckpt.meta["optimizer"])
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=1e-2)
    fresh.load_state_dict(restored)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_pickle_payload_is_refused(tmp_path):
    folder = _save(tmp_path)
    torch.save({"policy.w": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(folder)
    (folder / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(folder)


def test_missing_or_broken_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        load_checkpoint(tmp_path)
    folder = _save(tmp_path)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
    (folder / "meta.json").write_text(json.dumps({"step": 1, "format_version": 99}))
    with pytest.raises(CheckpointError, match="upgrade robot-offrl"):
        load_checkpoint(folder)


def test_step_batches_are_a_function_of_the_step():
    full = list(StepBatchSampler(100, 8, seed=1, start_step=0, end_step=10))
    resumed = list(StepBatchSampler(100, 8, seed=1, start_step=6, end_step=10))
    assert resumed == full[6:]
    ranks = [StepBatchSampler(100, 4, seed=1, start_step=0, end_step=1, rank=r, world_size=2) for r in (0, 1)]
    global_batch = StepBatchSampler(100, 8, seed=1, start_step=0, end_step=1).batch_for_step(0)
    assert ranks[0].batch_for_step(0) + ranks[1].batch_for_step(0) == global_batch


def test_device_and_precision_choices():
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto").type in {"cpu", "mps"}
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            select_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu9")
    from robot_offrl.device import cpu_has_native_bf16

    assert autocast_dtype("auto", torch.device("cpu")) is (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype("off", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("mps")) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ConfigError):
        autocast_dtype("fp8", torch.device("cpu"))


def test_compile_path_runs_on_cpu():
    module = torch.nn.Linear(3, 2)
    compiled = maybe_compile(module, enabled=True, backend="eager")
    x = torch.randn(4, 3)
    assert torch.allclose(compiled(x), module(x))
    assert maybe_compile(module, enabled=False) is module


def test_every_adamw_implementation_makes_the_same_update():
    """trainer.optimizer_impl changes how AdamW runs, never what it does; auto is the fused kernel on CPU."""
    from robot_offrl.train.config import OPTIMIZER_IMPLS
    from robot_offrl.train.loop import adamw_impl_flags

    assert adamw_impl_flags("auto", torch.nn.Linear(2, 2).parameters()) == {"fused": True}
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Mish(), torch.nn.Linear(7, 3))
    grads = [torch.randn_like(p) for p in reference.parameters()]
    results = {}
    for impl in OPTIMIZER_IMPLS:
        model = copy.deepcopy(reference)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2, **adamw_impl_flags(impl, model.parameters()))
        for _ in range(3):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            opt.step()
        results[impl] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert opt.defaults["foreach"] is False  # the last one, plain
    for impl, params in results.items():
        assert torch.isfinite(params).all()
        assert torch.allclose(params, results["plain"], atol=1e-6), impl
    assert not torch.allclose(results["plain"], torch.cat([p.detach().flatten() for p in reference.parameters()]))


def test_config_composition_and_errors():
    cfg = compose("train", ["data=/tmp/x.zarr", "algo=bc", "trainer=small"])
    assert cfg.algo.name == "bc" and cfg.trainer.steps == 600 and cfg.data == "/tmp/x.zarr"
    assert compose("train", ["algo=rise"]).algo.nn_augment.enabled is True
    with pytest.raises(ConfigError, match="missing required config value 'data'"):
        require(compose("train", []), "data")
    with pytest.raises(ConfigError, match="bad config override"):
        compose("train", ["algo=does_not_exist"])


def test_every_trainer_key_says_whether_it_changes_results():
    """A new trainer key must be classified in train/settings.py, or resume and reuse would guess."""
    from robot_offrl.train.settings import RESUME_IGNORED, RUN_PLACE_KEYS, TRAINED_KEYS

    cfg = compose("train", ["data=/tmp/x.zarr"])
    keys = {f"trainer.{k}" for k in cfg.trainer} | {k for k in cfg if k not in ("task", "algo", "policy",
                                                                           "critic", "encoder", "trainer")}
    unclassified = keys - RUN_PLACE_KEYS - TRAINED_KEYS - {"seed"}
    assert not unclassified, f"classify {sorted(unclassified)} in robot_offrl/train/settings.py"
    assert not RUN_PLACE_KEYS & TRAINED_KEYS
    assert "trainer.steps" in RESUME_IGNORED and "trainer.lr" not in RESUME_IGNORED


def test_acting_settings_are_not_training_changes_but_are_handed_on():
    """Sampler, step count and selection change no weight: a run is reused, and told how to act."""
    from robot_offrl.algos.config import ACTING_SETTINGS
    from robot_offrl.runtime.policy import ACTING_OPTIONS
    from robot_offrl.train.resume import acting_differences, config_differences

    assert set(ACTING_SETTINGS.values()) <= set(ACTING_OPTIONS)  # each one has a runtime override
    saved = compose("train", ["data=/tmp/x.zarr", "algo=rise", "policy.num_inference_steps=10"])
    wanted = compose("train", ["data=/tmp/x.zarr", "algo=rise", "policy.num_inference_steps=6",
                               "policy.scheduler=dpmsolver", "algo.selection.num_candidates=8"])
    assert config_differences(saved, wanted) == {}
    assert acting_differences(saved, wanted) == {"num_inference_steps": 6, "scheduler": "dpmsolver",
                                                 "num_candidates": 8}
    assert acting_differences(saved, saved) == {}
    trained = compose("train", ["data=/tmp/x.zarr", "algo=rise", "policy.num_train_timesteps=50"])
    assert set(config_differences(saved, trained)) == {"policy.num_train_timesteps"}
