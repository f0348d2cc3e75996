"""The agent: real training steps of bc / idql / rise on low-dim and image stores, TD masking, EMA,
targets, sampling/selection and a safetensors round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learn_support import make_schema, optimise, tiny_cfg, write_store
from safetensors.torch import load_file, save_file

from robot_offrl.algos import build_agent
from robot_offrl.errors import ConfigError
from robot_offrl.train.windows import build_window_dataset


def _random_episodes(rng, n_episodes, length, rgb=None):
    episodes = []
    for e in range(n_episodes):
        pos = np.cumsum(rng.normal(0, 0.1, (length, 2)), axis=0).astype(np.float32)
        actions = np.clip(rng.normal(0, 0.5, (length, 2)), -1, 1).astype(np.float32)
        obs = {"pos": pos}
        if rgb:
            obs[rgb] = rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8)
        episodes.append({"obs": obs, "actions": actions, "expert": e % 2 == 0})
    return episodes


@pytest.fixture(scope="module")
def lowdim_store(tmp_path_factory):
    rng = np.random.default_rng(1)
    return write_store(tmp_path_factory.mktemp("s") / "low.zarr", make_schema({"pos": 2}), _random_episodes(rng, 6, 12))


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    rng = np.random.default_rng(2)
    schema = make_schema({"pos": 2}, rgb={"agentview_image": (32, 32, 3)})
    return write_store(tmp_path_factory.mktemp("s") / "img.zarr", schema, _random_episodes(rng, 4, 6, "agentview_image"))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module, prefix=""):
    after = module.state_dict()
    return [k for k, v in before.items() if k.startswith(prefix) and not torch.equal(v, after[k])]


def _agent_and_batch(store, name, image, batch_size=8):
    overrides = {"encoder__crop": 28} if image else {}
    cfg = tiny_cfg(name, denoiser="unet" if image else "mlp", **overrides)
    cfg["algo"]["nn_augment"]["threshold"] = 0.5  # random walks: make sure some pairs exist for rise
    ds = build_window_dataset(store, cfg)
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    rng = np.random.default_rng(0)
    indices = rng.choice(len(ds), batch_size, replace=False)
    if ds.num_augmented:
        indices[-2:] = [ds.num_base, ds.num_base + 1]
    return agent, ds.get_batch(indices), ds


@pytest.mark.parametrize("image", [False, True], ids=["lowdim", "image"])
@pytest.mark.parametrize("name", ["bc", "idql", "rise"])
def test_one_training_step_changes_the_weights(name, image, lowdim_store, image_store):
    agent, batch, ds = _agent_and_batch(image_store if image else lowdim_store, name, image)
    groups = agent.param_groups()
    assert set(groups) == ({"policy"} if name == "bc" else {"policy", "critic"})
    if name == "rise":
        assert ds.num_augmented > 0 and batch["augmented"].any()
    opt = torch.optim.AdamW([{"params": p, "lr": 1e-3} for p in groups.values()])
    before = _snapshot(agent)
    out = agent.compute_losses(batch, step=0)
    assert out["loss"].requires_grad and torch.isfinite(out["loss"])
    assert all(not v.requires_grad for k, v in out.items() if k != "loss")
    out["loss"].backward()
    opt.step()
    agent.after_optimizer_step(1)
    assert _changed(before, agent, "policy.denoiser.")
    assert _changed(before, agent, "policy.head.")
    if image:
        assert _changed(before, agent, "policy.encoder.cameras.agentview_image.trunk.")
    assert _changed(before, agent, "ema_policy.")
    if name == "bc":
        assert agent.critic is None and "q_loss" not in out
    else:
        assert _changed(before, agent, "critic.twin.q1.") and _changed(before, agent, "critic.v.")
        assert _changed(before, agent, "critic_target.")
        if image:
            assert _changed(before, agent, "critic.twin.encoder.cameras.agentview_image.trunk.")
    # no BatchNorm anywhere: EMA and small batches would break its statistics
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in agent.modules())


def test_augmented_rows_train_the_policy_but_never_the_critic(lowdim_store):
    agent, batch, _ = _agent_and_batch(lowdim_store, "rise", image=False)
    aug = torch.zeros(8, dtype=torch.bool)
    aug[5:] = True
    batch["augmented"] = aug

    def losses(b):
        torch.manual_seed(3)
        return agent.compute_losses(b, 0)

    base = losses(batch)
    tampered = {**batch, "actions": batch["actions"].clone(), "reward": batch["reward"].clone()}
    tampered["actions"][5:] = -batch["actions"][5:]
    tampered["reward"][5:] = 100.0
    out = losses(tampered)
    for key in ("q_loss", "v_loss", "q_mean", "target_q_mean"):
        torch.testing.assert_close(out[key], base[key])
    assert not torch.isclose(out["policy_loss"], base["policy_loss"])  # the policy does see them

    all_aug = {**batch, "augmented": torch.ones(8, dtype=torch.bool)}
    agent.zero_grad(set_to_none=True)
    out = losses(all_aug)
    out["loss"].backward()
    assert out["q_loss"] == 0 and out["v_loss"] == 0
    assert all(p.grad is None or not p.grad.any() for p in agent.critic.parameters())
    assert any(p.grad is not None and p.grad.any() for p in agent.policy.parameters())


def test_policy_loss_leaves_critic_alone_and_targets_are_detached(lowdim_store):
    agent, batch, _ = _agent_and_batch(lowdim_store, "idql", image=False)
    out = agent.compute_losses(batch, 0)
    grads = torch.autograd.grad(out["policy_loss"].new_tensor(0.0) + agent.policy.loss(batch["obs"], batch["actions"]).mean(),
                                list(agent.critic.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    assert not any(p.requires_grad for p in agent.critic_target.parameters())
    assert not any(p.requires_grad for p in agent.ema_policy.parameters())


def test_ema_and_polyak_schedules(lowdim_store):
    agent, batch, _ = _agent_and_batch(lowdim_store, "idql", image=False)
    opt = torch.optim.SGD(agent.parameters(), lr=0.1)
    agent.compute_losses(batch, 0)["loss"].backward()
    opt.step()
    target_before = _snapshot(agent.critic_target)
    agent.after_optimizer_step(1)  # first step: the EMA copies the policy outright
    for (_, e), (_, p) in zip(agent.ema_policy.state_dict().items(), agent.policy.state_dict().items(), strict=True):
        torch.testing.assert_close(e, p)
    tau = agent.config.critic.tau
    for key, value in agent.critic_target.state_dict().items():
        online = agent.critic.twin.state_dict()[key]
        if value.is_floating_point() and not torch.equal(target_before[key], online):
            torch.testing.assert_close(value, (1 - tau) * target_before[key] + tau * online)
    ema_before = _snapshot(agent.ema_policy)
    opt.zero_grad()
    agent.compute_losses(batch, 1)["loss"].backward()
    opt.step()
    agent.after_optimizer_step(50)
    w_ema, w_old, w_new = (m["denoiser.inp.weight"] for m in (agent.ema_policy.state_dict(), ema_before,
                                                               agent.policy.state_dict()))
    assert not torch.equal(w_ema, w_old) and not torch.equal(w_ema, w_new)


def test_sampling_selection_and_safetensors_round_trip(lowdim_store, tmp_path):
    agent, batch, ds = _agent_and_batch(lowdim_store, "idql", image=False)
    obs = {k: v[:3] for k, v in batch["obs"].items()}
    chunks = agent.sample_chunks(obs, 5, 4, generator=torch.Generator().manual_seed(7))
    assert chunks.shape == (3, 5, 4, 2) and torch.isfinite(chunks).all()
    again = agent.sample_chunks(obs, 5, 4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(chunks, again)
    q = agent.score(obs, chunks)
    assert q.shape == (3, 5)
    chosen = agent.select(obs, 5, 4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(chosen, chunks[torch.arange(3), q.argmax(1)])
    cold = agent.select(obs, 5, 4, "softmax", temperature=1e-6, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(cold, chosen)
    assert agent.select(obs, 1, 4).shape == (3, 4, 2)
    ddpm = build_agent({**tiny_cfg("idql"), "policy": {**tiny_cfg("idql")["policy"], "scheduler": "ddpm"}},
                       ds.obs_info, ds.action_dim)
    assert ddpm.sample_chunks(obs, 2, 10).shape == (3, 2, 4, 2)

    path = tmp_path / "model.safetensors"
    save_file(agent.state_dict(), str(path))
    fresh = build_agent(tiny_cfg("idql"), ds.obs_info, ds.action_dim)
    fresh.load_state_dict(load_file(str(path)))
    torch.testing.assert_close(fresh.select(obs, 5, 4, generator=torch.Generator().manual_seed(7)), chosen)


def test_bc_has_no_critic_to_score_with(lowdim_store):
    agent, batch, _ = _agent_and_batch(lowdim_store, "bc", image=False)
    obs = {k: v[:2] for k, v in batch["obs"].items()}
    with pytest.raises(ConfigError, match="trains no critic"):
        agent.score(obs, torch.zeros(2, 3, 4, 2))
    assert agent.select(obs, 8, 3).shape == (2, 4, 2)  # K is ignored: plain Diffusion Policy


def test_a_few_hundred_steps_reduce_the_diffusion_loss(lowdim_store):
    cfg = tiny_cfg("bc", data_filter="all")
    cfg["algo"]["data_filter"] = "all"
    ds = build_window_dataset(lowdim_store, cfg)
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    full = ds.get_batch(np.arange(len(ds)))

    def eval_loss():
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(agent.policy.loss(full["obs"], full["actions"], generator=gen).mean())

    initial = eval_loss()
    opt = torch.optim.AdamW(agent.param_groups()["policy"], lr=3e-3)
    optimise(agent, ds, opt, steps=300, batch_size=32, rng=np.random.default_rng(0))
    final = eval_loss()
    assert final < 0.6 * initial, (initial, final)


def test_chunk_critic_scores_the_executed_actions_with_an_n_step_target(lowdim_store):
    cfg = tiny_cfg("idql", critic__action_steps=2)
    ds = build_window_dataset(lowdim_store, cfg)
    assert ds.td_steps == 2
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    batch = ds.get_batch(np.arange(len(ds)))
    out = agent.compute_losses(batch)
    gamma = cfg["critic"]["gamma"]
    with torch.no_grad():  # the 2-step backup by hand: r + gamma r + gamma^2 V(s_{t+2}), absorbing ends
        scored = batch["actions"][:, :2].flatten(1)
        q1, q2 = agent.critic.twin(batch["obs"], scored)
        next_v = agent.critic.value(agent.critic.twin.features(batch["next_obs"]))
        target = batch["reward"] * (1 + gamma) + gamma**2 * next_v
        want = ((q1 - target).square() + (q2 - target).square()).mean()
    torch.testing.assert_close(out["q_loss"], want)
    # candidates are scored by the same two actions, whatever the rest of the chunk holds
    obs = {k: v[:3] for k, v in batch["obs"].items()}
    chunks = agent.sample_chunks(obs, 5, 4, generator=torch.Generator().manual_seed(3))
    tail_changed = chunks.clone()
    tail_changed[:, :, 2:] = 0.0
    torch.testing.assert_close(agent.score(obs, chunks), agent.score(obs, tail_changed))
    torch.testing.assert_close(agent.score(obs, chunks), agent.critic.min_q(obs, chunks[:, :, :2].flatten(-2)))
    with pytest.raises(ConfigError, match="T >= 2"):
        agent.score(obs, chunks[:, :, :1])
    with pytest.raises(ConfigError, match="reward_steps"):  # no silent one-reward target
        agent.compute_losses({k: v for k, v in batch.items() if k != "reward_steps"})


def test_the_one_step_target_is_unchanged_bit_for_bit():
    from robot_offrl.algos.iql import n_step_td_target, td_target

    g = torch.Generator().manual_seed(0)
    reward, next_v = torch.randint(0, 2, (64,), generator=g).float(), 100 * torch.rand(64, generator=g)
    done = (torch.rand(64, generator=g) < 0.2).float()
    one = n_step_td_target(reward, torch.ones(64), done, next_v, 0.999, 1)
    assert torch.equal(one, td_target(reward, done, next_v, 0.999))
    two = n_step_td_target(reward, torch.full((64,), 2.0), done, next_v, 0.9, 2)
    torch.testing.assert_close(two, reward * 1.9 + 0.81 * (1 - done) * next_v)


@pytest.mark.parametrize(("steps", "needle"), [(0, "action_steps must be >= 1"), (3, "n_action_steps=2")])
def test_bad_critic_action_steps_are_refused(lowdim_store, steps, needle):
    cfg = tiny_cfg("rise", critic__action_steps=steps)
    with pytest.raises(ConfigError, match=needle):
        build_agent(cfg, build_window_dataset(lowdim_store, tiny_cfg("bc")).obs_info, 2)


def test_runtime_refuses_to_execute_fewer_actions_than_the_critic_scores(lowdim_store):
    from robot_offrl.runtime import PolicyRuntime

    cfg = tiny_cfg("idql", critic__action_steps=2)
    ds = build_window_dataset(lowdim_store, cfg)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    args = (agent, ds.norm_stats, ds.schema, ds.obs_keys, torch.device("cpu"))
    with pytest.raises(ConfigError, match="never executed"):
        PolicyRuntime(*args, num_candidates=4, n_action_steps=1)
    assert PolicyRuntime(*args, num_candidates=1, n_action_steps=1).scored_actions == 1  # no critic choice
    assert PolicyRuntime(*args, num_candidates=4, n_action_steps=2).scored_actions == 2
