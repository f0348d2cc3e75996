"""The speed options of acting and training, each on CPU: multistep solvers, early pruning of candidates,
bf16 autocast, the fused optimiser and the foreach averages. Shapes and finite values only; no timing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learn_support import make_schema, tiny_cfg, write_store

from robot_offrl.algos import build_agent
from robot_offrl.algos.averaging import soft_update
from robot_offrl.algos.diffusion import SCHEDULER_KINDS as SCHEDULERS
from robot_offrl.device import cast_for_autocast_inference
from robot_offrl.errors import ConfigError
from robot_offrl.train.windows import build_window_dataset


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(3)
    episodes = []
    for e in range(4):
        pos = np.cumsum(rng.normal(0, 0.1, (10, 2)), axis=0).astype(np.float32)
        actions = np.clip(rng.normal(0, 0.5, (10, 2)), -1, 1).astype(np.float32)
        episodes.append({"obs": {"pos": pos}, "actions": actions, "expert": e % 2 == 0})
    return write_store(tmp_path_factory.mktemp("s") / "low.zarr", make_schema({"pos": 2}), episodes)


def _agent(store, name="idql", denoiser="mlp", **overrides):
    cfg = tiny_cfg(name, denoiser=denoiser, **overrides)
    ds = build_window_dataset(store, cfg)
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim).eval()
    return agent, ds


def _obs(ds, n=3):
    return {k: v[:n] for k, v in ds.get_batch(list(range(n)))["obs"].items()}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 3, 5])
def test_every_scheduler_samples_finite_chunks_in_range(store, scheduler, steps):
    agent, ds = _agent(store, denoiser="unet")
    obs = _obs(ds)
    chunks = agent.sample_chunks(obs, 4, steps, scheduler=scheduler, generator=torch.Generator().manual_seed(1))
    assert chunks.shape == (3, 4, 4, 2) and torch.isfinite(chunks).all()
    assert chunks.abs().max() <= 1.0 + 1e-5  # x0 clipped: DDIM's clip_sample, the solvers' thresholding at 1
    again = agent.sample_chunks(obs, 4, steps, scheduler=scheduler, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(chunks, again)  # a solver's history is reset between chunks


def test_an_unknown_scheduler_is_refused(store):
    agent, ds = _agent(store)
    with pytest.raises(ConfigError, match="policy.scheduler must be one of"):
        agent.sample_chunks(_obs(ds), 2, 3, scheduler="euler")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_pruning_finishes_only_the_best_candidates(store, scheduler):
    agent, ds = _agent(store)
    obs = _obs(ds)
    gen = torch.Generator().manual_seed(2)
    chosen = agent.select(obs, 8, 4, scheduler=scheduler, generator=gen, prune_after=2, prune_keep=3)
    assert chosen.shape == (3, 4, 2) and torch.isfinite(chosen).all()
    one = agent.select(obs, 8, 4, scheduler=scheduler, prune_after=1, prune_keep=1)  # the best one, unscored after
    assert one.shape == (3, 4, 2) and torch.isfinite(one).all()
    with pytest.raises(ConfigError, match="prune_keep"):
        agent.select(obs, 8, 4, prune_after=1, prune_keep=0)


def test_pruning_off_or_after_the_last_step_is_plain_selection(store):
    agent, ds = _agent(store)
    obs = _obs(ds)
    plain = agent.select(obs, 6, 4, generator=torch.Generator().manual_seed(3))
    for after, keep in ((0, 2), (4, 2), (2, 6)):  # off, never reached, keeps everything
        same = agent.select(obs, 6, 4, generator=torch.Generator().manual_seed(3), prune_after=after, prune_keep=keep)
        torch.testing.assert_close(same, plain)


def test_pruning_scores_the_predicted_clean_chunks_with_the_critic(store):
    agent, ds = _agent(store)
    obs = _obs(ds, 2)
    seen = []
    score = agent.score

    def spy(o, chunks, features=None):
        seen.append((tuple(chunks.shape), features is not None))
        return score(o, chunks, features)

    agent.score = spy  # records the calls, the real critic still scores
    agent.select(obs, 8, 4, prune_after=2, prune_keep=3)
    assert seen == [((2, 8, 4, 2), True), ((2, 3, 4, 2), True)]  # encoder features reused, not recomputed


@pytest.mark.parametrize("denoiser", ["mlp", "unet"])
def test_bf16_autocast_acting_and_training_stay_finite(store, denoiser):
    agent, ds = _agent(store, name="rise", denoiser=denoiser)
    obs = _obs(ds)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chosen = agent.select(obs, 4, 3, scheduler="dpmsolver")
    assert chosen.dtype == torch.float32 and torch.isfinite(chosen).all()
    agent.train()
    batch = ds.get_batch(list(range(6)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = agent.compute_losses(batch, 0)
    assert all(torch.isfinite(v).all() for v in losses.values())
    losses["loss"].backward()
    params = [p for p in agent.parameters() if p.grad is not None]
    assert params and all(p.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in params)


def _bf16_select(agent, obs):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return agent.select(obs, 4, 3, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("denoiser", ["mlp", "unet"])
def test_weights_cast_once_act_exactly_as_autocast_casts_them(store, image_store, denoiser):
    # The runtime stores bf16 weights to skip autocast's per-call casts: speed only, the same numbers.
    for data in (store, image_store):
        cfg = tiny_cfg("rise", denoiser=denoiser, **({"encoder__crop": 28} if data is image_store else {}))
        ds = build_window_dataset(data, cfg)
        torch.manual_seed(0)
        agent = build_agent(cfg, ds.obs_info, ds.action_dim).eval()
        obs = _obs(ds)
        expected = _bf16_select(agent, obs)
        cast_for_autocast_inference(agent, torch.bfloat16)
        torch.testing.assert_close(_bf16_select(agent, obs), expected, rtol=0, atol=0)
        dtypes = {type(m).__name__: m.weight.dtype for m in agent.modules() if getattr(m, "weight", None) is not None}
        assert dtypes["Linear"] == torch.bfloat16 and dtypes["LayerNorm"] == torch.float32
        assert data is store or (dtypes["Conv2d"] == torch.bfloat16 and dtypes["GroupNorm"] == torch.float32)


def test_auto_acts_in_bf16_only_for_work_large_enough_to_gain():
    from robot_offrl.device import autocast_dtype
    from robot_offrl.runtime.policy import BF16_ACTING_MIN_WORK, acting_autocast_dtype

    cpu = torch.device("cpu")
    assert acting_autocast_dtype("auto", cpu, BF16_ACTING_MIN_WORK - 1, 1) is None
    assert acting_autocast_dtype("auto", cpu, BF16_ACTING_MIN_WORK // 32, 32) == autocast_dtype("auto", cpu)
    assert acting_autocast_dtype("bf16", cpu, 10, 1) == torch.bfloat16  # asked for: no threshold
    assert acting_autocast_dtype("off", cpu, 10**9, 64) is None


def test_runtime_acting_options_for_speed(store):
    from robot_offrl.runtime import PolicyRuntime

    agent, ds = _agent(store)
    args = (agent, ds.norm_stats, ds.schema, ds.obs_keys, torch.device("cpu"))
    step = {"pos": np.zeros(2, np.float32)}
    for options in ({"amp": "bf16", "scheduler": "unipc", "num_inference_steps": 3},
                    {"prune_after": 1, "prune_keep": 2, "scheduler": "dpmsolver", "num_inference_steps": 4},
                    {"conv1d": "native", "amp": "off"}):
        runtime = PolicyRuntime(_agent(store)[0], *args[1:], num_candidates=4, **options)  # a runtime owns its agent
        actions = runtime.plan(step)
        assert actions.shape == (2, 2) and np.isfinite(actions).all()
        assert {k: runtime.describe()[k] for k in options} == options
        linear = next(m for m in runtime.agent.modules() if isinstance(m, torch.nn.Linear))
        assert linear.weight.dtype == (torch.bfloat16 if options.get("amp") == "bf16" else torch.float32)
    with pytest.raises(ConfigError, match="amp must be one of"):
        PolicyRuntime(*args, amp="fp16")
    with pytest.raises(ConfigError, match="conv1d must be one of"):
        PolicyRuntime(*args, conv1d="gemm")
    with pytest.raises(ConfigError, match="prune_after must be an integer >= 0"):
        PolicyRuntime(*args, prune_after=-1)


def test_foreach_soft_update_matches_the_elementwise_rule():
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    pairs = zip(target.parameters(), source.parameters(), strict=True)
    expected = [t.detach() + 0.3 * (s.detach() - t.detach()) for t, s in pairs]
    soft_update(target, source, 0.3)
    for got, want in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    rng = np.random.default_rng(4)
    episodes = []
    for e in range(3):
        obs = {"pos": np.cumsum(rng.normal(0, 0.1, (6, 2)), axis=0).astype(np.float32),
               "agentview_image": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)}
        actions = np.clip(rng.normal(0, 0.5, (6, 2)), -1, 1).astype(np.float32)
        episodes.append({"obs": obs, "actions": actions, "expert": e % 2 == 0})
    schema = make_schema({"pos": 2}, rgb={"agentview_image": (32, 32, 3)})
    return write_store(tmp_path_factory.mktemp("s") / "img.zarr", schema, episodes)


def test_critic_on_the_ema_policy_features_trains_and_selects(image_store):
    cfg = tiny_cfg("idql", denoiser="unet", encoder__crop=28)
    cfg["critic"]["features"] = "policy_ema"
    ds = build_window_dataset(image_store, cfg)
    torch.manual_seed(0)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    assert not any(".encoder." in name for name, _ in agent.critic.named_parameters(prefix="critic"))
    opt = torch.optim.AdamW([p for g in agent.param_groups().values() for p in g], lr=1e-3)
    batch = ds.get_batch(list(range(6)))
    ema_before = {k: v.clone() for k, v in agent.ema_policy.encoder.state_dict().items()}
    losses = agent.compute_losses(batch, 0)
    assert all(torch.isfinite(v).all() for v in losses.values())
    opt.zero_grad()
    losses["loss"].backward()
    assert all(p.grad is None for p in agent.ema_policy.parameters())  # TD never reaches the policy's features
    opt.step()
    for k, v in agent.ema_policy.encoder.state_dict().items():
        torch.testing.assert_close(v, ema_before[k])
    agent.eval()
    obs = {k: v[:2] for k, v in batch["obs"].items()}
    chunks = agent.sample_chunks(obs, 4, 3, generator=torch.Generator().manual_seed(5))
    q = agent.score(obs, chunks)
    chosen = agent.select(obs, 4, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(chosen, chunks[torch.arange(2), q.argmax(1)])
    pruned = agent.select(obs, 4, 3, prune_after=1, prune_keep=2)
    assert pruned.shape == (2, 4, 2) and torch.isfinite(pruned).all()


def test_bad_critic_features_are_refused(store):
    cfg = tiny_cfg("idql")
    cfg["critic"]["features"] = "shared"
    with pytest.raises(ConfigError, match="critic.features"):
        build_agent(cfg, build_window_dataset(store, tiny_cfg("bc")).obs_info, 2)


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("length", [4, 8])  # fp32: 4 steps take the all-GEMM path, 8 the weight gradient only
def test_unfolded_conv_weight_gradient_matches_onednns(amp, kernel, length):
    # trainer.conv_weight_grad=auto changes how the gradients are summed, not what they are.
    from robot_offrl.models.conv1d import Conv1d

    torch.manual_seed(0)
    fast = Conv1d(24, 16, kernel, padding=kernel // 2)
    native = torch.nn.Conv1d(24, 16, kernel, padding=kernel // 2)
    native.load_state_dict(fast.state_dict())
    x, weights = torch.randn(6, 24, length), torch.randn(6, 16, length)
    results = []
    for layer in (fast, native):
        xx = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            assert layer is native or layer._unfolds(xx)
            y = layer(xx)
        (y.float() * weights).sum().backward()
        results.append((y, xx.grad, layer.weight.grad, layer.bias.grad))
    tol = {"rtol": 2e-2, "atol": 4e-2} if amp else {"rtol": 1e-5, "atol": 1e-5}  # bf16: sums of 48-120 products
    assert results[0][0].dtype == results[1][0].dtype == (torch.bfloat16 if amp else torch.float32)
    for got, want in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(got.float(), want.float(), **tol)
    with torch.no_grad():
        assert not fast._unfolds(x)  # acting never takes it
    assert not fast._unfolds(torch.randn(2, 24, 16))  # long sequences: oneDNN's kernel measured faster


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("batch", [1, 5])
def test_gemm_forward_acts_as_onednns_conv(kernel, batch):
    # The runtime's conv1d=auto changes how an fp32 acting forward is summed, not what it is.
    from robot_offrl.models.conv1d import Conv1d, set_conv_inference

    torch.manual_seed(0)
    fast = Conv1d(24, 16, kernel, padding=kernel // 2)
    native = torch.nn.Conv1d(24, 16, kernel, padding=kernel // 2)
    native.load_state_dict(fast.state_dict())
    x = torch.randn(batch, 24, 8)
    with torch.no_grad():
        assert fast._gemm_forward(x)
        got = fast(x)
        torch.testing.assert_close(got, native(x), rtol=1e-5, atol=1e-5)
        assert not fast._gemm_forward(torch.randn(batch, 24, 16))  # long sequences stay oneDNN's
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fast._gemm_forward(x)  # bf16 acting stays oneDNN's (measured fast)
        set_conv_inference(fast, "native")
        assert not fast._gemm_forward(x)
        set_conv_inference(fast, "auto")
    assert not fast._gemm_forward(x)  # training forward stays oneDNN's
    with pytest.raises(ConfigError, match="conv1d must be one of"):
        set_conv_inference(fast, "gemm")


def test_runtime_conv1d_option_plans_the_same_unet_chunks(store):
    from robot_offrl.models.conv1d import Conv1d
    from robot_offrl.runtime import PolicyRuntime

    plans = {}
    for mode in ("auto", "native"):
        agent, ds = _agent(store, name="bc", denoiser="unet")
        runtime = PolicyRuntime(agent, ds.norm_stats, ds.schema, ds.obs_keys, torch.device("cpu"), seed=3,
                                amp="off", conv1d=mode)
        layers = [m for m in runtime.agent.modules() if isinstance(m, Conv1d)]
        assert layers and all(m.gemm_inference == (mode == "auto") for m in layers)
        plans[mode] = runtime.plan({"pos": np.zeros(2, np.float32)})
    np.testing.assert_allclose(plans["auto"], plans["native"], rtol=1e-4, atol=1e-5)


def test_conv_weight_grad_modes_train_the_same_unet(store):
    from robot_offrl.models.conv1d import set_conv_weight_grad

    agent, ds = _agent(store, name="bc", denoiser="unet")
    batch = ds.get_batch(list(range(6)))
    grads = {}
    for mode in ("auto", "native"):
        set_conv_weight_grad(agent, mode)
        agent.train()
        agent.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        agent.compute_losses(batch, 0)["loss"].backward()
        grads[mode] = {n: p.grad.clone() for n, p in agent.named_parameters() if p.grad is not None}
    assert grads["auto"].keys() == grads["native"].keys()
    for name, grad in grads["auto"].items():
        torch.testing.assert_close(grad, grads["native"][name], rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ConfigError, match="trainer.conv_weight_grad must be one of"):
        set_conv_weight_grad(agent, "fast")


def test_unfolded_conv_weight_gradient_traces_under_torch_compile():
    # trainer.compile traces the loss through the custom autograd Function (aot_eager: no codegen, same tracing).
    from robot_offrl.models.conv1d import Conv1d

    torch.manual_seed(0)
    net = torch.nn.Sequential(Conv1d(8, 16, 5, padding=2), torch.nn.Mish(), Conv1d(16, 4, 1))
    x = torch.randn(3, 8, 4)
    net(x).sum().backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(net, backend="aot_eager")
    torch.testing.assert_close(compiled(x), net(x))
    compiled(x).sum().backward()
    for param, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, want)


def test_observe_adds_a_step_to_the_history_without_planning(store):
    # An executor running a chunk open-loop (the ROS node) keeps the history one control period apart.
    from robot_offrl.runtime import PolicyRuntime

    agent, ds = _agent(store)
    runtime = PolicyRuntime(agent, ds.norm_stats, ds.schema, ds.obs_keys, torch.device("cpu"), num_candidates=2)
    first, second = {"pos": np.zeros(2, np.float32)}, {"pos": np.ones(2, np.float32)}
    runtime.observe(first)
    assert not runtime._queue
    runtime.plan(second)
    history = runtime._obs_tensors()["pos"][0].numpy()
    stats = ds.norm_stats
    expected = np.stack([stats.normalize("pos", first["pos"]), stats.normalize("pos", second["pos"])])
    np.testing.assert_allclose(history, expected, atol=1e-6)
