"""Every config group is one typed dataclass: defaults stated once, bad values refused on construction
naming the key, unknown keys refused, and the YAML files under configs/ only override."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from train_support import small_overrides

from robot_offrl.algos.config import (
    AgentConfig,
    AlgoConfig,
    CriticConfig,
    EmaConfig,
    NNAugmentConfig,
    PolicyConfig,
    SelectionConfig,
)
from robot_offrl.checkpoint import load_checkpoint
from robot_offrl.config import compose, config_dir
from robot_offrl.data.selection import EpisodeSelection
from robot_offrl.errors import ConfigError, UserError
from robot_offrl.models.encoders import EncoderConfig
from robot_offrl.train.config import GROUPS, TrainerConfig
from robot_offrl_cli.main import main


@pytest.mark.parametrize(
    ("config", "changes", "message"),
    [
        (AlgoConfig, {"name": "sac"}, "algo.name must be one of bc, bc_all"),
        (AlgoConfig, {"data_filter": "experts"}, "algo.data_filter must be one of expert, all, sources"),
        (AlgoConfig, {"data_filter": "sources"}, "algo.sources lists none"),
        (AlgoConfig, {"name": "idql"}, "algo.name=idql needs the critic"),
        (AlgoConfig, {"lipschitz_weight": -1}, r"algo.lipschitz_weight must be >= 0.0, got -1.0"),
        (AlgoConfig, {"lipschitz_form": "svd"}, "algo.lipschitz_form must be one of spectral_mlp, hinge"),
        (NNAugmentConfig, {"search": "nearest"}, "algo.nn_augment.search must be one of separate, combined"),
        (NNAugmentConfig, {"augmented_share": 1.0}, r"augmented_share must be < 1.0 \(the critic needs"),
        (NNAugmentConfig, {"feature_keys": "object"}, "algo.nn_augment.feature_keys must be a list of strings"),
        (SelectionConfig, {"mode": "best"}, "algo.selection.mode must be one of argmax, softmax"),
        (PolicyConfig, {"scheduler": "euler"}, "policy.scheduler must be one of ddim, ddpm"),
        (PolicyConfig, {"denoiser": "transformer"}, "policy.denoiser must be one of unet, mlp"),
        (PolicyConfig, {"pred_horizon": 2.5}, "policy.pred_horizon must be an integer, got 2.5"),
        (PolicyConfig, {"down_dims": [64, 0]}, "policy.down_dims must be a non-empty list of positive integers"),
        (PolicyConfig, {"timestep_embed_dim": 15}, "policy.timestep_embed_dim must be even"),
        (CriticConfig, {"expectile": 1.0}, r"critic.expectile must be in \(0, 1\), got 1.0"),
        (CriticConfig, {"terminal": "never"}, "critic.terminal must be one of absorbing, done"),
        (CriticConfig, {"lr": 2.0}, r"critic.lr must be a number in \(0, 1\]"),
        (EncoderConfig, {"crop": "big"}, "encoder.crop must be an integer, \\[height, width\\] or null"),
        (EncoderConfig, {"crop_ratio": 0.0}, "encoder.crop_ratio must be > 0.0"),
        (EncoderConfig, {"feature_dim": True}, "encoder.feature_dim must be an integer, got True"),
        (EmaConfig, {"min_decay": 0.5, "max_decay": 0.4}, "trainer.ema_min_decay .* exceeds trainer.ema_max_decay"),
        (EmaConfig, {"power": 0}, "trainer.ema_power must be > 0.0"),
        (TrainerConfig, {"steps": 0}, "trainer.steps must be a positive integer, got 0"),
        (TrainerConfig, {"lr": -1}, r"trainer.lr must be a number in \(0, 1\], got -1.0"),
        (TrainerConfig, {"val_fraction": 1.0}, r"trainer.val_fraction must be in \[0, 1\), got 1.0"),
        (TrainerConfig, {"grad_clip_mode": "sometimes"}, "trainer.grad_clip_mode must be one of per_group, global"),
        (TrainerConfig, {"cache_in_ram": "maybe"}, "trainer.cache_in_ram must be auto, true or false"),
        (TrainerConfig, {"progress": "yes"}, "trainer.progress must be true or false"),
        (EpisodeSelection, {"data_filter": "best"}, "algo.data_filter must be"),
    ],
)
def test_each_typed_config_refuses_a_bad_value_naming_the_key(config, changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        config(**changes)
    assert issubclass(err.type, UserError) and "\n" not in str(err.value)


def test_defaults_are_valid_and_stated_once():
    """Each group's defaults construct cleanly and are what the Hydra node of its group holds."""
    for name, config in GROUPS.items():
        node = config.schema_node()
        assert config.from_mapping(node) == config(), name
        assert sorted(node) == sorted(config.keys()), name


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown setting.*policy.hidden_dims"):
        PolicyConfig.from_mapping({"hidden_dims": 3})
    with pytest.raises(ConfigError, match="unknown setting.*trainer.stpes"):
        TrainerConfig.from_mapping({"stpes": 3})
    with pytest.raises(ConfigError, match="unknown setting.*algo.nn_augment.kk"):
        AgentConfig.from_cfg({"algo": {"name": "bc", "nn_augment": {"kk": 3}}})
    with pytest.raises(ConfigError, match="Could not override 'algo.foo'"):
        compose("train", ["data=x.zarr", "algo.foo=1"])  # Hydra refuses a key no group declares
    cfg = compose("train", ["data=x.zarr", "+algo.foo=1"])  # ... and the typed config refuses a forced one
    with pytest.raises(ConfigError, match="unknown setting.*algo.foo"):
        AgentConfig.from_cfg(cfg)


def test_the_yaml_files_only_override():
    """A group file states a key only where it differs from its dataclass default, or to say what the
    option is (the algorithm's name, its episodes and critic; the denoiser)."""
    identity = {"name", "data_filter", "use_critic", "denoiser"}
    for group, config in GROUPS.items():
        defaults = config.schema_node()
        for path in sorted((config_dir() / group).glob("*.yaml")):
            raw = yaml.safe_load(path.read_text()) or {}
            assert "base" in raw.get("defaults", []) or any(
                (config_dir() / group / f"{d}.yaml").is_file() for d in raw.get("defaults", []) if d != "_self_"
            ), path
            for key, value in raw.items():
                if key in ("defaults", *identity):
                    continue
                assert key in defaults, f"{path}: unknown key {key}"
                if isinstance(value, dict):
                    repeated = [k for k, v in value.items() if defaults[key].get(k) == v]
                    assert not repeated, f"{path}: {key}.{repeated} restate the default"
                else:
                    assert defaults[key] != value, f"{path}: {key} restates the default {value!r}"


def test_every_key_can_be_overridden_from_the_command_line():
    cfg = compose("train", ["data=x.zarr", "policy.cond_dim=128", "trainer.ema_min_decay=0.1", "encoder.crop=[70,70]"])
    agent = AgentConfig.from_cfg(cfg)
    assert agent.policy.cond_dim == 128 and agent.ema.min_decay == 0.1 and agent.encoder.crop == (70, 70)
    assert dataclasses.replace(agent.policy, cond_dim=64).cond_dim == 64


def test_overrides_train_through_hydra_and_are_saved(lowdim_store: Path, tmp_path: Path, capsys):
    """`robot-offrl train` with overrides on a tiny config runs a few steps; the run records them."""
    out = tmp_path / "run"
    argv = ["train", *small_overrides(lowdim_store, out, "bc", steps=3), "trainer.val_fraction=0",
            "policy.cond_dim=32", "trainer.grad_clip_mode=global", "algo.data_filter=all"]
    assert main(argv) == 0, capsys.readouterr().err
    saved = load_checkpoint(out)
    assert saved.step == 3
    assert OmegaConf.select(saved.config, "policy.cond_dim") == 32
    assert saved.config.trainer.grad_clip_mode == "global" and saved.config.algo.data_filter == "all"
    assert AgentConfig.from_cfg(saved.config).policy.cond_dim == 32
