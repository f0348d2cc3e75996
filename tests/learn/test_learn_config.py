"""Bad configuration and bad observations fail early with ConfigError / ObservationError naming the key."""

from __future__ import annotations

import copy

import pytest
import torch
from learn_support import tiny_cfg

from robot_offrl.algos import AgentConfig, ObsInfo, build_agent
from robot_offrl.errors import ConfigError, ObservationError, UserError

LOWDIM = ObsInfo(lowdim={"pos": 2}, obs_horizon=2, pred_horizon=4)


def _with(path: str, value, name: str = "idql"):
    cfg = tiny_cfg(name)
    node = cfg
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("algo.name", "sac", "algo.name must be one of"),
        ("algo.name", None, "algo.name is required"),
        ("algo.data_filter", "experts", "algo.data_filter must be one of"),
        ("algo.data_filter", "sources", "lists none"),
        ("algo.use_critic", False, "needs the critic"),
        ("algo.use_critic", "yes", "must be true or false"),
        ("algo.lipschitz_weight", -0.1, "algo.lipschitz_weight must be >= 0"),
        ("algo.lipschitz_method", "svd", "algo.lipschitz_method must be one of"),
        ("algo.nn_augment.k", 0, "algo.nn_augment.k must be >= 1"),
        ("algo.nn_augment.threshold", 0.0, "algo.nn_augment.threshold must be > 0"),
        ("algo.nn_augment.skip_first", -1, "skip_first must be >= 0"),
        ("algo.nn_augment.gripper", "sometimes", "gripper must be one of"),
        ("algo.nn_augment.max_fraction", 1.5, "max_fraction must be <= 1"),  # 1 = no cap
        ("algo.selection.mode", "best", "algo.selection.mode must be one of"),
        ("algo.selection.temperature", 0.0, "temperature must be > 0"),
        ("algo.selection.num_candidates", 0, "num_candidates must be >= 1"),
        ("policy.denoiser", "transformer", "policy.denoiser must be one of"),
        ("policy.obs_horizon", -1, "policy.obs_horizon must be >= 1"),
        ("policy.pred_horizon", 0, "policy.pred_horizon must be >= 1"),
        ("policy.pred_horizon", 2.5, "policy.pred_horizon must be an integer"),
        ("policy.n_action_steps", 9, "cannot exceed policy.pred_horizon"),
        ("policy.num_inference_steps", 101, "cannot exceed policy.num_train_timesteps"),
        ("policy.scheduler", "dpm", "policy.scheduler must be one of"),
        ("policy.kernel_size", 4, "must be odd"),
        ("policy.timestep_embed_dim", 15, "must be even"),
        ("critic.gamma", 1.0, "critic.gamma must be < 1"),
        ("critic.expectile", 1.0, "critic.expectile must be in"),
        ("critic.tau", 0.0, "critic.tau must be > 0"),
        ("critic.terminal", "never", "critic.terminal must be one of"),
        ("critic.hidden_dim", True, "critic.hidden_dim must be an integer"),
        ("encoder.crop", "big", "encoder.crop must be an integer"),
        ("encoder.crop", [0, 4], "encoder.crop must be positive"),
        ("trainer.ema_max_decay", 1.5, "trainer.ema_max_decay must be <= 1"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        AgentConfig.from_cfg(_with(path, value))


def test_unet_levels_must_divide_the_horizon_and_groups_the_widths():
    cfg = tiny_cfg("bc", denoiser="unet", pred_horizon=6)
    cfg["policy"]["down_dims"] = [16, 32, 64]
    with pytest.raises(ConfigError, match="divisible by 4"):
        AgentConfig.from_cfg(cfg)
    cfg = tiny_cfg("bc", denoiser="unet")
    cfg["policy"]["down_dims"] = [16, 30]
    with pytest.raises(ConfigError, match="not divisible by policy.n_groups"):
        AgentConfig.from_cfg(cfg)


def test_agent_checks_its_inputs():
    with pytest.raises(ConfigError, match="action_dim must be a positive integer"):
        build_agent(tiny_cfg("bc"), LOWDIM, 0)
    with pytest.raises(ConfigError, match="disagree with policy.obs_horizon"):
        build_agent(tiny_cfg("bc", obs_horizon=3), LOWDIM, 2)
    with pytest.raises(ConfigError, match="mapping config"):
        build_agent(None, LOWDIM, 2)
    image = ObsInfo(rgb={"cam_image": (16, 16, 3)}, obs_horizon=2, pred_horizon=4)
    with pytest.raises(ConfigError, match=r"encoder.crop \[20, 20\] is larger than the image"):
        build_agent(_with("encoder.crop", 20, "bc"), image, 2)
    with pytest.raises(ConfigError, match="at least one observation key"):
        ObsInfo(obs_horizon=2, pred_horizon=4)
    with pytest.raises(ConfigError, match="obs_horizon must be a positive integer"):
        ObsInfo(lowdim={"pos": 2}, obs_horizon=0, pred_horizon=4)


def test_bad_observations_name_the_key():
    agent = build_agent(tiny_cfg("idql"), LOWDIM, 2)
    with pytest.raises(ObservationError, match="'pos' is missing"):
        agent.select({"position": torch.zeros(1, 2, 2)}, 2, 2)
    with pytest.raises(ObservationError, match=r"'pos' has shape \(1, 1, 2\), expected \(B, 2, 2\)"):
        agent.sample_chunks({"pos": torch.zeros(1, 1, 2)}, 2, 2)
    with pytest.raises(ConfigError, match="selection must be one of 'argmax', 'softmax'"):
        agent.select({"pos": torch.zeros(1, 2, 2)}, 2, 2, selection="best")
    with pytest.raises(ConfigError, match="num_inference_steps must be in"):
        agent.sample_chunks({"pos": torch.zeros(1, 2, 2)}, 2, 500)
    assert issubclass(ConfigError, UserError) and issubclass(ObservationError, UserError)


def test_the_algo_yaml_says_which_episodes_and_whether_a_critic():
    """No default follows the algorithm's name: configs/algo/*.yaml state them (AlgoConfig has one default)."""
    from robot_offrl.config import compose

    def algo(name):
        return AgentConfig.from_cfg(compose("train", [f"algo={name}", "data=unused.zarr"])).algo

    assert (algo("bc").data_filter, algo("bc").use_critic) == ("expert", False)
    assert (algo("bc_all").data_filter, algo("bc_all").use_critic) == ("all", False)
    assert (algo("idql").data_filter, algo("idql").use_critic, algo("idql").lipschitz_weight) == ("all", True, 0.0)
    rise = algo("rise")
    assert (rise.data_filter, rise.use_critic, rise.lipschitz_weight) == ("all", True, 0.1)
    assert rise.episodes.data_filter == "all" and rise.episodes.sources is None
    # A bare config takes the dataclass defaults whatever its name; a critic algorithm must say use_critic.
    bc = AgentConfig.from_cfg({"algo": {"name": "bc"}})
    assert not bc.algo.use_critic and bc.algo.data_filter == "expert" and bc.policy.pred_horizon == 16
    assert (bc.policy.obs_horizon, bc.policy.n_action_steps, bc.policy.num_train_timesteps) == (2, 8, 100)
    assert bc.critic.gamma == 0.99 and bc.critic.expectile == 0.9 and bc.ema.power == 0.75
    with pytest.raises(ConfigError, match="algo.name=rise needs the critic"):
        AgentConfig.from_cfg({"algo": {"name": "rise"}})


@pytest.mark.parametrize("algo", ["bc", "bc_all", "idql", "rise"])
@pytest.mark.parametrize("policy", ["mlp", "unet"])
def test_the_project_configs_are_valid(algo, policy):
    from robot_offrl.config import compose

    cfg = compose("train", [f"algo={algo}", f"policy={policy}", "data=unused.zarr"])
    config = AgentConfig.from_cfg(cfg)
    assert config.algo.use_critic == (algo in ("idql", "rise"))
    assert config.algo.nn_augment.enabled == (algo == "rise")
    assert config.policy.denoiser == policy
    agent = build_agent(copy.deepcopy(cfg), ObsInfo(lowdim={"pos": 3}, obs_horizon=2, pred_horizon=16), 7)
    assert agent.has_critic == (algo in ("idql", "rise"))
