"""Typed, validated view of the Hydra sections the learning core reads: algo, policy, critic, encoder, EMA.

Each group is one frozen dataclass (robot_offrl/typed_config.py): a field states its default, type and
range once, and construction checks them, so a typo or a negative horizon fails at start-up with the
key's name instead of deep inside a forward pass hours later. The YAML files under configs/ extend
these defaults and only override them (``robot_offrl.config.compose`` registers each group's node).

Defaults are the LEGACY values (the form the first checkpoints were trained with), so a saved config
that lacks a key added later rebuilds the same networks and data; configs/algo/*.yaml state the
methods' current choices where they differ (the RISE reference's where it has one; docs/training.md,
"Method defaults"). Which episodes an algorithm trains on is its YAML's ``data_filter``, never a
branch on its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robot_offrl.algos.diffusion import SCHEDULER_KINDS
from robot_offrl.algos.selection import SELECTION_MODES
from robot_offrl.data.neighbors import GRIPPER_MODES, NEIGHBOR_POOLS, NEIGHBOR_SEARCHES
from robot_offrl.data.selection import EPISODE_FILTERS, EpisodeSelection
from robot_offrl.errors import ConfigError
from robot_offrl.models.denoisers import DENOISERS
from robot_offrl.models.encoders import EncoderConfig
from robot_offrl.models.lipschitz import FORMS as LIPSCHITZ_FORMS
from robot_offrl.models.lipschitz import METHODS as LIPSCHITZ_METHODS
from robot_offrl.typed_config import TypedConfig, group, section, setting

ALGO_NAMES = ("bc", "bc_all", "bc_expert", "idql", "rise")
CRITIC_ALGOS = ("idql", "rise")  # names that mean "a critic ranks the candidates": refused without one
TERMINALS = ("absorbing", "done")
AUGMENT_SCHEDULES = ("alternate", "mixed")
# What the critic reads: its own encoder (own), or the EMA policy's encoder output without gradient
# (policy_ema: no second image trunk to train or run; the policy's features are computed anyway when acting).
CRITIC_FEATURES = ("own", "policy_ema")
# The settings a run stores that say only how its policy acts (sampler, its step count, candidate
# selection), each mapped to the PolicyRuntime option that overrides it at acting time. Training never
# reads them (it always noises with DDPM), so resume and experiment reuse do not compare them, and an
# experiment that now asks for other values passes them to its sweeps instead of retraining.
ACTING_SETTINGS = {
    "policy.num_inference_steps": "num_inference_steps",
    "policy.scheduler": "scheduler",
    "algo.selection.num_candidates": "num_candidates",
    "algo.selection.mode": "selection",
    "algo.selection.temperature": "temperature",
    "algo.selection.prune_after": "prune_after",
    "algo.selection.prune_keep": "prune_keep",
}


@dataclass(frozen=True)
class NNAugmentConfig(TypedConfig):
    SECTION = "algo.nn_augment"

    enabled: bool = setting(False)
    k: int = setting(15, minimum=1)  # neighbours per query and pool (separate search) or per query (combined)
    threshold: float = setting(0.1, above=0.0)
    skip_first: int = setting(5, minimum=0)  # leading steps of non-expert episodes never queries (nor, separate: neighbours)
    skip_first_expert: int = setting(0, minimum=0)  # leading steps of expert episodes that are never neighbours
    feature_keys: tuple[str, ...] | None = setting(None, "str_list")  # None: every low-dim key the policy uses
    gripper: str = setting("auto", choices=GRIPPER_MODES)  # how "same gripper state" is decided
    neighbors_from: str = setting("all", choices=NEIGHBOR_POOLS)  # all (expert and non-expert pools) | expert
    search: str = setting("combined", choices=NEIGHBOR_SEARCHES)  # separate: k from each pool | combined (legacy)
    max_fraction: float = setting(0.5, above=0.0, maximum=1.0)  # cap on pairs as a share of all items; 1 = no cap
    schedule: str = setting("mixed", choices=AUGMENT_SCHEDULES)  # alternate: augmented-only steps | mixed (legacy)
    augmented_share: float = setting(0.5, above=0.0, below=1.0, hint=" (the critic needs real-window steps)")
    block_steps: int = setting(100, minimum=1)  # alternate: steps per block (the reference alternates per epoch)


@dataclass(frozen=True)
class SelectionConfig(TypedConfig):
    SECTION = "algo.selection"

    num_candidates: int = setting(1, minimum=1)  # K chunks scored by min(Q1, Q2) when acting
    temperature: float = setting(1.0, above=0.0)
    mode: str = setting("argmax", choices=SELECTION_MODES)
    # Early pruning (0: off): after prune_after denoising steps, keep the prune_keep candidates whose
    # predicted clean chunks score highest, and finish only those. Off here, for runs that stored no value;
    # configs/algo/idql.yaml (and so rise) turns it on with DDIM 6, where it kept sweep success; with
    # DPM-Solver++ 4 the sampler itself lost under selection (docs/benchmarks.md).
    prune_after: int = setting(0, minimum=0)
    prune_keep: int = setting(4, minimum=1)


@dataclass(frozen=True)
class AlgoConfig(TypedConfig):
    SECTION = "algo"

    name: str = setting("bc", choices=ALGO_NAMES)
    data_filter: str = setting("expert", choices=EPISODE_FILTERS)  # which episodes train (data/selection.py)
    sources: tuple[str, ...] | None = setting(None, "str_list")  # episode sources kept when data_filter: sources
    use_critic: bool = setting(False)
    lipschitz_weight: float = setting(0.0, minimum=0.0)  # beta of the reference's beta * sigma_max
    lipschitz_form: str = setting("hinge", choices=LIPSCHITZ_FORMS)  # spectral_mlp (reference) | hinge (legacy)
    lipschitz_hidden: int = setting(512, minimum=1)  # spectral_mlp: width H of the in -> H -> H -> in MLP
    lipschitz_method: str = setting("exact", choices=LIPSCHITZ_METHODS)
    lipschitz_max: float = setting(1.0, minimum=0.0)  # hinge: the penalty acts only on sigma above this bound
    nn_augment: NNAugmentConfig = group(NNAugmentConfig)
    selection: SelectionConfig = group(SelectionConfig)

    def validate(self) -> None:
        if self.data_filter == "sources" and not self.sources:
            raise ConfigError("algo.data_filter is 'sources' but algo.sources lists none (e.g. [teleop, play])")
        if self.name in CRITIC_ALGOS and not self.use_critic:
            raise ConfigError(f"algo.name={self.name} needs the critic; set algo.use_critic=true or use algo=bc")

    @property
    def episodes(self) -> EpisodeSelection:
        """The episodes this algorithm trains on, as the plain value the window builder takes."""
        return EpisodeSelection(self.data_filter, tuple(self.sources) if self.sources else None)

    @classmethod
    def from_mapping(cls, sec: Any, *, strict: bool = True) -> AlgoConfig:
        if sec is not None and sec.get("name", None) is None:
            raise ConfigError(f"algo.name is required (one of {', '.join(ALGO_NAMES)})")
        return super().from_mapping(sec, strict=strict)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PolicyConfig(TypedConfig):
    SECTION = "policy"

    denoiser: str = setting("mlp", choices=DENOISERS)
    obs_horizon: int = setting(2, minimum=1)
    pred_horizon: int = setting(16, minimum=1)
    n_action_steps: int = setting(8, minimum=1)
    num_train_timesteps: int = setting(100, minimum=2)
    # DDIM 6, not 10 (until 2026-12-02): under K = 64 selection and alone it never lost sweep success on
    # the same starts (docs/benchmarks.md, "Fewer DDIM steps"), at 0.6x of the acting time. Runs trained
    # before keep the 10 they stored; an experiment reusing them sweeps them with 6 (ACTING_SETTINGS).
    num_inference_steps: int = setting(6, minimum=1)
    scheduler: str = setting("ddim", choices=SCHEDULER_KINDS)  # ddpm uses num_train_timesteps steps
    cond_dim: int = setting(256, minimum=1)  # hinge form: width of the head that turns features into the condition
    timestep_embed_dim: int = setting(64, minimum=2)  # configs/policy/unet.yaml: 128
    # MLP-ResNet
    hidden_dim: int = setting(256, minimum=1)
    num_blocks: int = setting(3, minimum=1)
    # U-Net
    down_dims: tuple[int, ...] = setting((128, 256, 512), "int_list")
    kernel_size: int = setting(5, minimum=1)
    n_groups: int = setting(8, minimum=1)

    def validate(self) -> None:
        if self.n_action_steps > self.pred_horizon:
            raise ConfigError(
                f"policy.n_action_steps ({self.n_action_steps}) cannot exceed policy.pred_horizon ({self.pred_horizon})"
            )
        if self.num_inference_steps > self.num_train_timesteps:
            raise ConfigError(
                f"policy.num_inference_steps ({self.num_inference_steps}) cannot exceed policy.num_train_timesteps "
                f"({self.num_train_timesteps})"
            )
        if len(self.down_dims) == 0 or min(self.down_dims) < 1:
            raise ConfigError(
                f"policy.down_dims must be a non-empty list of positive integers, got {list(self.down_dims)}"
            )
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"policy.kernel_size must be odd (keeps the horizon length), got {self.kernel_size}")
        if self.denoiser == "unet":
            factor = 2 ** (len(self.down_dims) - 1)
            if self.pred_horizon % factor:
                raise ConfigError(
                    f"policy.pred_horizon ({self.pred_horizon}) must be divisible by {factor} for a U-Net with "
                    f"{len(self.down_dims)} levels (policy.down_dims={list(self.down_dims)}); change either"
                )
            bad = [d for d in self.down_dims if d % self.n_groups]
            if bad:
                raise ConfigError(f"policy.down_dims {bad} are not divisible by policy.n_groups ({self.n_groups})")
        if self.timestep_embed_dim % 2:
            raise ConfigError(f"policy.timestep_embed_dim must be even (sin/cos pairs), got {self.timestep_embed_dim}")


@dataclass(frozen=True)
class CriticConfig(TypedConfig):
    SECTION = "critic"

    gamma: float = setting(0.99, minimum=0.0, below=1.0, hint=" (values would diverge)")
    expectile: float = setting(0.9, above=0.0, below=1.0, range_text="in (0, 1)")
    tau: float = setting(0.005, above=0.0, maximum=1.0)  # Polyak rate of the target Q networks
    hidden_dim: int = setting(256, minimum=1)
    num_layers: int = setting(3, minimum=1)
    terminal: str = setting("absorbing", choices=TERMINALS)  # absorbing: episode ends bootstrap from themselves
    lr: float = setting(3e-4, above=0.0, maximum=1.0, range_text="a number in (0, 1]")
    # How many actions of a chunk Q scores: 1 is the classic first-action critic; n > 1 scores the
    # first n executed actions with an n-step TD target, so candidates differ by n steps of motion
    # and value travels n steps per backup.
    action_steps: int = setting(1, minimum=1)
    # What the critic reads: own encoder (legacy) | policy_ema: the EMA policy encoder's features, no gradient.
    features: str = setting("own", choices=CRITIC_FEATURES)


@dataclass(frozen=True)
class EmaConfig(TypedConfig):
    """The policy's EMA; its keys sit in the trainer section as ``trainer.ema_<field>``."""

    SECTION = "trainer"
    PREFIX = "ema_"

    power: float = setting(0.75, above=0.0)
    max_decay: float = setting(0.9999, minimum=0.0, maximum=1.0)
    min_decay: float = setting(0.0, minimum=0.0, maximum=1.0)
    inv_gamma: float = setting(1.0, above=0.0)
    update_after_step: int = setting(0, minimum=0)

    def validate(self) -> None:
        if self.min_decay > self.max_decay:
            raise ConfigError(
                f"trainer.ema_min_decay ({self.min_decay}) exceeds trainer.ema_max_decay ({self.max_decay})"
            )


@dataclass(frozen=True)
class AgentConfig:
    algo: AlgoConfig
    policy: PolicyConfig
    critic: CriticConfig
    encoder: EncoderConfig
    ema: EmaConfig

    def __post_init__(self) -> None:
        if self.algo.use_critic and self.critic.action_steps > self.policy.n_action_steps:
            # Q would then value actions that are never executed before the next replan.
            raise ConfigError(
                f"critic.action_steps={self.critic.action_steps} must be <= policy.n_action_steps="
                f"{self.policy.n_action_steps}: the critic may only score actions that get executed"
            )

    @classmethod
    def from_cfg(cls, cfg: Any) -> AgentConfig:
        """Read ``algo``, ``policy``, ``critic``, ``encoder`` and the EMA keys of ``trainer``."""
        if isinstance(cfg, AgentConfig):
            return cfg
        if cfg is None or not hasattr(cfg, "get"):
            raise ConfigError(f"the agent needs a mapping config with an 'algo' section, got {type(cfg).__name__}")
        return cls(
            algo=AlgoConfig.from_mapping(section(cfg, "algo")),
            policy=PolicyConfig.from_mapping(section(cfg, "policy")),
            critic=CriticConfig.from_mapping(section(cfg, "critic")),
            encoder=EncoderConfig.from_mapping(section(cfg, "encoder")),
            ema=EmaConfig.from_mapping(section(cfg, "trainer"), strict=False),  # the rest is TrainerConfig's
        )


# Hydra group -> the typed config whose defaults that group's YAML files extend.
GROUPS: dict[str, type[TypedConfig]] = {
    "algo": AlgoConfig,
    "policy": PolicyConfig,
    "critic": CriticConfig,
    "encoder": EncoderConfig,
}
