"""How much can a trained critic steer action selection? (run by hand on benchmark runs)

RISE and IDQL act by sampling K chunks from a behaviour policy trained on all data and keeping the one
whose scored actions (the first ``critic.action_steps`` of the chunk) have the highest min(Q1, Q2).
That only helps if Q tells expert behaviour apart from the rest, and if the K samples differ enough
in Q for the choice to matter. This prints, per
trained run, on windows of the benchmark's own store:

- Q and V on the recorded actions of expert and of non-expert windows, and the AUC of Q between
  them (probability that a random expert window outscores a random non-expert one; 0.5 = no signal);
- at expert-episode states, for K candidates from the behaviour policy: the spread of Q across the
  candidates (std and max - mean), and how far the chosen candidate's first action is from the
  expert's recorded one, against the average candidate (chosen/mean < 1: selection moves toward the
  expert);
- the same spread at non-expert states;
- with ``--value-flow``: where value reaches in the non-expert data. V at non-expert steps binned by
  their distance to the nearest expert step (the neighbour augmentation's normalised state distance,
  on the run's own ``nn_augment.feature_keys``; gripper state is not matched), and, along non-expert
  episodes that come within ``--contact`` (default: the run's ``nn_augment.threshold``) of an expert
  state, V k steps before that first contact next to gamma^k V(contact), which is what TD would give
  had value flowed back. Contacts are searched from step ``nn_augment.skip_first`` on, as the
  augmentation does: every episode starts with the arm at home, close to the expert's first states.

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
from robot_offrl.data.neighbors import default_feature_keys, state_features
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
        q = agent.score(obs, actions[:, None]).squeeze(1).numpy()
        v = agent.critic.value(agent.critic.twin.features(obs)).float().numpy()
        q_by_side[side] = q
        chunks = agent.sample_chunks(obs, num_candidates, generator=generator)  # (B, K, Tp, A)
        cand_q = agent.score(obs, chunks).numpy()  # (B, K)
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


DISTANCE_BINS = (0.0, 0.05, 0.1, 0.2, 0.4, np.inf)
STEPS_BEFORE_CONTACT = (0, 5, 10, 20, 40)


def nearest_distance(queries: np.ndarray, references: np.ndarray, block: int = 4096) -> np.ndarray:
    """Euclidean distance of each query row to its nearest reference row (exact, in blocks)."""
    ref = torch.from_numpy(references)
    out = [torch.cdist(torch.from_numpy(queries[i : i + block]), ref).min(dim=1).values
           for i in range(0, len(queries), block)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


@torch.no_grad()
def state_values(runtime: PolicyRuntime, dataset: WindowDataset, batch: int = 2048) -> np.ndarray:
    """V(s) of every window start of ``dataset``, in its order."""
    agent = runtime.agent
    values = []
    for start in range(0, len(dataset), batch):
        obs = dataset.get_batch(np.arange(start, min(start + batch, len(dataset))), runtime.device)["obs"]
        values.append(agent.critic.value(agent.critic.twin.features(obs)).float().numpy())
    return np.concatenate(values)


def value_flow(run: Path, store: EpisodeStore, contact: float | None = None) -> dict[str, Any]:
    runtime = PolicyRuntime.load(run, device="cpu")
    agent = runtime.agent
    if not agent.has_critic:
        return {"run": str(run), "critic": False}
    aug = agent.config.algo.nn_augment
    contact = aug.threshold if contact is None else contact
    obs_keys = [s.name for s in runtime.obs_schema]
    dataset = WindowDataset(
        store, obs_keys=obs_keys, obs_horizon=agent.obs_info.obs_horizon,
        pred_horizon=agent.config.policy.pred_horizon, norm_stats=runtime.stats, cache_in_ram=True,
    )
    table = dataset.base_windows()
    steps, episode, within, expert = table["step"], table["episode"], table["within"], table["expert"]
    if expert.all() or not expert.any():
        return {"run": str(run), "error": "the store needs both expert and non-expert episodes"}
    value = state_values(runtime, dataset)
    keys = tuple(sorted(aug.feature_keys)) if aug.feature_keys else default_feature_keys(store, obs_keys)
    features = state_features(store, steps, keys, runtime.stats)
    distance = nearest_distance(features[~expert], features[expert])
    v_non, within_non = value[~expert], within[~expert]
    bins = []
    for lo, hi in zip(DISTANCE_BINS[:-1], DISTANCE_BINS[1:], strict=True):
        inside = (distance >= lo) & (distance < hi)
        bins.append({"distance": f"[{lo}, {hi})", "steps": int(inside.sum()),
                     "v_mean": round(float(v_non[inside].mean()), 3) if inside.any() else None})
    gamma = agent.config.critic.gamma
    before: dict[int, list[tuple[float, float]]] = {k: [] for k in STEPS_BEFORE_CONTACT}
    for ep in np.unique(episode[~expert]):
        own = episode[~expert] == ep
        ep_v, ep_d = v_non[own], distance[own]
        hits = np.flatnonzero((ep_d < contact) & (within_non[own] >= aug.skip_first))
        if hits.size == 0:
            continue
        t = int(hits[0])
        for k in STEPS_BEFORE_CONTACT:
            if t - k >= 0:
                before[k].append((float(ep_v[t - k]), gamma**k * float(ep_v[t])))
    flow = {
        str(k): {"episodes": len(pairs),
                 "v_mean": round(float(np.mean([p[0] for p in pairs])), 3) if pairs else None,
                 "if_flowed": round(float(np.mean([p[1] for p in pairs])), 3) if pairs else None}
        for k, pairs in before.items()
    }
    return {
        "run": str(run), "algo": agent.config.algo.name, "gamma": gamma,
        "v_expert_mean": round(float(value[expert].mean()), 3),
        "v_non_expert_by_distance_to_expert": bins,
        "contact_distance": contact,
        "contact_from_step": aug.skip_first,
        "v_steps_before_first_contact": flow,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders (critic methods)")
    parser.add_argument("--store", required=True, help="the benchmark's dataset store")
    parser.add_argument("--windows", type=int, default=512, help="windows per side (expert / non-expert)")
    parser.add_argument("--num-candidates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--value-flow", action="store_true", help="where value reaches in the non-expert data")
    parser.add_argument("--contact", type=float, default=None,
                        help="distance to an expert state that counts as reaching it (default: the run's nn_augment.threshold)")
    args = parser.parse_args()
    store = EpisodeStore.open(args.store, mode="r")
    for run in args.runs:
        if args.value_flow:
            print(json.dumps(value_flow(run, store, args.contact)))
        else:
            print(json.dumps(probe(run, store, args.windows, args.num_candidates, args.seed)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
