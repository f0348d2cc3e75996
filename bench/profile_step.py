"""Where one training step or one selection call spends its time, at issue #19's shapes (torch.profiler).

The speed work of issue #19 started from these tables: the conv1d weight gradient (82% of a bf16
low-dim U-Net training step in ``convolution_backward``) and K = 32 selection being compute-bound
(74% in bf16 convolutions). Shapes and agents as in compare_lerobot.py; bf16 autocast as the defaults
run on a CPU with native bf16.

    PYTHONPATH=.:sim .venv/bin/python bench/profile_step.py --what train --modality lowdim --algo bc [--conv-weight-grad native]
    PYTHONPATH=.:sim .venv/bin/python bench/profile_step.py --what select --candidates 32 --algo rise
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learn import make_store  # noqa: E402
from compare_lerobot import CAMERAS, LOWDIM, STATE, our_train_step, ours, selector  # noqa: E402

from robot_offrl.data.sampler import WindowDataset  # noqa: E402
from robot_offrl.device import cast_for_autocast_inference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=("train", "select"), default="train")
    parser.add_argument("--modality", choices=("lowdim", "image"), default="lowdim")
    parser.add_argument("--algo", choices=("bc", "idql", "rise"), default="bc")
    parser.add_argument("--candidates", type=int, default=32, help="K for --what select")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--conv-weight-grad", choices=("auto", "native"), default="auto",
                        help="native: oneDNN's conv1d weight gradient (before issue #19's fix)")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = args.modality == "image"
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "s.zarr", 6 if image else 20, 60, image, np.random.default_rng(0),
                           lowdim=STATE if image else LOWDIM, cameras=CAMERAS)
        ds = WindowDataset(store, obs_horizon=2, pred_horizon=16, cache_in_ram=True)
        agent, opt = ours(ds, args.algo, conv_weight_grad=args.conv_weight_grad)
        batch = ds.get_batch(np.random.default_rng(0).choice(len(ds), 32 if image else 256))
        if args.what == "train":
            once = our_train_step(agent, opt, [batch], not args.fp32)
        else:
            agent.eval()
            acting = agent if args.fp32 else cast_for_autocast_inference(copy.deepcopy(agent), torch.bfloat16)
            once = selector({k: v[:1] for k, v in batch["obs"].items()})(acting, args.candidates, 10, "ddim", not args.fp32)
        once()  # warm-up: first-call allocations and oneDNN primitive creation
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            once()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
