"""How much can a trained critic steer action selection? (run by hand on benchmark runs)

RISE and IDQL act by sampling K chunks from a behaviour policy trained on all data and keeping the one
whose first action has the highest min(Q1, Q2). That only helps if Q tells expert behaviour apart
from the rest, and if the K samples differ enough in Q for the choice to matter. This prints, per
trained run, on windows of the benchmark's own store:

- Q and V on the recorded actions of expert and of non-expert windows, and the AUC of Q between
  them (probability that a random expert window outscores a random non-expert one; 0.5 = no signal);
- at expert-episode states, for K candidates from the behaviour policy: the spread of Q across the
  candidates (std and max - mean), and how far the chosen candidate's first action is from the
  expert's recorded one, against the average candidate (chosen/mean < 1: selection moves toward the
  expert);
- the same spread at non-expert states.

    PYTHONPATH=.:sim:hardware .venv/bin/python bench/rise_sim/critic_probe.py \\
        --store runs/bench_lift/data/lift_rise.zarr runs/bench_lift/runs/{idql,rise}_s0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_offrl.data import EpisodeStore
from robot_offrl.data.sampler import WindowDataset
from robot_offrl.runtime import PolicyRuntime


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half (Mann-Whitney U)."""
    scores = np.concatenate([positive, negative])
    ranks = np.empty_like(scores)
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, scores.size + 1)
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2
    return float(u / (positive.size * negative.size))


def windows(runtime: PolicyRuntime, store: EpisodeStore, expert: bool, count: int, seed: int) -> dict[str, Any]:
    info = runtime.agent.obs_info
    dataset = WindowDataset(
        store, obs_keys=[s.name for s in runtime.obs_schema], obs_horizon=info.obs_horizon,
        pred_horizon=runtime.agent.config.policy.pred_horizon, episodes=store.select_episodes(expert=expert),
        norm_stats=runtime.stats, cache_in_ram=True,
    )
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(count, len(dataset)), replace=False)
    return dataset.get_batch(picks, runtime.device)


@torch.no_grad()
def probe(run: Path, store: EpisodeStore, count: int, num_candidates: int, seed: int) -> dict[str, Any]:
    runtime = PolicyRuntime.load(run, device="cpu")
    agent = runtime.agent
    if not agent.has_critic:
        return {"run": str(run), "critic": False}
    out: dict[str, Any] = {"run": str(run), "algo": agent.config.algo.name, "windows_per_side": count}
    q_by_side: dict[str, np.ndarray] = {}
    generator = torch.Generator().manual_seed(seed)
    for side, expert in (("expert", True), ("non_expert", False)):
        batch = windows(runtime, store, expert, count, seed)
        obs, actions = batch["obs"], batch["actions"]
        q = agent.score(obs, actions[:, :1]).squeeze(1).numpy()
        v = agent.critic.value(agent.critic.twin.features(obs)).float().numpy()
        q_by_side[side] = q
        chunks = agent.sample_chunks(obs, num_candidates, generator=generator)  # (B, K, Tp, A)
        cand_q = agent.score(obs, chunks[:, :, 0]).numpy()  # (B, K)
        dist = torch.linalg.vector_norm(chunks[:, :, 0] - actions[:, None, 0], dim=-1).numpy()  # (B, K)
        chosen = dist[np.arange(dist.shape[0]), cand_q.argmax(axis=1)]
        out[side] = {
            "q_data_mean": round(float(q.mean()), 3),
            "v_mean": round(float(v.mean()), 3),
            "candidate_q_std": round(float(cand_q.std(axis=1).mean()), 4),
            "candidate_q_max_minus_mean": round(float((cand_q.max(axis=1) - cand_q.mean(axis=1)).mean()), 4),
            "chosen_to_data_over_mean_candidate": round(float(chosen.mean() / dist.mean()), 3),
        }
    out["q_auc_expert_vs_non_expert"] = round(auc(q_by_side["expert"], q_by_side["non_expert"]), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders (critic methods)")
    parser.add_argument("--store", required=True, help="the benchmark's dataset store")
    parser.add_argument("--windows", type=int, default=512, help="windows per side (expert / non-expert)")
    parser.add_argument("--num-candidates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = EpisodeStore.open(args.store, mode="r")
    for run in args.runs:
        print(json.dumps(probe(run, store, args.windows, args.num_candidates, args.seed)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
