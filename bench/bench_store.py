"""Episode store throughput: image-episode appends and random training-window reads, each beside numpy in RAM.

Run by hand (not part of the test suite)::

    PYTHONPATH=. .venv/bin/python bench/bench_store.py --episodes 40 --length 100

A training window is what the sampler reads: 2 observation steps of every key plus 16 actions, at a
random step of a random episode (clipped to the episode, no padding: padding is the sampler's job).
The "ratio" column is store time / numpy-in-RAM time for the same work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema  # noqa: E402

IMG = (84, 84, 3)
TO, TP = 2, 16


def schema() -> StoreSchema:
    return StoreSchema(
        obs=[
            KeySpec("robot0_eef_pos", "float32", (3,), "lowdim"),
            KeySpec("object", "float32", (10,), "lowdim"),
            KeySpec("agentview_image", "uint8", IMG, "rgb"),
        ],
        action=ActionSpace(list("xyzabcg"), ["normalized"] * 7, "delta", [-1.0] * 7, [1.0] * 7),
        control_rate_hz=20.0,
        robot="Panda",
        task="bench",
    )


def synthetic_episode(seed: int, length: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Camera-like frames (smooth scene, moving object, sensor noise), so compression is realistic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : IMG[0], 0 : IMG[1]]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).astype(np.float32) + rng.uniform(0, 60, 3)
    frames = np.empty((length, *IMG), np.uint8)
    cx, cy = rng.uniform(20, 64, 2)
    for t in range(length):
        cx, cy = np.clip([cx + rng.normal(0, 1), cy + rng.normal(0, 1)], 8, 76)
        img = base.copy()
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 64] = (200, 40, 40)
        img += rng.normal(0, 2, IMG)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    obs = {
        "robot0_eef_pos": rng.normal(size=(length, 3)).astype(np.float32),
        "object": rng.normal(size=(length, 10)).astype(np.float32),
        "agentview_image": frames,
    }
    return obs, rng.uniform(-1, 1, (length, 7)).astype(np.float32)


def episode_bytes(obs: dict[str, np.ndarray], actions: np.ndarray) -> int:
    return sum(v.nbytes for v in obs.values()) + actions.nbytes


def bench_append(path: Path, episodes: list[Any], durable: bool) -> dict[str, float]:
    shutil.rmtree(path, ignore_errors=True)
    store = EpisodeStore.create(str(path), schema(), durable=durable)
    start = time.perf_counter()
    for obs, actions in episodes:
        store.append_episode(obs, actions, expert=True, source="scripted")
    elapsed = time.perf_counter() - start
    frames = sum(len(a) for _, a in episodes)
    raw = sum(episode_bytes(o, a) for o, a in episodes)
    return {"s": elapsed, "frames_per_s": frames / elapsed, "mb_per_s": raw / elapsed / 1e6}


def bench_append_ram(episodes: list[Any]) -> dict[str, float]:
    """The same appends into preallocated numpy arrays (the lower bound: one memcpy per episode)."""
    frames = sum(len(a) for _, a in episodes)
    first_obs, first_act = episodes[0]
    cols = {k: np.empty((frames, *v.shape[1:]), v.dtype) for k, v in {**first_obs, "actions": first_act}.items()}
    start = time.perf_counter()
    t = 0
    for obs, actions in episodes:
        for k, v in {**obs, "actions": actions}.items():
            cols[k][t : t + len(v)] = v
        t += len(actions)
    elapsed = time.perf_counter() - start
    raw = sum(episode_bytes(o, a) for o, a in episodes)
    return {"s": elapsed, "frames_per_s": frames / elapsed, "mb_per_s": raw / elapsed / 1e6}


class _StoreSteps:
    """Adapts store.read_steps to the slicing interface the window code uses."""

    def __init__(self, store: EpisodeStore, key: str) -> None:
        self.store, self.key = store, key

    def __getitem__(self, sl: slice) -> np.ndarray:
        return self.store.read_steps(self.key, sl.start, sl.stop)


class WindowSource:
    """Random windows from a store (``read_steps`` or plain zarr slices) or the same data as numpy arrays."""

    def __init__(self, url: str, how: str) -> None:
        self.url, self.how = url, how
        self._setup()

    def _setup(self) -> None:
        store = EpisodeStore.open(self.url)
        self.bounds = np.array([(m.start, m.end) for m in store.episodes])
        keys = [*store.schema.obs_keys, "actions"]
        zarrs = {k: store.obs_array(k) for k in keys[:-1]} | {"actions": store.action_array()}
        if self.how == "ram":
            self.arrays = {k: np.asarray(a[:]) for k, a in zarrs.items()}
        elif self.how == "zarr":
            self.arrays = zarrs
        else:
            self.arrays = {k: _StoreSteps(store, k) for k in keys}

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "how": self.how}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        start, end = self.bounds[rng.integers(len(self.bounds))]
        t = int(rng.integers(start + TO - 1, end))
        out = {k: np.asarray(a[t - TO + 1 : t + 1]) for k, a in self.arrays.items() if k != "actions"}
        out["actions"] = np.asarray(self.arrays["actions"][t : min(t + TP, end)])
        return out


def bench_windows(source: WindowSource, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        source[i]
    return count / (time.perf_counter() - start)


def bench_loader(source: WindowSource, count: int, workers: int, batch: int) -> float:
    import torch
    from torch.utils.data import DataLoader, Sampler

    class Seeds(Sampler[int]):
        def __iter__(self) -> Any:
            return iter(range(count))

        def __len__(self) -> int:
            return count

    def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        # Actions are clipped at episode ends here (no padding), so stack only the observations.
        return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0] if k != "actions"}

    loader = DataLoader(source, batch_size=batch, sampler=Seeds(), num_workers=workers, collate_fn=collate,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    start = time.perf_counter()
    for _ in loader:
        pass
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dir", default=None, help="where to write the store (default: a temp folder)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / "bench.zarr"
    episodes = [synthetic_episode(i, args.length) for i in range(args.episodes)]
    raw = sum(episode_bytes(o, a) for o, a in episodes)

    rows: list[tuple[str, str, str, str]] = []
    ram = bench_append_ram(episodes)
    for durable in (False, True):
        res = bench_append(path, episodes, durable)
        rows.append((f"append, fsync={'on' if durable else 'off'}",
                     f"{res['mb_per_s']:.1f} MB/s, {res['frames_per_s']:.0f} frames/s",
                     f"{ram['mb_per_s']:.0f} MB/s, {ram['frames_per_s']:.0f} frames/s",
                     f"{ram['s'] / res['s']:.3f}x"))
    on_disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    store_src, ram_src = WindowSource(str(path), "store"), WindowSource(str(path), "ram")
    zarr_src = WindowSource(str(path), "zarr")
    rs = bench_windows(ram_src, args.windows * 10)
    zs = bench_windows(zarr_src, max(args.windows // 10, 50))
    rows.append(("random windows, plain zarr slices", f"{zs:.0f} windows/s", f"{rs:.0f} windows/s", f"{zs / rs:.3f}x"))
    ss = bench_windows(store_src, args.windows)
    rows.append(("random windows, store.read_steps", f"{ss:.0f} windows/s", f"{rs:.0f} windows/s", f"{ss / rs:.3f}x"))
    for workers in (0, args.workers):
        zl = bench_loader(store_src, args.windows, workers, args.batch)
        rl = bench_loader(ram_src, args.windows * 4, workers, args.batch)
        rows.append((f"DataLoader + read_steps, {workers} workers, batch {args.batch}", f"{zl:.0f} windows/s",
                     f"{rl:.0f} windows/s", f"{zl / rl:.3f}x"))

    print(f"data: {args.episodes} episodes x {args.length} steps, {IMG} uint8 + 13 low-dim + 7 actions; "
          f"raw {raw / 1e6:.1f} MB, on disk {on_disk / 1e6:.1f} MB (x{raw / on_disk:.1f}); "
          f"cores: {os.cpu_count()}")
    print("| measurement | store | numpy in RAM | store / RAM |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
