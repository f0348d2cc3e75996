"""Hydra config composition for every command that takes ``key=value`` overrides.

Commands compose configs with Hydra's compose API rather than ``@hydra.main`` so that one argparse
front end serves all subcommands and tests can build configs in-process.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robot_offrl.errors import ConfigError

CONFIG_DIR_ENV = "ROBOT_OFFRL_CONFIGS"


def config_dir() -> Path:
    """The Hydra config tree: ``$ROBOT_OFFRL_CONFIGS`` or ``configs/`` beside the package source."""
    override = os.environ.get(CONFIG_DIR_ENV)
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parent.parent / "configs")
    for path in candidates:
        if (path / "train.yaml").is_file():
            return path
    raise ConfigError(
        f"cannot find the configs/ folder (looked in {', '.join(map(str, candidates))}); "
        f"install robot-offrl from a source checkout (pip install -e .) or set {CONFIG_DIR_ENV}"
    )


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides; errors become ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # Each group's defaults come from its typed config (train/config.py); the YAML files only override.
    from robot_offrl.train.config import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"bad config override: {err}") from err
    finally:
        GlobalHydra.instance().clear()
    return cfg


def require(cfg: DictConfig, *keys: str) -> None:
    """Fail early with the key's name when a mandatory value (``???``) was not given."""
    for key in keys:
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"missing required config value '{key}' (pass it as {key}=...)")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def from_yaml(text: str) -> DictConfig:
    cfg = OmegaConf.create(text)
    if not isinstance(cfg, DictConfig):
        raise ConfigError("config file does not hold a mapping")
    return cfg
