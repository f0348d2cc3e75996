"""Typed, validated view of the Hydra sections the learning core reads.

The trainer hands over the whole resolved config; reading it once here, with defaults and range
checks, means a typo or a negative horizon fails at start-up with the key's name instead of deep
inside a forward pass hours later. Works on an OmegaConf ``DictConfig`` or a plain ``dict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robot_offrl.data.selection import EPISODE_FILTERS as DATA_FILTERS  # the choices live with the selection
from robot_offrl.errors import ConfigError

ALGO_NAMES = ("bc", "bc_all", "bc_expert", "idql", "rise")
DENOISERS = ("unet", "mlp")
SCHEDULERS = ("ddim", "ddpm")
SELECTION_MODES = ("argmax", "softmax")
TERMINALS = ("absorbing", "done")
LIPSCHITZ_METHODS = ("exact", "power")
LIPSCHITZ_FORMS = ("spectral_mlp", "hinge")
GRIPPER_MODES = ("auto", "action", "qpos", "none")
NEIGHBOR_POOLS = ("all", "expert")
AUGMENT_SCHEDULES = ("alternate", "mixed")

def section(cfg: Any, name: str) -> Mapping[str, Any]:
    """The sub-mapping ``cfg.<name>`` (empty when absent) so every reader can use ``.get``."""
    if cfg is None:
        return {}
    value = cfg.get(name, None) if hasattr(cfg, "get") else None
    if value is None:
        return {}
    if not hasattr(value, "get"):
        raise ConfigError(f"config section '{name}' must be a mapping, got {type(value).__name__}")
    return value


def _read(sec: Mapping[str, Any], key: str, default: Any) -> Any:
    """A null in YAML means "use the default", the same as leaving the key out."""
    value = sec.get(key, None)
    return default if value is None else value


def read_int(sec: Mapping[str, Any], where: str, key: str, default: int, minimum: int | None = None) -> int:
    value = _read(sec, key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}.{key} must be >= {minimum}, got {value}")
    return int(value)


def read_float(
    sec: Mapping[str, Any],
    where: str,
    key: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    value = _read(sec, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ConfigError(f"{where}.{key} must be {bound}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where}.{key} must be <= {high}, got {value}")
    return value


def read_bool(sec: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
    value = _read(sec, key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def read_choice(sec: Mapping[str, Any], where: str, key: str, default: str, choices: Sequence[str]) -> str:
    value = _read(sec, key, default)
    if value not in choices:
        raise ConfigError(f"{where}.{key} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def read_str_list(sec: Mapping[str, Any], where: str, key: str) -> tuple[str, ...] | None:
    value = sec.get(key, None)
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key} must be a list of strings, got {value!r}")
    return tuple(value)


def read_int_list(sec: Mapping[str, Any], where: str, key: str, default: Sequence[int]) -> tuple[int, ...]:
    value = sec.get(key, None)
    value = default if value is None else value
    if isinstance(value, str | int) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}.{key} must be a list of integers, got {value!r}")
    if len(value) == 0 or min(value) < 1:
        raise ConfigError(f"{where}.{key} must be a non-empty list of positive integers, got {list(value)}")
    return tuple(int(v) for v in value)


# Missing keys take the LEGACY value throughout this module (the form the first checkpoints were trained
# with), so an old run's saved config rebuilds the same networks and data; configs/algo/*.yaml state the
# current defaults (the RISE reference's where it has one; docs/training.md, "Method defaults").
@dataclass(frozen=True)
class NNAugmentConfig:
    enabled: bool = False
    k: int = 15  # neighbours per query and pool (separate search) or per query (combined)
    threshold: float = 0.1
    skip_first: int = 5  # leading steps of non-expert episodes that are never queries (nor, separate: neighbours)
    skip_first_expert: int = 0  # leading steps of expert episodes that are never neighbours
    feature_keys: tuple[str, ...] | None = None  # None: every low-dim observation key used by the policy
    gripper: str = "auto"  # auto | action | qpos | none
    neighbors_from: str = "all"  # all (expert and non-expert pools) | expert
    search: str = "combined"  # separate: k from each pool | combined: k from the union (legacy)
    max_fraction: float = 0.5  # cap on augmented pairs as a fraction of all training items; 1 = no cap
    schedule: str = "mixed"  # alternate: augmented-only policy steps | mixed: pairs inside every batch (legacy)
    augmented_share: float = 0.5  # alternate: share of optimiser steps that train on augmented pairs only
    block_steps: int = 100  # alternate: steps per block of one kind (the reference alternates per epoch)

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> NNAugmentConfig:
        from robot_offrl.data.neighbors import NEIGHBOR_SEARCHES  # here: data/sampler imports this module

        w = "algo.nn_augment"
        share = read_float(sec, w, "augmented_share", cls.augmented_share, low=0.0, high=1.0, low_open=True)
        if share >= 1.0:
            raise ConfigError(f"{w}.augmented_share must be < 1 (the critic needs real-window steps), got {share}")
        return cls(
            enabled=read_bool(sec, w, "enabled", cls.enabled),
            k=read_int(sec, w, "k", cls.k, minimum=1),
            threshold=read_float(sec, w, "threshold", cls.threshold, low=0.0, low_open=True),
            skip_first=read_int(sec, w, "skip_first", cls.skip_first, minimum=0),
            skip_first_expert=read_int(sec, w, "skip_first_expert", cls.skip_first_expert, minimum=0),
            feature_keys=read_str_list(sec, w, "feature_keys"),
            gripper=read_choice(sec, w, "gripper", cls.gripper, GRIPPER_MODES),
            neighbors_from=read_choice(sec, w, "neighbors_from", cls.neighbors_from, NEIGHBOR_POOLS),
            search=read_choice(sec, w, "search", cls.search, NEIGHBOR_SEARCHES),
            max_fraction=read_float(sec, w, "max_fraction", cls.max_fraction, low=0.0, high=1.0, low_open=True),
            schedule=read_choice(sec, w, "schedule", cls.schedule, AUGMENT_SCHEDULES),
            augmented_share=share,
            block_steps=read_int(sec, w, "block_steps", cls.block_steps, minimum=1),
        )


# trainer.grad_clip_mode of runs saved before the key existed: one joint clip over policy and critic.
LEGACY_GRAD_CLIP_MODE = "global"


def legacy_values() -> dict[str, Any]:
    """Dotted key -> the value a run saved before that key existed was trained with.

    Read from the dataclass defaults (the legacy forms), so the values are stated once. The experiment
    runner fills a saved config's missing keys from here before comparing it with what a row now asks for,
    so an old run is not passed off as one trained with the reference forms.
    """
    algo, aug = AlgoConfig(), NNAugmentConfig()
    values: dict[str, Any] = {f"algo.{k}": getattr(algo, k) for k in ("lipschitz_form", "lipschitz_hidden")}
    for key in ("search", "skip_first_expert", "schedule", "augmented_share", "block_steps"):
        values[f"algo.nn_augment.{key}"] = getattr(aug, key)
    values["trainer.grad_clip_mode"] = LEGACY_GRAD_CLIP_MODE
    return values


@dataclass(frozen=True)
class SelectionConfig:
    num_candidates: int = 1
    temperature: float = 1.0
    mode: str = "argmax"

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> SelectionConfig:
        w = "algo.selection"
        return cls(
            num_candidates=read_int(sec, w, "num_candidates", 1, minimum=1),
            temperature=read_float(sec, w, "temperature", 1.0, low=0.0, low_open=True),
            mode=read_choice(sec, w, "mode", "argmax", SELECTION_MODES),
        )


@dataclass(frozen=True)
class AlgoConfig:
    name: str = "bc"
    data_filter: str = "expert"
    sources: tuple[str, ...] | None = None  # episode sources kept when data_filter == "sources"
    use_critic: bool = False
    lipschitz_weight: float = 0.0  # beta of the reference's beta * sigma_max
    lipschitz_form: str = "hinge"  # spectral_mlp (reference) | hinge (legacy: models/lipschitz.py)
    lipschitz_hidden: int = 512  # spectral_mlp: width H of the in -> H -> H -> in MLP
    lipschitz_method: str = "exact"
    lipschitz_max: float = 1.0  # hinge: the penalty acts only on the part of sigma above this bound
    nn_augment: NNAugmentConfig = field(default_factory=NNAugmentConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> AlgoConfig:
        w = "algo"
        name = sec.get("name", None)
        if name is None:
            raise ConfigError(f"algo.name is required (one of {', '.join(ALGO_NAMES)})")
        name = read_choice(sec, w, "name", "bc", ALGO_NAMES)
        default_critic = name in ("idql", "rise")
        data_filter = read_choice(sec, w, "data_filter", "expert" if name in ("bc", "bc_expert") else "all",
                                  DATA_FILTERS)
        sources = read_str_list(sec, w, "sources")
        if data_filter == "sources" and not sources:
            raise ConfigError("algo.data_filter is 'sources' but algo.sources lists none (e.g. [teleop, play])")
        use_critic = read_bool(sec, w, "use_critic", default_critic)
        if name in ("idql", "rise") and not use_critic:
            raise ConfigError(f"algo.name={name} needs the critic; set algo.use_critic=true or use algo=bc")
        return cls(
            name=name,
            data_filter=data_filter,
            sources=sources,
            use_critic=use_critic,
            lipschitz_weight=read_float(sec, w, "lipschitz_weight", 0.1 if name == "rise" else 0.0, low=0.0),
            lipschitz_form=read_choice(sec, w, "lipschitz_form", cls.lipschitz_form, LIPSCHITZ_FORMS),
            lipschitz_hidden=read_int(sec, w, "lipschitz_hidden", cls.lipschitz_hidden, minimum=1),
            lipschitz_method=read_choice(sec, w, "lipschitz_method", cls.lipschitz_method, LIPSCHITZ_METHODS),
            lipschitz_max=read_float(sec, w, "lipschitz_max", cls.lipschitz_max, low=0.0),
            nn_augment=NNAugmentConfig.from_mapping(section(sec, "nn_augment")),
            selection=SelectionConfig.from_mapping(section(sec, "selection")),
        )


@dataclass(frozen=True)
class PolicyConfig:
    denoiser: str = "mlp"
    obs_horizon: int = 2
    pred_horizon: int = 16
    n_action_steps: int = 8
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    scheduler: str = "ddim"
    cond_dim: int = 256  # hinge form: width of the Lipschitz head that turns encoder features into the condition
    timestep_embed_dim: int = 64
    # MLP-ResNet
    hidden_dim: int = 256
    num_blocks: int = 3
    # U-Net
    down_dims: tuple[int, ...] = (128, 256, 512)
    kernel_size: int = 5
    n_groups: int = 8

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> PolicyConfig:
        w = "policy"
        denoiser = read_choice(sec, w, "denoiser", "mlp", DENOISERS)
        obs_horizon = read_int(sec, w, "obs_horizon", 2, minimum=1)
        pred_horizon = read_int(sec, w, "pred_horizon", 16, minimum=1)
        n_action_steps = read_int(sec, w, "n_action_steps", 8, minimum=1)
        if n_action_steps > pred_horizon:
            raise ConfigError(
                f"policy.n_action_steps ({n_action_steps}) cannot exceed policy.pred_horizon ({pred_horizon})"
            )
        num_train = read_int(sec, w, "num_train_timesteps", 100, minimum=2)
        num_inf = read_int(sec, w, "num_inference_steps", 10, minimum=1)
        if num_inf > num_train:
            raise ConfigError(
                f"policy.num_inference_steps ({num_inf}) cannot exceed policy.num_train_timesteps ({num_train})"
            )
        down_dims = read_int_list(sec, w, "down_dims", (128, 256, 512))
        kernel_size = read_int(sec, w, "kernel_size", 5, minimum=1)
        if kernel_size % 2 == 0:
            raise ConfigError(f"policy.kernel_size must be odd (keeps the horizon length), got {kernel_size}")
        n_groups = read_int(sec, w, "n_groups", 8, minimum=1)
        if denoiser == "unet":
            factor = 2 ** (len(down_dims) - 1)
            if pred_horizon % factor:
                raise ConfigError(
                    f"policy.pred_horizon ({pred_horizon}) must be divisible by {factor} for a U-Net with "
                    f"{len(down_dims)} levels (policy.down_dims={list(down_dims)}); change either"
                )
            bad = [d for d in down_dims if d % n_groups]
            if bad:
                raise ConfigError(f"policy.down_dims {bad} are not divisible by policy.n_groups ({n_groups})")
        embed = read_int(sec, w, "timestep_embed_dim", 128 if denoiser == "unet" else 64, minimum=2)
        if embed % 2:
            raise ConfigError(f"policy.timestep_embed_dim must be even (sin/cos pairs), got {embed}")
        return cls(
            denoiser=denoiser,
            obs_horizon=obs_horizon,
            pred_horizon=pred_horizon,
            n_action_steps=n_action_steps,
            num_train_timesteps=num_train,
            num_inference_steps=num_inf,
            scheduler=read_choice(sec, w, "scheduler", "ddim", SCHEDULERS),
            cond_dim=read_int(sec, w, "cond_dim", 256, minimum=1),
            timestep_embed_dim=embed,
            hidden_dim=read_int(sec, w, "hidden_dim", 256, minimum=1),
            num_blocks=read_int(sec, w, "num_blocks", 3, minimum=1),
            down_dims=down_dims,
            kernel_size=kernel_size,
            n_groups=n_groups,
        )


@dataclass(frozen=True)
class CriticConfig:
    gamma: float = 0.99
    expectile: float = 0.9
    tau: float = 0.005
    hidden_dim: int = 256
    num_layers: int = 3
    terminal: str = "absorbing"
    lr: float = 3e-4
    # How many actions of a chunk Q scores: 1 is the classic first-action critic; n > 1 scores the
    # first n executed actions with an n-step TD target, so candidates differ by n steps of motion
    # and value travels n steps per backup.
    action_steps: int = 1

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> CriticConfig:
        w = "critic"
        gamma = read_float(sec, w, "gamma", 0.99, low=0.0, high=1.0)
        if gamma >= 1.0:
            raise ConfigError(f"critic.gamma must be < 1 (values would diverge), got {gamma}")
        expectile = read_float(sec, w, "expectile", 0.9, low=0.0, high=1.0, low_open=True)
        if expectile >= 1.0:
            raise ConfigError(f"critic.expectile must be in (0, 1), got {expectile}")
        return cls(
            gamma=gamma,
            expectile=expectile,
            tau=read_float(sec, w, "tau", 0.005, low=0.0, high=1.0, low_open=True),
            hidden_dim=read_int(sec, w, "hidden_dim", 256, minimum=1),
            num_layers=read_int(sec, w, "num_layers", 3, minimum=1),
            terminal=read_choice(sec, w, "terminal", "absorbing", TERMINALS),
            lr=read_float(sec, w, "lr", 3e-4, low=0.0, low_open=True),
            action_steps=read_int(sec, w, "action_steps", 1, minimum=1),
        )


@dataclass(frozen=True)
class EncoderConfig:
    crop: tuple[int, int] | None = None  # None: ~90 % of each image side (84 -> 76)
    crop_ratio: float = 0.9
    num_keypoints: int = 32
    feature_dim: int = 64
    lowdim_feature: str = "identity"

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> EncoderConfig:
        w = "encoder"
        raw = sec.get("crop", None)
        crop: tuple[int, int] | None
        if raw is None or raw is False:
            crop = None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            crop = (raw, raw)
        elif not isinstance(raw, str) and len(raw) == 2 and all(isinstance(v, int) for v in raw):
            crop = (int(raw[0]), int(raw[1]))
        else:
            raise ConfigError(f"encoder.crop must be an integer, [height, width] or null, got {raw!r}")
        if crop is not None and min(crop) < 1:
            raise ConfigError(f"encoder.crop must be positive, got {list(crop)}")
        return cls(
            crop=crop,
            crop_ratio=read_float(sec, w, "crop_ratio", 0.9, low=0.0, high=1.0, low_open=True),
            num_keypoints=read_int(sec, w, "num_keypoints", 32, minimum=1),
            feature_dim=read_int(sec, w, "feature_dim", 64, minimum=1),
            lowdim_feature=read_choice(sec, w, "lowdim_feature", "identity", ("identity",)),
        )


@dataclass(frozen=True)
class EmaConfig:
    power: float = 0.75
    max_decay: float = 0.9999
    min_decay: float = 0.0
    inv_gamma: float = 1.0
    update_after_step: int = 0

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any]) -> EmaConfig:
        w = "trainer"
        max_decay = read_float(sec, w, "ema_max_decay", 0.9999, low=0.0, high=1.0)
        min_decay = read_float(sec, w, "ema_min_decay", 0.0, low=0.0, high=1.0)
        if min_decay > max_decay:
            raise ConfigError(f"trainer.ema_min_decay ({min_decay}) exceeds trainer.ema_max_decay ({max_decay})")
        return cls(
            power=read_float(sec, w, "ema_power", 0.75, low=0.0, low_open=True),
            max_decay=max_decay,
            min_decay=min_decay,
            inv_gamma=read_float(sec, w, "ema_inv_gamma", 1.0, low=0.0, low_open=True),
            update_after_step=read_int(sec, w, "ema_update_after_step", 0, minimum=0),
        )


@dataclass(frozen=True)
class AgentConfig:
    algo: AlgoConfig
    policy: PolicyConfig
    critic: CriticConfig
    encoder: EncoderConfig
    ema: EmaConfig

    @classmethod
    def from_cfg(cls, cfg: Any) -> AgentConfig:
        """Read ``algo``, ``policy``, ``critic``, ``encoder`` and the EMA keys of ``trainer``."""
        if cfg is None or not hasattr(cfg, "get"):
            raise ConfigError(f"the agent needs a mapping config with an 'algo' section, got {type(cfg).__name__}")
        config = cls(
            algo=AlgoConfig.from_mapping(section(cfg, "algo")),
            policy=PolicyConfig.from_mapping(section(cfg, "policy")),
            critic=CriticConfig.from_mapping(section(cfg, "critic")),
            encoder=EncoderConfig.from_mapping(section(cfg, "encoder")),
            ema=EmaConfig.from_mapping(section(cfg, "trainer")),
        )
        if config.algo.use_critic and config.critic.action_steps > config.policy.n_action_steps:
            # Q would then value actions that are never executed before the next replan.
            raise ConfigError(
                f"critic.action_steps={config.critic.action_steps} must be <= policy.n_action_steps="
                f"{config.policy.n_action_steps}: the critic may only score actions that get executed"
            )
        return config
