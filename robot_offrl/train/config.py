"""The ``trainer`` config group, typed, and the whole run's config parsed once (``RunConfig``).

The trainer used to re-read the agent sections three times per run and ``trainer.*`` raw at each use;
now ``RunConfig.from_cfg`` reads everything once at start-up, every bad value fails there naming its
key, and the typed objects are passed down. ``register_schemas`` gives Hydra each group's defaults,
so configs/trainer/*.yaml (and the other groups' files) only state what they override.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robot_offrl.algos.config import GROUPS as AGENT_GROUPS
from robot_offrl.algos.config import AgentConfig, EmaConfig
from robot_offrl.errors import ConfigError
from robot_offrl.models.conv1d import CONV1D_MODES
from robot_offrl.train.gradients import GRAD_CLIP_MODES
from robot_offrl.typed_config import TypedConfig, group, section, setting

# trainer.grad_clip_mode of runs saved before the key existed: one joint clip over policy and critic.
LEGACY_GRAD_CLIP_MODE = "global"
CACHE_IN_RAM = ("auto", True, False)
# How AdamW runs its update (train/loop.py make_optimizer). auto: fused where the parameters live on CPU or
# CUDA (on CPU 2.8-4x faster than torch's own per-tensor choice: docs/benchmarks.md), torch's own choice
# elsewhere; fused: one kernel for the whole update (CPU, CUDA, MPS); foreach: multi-tensor ops; plain:
# one tensor at a time. The same update in every case, up to float rounding.
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "plain")


@dataclass(frozen=True)
class TrainerConfig(TypedConfig):
    """Optimisation, EMA (``ema_*``), validation, checkpoints and where it runs. Defaults as for
    ``EmaConfig``: a key missing from a saved run means the value runs had before it existed."""

    SECTION = "trainer"

    steps: int = setting(20000, minimum=1, range_text="a positive integer")
    batch_size: int = setting(256, minimum=1, range_text="a positive integer")
    lr: float = setting(1e-4, above=0.0, maximum=1.0, range_text="a number in (0, 1]")  # lr=-1 "trained" to 5e6
    weight_decay: float = setting(1e-6, minimum=0.0)
    betas: tuple[float, ...] = setting((0.95, 0.999), "float_list")
    warmup_steps: int = setting(500, minimum=0)
    grad_clip: float = setting(1.0)  # <= 0 clips nothing
    grad_clip_mode: str = setting(LEGACY_GRAD_CLIP_MODE, choices=GRAD_CLIP_MODES)  # trainer/default.yaml: per_group
    ema: EmaConfig = group(EmaConfig, flatten=True)
    device: str = setting("auto")  # auto | cpu | cuda | cuda:N | mps (robot_offrl/device.py checks it)
    amp: str = setting("auto")  # auto (bf16 on CUDA and on CPUs with native bf16) | bf16 | off (device.py)
    compile: bool = setting(False)  # torch.compile the loss computation (worth it on CUDA)
    compile_backend: str = setting("inductor")
    optimizer_impl: str = setting("auto", choices=OPTIMIZER_IMPLS)  # auto | fused | foreach | plain
    # auto: the U-Net's conv1d weight gradients on short CPU sequences as one matmul (models/conv1d.py,
    # measured 3-7x faster there); native: oneDNN's everywhere. The same gradient up to float rounding.
    conv_weight_grad: str = setting("auto", choices=CONV1D_MODES)
    num_workers: int = setting(0, minimum=0)  # DataLoader worker processes
    cache_in_ram: Any = setting("auto", "any")  # auto | true | false: images kept in RAM
    val_fraction: float = setting(0.1, minimum=0.0, below=1.0, range_text="in [0, 1)")  # held-out episodes
    val_every: int = setting(500, minimum=1, range_text="a positive integer")
    val_batches: int = setting(4, minimum=1)
    log_every: int = setting(50, minimum=1, range_text="a positive integer")
    checkpoint_every: int = setting(1000, minimum=1, range_text="a positive integer")
    keep_checkpoints: int = setting(3)  # <= 0 keeps every checkpoint
    resume_fallback: bool = setting(False)  # a damaged newest checkpoint resumes from the newest good older one
    resume_changes: tuple[str, ...] = setting((), "str_list")  # [trainer.lr] and/or [critic.lr] (train/resume.py)
    progress: bool = setting(True)

    def __post_init__(self) -> None:
        if isinstance(self.resume_changes, str):  # trainer.resume_changes=trainer.lr: one name
            object.__setattr__(self, "resume_changes", (self.resume_changes,))
        super().__post_init__()

    def validate(self) -> None:
        if self.cache_in_ram not in CACHE_IN_RAM:
            raise ConfigError(f"trainer.cache_in_ram must be auto, true or false; got {self.cache_in_ram!r}")
        if len(self.betas) != 2:
            raise ConfigError(f"trainer.betas must be two numbers [beta1, beta2], got {list(self.betas)}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run reads from its composed config, parsed and checked once."""

    agent: AgentConfig
    trainer: TrainerConfig
    data: str
    out: Path
    seed: int
    obs_keys: tuple[str, ...]  # task.lowdim_keys + task.image_keys; empty: every key of the store

    @classmethod
    def from_cfg(cls, cfg: Any) -> RunConfig:
        from omegaconf import DictConfig

        from robot_offrl.config import require

        if isinstance(cfg, DictConfig):
            require(cfg, "data", "out")
        trainer = TrainerConfig.from_mapping(section(cfg, "trainer"))
        agent = AgentConfig.from_cfg(cfg)
        seed = cfg.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        out = Path(str(cfg.get("out")))
        if out.exists() and not out.is_dir():
            raise ConfigError(f"out={out} is an existing file; a run writes a folder there (checkpoints, logs)")
        task = section(cfg, "task")
        keys = (*(task.get("lowdim_keys") or []), *(task.get("image_keys") or []))
        return cls(agent=agent, trainer=trainer, data=str(cfg.get("data")), out=out, seed=seed,
                   obs_keys=tuple(str(k) for k in keys))


def legacy_values() -> dict[str, Any]:
    """Dotted key -> the value a run saved before that key existed was trained with.

    Read from the dataclass defaults (the legacy forms), so the values are stated once. The experiment
    runner fills a saved config's missing keys from here before comparing it with what a row now asks for,
    so an old run is not passed off as one trained with the reference forms.
    """
    from robot_offrl.algos.config import AlgoConfig, NNAugmentConfig

    algo, aug = AlgoConfig(), NNAugmentConfig()
    values: dict[str, Any] = {f"algo.{k}": getattr(algo, k) for k in ("lipschitz_form", "lipschitz_hidden")}
    for key in ("search", "skip_first_expert", "schedule", "augmented_share", "block_steps"):
        values[f"algo.nn_augment.{key}"] = getattr(aug, key)
    values["trainer.grad_clip_mode"] = TrainerConfig().grad_clip_mode
    return values


SCHEMA_NAME = "base"  # configs/<group>/*.yaml extend it: `defaults: [base, _self_]`
GROUPS: dict[str, type[TypedConfig]] = {**AGENT_GROUPS, "trainer": TrainerConfig}


def register_schemas() -> None:
    """Put each group's dataclass defaults into Hydra's ConfigStore as ``<group>/defaults``.

    Plain mappings, not typed structured configs: the dataclasses check values on construction with
    messages that name the key, which OmegaConf's own type errors would pre-empt. The nodes still make
    every key overridable from the command line (``policy.cond_dim=128``) without a ``+``.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, config in GROUPS.items():
        store.store(group=name, name=SCHEMA_NAME, node=config.schema_node())
