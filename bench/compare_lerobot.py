"""robot_offrl against LeRobot's DiffusionPolicy at identical shapes, alternating in one process.

Shapes (issue #19): U-Net down dims 256/512/1024, kernel 5, 8 groups, step embedding 128, horizon 16,
2 observation steps, 7-D actions; low-dim: 19 values (9 robot state + 10 object) at batch 256;
image: 2 cameras 84x84 cropped to 76x76 + 9 values at batch 32. Each case's variants run in turn,
one timed call each per round, so load on the machine falls on both sides alike; medians are printed
with the ratio to LeRobot's number. Both sides get prepared tensors (no data loading in the timing).

LeRobot is a bench-only dependency (``pip install -e .[bench]``; with --no-deps plus draccus, einops,
pyserial and deepdiff it imports without touching torch or numpy):

    PYTHONPATH=. .venv/bin/python bench/compare_lerobot.py --threads 2 --repeats 3
    PYTHONPATH=. .venv/bin/python bench/compare_lerobot.py --cases latency,select   # acting only
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learn import make_store  # noqa: E402

from robot_offrl.algos import build_agent  # noqa: E402
from robot_offrl.data.sampler import WindowDataset  # noqa: E402
from robot_offrl.device import cast_for_autocast_inference, cpu_has_native_bf16  # noqa: E402
from robot_offrl.models.conv1d import set_conv_inference, set_conv_weight_grad  # noqa: E402
from robot_offrl.train.config import RunConfig  # noqa: E402
from robot_offrl.train.loop import clip_gradients, make_optimizer  # noqa: E402

STATE = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}
LOWDIM = {**STATE, "object": 10}
CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")
DOWN_DIMS = (256, 512, 1024)


# -- our side --------------------------------------------------------------------------------------
def our_cfg(algo: str, cond_dim: int, optimizer_impl: str = "auto", critic_features: str = "own") -> Any:
    """The project's config at the issue's shapes; cond_dim = encoder width, as LeRobot's FiLM input."""
    return OmegaConf.create({
        # No neighbour pairs: the step is timed on given batches (pairs only change which windows are drawn).
        "algo": {"name": algo, "use_critic": algo in ("idql", "rise"), "nn_augment": {"enabled": False}},
        "policy": {"denoiser": "unet", "obs_horizon": 2, "pred_horizon": 16, "n_action_steps": 8,
                   "down_dims": list(DOWN_DIMS), "kernel_size": 5, "n_groups": 8, "timestep_embed_dim": 128,
                   "cond_dim": cond_dim, "num_inference_steps": 10, "scheduler": "ddim"},
        "critic": {"hidden_dim": 256, "num_layers": 3, "lr": 3e-4, "features": critic_features},
        "encoder": {"crop": 76, "num_keypoints": 32, "feature_dim": 64},
        "trainer": {"lr": 1e-4, "weight_decay": 1e-6, "betas": [0.95, 0.999], "optimizer_impl": optimizer_impl},
        "data": "unused", "out": tempfile.gettempdir(),  # RunConfig requires them; nothing is read or written
    })


def cond_width(ds: WindowDataset) -> int:
    per_step = sum(ds.obs_info.lowdim.values()) + 64 * len(ds.obs_info.rgb)
    return per_step * ds.obs_info.obs_horizon


def ours(
    ds: WindowDataset, algo: str, optimizer_impl: str = "auto", critic_features: str = "own",
    conv_weight_grad: str = "auto",
) -> tuple[Any, torch.optim.Optimizer]:
    torch.manual_seed(0)
    cfg = our_cfg(algo, cond_width(ds), optimizer_impl, critic_features)
    agent = build_agent(cfg, ds.obs_info, ds.action_dim)
    set_conv_weight_grad(agent, conv_weight_grad)  # what the trainer does with trainer.conv_weight_grad
    return agent, make_optimizer(agent, RunConfig.from_cfg(cfg))


def optimiser_variants(ds: WindowDataset) -> dict[str, Callable[[], object]]:
    """AdamW implementations and the EMA update alone, on the policy's real parameters and random grads."""
    from robot_offrl.algos.averaging import soft_update

    def per_tensor_ema(target: torch.nn.Module, source: torch.nn.Module, rate: float) -> None:  # the old rule
        with torch.no_grad():
            for t, s in zip(target.parameters(), source.parameters(), strict=True):
                t.lerp_(s.detach(), rate)

    variants: dict[str, Callable[[], object]] = {}
    # plain = torch's own CPU choice (one tensor at a time); auto now means fused (train/loop.py).
    for impl, ema in (("plain", per_tensor_ema), ("plain", soft_update), ("fused", soft_update),
                      ("foreach", soft_update)):
        agent, opt = ours(ds, "bc", impl)
        for p in agent.policy.parameters():
            p.grad = torch.randn_like(p) * 1e-3

        def once(agent: Any = agent, opt: torch.optim.Optimizer = opt, ema: Callable = ema) -> None:
            opt.step()
            ema(agent.ema_policy, agent.policy, 0.01)

        name = "EMA per-tensor" if ema is per_tensor_ema else "EMA foreach"
        variants[f"AdamW {impl}, {name}"] = once
    return variants


def our_train_step(agent: Any, opt: torch.optim.Optimizer, batches: list[dict], bf16: bool,
                   update_critic: bool = True) -> Callable[[], None]:
    """What Trainer._train_step does, minus data loading and logging: loss, backward, clip, AdamW, EMA.

    ``update_critic=False`` is an augmented-only step of RISE's default alternate schedule (half its steps).
    """
    step = [0]
    agent.train()

    def once() -> None:
        batch = batches[step[0] % len(batches)]
        with autocast_cpu(bf16):
            loss = agent.compute_losses(batch, step[0], update_critic)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(opt, 1.0, "per_group")
        opt.step()
        agent.after_optimizer_step(step[0] + 1, update_critic)
        step[0] += 1

    return once


@contextlib.contextmanager
def autocast_cpu(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield


# -- LeRobot's side --------------------------------------------------------------------------------
def lerobot_policy(image: bool) -> Any:
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (9,))}
    def stat(shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0) -> dict[str, torch.Tensor]:
        return {"min": -torch.ones(shape), "max": torch.ones(shape), "mean": torch.full(shape, mean),
                "std": torch.full(shape, std)}

    stats = {"observation.state": stat((9,)), "action": stat((7,))}
    if image:
        for cam in CAMERAS:
            inputs[f"observation.images.{cam}"] = PolicyFeature(FeatureType.VISUAL, (3, 84, 84))
            stats[f"observation.images.{cam}"] = stat((3, 1, 1), 0.5, 0.25)
    else:
        inputs["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (10,))
        stats["observation.environment_state"] = stat((10,))
    config = DiffusionConfig(
        n_obs_steps=2, horizon=16, n_action_steps=8, input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))},
        crop_shape=(76, 76), down_dims=DOWN_DIMS, kernel_size=5, n_groups=8, diffusion_step_embed_dim=128,
        use_separate_rgb_encoder_per_camera=True, noise_scheduler_type="DDIM", num_inference_steps=10,
        device="cpu",
    )
    torch.manual_seed(0)
    return DiffusionPolicy(config, dataset_stats=stats)


def lerobot_batch(batch: dict[str, Any], image: bool) -> dict[str, torch.Tensor]:
    """The same windows in LeRobot's layout (float images in [0, 1], as its dataset hands them over)."""
    obs = batch["obs"]
    out = {"observation.state": torch.cat([obs[k].float() for k in sorted(STATE)], dim=-1),
           "action": batch["actions"].float(),
           "action_is_pad": torch.zeros(batch["actions"].shape[:2], dtype=torch.bool)}
    if image:
        for cam in CAMERAS:
            out[f"observation.images.{cam}"] = obs[cam].permute(0, 1, 4, 2, 3).float() / 255.0
    else:
        out["observation.environment_state"] = obs["object"].float()
    return out


def lerobot_train_step(policy: Any, batches: list[dict]) -> Callable[[], None]:
    """lerobot-train's update: forward loss, backward, clip at 10, Adam (its preset), zero_grad."""
    opt = torch.optim.Adam(policy.get_optim_params(), lr=1e-4, betas=(0.95, 0.999), eps=1e-8, weight_decay=1e-6)
    params = list(policy.parameters())
    step = [0]
    policy.train()

    def once() -> None:
        loss, _ = policy.forward(batches[step[0] % len(batches)])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        opt.zero_grad()
        step[0] += 1

    return once


def lerobot_chunk(policy: Any, batch: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    """One chunk as select_action makes it when its queue is empty: normalise, stack cameras, sample."""
    policy.eval()
    obs = {k: v[:1] for k, v in batch.items() if not k.startswith("action")}

    @torch.no_grad()
    def once() -> torch.Tensor:
        b = policy.normalize_inputs(dict(obs))
        if policy.config.image_features:
            b["observation.images"] = torch.stack([b[k] for k in policy.config.image_features], dim=-4)
        return policy.diffusion.generate_actions(b)

    return once


def selector(obs: dict[str, torch.Tensor]) -> Callable[..., Callable[[], object]]:
    """select(agent, K, steps, scheduler, bf16, prune_after, prune_keep) -> a timed call of Agent.select."""
    def select(agent: Any, k: int, steps: int, scheduler: str, bf16: bool = False, prune: int = 0,
               keep: int = 4) -> Callable[[], object]:
        def once() -> object:
            with autocast_cpu(bf16):
                return agent.select(obs, k, steps, scheduler=scheduler, prune_after=prune, prune_keep=keep)
        return once
    return select


def compile_case(agent: Any, select: Callable[..., Callable[[], object]], repeats: int) -> None:
    """Eager against inductor-compiled denoiser (nn.Module.compile keeps the state-dict names), K = 1."""
    compiled = copy.deepcopy(agent)
    compiled.ema_policy.denoiser.compile(dynamic=False)
    t = time.perf_counter()
    select(compiled, 1, 10, "ddim")()
    print(f"\ncompile (inductor, first call incl. compile): {time.perf_counter() - t:.1f} s", flush=True)
    report("chunk latency, K=1 ddim10, steady state",
           alternate({"eager": select(agent, 1, 10, "ddim"), "compiled": select(compiled, 1, 10, "ddim")}, repeats),
           "eager")


def compiled_train_case(ds: WindowDataset, batches: list[dict], repeats: int) -> None:
    """Eager against an inductor-compiled denoiser (forward and backward) in our bc training step, in
    fp32 and under bf16 autocast (one compiled copy per precision: autocast state is part of the graph)."""
    fns: dict[str, Callable[[], object]] = {}
    for bf16 in (False, True):
        precision = "bf16" if bf16 else "fp32"
        eager, eager_opt = ours(ds, "bc")
        compiled, compiled_opt = ours(ds, "bc")
        compiled.policy.denoiser.compile(dynamic=False)
        first = our_train_step(compiled, compiled_opt, batches, bf16)
        t = time.perf_counter()
        first()
        print(f"\ncompile for training, {precision} (inductor, first step incl. compile): "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        fns[f"eager {precision}"] = our_train_step(eager, eager_opt, batches, bf16)
        fns[f"compiled {precision}"] = first
    report("train step, bc, eager vs compiled denoiser", alternate(fns, repeats, warmup=0), "eager fp32")


# -- timing ----------------------------------------------------------------------------------------
def alternate(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call; one call of each variant per round, so drifting load hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(title: str, medians: dict[str, float], reference: str, unit_scale: float = 1000.0) -> None:
    ref = medians[reference]
    print(f"\n{title}\n| variant | median ms | / {reference} |\n|---|---|---|", flush=True)
    for name, value in medians.items():
        print(f"| {name} | {value * unit_scale:.1f} | {value / ref:.2f}x |", flush=True)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="train,latency,select", help="comma list of train, train_compile, latency, select, prune, optim, compile")
    parser.add_argument("--modalities", default="lowdim,image")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases, modalities = set(args.cases.split(",")), args.modalities.split(",")
    # bf16 rows only where the CPU runs bf16 natively: elsewhere torch emulates it, 10-100x slower, and
    # amp=auto (training and acting) stays in fp32 there anyway.
    bf16 = cpu_has_native_bf16()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {args.repeats}, "
          f"native bf16: {bf16}{'' if bf16 else ' (bf16 rows left out)'}", flush=True)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for modality in modalities:
            image = modality == "image"
            store = make_store(Path(tmp) / f"{modality}.zarr", 6 if image else 20, 60, image, rng,
                               lowdim=STATE if image else LOWDIM, cameras=CAMERAS)
            ds = WindowDataset(store, obs_horizon=2, pred_horizon=16, cache_in_ram=True)
            bsz = 32 if image else 256
            batches = [ds.get_batch(np.random.default_rng(i).choice(len(ds), bsz)) for i in range(2)]
            theirs = lerobot_policy(image)
            their_batches = [lerobot_batch(b, image) for b in batches]
            bc, bc_opt = ours(ds, "bc")
            rise, rise_opt = ours(ds, "rise")
            shared, shared_opt = ours(ds, "rise", critic_features="policy_ema") if image else (None, None)
            policy_params = count(bc.policy)
            print(f"\n## {modality}: params ours bc policy {policy_params:,}, LeRobot {count(theirs):,} "
                  f"({policy_params / count(theirs):.3f}x); ours rise critic {count(rise.critic):,}", flush=True)
            if "optim" in cases:
                report(f"optimiser step + EMA only, {modality} bc policy ({policy_params:,} params)",
                       alternate(optimiser_variants(ds), args.repeats * 3), "AdamW plain, EMA per-tensor")
            if "train" in cases:
                plain, plain_opt = ours(ds, "bc", "plain", conv_weight_grad="native")  # before issue #19's work
                native, native_opt = ours(ds, "bc", conv_weight_grad="native")
                # "ours" runs AdamW as trainer.optimizer_impl=auto does (fused on CPU), conv1d weight gradients
                # as trainer.conv_weight_grad=auto does; bf16 is trainer.amp=auto on a CPU with native bf16.
                fns: dict[str, Callable[[], object]] = {
                    "lerobot": lerobot_train_step(theirs, their_batches),
                    "ours bc fp32, AdamW per-tensor, native conv grads": our_train_step(plain, plain_opt, batches, False),
                    "ours bc fp32, native conv grads": our_train_step(native, native_opt, batches, False),
                    "ours bc fp32": our_train_step(bc, bc_opt, batches, False),
                    "ours rise fp32": our_train_step(rise, rise_opt, batches, False),
                    "ours rise fp32, augmented-only step (no critic)": our_train_step(
                        rise, rise_opt, batches, False, update_critic=False),
                }
                if shared is not None:
                    fns["ours rise fp32, critic on policy features"] = our_train_step(shared, shared_opt, batches, False)
                if bf16:
                    fns.update({
                        "ours bc bf16, native conv grads": our_train_step(native, native_opt, batches, True),
                        "ours bc bf16": our_train_step(bc, bc_opt, batches, True),
                        "ours rise bf16": our_train_step(rise, rise_opt, batches, True),
                    })
                    if shared is not None:
                        fns["ours rise bf16, critic on policy features"] = our_train_step(
                            shared, shared_opt, batches, True)
                # No warm-up call: a step takes seconds, so first-call costs are lost in it.
                report(f"train step, {modality}, batch {bsz}", alternate(fns, args.repeats, warmup=0), "lerobot")
            if "train_compile" in cases:
                compiled_train_case(ds, batches, args.repeats)
            obs = {k: v[:1] for k, v in batches[0]["obs"].items()}
            for agent in (bc, rise, shared):
                if agent is not None:
                    agent.eval()

            select = selector(obs)

            if "compile" in cases:
                compile_case(bc, select, args.repeats * 3)
            # What the runtime acts with under amp=bf16 (and amp=auto for big enough work): the matmul weights
            # cast to bf16 once (robot_offrl.device.cast_for_autocast_inference); "autocast" rows re-cast them
            # at every call, as plain torch.autocast over fp32 weights does.
            # fp32 acting with nn.Conv1d's kernels (the runtime's conv1d=native) against the default GEMM path.
            if cases & {"latency", "select"}:
                bc_native, rise_native = (copy.deepcopy(a) for a in (bc, rise))
                for agent in (bc_native, rise_native):
                    set_conv_inference(agent, "native")
            if cases & {"latency", "select"} and bf16:
                bc16, rise16 = (cast_for_autocast_inference(copy.deepcopy(a), torch.bfloat16) for a in (bc, rise))
            if "latency" in cases:
                fns = {
                    "lerobot K=1 ddim10": lerobot_chunk(theirs, their_batches[0]),
                    "ours K=1 ddim10 fp32, conv1d native": select(bc_native, 1, 10, "ddim"),
                    "ours K=1 ddim10 fp32": select(bc, 1, 10, "ddim"),
                    "ours K=1 ddim6 fp32": select(bc, 1, 6, "ddim"),
                    "ours K=1 dpmsolver4 fp32": select(bc, 1, 4, "dpmsolver"),
                }
                if bf16:
                    fns.update({
                        "ours K=1 ddim10 bf16 autocast": select(bc, 1, 10, "ddim", True),
                        "ours K=1 ddim10 bf16 weights": select(bc16, 1, 10, "ddim", True),
                        "ours K=1 ddim6 bf16 weights": select(bc16, 1, 6, "ddim", True),
                        "ours K=1 dpmsolver4 bf16 weights": select(bc16, 1, 4, "dpmsolver", True),
                    })
                report(f"chunk latency, {modality}, B=1", alternate(fns, args.repeats * 3), "lerobot K=1 ddim10")
            if "select" in cases:
                fns = {
                    "lerobot K=1 ddim10": lerobot_chunk(theirs, their_batches[0]),
                    "ours rise K=32 ddim10 fp32, conv1d native": select(rise_native, 32, 10, "ddim"),
                    "ours rise K=32 ddim10 fp32": select(rise, 32, 10, "ddim"),
                    "ours rise K=32 ddim6 fp32": select(rise, 32, 6, "ddim"),
                    # Early pruning under DDIM 6: all K for prune_after + 1 denoiser calls, then prune_keep.
                    "ours rise K=32 ddim6 prune1->4 fp32": select(rise, 32, 6, "ddim", False, 1, 4),
                    "ours rise K=32 ddim6 prune2->4 fp32": select(rise, 32, 6, "ddim", False, 2, 4),
                }
                if bf16:
                    fns.update({
                        "ours rise K=32 ddim10 bf16 autocast": select(rise, 32, 10, "ddim", True),
                        "ours rise K=32 ddim10 bf16 weights": select(rise16, 32, 10, "ddim", True),
                        "ours rise K=32 ddim6 bf16 weights": select(rise16, 32, 6, "ddim", True),
                        "ours rise K=32 ddim6 prune1->4 bf16 weights": select(rise16, 32, 6, "ddim", True, 1, 4),
                        "ours rise K=32 ddim6 prune2->4 bf16 weights": select(rise16, 32, 6, "ddim", True, 2, 4),
                        "ours rise K=32 dpmsolver4 prune1->4 bf16 weights": select(rise16, 32, 4, "dpmsolver", True, 1, 4),
                    })
                    if shared is not None:
                        shared16 = cast_for_autocast_inference(copy.deepcopy(shared), torch.bfloat16)
                        fns["ours rise(policy features) K=32 ddim10 bf16 weights"] = select(shared16, 32, 10, "ddim", True)
                report(f"RISE selection, {modality}, B=1", alternate(fns, args.repeats * 3), "lerobot K=1 ddim10")
            if "prune" in cases:  # how far pruning can go: fewer solver steps and survivors
                fns = {"lerobot K=1 ddim10": lerobot_chunk(theirs, their_batches[0])}
                for steps, keep in ((4, 4), (3, 4), (4, 2), (3, 2), (4, 1)):
                    fns[f"ours rise K=32 dpmsolver{steps} prune1->{keep}"] = select(
                        rise, 32, steps, "dpmsolver", prune=1, keep=keep)
                if shared is not None:
                    fns["ours rise(policy features) K=32 dpmsolver3 prune1->2"] = select(
                        shared, 32, 3, "dpmsolver", prune=1, keep=2)
                report(f"RISE selection with pruning, {modality}, B=1", alternate(fns, args.repeats * 3),
                       "lerobot K=1 ddim10")


if __name__ == "__main__":
    main()
