"""Action latency of the policy runtime (p50/p99) for K candidates and samplers, plus train steps/s.

Trains a short low-dim RISE checkpoint on a synthetic Lift-shaped store (so the critic exists),
then times ``PolicyRuntime.plan`` — what the sweep and the ROS node call at every replanning step —
for K = 1, 32, 128 with 10 DDIM steps and with 100 DDPM steps. Reports CUDA too when present.
With ``--amp off,bf16`` (or ``--conv1d native,auto``, ``--prune-after 0,1``) each case runs once per acting variant, the calls
alternating, and the table gives each one's p50 against the first's.

    PYTHONPATH=.:sim .venv/bin/python bench/bench_runtime.py [--repeats 30] [--device auto] [--amp off,bf16]
    PYTHONPATH=.:sim .venv/bin/python bench/bench_runtime.py --amp off --conv1d native,auto \
        --overrides policy.denoiser=unet --samplers ddim:10 --candidates 1,32
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robot_offrl.config import compose
from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema
from robot_offrl.runtime import PolicyRuntime
from robot_offrl.train.loop import train

LOWDIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


def synthetic_store(path: Path, episodes: int = 20, length: int = 60) -> Path:
    schema = StoreSchema(
        obs=[KeySpec(k, "float32", (d,), "lowdim") for k, d in LOWDIM.items()],
        action=ActionSpace([f"a{i}" for i in range(7)], ["normalized"] * 7, "delta", [-1.0] * 7, [1.0] * 7),
        control_rate_hz=20.0, robot="Panda", task="lift",
    )
    store = EpisodeStore.create(str(path), schema)
    rng = np.random.default_rng(0)
    for e in range(episodes):
        obs = {k: np.cumsum(rng.normal(0, 0.05, (length, d)), 0).astype(np.float32) for k, d in LOWDIM.items()}
        store.append_episode(obs=obs, actions=np.tanh(rng.normal(size=(length, 7))).astype(np.float32),
                             expert=e % 3 == 0, source="scripted" if e % 3 == 0 else "play", success=None)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="off", help="comma list of the runtime's acting amp values to alternate")
    parser.add_argument("--conv1d", default="auto", help="comma list of the runtime's conv1d values to alternate")
    parser.add_argument("--prune-after", default="",
                        help="comma list of prune_after values to alternate (0 = off; default: the checkpoint's)")
    parser.add_argument("--samplers", default="ddim:10,ddpm:100")
    parser.add_argument("--candidates", default="1,32,128")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra training overrides, e.g. policy.denoiser=unet")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())
    store = synthetic_store(tmp / "lift.zarr")
    cfg = compose("train", [f"data={store}", f"out={tmp / 'run'}", "algo=rise", "trainer=small",
                            f"trainer.steps={args.train_steps}", "trainer.batch_size=256", "trainer.progress=false",
                            "trainer.val_fraction=0", f"trainer.device={args.device}", *args.overrides])
    t0 = time.perf_counter()
    train(cfg)
    train_rate = args.train_steps / (time.perf_counter() - t0)
    obs = {k: np.zeros(d, np.float32) for k, d in LOWDIM.items()}
    rows = []
    prunes: list[int | None] = [int(p) for p in args.prune_after.split(",")] if args.prune_after else [None]
    variants = [(amp, conv, prune) for amp in args.amp.split(",") for conv in args.conv1d.split(",") for prune in prunes]
    labels = [f"amp={amp} conv1d={conv}" + ("" if prune is None else f" prune_after={prune}")
              for amp, conv, prune in variants]
    for sampler in args.samplers.split(","):
        scheduler, steps = sampler.split(":")
        for k in (int(c) for c in args.candidates.split(",")):
            runtimes = {label: PolicyRuntime.load(tmp / "run", device=args.device, num_candidates=k,
                                                  num_inference_steps=int(steps), scheduler=scheduler, amp=amp,
                                                  conv1d=conv, prune_after=prune)
                        for label, (amp, conv, prune) in zip(labels, variants, strict=True)}
            times: dict[str, list[float]] = {label: [] for label in labels}
            for policy in runtimes.values():
                policy.plan(obs)  # warm-up
            for _ in range(args.repeats):
                for label, policy in runtimes.items():  # alternate, so load drifts hit every variant alike
                    t = time.perf_counter()
                    policy.plan(obs)
                    if policy.device.type == "cuda":
                        torch.cuda.synchronize()
                    times[label].append((time.perf_counter() - t) * 1000)
            base = float(np.percentile(times[labels[0]], 50))
            for label, policy in runtimes.items():
                p50 = float(np.percentile(times[label], 50))
                rows.append({"sampler": f"{scheduler}-{steps}", "K": k, "variant": label, "p50_ms": round(p50, 1),
                             "p99_ms": round(float(np.percentile(times[label], 99)), 1),
                             "vs_first": round(p50 / base, 2), "acting_dtype": policy.describe()["acting_dtype"],
                             "device": str(policy.device)})
                print(json.dumps(rows[-1]), flush=True)
    params = sum(p.numel() for p in policy.agent.policy.parameters())
    critic = sum(p.numel() for p in policy.agent.critic.parameters()) if policy.agent.critic is not None else 0
    print(json.dumps({"policy_params": params, "critic_params": critic,
                      "train_steps_per_s_rise_batch256": round(train_rate, 2), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
