"""Would an exported denoiser (ONNX Runtime) act faster than the runtime's own eager paths? (issue #19)

The issue's U-Net (down dims 256/512/1024, kernel 5, horizon 16, 7-D actions, low-dim condition) is
exported with ``torch.onnx.export`` (batch axis dynamic) and one denoiser forward is timed at batch 1
(a K = 1 chunk's unit of work) and batch 32 (RISE selection's), alternating with torch eager in fp32
and eager with the matmul weights cast to bf16 once (what ``PolicyRuntime`` does under ``amp``).
The export's output is checked against eager first. Needs ``pip install onnx onnxruntime`` (bench only).

    PYTHONPATH=.:sim .venv/bin/python bench/bench_export.py --threads 1 --batches 1,32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learn import make_store  # noqa: E402
from compare_lerobot import LOWDIM, cond_width, ours  # noqa: E402

from robot_offrl.data.sampler import WindowDataset  # noqa: E402
from robot_offrl.device import cast_for_autocast_inference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "low.zarr", 20, 60, False, np.random.default_rng(0), lowdim=LOWDIM)
        ds = WindowDataset(store, obs_horizon=2, pred_horizon=16, cache_in_ram=True)
        agent, _ = ours(ds, "bc")
        denoiser = agent.ema_policy.denoiser.eval()
        width = cond_width(ds)
        path = str(Path(tmp) / "unet.onnx")
        example = (torch.randn(1, 16, 7), torch.tensor([5]), torch.randn(1, width))
        batch_axis = {0: "batch"}
        torch.onnx.export(denoiser, example, path, input_names=["noisy", "t", "cond"], output_names=["eps"],
                          dynamic_axes=dict.fromkeys(["noisy", "t", "cond", "eps"], batch_axis), dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        bf16 = cast_for_autocast_inference(copy.deepcopy(denoiser), torch.bfloat16)
        print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s), "
              f"{sum(p.numel() for p in denoiser.parameters()):,} denoiser parameters\n")
        print("| batch | torch eager fp32 | torch bf16 weights | onnxruntime fp32 | ORT / fp32 | ORT / bf16 | max abs diff |")
        print("|---|---|---|---|---|---|---|")
        for batch in (int(b) for b in args.batches.split(",")):
            noisy, t, cond = torch.randn(batch, 16, 7), torch.full((batch,), 5), torch.randn(batch, width)
            feeds = {"noisy": noisy.numpy(), "t": t.numpy(), "cond": cond.numpy()}

            def eager(noisy: torch.Tensor = noisy, t: torch.Tensor = t, cond: torch.Tensor = cond) -> torch.Tensor:
                with torch.no_grad():
                    return denoiser(noisy, t, cond)

            def cast_once(noisy: torch.Tensor = noisy, t: torch.Tensor = t, cond: torch.Tensor = cond) -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return bf16(noisy, t, cond)

            def exported(feeds: dict = feeds) -> np.ndarray:
                return session.run(None, feeds)[0]

            diff = float(np.abs(exported() - eager().numpy()).max())
            fns = {"fp32": eager, "bf16": cast_once, "ort": exported}
            times: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(args.repeats):
                for name, fn in fns.items():  # alternating, so drifts in load fall on every variant
                    start = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - start) * 1000)
            med = {name: statistics.median(values) for name, values in times.items()}
            print(f"| {batch} | {med['fp32']:.1f} ms | {med['bf16']:.1f} ms | {med['ort']:.1f} ms | "
                  f"{med['ort'] / med['fp32']:.2f}x | {med['ort'] / med['bf16']:.2f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
