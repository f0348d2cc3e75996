"""Fidelity to the RISE reference (issue #14): the spectral MLP term, separate neighbour search with
skips, the alternate update schedule (augmented pairs never train the critic), per-group gradient
clipping, and legacy checkpoints loading with the form they were trained with. Real stores, real
training steps, tiny sizes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml
from learn_support import make_schema, tiny_cfg, write_store

from robot_offrl.algos import build_agent
from robot_offrl.algos.config import AgentConfig
from robot_offrl.algos.schedule import ScheduledBatchSampler, UpdateSchedule
from robot_offrl.checkpoint import CONFIG_FILE, save_checkpoint
from robot_offrl.config import compose
from robot_offrl.data.neighbors import NeighborSettings, load_or_build_neighbor_index
from robot_offrl.models.lipschitz import LipschitzHead, SpectralMLPHead
from robot_offrl.runtime.policy import PolicyRuntime
from robot_offrl.train.loop import checkpoint_schema, clip_gradients, train
from robot_offrl.train.windows import build_window_dataset

LENGTH = 8


def _line(offset: float, expert: bool) -> dict:
    """An episode along x at height ``offset``: steps 0.25 apart, so only equal steps are neighbours."""
    t = np.arange(LENGTH, dtype=np.float32)
    pos = np.stack([-0.9 + 0.25 * t, np.full(LENGTH, offset, dtype=np.float32)], axis=1)
    actions = np.stack([np.tanh(pos[:, 0]), np.full(LENGTH, offset)], axis=1).astype(np.float32)
    return {"obs": {"pos": pos}, "actions": actions, "expert": expert}


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    """E0 expert at y=0, E1 expert at y=0.005, Q and P play at y=0.01 and y=0.02, F an expert that spans
    [-1, 1]^2 so the normalisation is the identity. Episode starts: E0 0, E1 8, Q 16, P 24, F 32."""
    far = {"obs": {"pos": np.array([[-1, -1], [1, 1]], dtype=np.float32)},
           "actions": np.zeros((2, 2), dtype=np.float32), "expert": True}
    episodes = [_line(0.0, True), _line(0.005, True), _line(0.01, False), _line(0.02, False), far]
    return write_store(tmp_path_factory.mktemp("fid") / "lines.zarr", make_schema({"pos": 2}), episodes)


E0, E1, Q, P = 0, LENGTH, 2 * LENGTH, 3 * LENGTH


def _settings(**kw) -> NeighborSettings:
    base = {"k": 1, "threshold": 0.1, "skip_first": 0, "feature_keys": ("pos",), "gripper": "none"}
    return NeighborSettings(**{**base, **kw})


def _by_query(index) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for q, n in zip(index.query.tolist(), index.neighbor.tolist(), strict=True):
        found.setdefault(q, set()).add(n)
    return found


def test_separate_search_takes_k_from_each_pool_and_respects_the_skips(lines):
    stats = lines.norm_stats()
    combined, _ = load_or_build_neighbor_index(lines, range(5), _settings(), stats, write_cache=False)
    separate, _ = load_or_build_neighbor_index(lines, range(5), _settings(search="separate"), stats, write_cache=False)
    for t in range(LENGTH):
        # Combined k=1: Q's nearest is E1 (0.005 away) and P's is Q (0.01); the expert never shows for P.
        assert _by_query(combined)[Q + t] == {E1 + t} and _by_query(combined)[P + t] == {Q + t}
        # Separate k=1: one expert AND one play neighbour for every query.
        assert _by_query(separate)[Q + t] == {E1 + t, P + t}
        assert _by_query(separate)[P + t] == {E1 + t, Q + t}
    two_each, _ = load_or_build_neighbor_index(lines, range(5), _settings(search="separate", k=2), stats,
                                               write_cache=False)
    assert _by_query(two_each)[P + 3] == {E0 + 3, E1 + 3, Q + 3}  # k=2 experts, the only other play episode

    skipped, _ = load_or_build_neighbor_index(
        lines, range(5), _settings(search="separate", skip_first=2, skip_first_expert=3), stats, write_cache=False
    )
    found = _by_query(skipped)
    assert set(found) == {Q + t for t in range(2, LENGTH)} | {P + t for t in range(2, LENGTH)}
    assert found[Q + 2] == {P + 2}  # expert step 2 is skipped, play step 2 is not
    for neighbors in found.values():
        for n in neighbors:
            episode_start = max(s for s in (E0, E1, Q, P) if s <= n)
            assert n - episode_start >= (3 if episode_start in (E0, E1) else 2)


def _spectral_cfg(weight: float) -> dict:
    cfg = tiny_cfg("bc_all", algo__lipschitz_weight=weight)
    cfg["algo"].update(lipschitz_form="spectral_mlp", lipschitz_hidden=16)
    return cfg


def test_spectral_mlp_head_shapes_and_sigma():
    torch.manual_seed(0)
    exact = SpectralMLPHead(6, hidden_dim=16, method="exact")
    power = SpectralMLPHead(6, hidden_dim=16, method="power")
    power.load_state_dict(exact.state_dict())
    assert exact(torch.zeros(5, 6)).shape == (5, 6)  # in -> H -> H -> in
    assert [tuple(m.weight.shape) for m in exact.net if isinstance(m, torch.nn.Linear)] == [(16, 6), (16, 16), (6, 16)]
    truth = torch.linalg.svdvals(exact.last.weight).max()
    torch.testing.assert_close(exact.spectral_norm(), truth)
    for _ in range(60):  # the persistent power-iteration vector converges across calls
        estimate = power.spectral_norm()
    torch.testing.assert_close(estimate, truth, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(exact.penalty(0.1), 0.1 * truth)


def test_spectral_term_shrinks_the_last_layer_while_the_policy_learns(lines):
    cfg = _spectral_cfg(5.0)
    ds = build_window_dataset(lines, cfg)
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    head = agent.policy.head
    assert isinstance(head, SpectralMLPHead) and head.output_dim == agent.policy.encoder.output_dim
    opt = torch.optim.Adam(agent.policy.parameters(), lr=1e-2)
    batch = ds.get_batch(np.arange(len(ds)))
    sigma0 = float(head.spectral_norm().detach())
    history = []
    for step in range(40):
        torch.manual_seed(step)
        out = agent.compute_losses(batch, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append((float(out["lipschitz_sigma"]), float(out["lipschitz_penalty"])))
    sigma = float(head.spectral_norm().detach())
    assert sigma < 0.5 * sigma0, (sigma0, sigma)  # beta * sigma_max drives the last layer's norm down
    assert history[-1][1] == pytest.approx(5.0 * history[-1][0], rel=1e-5)  # plain beta * sigma, no hinge
    # The same training without the term leaves sigma where it was (within Adam's drift).
    cfg0 = _spectral_cfg(0.0)
    torch.manual_seed(0)
    free = build_agent(cfg0, ds.obs_info, ds.action_dim)
    opt0 = torch.optim.Adam(free.policy.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        torch.manual_seed(step)
        out = free.compute_losses(batch, step)
        opt0.zero_grad()
        out["loss"].backward()
        opt0.step()
        losses.append(float(out["policy_loss"]))
    assert float(free.policy.head.spectral_norm().detach()) > 2 * sigma, sigma
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # real steps reduce the epsilon loss


def _idql_agent_and_batches(lines):
    cfg = tiny_cfg("rise")
    cfg["algo"]["nn_augment"].update(enabled=True, k=2, threshold=0.1, skip_first=0, search="separate")
    ds = build_window_dataset(lines, cfg)
    assert ds.num_augmented > 0
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    real = ds.get_batch(np.arange(ds.num_base))
    augmented = ds.get_batch(np.arange(ds.num_base, len(ds)))
    assert not real["augmented"].any() and augmented["augmented"].all()
    return agent, real, augmented


def test_augmented_only_steps_never_update_the_critic(lines):
    agent, real, augmented = _idql_agent_and_batches(lines)
    groups = agent.param_groups()
    opt = torch.optim.AdamW([{"params": groups["policy"], "name": "policy"},
                             {"params": groups["critic"], "name": "critic"}], lr=1e-2, weight_decay=0.1)
    for step in range(3):  # real steps first, so AdamW has momentum that would move the critic on its own
        out = agent.compute_losses(real, step)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        agent.after_optimizer_step(step)
    critic = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    target = {k: v.clone() for k, v in agent.critic_target.state_dict().items()}
    policy = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    out = agent.compute_losses(augmented, 3, update_critic=False)
    assert not {"q_loss", "v_loss"} & set(out) and out["augmented_fraction"] == 1.0
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    opt.step()
    agent.after_optimizer_step(3, critic_updated=False)
    assert all(torch.equal(v, agent.critic.state_dict()[k]) for k, v in critic.items())
    assert all(torch.equal(v, agent.critic_target.state_dict()[k]) for k, v in target.items())
    assert any(not torch.equal(v, agent.policy.state_dict()[k]) for k, v in policy.items())


def test_alternate_schedule_and_its_batches():
    half = UpdateSchedule(0.5, block_steps=2)
    assert [half.augmented_only(s) for s in range(8)] == [False, False, True, True, False, False, True, True]
    quarter = UpdateSchedule(0.25, block_steps=1)
    assert sum(quarter.augmented_only(s) for s in range(100)) == 25
    assert not any(UpdateSchedule().augmented_only(s) for s in range(10))
    cfg = AgentConfig.from_cfg(compose("train", ["algo=rise", "data=unused.zarr"]))
    assert UpdateSchedule.for_training(cfg.algo.nn_augment, 10) == UpdateSchedule(0.5, 100)
    assert not UpdateSchedule.for_training(cfg.algo.nn_augment, 0).active  # no pairs: nothing to alternate
    legacy = AgentConfig.from_cfg(tiny_cfg("rise"))
    assert legacy.algo.nn_augment.schedule == "mixed" and not UpdateSchedule.for_training(legacy.algo.nn_augment, 10).active
    sampler = ScheduledBatchSampler(10, 30, half, batch_size=16, seed=0, start_step=0, end_step=8)
    for step, batch in enumerate(sampler):
        assert all((i >= 10) == half.augmented_only(step) for i in batch), step
        assert max(batch) < 40
    assert sampler.batch_for_step(5) == ScheduledBatchSampler(10, 30, half, 16, 0, 5, 6).batch_for_step(5)  # resumable


def test_per_group_clipping_keeps_policy_steps_under_a_huge_td_gradient(lines):
    agent, real, _ = _idql_agent_and_batches(lines)
    groups = agent.param_groups()
    opt = torch.optim.AdamW([{"params": groups["policy"], "name": "policy"},
                             {"params": groups["critic"], "name": "critic"}], lr=1e-3)

    def policy_grad_after(mode: str) -> tuple[torch.Tensor, dict]:
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        agent.compute_losses(real, 0)["loss"].backward()
        for p in groups["critic"]:
            if p.grad is not None:
                p.grad.mul_(1e6)  # a TD gradient that has blown up
        norms = clip_gradients(opt, 1.0, mode)
        return torch.cat([p.grad.flatten() for p in groups["policy"] if p.grad is not None]), norms

    opt.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    agent.compute_losses(real, 0)["loss"].backward()
    raw = torch.cat([p.grad.flatten() for p in groups["policy"] if p.grad is not None])
    per_group, norms = policy_grad_after("per_group")
    assert set(norms) == {"grad_norm/policy", "grad_norm/critic"} and norms["grad_norm/critic"] > 1e3
    torch.testing.assert_close(per_group, raw * min(1.0, 1.0 / float(raw.norm())), rtol=1e-4, atol=1e-8)
    joint, norms = policy_grad_after("global")
    assert set(norms) == {"grad_norm/all"}
    assert float(joint.norm()) < 1e-3 * float(per_group.norm())  # the legacy joint clip starves the policy


def test_training_alternates_and_skips_the_critic_on_augmented_steps(lines, tmp_path):
    """The real trainer: block_steps=1, so every other step is augmented-only and logs no critic loss."""
    overrides = [
        f"data={lines.url}", f"out={tmp_path / 'run'}", "algo=rise", "trainer.steps=4", "trainer.batch_size=8",
        "trainer.warmup_steps=1", "trainer.log_every=1", "trainer.checkpoint_every=4", "trainer.val_fraction=0",
        "trainer.progress=false", "policy.hidden_dim=32", "policy.num_blocks=1", "policy.pred_horizon=4",
        "policy.n_action_steps=2", "critic.hidden_dim=32", "critic.num_layers=1", "algo.lipschitz_hidden=16",
        "algo.selection.num_candidates=2", "algo.nn_augment.skip_first=0", "algo.nn_augment.skip_first_expert=0",
        "algo.nn_augment.block_steps=1", "task.lowdim_keys=[pos]", "task.image_keys=[]", "algo.lipschitz_form=spectral_mlp",
    ]
    result = train(compose("train", overrides))
    history = result.loss_history
    assert [h["augmented_fraction"] for h in history] == [0.0, 1.0, 0.0, 1.0]
    assert ["q_loss" in h for h in history] == [True, False, True, False]
    assert all(h["grad_norm/critic"] == 0.0 for h in history[1::2]) and history[0]["grad_norm/critic"] > 0
    assert "q_loss" in result.losses  # the summary keeps the critic's latest values
    saved = yaml.safe_load((result.checkpoint / CONFIG_FILE).read_text())
    assert saved["algo"]["lipschitz_form"] == "spectral_mlp"  # the form is recorded with the run
    assert isinstance(PolicyRuntime.load(result.run_dir, device="cpu").agent.policy.head, SpectralMLPHead)


def test_a_legacy_checkpoint_without_the_new_keys_loads_and_acts_the_same(lines, tmp_path):
    legacy = tiny_cfg("rise")  # the first checkpoints' config: no lipschitz_form, search, schedule, ...
    assert "lipschitz_form" not in legacy["algo"]
    ds = build_window_dataset(lines, legacy)
    torch.manual_seed(0)
    agent = build_agent(copy.deepcopy(legacy), ds.obs_info, ds.action_dim).eval()
    assert isinstance(agent.policy.head, LipschitzHead)
    assert {"policy.head.linear.weight", "policy.head.u"} <= set(agent.state_dict())  # the old names
    config = AgentConfig.from_cfg(legacy)
    aug = config.algo.nn_augment
    assert (config.algo.lipschitz_form, aug.search, aug.schedule, aug.skip_first, aug.skip_first_expert,
            aug.max_fraction) == ("hinge", "combined", "mixed", 1, 0, 0.5)
    assert config.algo.selection.prune_after == 0  # stored no pruning setting: acts unpruned, as it did
    save_checkpoint(tmp_path / "old", 1, agent.state_dict(), legacy, lines.norm_stats().to_dict(),
                    checkpoint_schema(lines, ds))
    runtime = PolicyRuntime.load(tmp_path / "old", device="cpu")
    assert isinstance(runtime.agent.policy.head, LipschitzHead)
    obs = ds.get_batch(np.arange(3))["obs"]
    want = agent.select(obs, generator=torch.Generator().manual_seed(7))
    got = runtime.agent.select(obs, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, want)


def test_the_rise_config_carries_the_reference_defaults():
    cfg = AgentConfig.from_cfg(compose("train", ["algo=rise", "data=unused.zarr"]))
    a, aug = cfg.algo, cfg.algo.nn_augment
    # The reference's spectral MLP stays an option: as the default it broke closed-loop BC (docs/training.md).
    assert (a.lipschitz_form, a.lipschitz_weight, a.lipschitz_hidden) == ("hinge", 0.1, 512)
    assert (aug.search, aug.k, aug.skip_first, aug.skip_first_expert, aug.max_fraction) == ("separate", 15, 50, 20, 1.0)
    assert (aug.schedule, aug.augmented_share, aug.block_steps) == ("alternate", 0.5, 100)
    assert (a.selection.num_candidates, a.selection.prune_after, a.selection.prune_keep) == (64, 1, 4)
    idql = AgentConfig.from_cfg(compose("train", ["algo=idql", "data=unused.zarr"])).algo
    assert idql.lipschitz_form == "hinge" and idql.lipschitz_weight == 0.0  # same network, no penalty
    assert compose("train", ["algo=rise", "data=unused.zarr"]).trainer.grad_clip_mode == "per_group"


def test_the_experiment_runner_refuses_a_run_trained_with_the_legacy_forms():
    """A run saved before the new keys existed was trained with the legacy forms: reusing it for a row that
    now means the reference forms would report the old method under the new name."""
    from omegaconf import OmegaConf

    from robot_offrl_sim.experiment import config_changes

    wanted = OmegaConf.to_container(compose("train", ["algo=idql", "data=unused.zarr"]), resolve=True)
    old = copy.deepcopy(wanted)
    del old["algo"]["lipschitz_form"], old["algo"]["lipschitz_hidden"], old["trainer"]["grad_clip_mode"]
    changed = config_changes(old, wanted)
    assert not any(c.startswith("algo.lipschitz_form") for c in changed)  # hinge is both the legacy and the default
    assert "trainer.grad_clip_mode: 'global' -> 'per_group'" in changed
    assert config_changes(wanted, wanted) == []  # a run trained with the current configs is reused
