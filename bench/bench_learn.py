"""Learning-core timings: training steps, candidate selection latency, window reads, neighbour index.

Run by hand (numbers go to docs/benchmarks.md through the lead):

    PYTHONPATH=. .venv/bin/python bench/bench_learn.py            # full table
    PYTHONPATH=. .venv/bin/python bench/bench_learn.py --quick    # fewer repeats, smaller sizes
    PYTHONPATH=. .venv/bin/python bench/bench_learn.py --threads 1  # steadier on a shared CPU

Every case uses the project's default network sizes (configs/policy, configs/critic) unless the row
says otherwise; data are random but shaped like the Lift task (19-D low-dim, 7-D actions, 84x84 RGB).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from robot_offrl.algos import build_agent
from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema
from robot_offrl.data.neighbors import NeighborSettings, build_neighbor_index
from robot_offrl.data.sampler import WindowDataset

LOWDIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


def cfg(name: str, denoiser: str) -> dict:
    policy = {"denoiser": denoiser, "obs_horizon": 2, "pred_horizon": 16, "n_action_steps": 8}
    if denoiser == "unet":
        policy.update(down_dims=[128, 256, 512], kernel_size=5, n_groups=8, timestep_embed_dim=128)
    return {
        "algo": {"name": name, "use_critic": name in ("idql", "rise"), "nn_augment": {"enabled": False}},
        "policy": policy,
        "critic": {"hidden_dim": 256, "num_layers": 3},
        "encoder": {"crop": 76, "num_keypoints": 32, "feature_dim": 64},
    }


def make_store(
    path: Path, episodes: int, length: int, image: bool, rng: np.random.Generator,
    lowdim: dict[str, int] | None = None, cameras: tuple[str, ...] = ("agentview_image",),
) -> EpisodeStore:
    """Random Lift-shaped episodes: ``lowdim`` keys (default LOWDIM) and, with ``image``, 84x84 ``cameras``."""
    lowdim = LOWDIM if lowdim is None else lowdim
    obs = [KeySpec(k, "float32", (d,), "lowdim") for k, d in lowdim.items()]
    if image:
        obs += [KeySpec(cam, "uint8", (84, 84, 3), "rgb") for cam in cameras]
    names = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
    schema = StoreSchema(obs, ActionSpace(names, ["normalized"] * 7, "delta", [-1.0] * 7, [1.0] * 7), 20.0, "Panda", "lift")
    store = EpisodeStore.create(str(path), schema, durable=False)
    for e in range(episodes):
        o = {k: rng.normal(size=(length, d)).astype(np.float32) for k, d in lowdim.items()}
        if image:
            for cam in cameras:
                o[cam] = rng.integers(0, 256, (length, 84, 84, 3), dtype=np.uint8)
        store.append_episode(o, rng.uniform(-1, 1, (length, 7)).astype(np.float32), expert=e % 3 == 0, source="play")
    return store


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_step_ms(ds: WindowDataset, name: str, denoiser: str, batch: int, repeats: int, bf16: bool = False) -> float:
    """One optimiser step; ``bf16`` runs the forward under CPU bf16 autocast, as trainer.amp=bf16 does."""
    torch.manual_seed(0)
    agent = build_agent(cfg(name, denoiser), ds.obs_info, ds.action_dim)
    opt = torch.optim.AdamW([{"params": p} for p in agent.param_groups().values()], lr=1e-4)
    rng = np.random.default_rng(0)
    step = [0]

    def once() -> None:
        b = ds.get_batch(rng.choice(len(ds), batch))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = agent.compute_losses(b, step[0])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        agent.after_optimizer_step(step[0] + 1)
        step[0] += 1

    return 1000 * timeit(once, repeats)


def select_ms(ds: WindowDataset, name: str, denoiser: str, k: int, repeats: int) -> float:
    agent = build_agent(cfg(name, denoiser), ds.obs_info, ds.action_dim).eval()
    obs = ds.get_batch([0])["obs"]
    return 1000 * timeit(lambda: agent.select(obs, k, 10), repeats)


# (in, out, kernel, length) of the U-Net's conv1d layers at the issue #19 shapes (down dims 256/512/1024,
# horizon 16): what trainer.conv_weight_grad decides for.
UNET_CONVS = [(256, 256, 5, 16), (256, 512, 5, 8), (512, 512, 5, 8), (512, 1024, 5, 4), (1024, 1024, 5, 4),
              (2048, 512, 5, 4), (1024, 256, 5, 8), (512, 256, 5, 16), (2048, 512, 1, 4), (256, 7, 1, 16)]


def conv_grad_rows(batch: int, repeats: int) -> list[tuple[str, str]]:
    """Forward + backward of one Conv1d layer: nn.Conv1d's oneDNN kernels against trainer.conv_weight_grad=auto
    (the unfolded weight gradient; in fp32 over at most GEMM_TRAIN_MAX_LENGTH steps, every pass a GEMM).
    bf16 rows only on a CPU with native bf16 (elsewhere torch emulates it and training runs in fp32)."""
    from robot_offrl.device import cpu_has_native_bf16
    from robot_offrl.models.conv1d import Conv1d

    rows = []
    for c_in, c_out, kernel, length in UNET_CONVS:
        for bf16 in (False, True) if cpu_has_native_bf16() else (False,):
            layer = Conv1d(c_in, c_out, kernel, padding=kernel // 2)
            x = torch.randn(batch, c_in, length, requires_grad=True)
            def once(unfold: bool, layer: Conv1d = layer, x: torch.Tensor = x, bf16: bool = bf16) -> None:
                layer.unfold_weight_grad = unfold
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = layer(x)
                y.float().sum().backward()

            samples: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(repeats + 1):  # alternating, so drifting load hits both alike; the first is warm-up
                for unfold in (False, True):
                    t = time.perf_counter()
                    once(unfold)
                    samples[unfold].append(time.perf_counter() - t)
            times = {unfold: 1000 * statistics.median(ts[1:]) for unfold, ts in samples.items()}
            rows.append((f"conv1d {c_in}->{c_out}, kernel {kernel}, length {length}, batch {batch}, "
                         f"{'bf16' if bf16 else 'fp32'}: forward+backward, oneDNN / unfolded",
                         f"{times[False]:.1f} / {times[True]:.1f} ms ({times[True] / times[False]:.2f}x)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller data")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--amp-only", action="store_true", help="only the train-step rows, fp32 and bf16")
    parser.add_argument("--conv-grad-only", action="store_true",
                        help="only the U-Net conv1d layers, oneDNN's weight gradient against the unfolded one")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 10
    if args.conv_grad_only:
        print_rows(conv_grad_rows(256, repeats) + conv_grad_rows(32, repeats))
        return
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        low = make_store(Path(tmp) / "low.zarr", 40 if args.quick else 100, 200, False, rng)
        img = make_store(Path(tmp) / "img.zarr", 10, 100, True, rng)
        low_ds = WindowDataset(low, obs_horizon=2, pred_horizon=16)
        img_ds = WindowDataset(img, obs_horizon=2, pred_horizon=16, cache_in_ram=True)
        img_zarr = WindowDataset(img, obs_horizon=2, pred_horizon=16, cache_in_ram=False)
        few = max(2, repeats // 3)
        cases = [(f"low-dim, MLP-ResNet, {name}, batch 256", low_ds, name, "mlp", 256, repeats) for name in ("bc", "idql", "rise")]
        cases += [("low-dim, U-Net, rise, batch 256", low_ds, "rise", "unet", 256, repeats),
                  ("84x84 image + low-dim, MLP-ResNet, rise, batch 64", img_ds, "rise", "mlp", 64, few),
                  ("84x84 image + low-dim, U-Net, rise, batch 16", img_ds, "rise", "unet", 16, few)]
        for label, ds, name, denoiser, batch, n in cases:  # fp32 and bf16 of one case back to back
            fp32 = train_step_ms(ds, name, denoiser, batch, n)
            bf16 = train_step_ms(ds, name, denoiser, batch, n, bf16=True)
            rows.append((f"train step, {label}, fp32 / bf16 autocast", f"{fp32:.1f} / {bf16:.1f} ms ({bf16 / fp32:.2f}x)"))
        if args.amp_only:
            print_rows(rows)
            return
        for denoiser in ("mlp", "unet"):
            for k in (1, 32):
                rows.append((f"select, low-dim, {denoiser}, K={k}, 10 DDIM steps, B=1", f"{select_ms(low_ds, 'idql', denoiser, k, repeats):.1f} ms"))
        rows.append(("select, image, U-Net, K=32, 10 DDIM steps, B=1", f"{select_ms(img_ds, 'idql', 'unet', 32, max(2, repeats // 3)):.0f} ms"))
        idx = np.random.default_rng(1).choice(len(low_ds), 256)
        rows.append(("window batch 256, low-dim (RAM)", f"{1000 * timeit(lambda: low_ds.get_batch(idx), repeats):.2f} ms"))
        idx = np.random.default_rng(1).choice(len(img_ds), 64)
        rows.append(("window batch 64, image (RAM cache)", f"{1000 * timeit(lambda: img_ds.get_batch(idx), repeats):.1f} ms"))
        rows.append(("window batch 64, image (zarr reads)", f"{1000 * timeit(lambda: img_zarr.get_batch(idx), repeats):.1f} ms"))
        settings = NeighborSettings(k=15, threshold=0.3, skip_first=5, feature_keys=tuple(sorted(LOWDIM)), gripper="action")
        stats = low.norm_stats()
        t = time.perf_counter()
        index = build_neighbor_index(low, range(low.num_episodes), settings, stats)
        rows.append((f"neighbour index build, {low.num_steps} steps", f"{time.perf_counter() - t:.2f} s ({len(index)} pairs)"))
    print_rows(rows)


def print_rows(rows: list[tuple[str, str]]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| case | time |\n|---|---|")
    for case, value in rows:
        print(f"| {case} | {value} |")


if __name__ == "__main__":
    main()
