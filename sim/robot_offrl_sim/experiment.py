"""One experiment = dataset recipe -> train several methods x seeds -> sweep each -> one report.

`make demo` (tiny budget) and the RISE benchmark in bench/rise_sim (real budget) are the same code
with different YAML files in configs/experiment/, so the numbers in docs/results.md come from the
path a user can rerun. Finished stages are reused on a rerun (a dataset that exists, a run whose
last checkpoint reached the step budget, a sweep with its sweep.json), so an interrupted
experiment continues where it stopped.
"""

from __future__ import annotations

import json
import platform
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf

from robot_offrl.errors import ConfigError
from robot_offrl.train.resume import config_differences
from robot_offrl.train.settings import RUN_PLACE_KEYS
from robot_offrl_sim.perturbations import parse_perturbation
from robot_offrl_sim.regions import parse_grid
from robot_offrl_sim.sweep import SweepConfig, run_sweep


@dataclass(frozen=True)
class Method:
    """One row of the table: a training recipe, or another row's trained runs acted with other options.

    ``policy_from`` names an earlier method whose runs this one sweeps instead of training its own:
    an ablation of a test-time part (critic-guided selection: ``acting: {num_candidates: 1}``) then
    uses the very same weights, so the row isolates that part and costs no training.
    """

    name: str
    overrides: tuple[str, ...]
    seeds: tuple[int, ...] | None = None  # None: the experiment's seeds (ablations may use fewer)
    policy_from: str | None = None
    acting: dict[str, Any] = field(default_factory=dict)  # PolicyRuntime options for the sweeps


@dataclass(frozen=True)
class SweepSet:
    """One evaluation of every trained policy: a region grid, optionally with perturbations."""

    name: str
    region: str = "wide"
    grid: tuple[int, int] = (3, 3)
    episodes_per_cell: int = 1
    perturb: tuple[str, ...] = ()
    horizon: int | None = None


@dataclass(frozen=True)
class RolloutStage:
    """Cheap data a lab gets for free: an earlier policy's attempts, added before any row trains.

    The policy is one of the experiment's own training rows (normally ``bc_expert``) trained on the
    recipe's store, so the rollouts come from a policy that learnt from the same expert demos every row
    sees. Its episodes run from ``region`` with their own seeds (never the sweeps'), flagged non-expert
    with source ``policy_rollout``, success or not: the labels carry no hint from the evaluation.
    """

    method: str
    episodes: int
    seed: int = 0
    region: str = "wide"


@dataclass(frozen=True)
class Experiment:
    name: str
    task: str
    recipe: str
    methods: tuple[Method, ...]
    seeds: tuple[int, ...] = (0,)
    train_overrides: tuple[str, ...] = ()
    sweeps: tuple[SweepSet, ...] = (SweepSet("wide"),)
    workers: int = 1
    video: int = 0
    notes: str = ""
    source: str = ""
    rollouts: RolloutStage | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_experiment_file(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping, on top of the file it ``extends`` (relative to its own folder).

    A variant of a benchmark (the same rows plus a stage, a few more rows) names its base instead of
    repeating it, so the two cannot drift: the variant's keys replace the base's, and its
    ``extra_methods`` are appended to the base's rows.
    """
    if not path.is_file():
        raise ConfigError(f"experiment file '{path}' does not exist (see configs/experiment/)")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: `extends` loops back to a file that extends it")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping, got {type(data).__name__}")
    base_name = data.pop("extends", None)
    if base_name is None:
        if "extra_methods" in data:
            raise ConfigError(f"{path}: `extra_methods` adds rows to the file named by `extends`; use `methods`")
        return data
    base = read_experiment_file(path.parent / str(base_name), (*chain, path.resolve()))
    extra = data.pop("extra_methods", None) or []
    merged = {**base, **data}
    merged["methods"] = [*merged.get("methods", []), *extra]
    return merged


def _rollout_stage(raw: Any, path: Path) -> RolloutStage | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"method", "episodes", "seed", "region"} or "method" not in raw:
        raise ConfigError(f"{path}: rollouts needs `method` and `episodes` (optional `seed`, `region`), got {raw!r}")
    stage = RolloutStage(str(raw["method"]), int(raw.get("episodes", 0)), int(raw.get("seed", 0)),
                         str(raw.get("region", "wide")))
    if stage.episodes < 1:
        raise ConfigError(f"{path}: rollouts.episodes must be >= 1, got {stage.episodes}")
    return stage


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    data = read_experiment_file(path)
    try:
        methods = tuple(
            Method(m["name"], tuple(m.get("overrides", [])),
                   tuple(int(x) for x in m["seeds"]) if m.get("seeds") is not None else None,
                   m.get("policy_from"), dict(m.get("acting") or {}))
            for m in data["methods"]
        )
        sweeps = tuple(
            SweepSet(s["name"], s.get("region", "wide"), parse_grid(str(s.get("grid", "3x3"))),
                     int(s.get("episodes_per_cell", 1)),
                     tuple(s.get("perturb", []) or []), s.get("horizon"))
            for s in data.get("sweeps", [{"name": "wide"}])
        )
        experiment = Experiment(
            name=str(data["name"]), task=str(data["task"]), recipe=str(data["recipe"]), methods=methods,
            seeds=tuple(int(s) for s in data.get("seeds", [0])), train_overrides=tuple(data.get("train_overrides", [])),
            sweeps=sweeps, workers=int(data.get("workers", 1)), video=int(data.get("video", 0)),
            notes=str(data.get("notes", "")), source=str(path), rollouts=_rollout_stage(data.get("rollouts"), path),
        )
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{path}: malformed experiment file ({err!r}); see configs/experiment/demo.yaml") from err
    if not experiment.methods or not experiment.seeds:
        raise ConfigError(f"{path}: needs at least one method and one seed")
    _check_methods(experiment, path)
    _check_rollouts(experiment, path)
    for s in experiment.sweeps:
        for p in s.perturb:
            parse_perturbation(p)
    return experiment


def _check_methods(exp: Experiment, path: Path) -> None:
    """Problems a run would otherwise hit hours in: duplicate rows, bad acting options, a bad policy_from."""
    from robot_offrl.runtime.policy import check_acting_options

    seen: dict[str, Method] = {}
    for method in exp.methods:
        where = f"{path}: method {method.name!r}"
        if method.name in seen:
            raise ConfigError(f"{where} is listed twice")
        try:
            check_acting_options(method.acting)
        except ConfigError as err:
            raise ConfigError(f"{where}: acting: {err}") from err
        if method.policy_from is not None:
            source = seen.get(method.policy_from)
            if source is None or source.policy_from is not None:
                raise ConfigError(f"{where}: policy_from must name a method listed above it that trains "
                                  f"its own runs, got {method.policy_from!r}")
            if method.overrides:
                raise ConfigError(f"{where}: a policy_from method trains nothing, so it cannot have "
                                  "training overrides; use acting: for test-time options")
            missing = set(_seeds(method, exp)) - set(_seeds(source, exp))
            if missing:
                raise ConfigError(f"{where}: seeds {sorted(missing)} are not trained by {source.name!r}")
        seen[method.name] = method


def _check_rollouts(exp: Experiment, path: Path) -> None:
    stage = exp.rollouts
    if stage is None:
        return
    method = next((m for m in exp.methods if m.name == stage.method), None)
    if method is None or method.policy_from is not None:
        raise ConfigError(f"{path}: rollouts.method must name a row that trains its own runs, got {stage.method!r}")


def _seeds(method: Method, exp: Experiment) -> tuple[int, ...]:
    return method.seeds or exp.seeds


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else base / p


def _train(
    exp: Experiment, method: Method, seed: int, data: Path, run_dir: Path, log: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the row's run, or reuse it; returns its summary and the acting options it must be swept with.

    Those options are the acting settings (``ACTING_SETTINGS``: sampler, steps, selection) the row now
    composes where a reused run stored others, e.g. after a default changed: training never reads them,
    so the run is reused and its sweeps act as the row asks, instead of retraining it.
    """
    from robot_offrl.checkpoint import latest_checkpoint, load_checkpoint
    from robot_offrl.config import compose
    from robot_offrl.train.loop import train
    from robot_offrl.train.resume import acting_differences

    overrides = [f"task={exp.task}", f"data={data}", f"out={run_dir}", f"seed={seed}",
                 *exp.train_overrides, *method.overrides]
    cfg = compose("train", overrides)
    found = latest_checkpoint(run_dir)
    checkpoint = load_checkpoint(found) if found is not None else None
    acting: dict[str, Any] = {}
    if checkpoint is not None:
        wanted = OmegaConf.to_container(cfg, resolve=True)
        changed = config_changes(checkpoint.config, wanted)
        if changed:
            raise ConfigError(f"{run_dir} was trained with other settings than {method.name!r} now asks for "
                              f"({'; '.join(changed)}); delete that folder to train it again")
        acting = acting_differences(checkpoint.config, wanted)
    if checkpoint is not None and checkpoint.step >= int(cfg.trainer.steps):
        told = f"; acts with {acting}" if acting else ""
        log(f"  reuse {run_dir} (already trained to {cfg.trainer.steps} steps{told})")
        summary = run_dir / "train_summary.json"
        found_summary = json.loads(summary.read_text()) if summary.is_file() else {"step": int(cfg.trainer.steps)}
        return found_summary, acting
    t0 = time.monotonic()
    result = train(cfg)
    out = {"step": result.step, "losses": result.losses, "val_losses": result.val_losses,
           "seconds": round(time.monotonic() - t0, 1), "overrides": overrides}
    (run_dir / "train_summary.json").write_text(json.dumps(out, indent=1))
    return out, {}  # a resumed run saves the composed settings, so it acts with them


def config_changes(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Settings a finished run was trained with that differ from what its row now composes.

    Without this check a rerun after editing an experiment file would reuse runs trained under the old
    settings under the new row's name. Unlike a resume, a run trained for another number of steps is
    a different run here.
    """
    changes = config_differences(saved, wanted, ignored=RUN_PLACE_KEYS)
    return [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()]


def _sweep(exp: Experiment, method: Method, sweep: SweepSet, run_dir: Path, seed: int, out: Path,
           acting: dict[str, Any], log: Any) -> dict[str, Any]:
    """Sweep ``run_dir`` with the acting options ``acting`` (the row's own over those its run needs)."""
    if (out / "sweep.json").is_file():
        summary = json.loads((out / "sweep.json").read_text())
        made_with = summary.get("config", {}).get("policy_kwargs", {})
        if made_with != acting:
            raise ConfigError(f"{out} was swept with acting options {made_with}, but {method.name!r} now asks "
                              f"for {acting}; delete that folder to sweep again")
        log(f"  reuse {out}")
        return summary
    config = SweepConfig(
        task=exp.task, policy=f"checkpoint:{run_dir}", region=sweep.region, grid=sweep.grid,
        episodes_per_cell=sweep.episodes_per_cell, perturbations=tuple(parse_perturbation(p) for p in sweep.perturb),
        seed=1000 + seed, horizon=sweep.horizon, workers=exp.workers, video=exp.video,
        policy_kwargs=dict(acting),
    )
    return run_sweep(config, out)


def run_experiment(exp: Experiment, out: str | Path, log: Any = print) -> dict[str, Any]:
    """Run every stage that is not done yet and write results.json, results.md and a heatmap figure."""
    from robot_offrl_sim.recipes import build_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    repo = Path(__file__).resolve().parents[2]
    recipe = _resolve(exp.recipe, repo)
    data = out / "data" / f"{Path(exp.recipe).stem}.zarr"
    t0 = time.monotonic()
    results: dict[str, Any] = {"experiment": exp.name, "task": exp.task, "methods": {}}
    if data.exists():
        log(f"[1/3] dataset: reuse {data}")
    elif exp.rollouts is None:
        log(f"[1/3] dataset: building {data} from {exp.recipe}")
        build_dataset(recipe, str(data))
    else:
        _build_with_rollouts(exp, recipe, data, out, log)
    if exp.rollouts is not None:
        results["rollouts"] = rollout_summary(exp.rollouts, data)
    timings["dataset_s"] = round(time.monotonic() - t0, 1)

    timings.update(train_s=0.0, sweep_s=0.0)
    run_acting: dict[tuple[str, int], dict[str, Any]] = {}  # what each reused run must act with (_train)
    for seed, method in run_order(exp):  # the report is rewritten after every run: see run_order
        entry = results["methods"].setdefault(method.name, {"seeds": {}})
        if method.policy_from is None:
            run_dir = out / "runs" / f"{method.name}_s{seed}"
            log(f"[2/3] train {method.name} seed {seed} -> {run_dir}")
            t0 = time.monotonic()
            trained, run_acting[(method.name, seed)] = _train(exp, method, seed, data, run_dir, log)
            timings["train_s"] = round(timings["train_s"] + time.monotonic() - t0, 1)
        else:
            run_dir = out / "runs" / f"{method.policy_from}_s{seed}"
            log(f"[2/3] {method.name} seed {seed}: no training, acts with {run_dir}")
            source = results["methods"][method.policy_from]["seeds"][str(seed)]["train"]
            trained = {"policy_from": method.policy_from, "step": source.get("step")}
        acting = {**run_acting[(method.policy_from or method.name, seed)], **method.acting}
        entry["seeds"][str(seed)] = {"train": trained, "sweeps": {}, **({"acting": acting} if acting else {})}
        t0 = time.monotonic()
        for sweep in exp.sweeps:
            sweep_dir = out / "sweeps" / sweep.name / f"{method.name}_s{seed}"
            log(f"[3/3] sweep {sweep.name}: {method.name} seed {seed} -> {sweep_dir}")
            summary = _sweep(exp, method, sweep, run_dir, seed, sweep_dir, acting, log)
            entry["seeds"][str(seed)]["sweeps"][sweep.name] = {
                "rate": summary["totals"]["rate"], "narrow_rate": summary["narrow"]["rate"],
                "episodes": summary["totals"]["episodes"], "dir": str(sweep_dir),
            }
        timings["sweep_s"] = round(timings["sweep_s"] + time.monotonic() - t0, 1)
        write_results(exp, results, timings, out)
    return results


def rollout_policy_dir(stage: RolloutStage, out: Path) -> Path:
    return out / "runs" / f"rollout_policy_{stage.method}_s{stage.seed}"


def _build_with_rollouts(exp: Experiment, recipe: Path, data: Path, out: Path, log: Any) -> None:
    """Recipe store -> the rollout policy trained on it -> its rollouts appended, renamed into place whole.

    The recipe's store is kept beside (``<name>_before_rollouts.zarr``) and the policy under
    ``runs/rollout_policy_<method>_s<seed>``, so a rerun reuses both; the final store appears only once
    every rollout is in (staging.build_beside), so an interrupted stage is never trained on.
    """
    from robot_offrl.data.ops import copy_store
    from robot_offrl.data.staging import build_beside
    from robot_offrl_sim.collect import collect
    from robot_offrl_sim.recipes import build_dataset, load_recipe

    stage = exp.rollouts
    assert stage is not None
    base = data.with_name(f"{data.stem}_before_rollouts.zarr")
    if base.exists():
        log(f"[1/3] dataset: reuse {base}")
    else:
        log(f"[1/3] dataset: building {base} from {exp.recipe}")
        build_dataset(recipe, str(base))
    method = next(m for m in exp.methods if m.name == stage.method)
    policy_dir = rollout_policy_dir(stage, out)
    log(f"[1/3] rollouts: train {method.name} seed {stage.seed} on the recipe's store -> {policy_dir}")
    _, acting = _train(exp, method, stage.seed, base, policy_dir, log)
    plan = load_recipe(recipe)
    log(f"[1/3] rollouts: {stage.episodes} episodes of {policy_dir.name} from region {stage.region} -> {data}")
    with build_beside(str(data), "experiment rollouts") as staged:
        copy_store(str(base), staged).close()
        collect(plan.task, "policy_rollout", stage.episodes, staged, region=stage.region, cameras=plan.cameras,
                seed=zlib.crc32(f"{plan.seed}/rollouts/{stage.method}/{stage.seed}".encode()),
                horizon=plan.horizon, checkpoint=str(policy_dir), acting=acting,
                extra_attrs={"recipe": plan.name, "recipe_seed": plan.seed})


def rollout_summary(stage: RolloutStage, data: Path) -> dict[str, Any]:
    """How the rollout policy did on its own episodes: the report states what kind of data it added."""
    from robot_offrl.data import EpisodeStore

    store = EpisodeStore.open(str(data), mode="r")
    episodes = [m for m in store.episodes if m.source == "policy_rollout"]
    steps = sum(m.length for m in episodes)
    return {"method": stage.method, "seed": stage.seed, "region": stage.region, "episodes": len(episodes),
            "successes": sum(bool(m.success) for m in episodes), "steps": steps,
            "share_of_steps": round(steps / max(store.num_steps, 1), 3)}


def run_order(exp: Experiment) -> list[tuple[int, Method]]:
    """Seed-major, the methods that run on every seed first and the fewer-seed ablations after.

    After each seed every main method has a result, and the report is rewritten after every run, so a
    benchmark stopped early still leaves a complete, honest partial table of the main comparison. A
    policy_from method comes after its source: load_experiment checks that the source is listed above
    it and trains every seed it needs, so it is never in a later group.
    """
    pairs = [(seed, i, m) for i, m in enumerate(exp.methods) for seed in _seeds(m, exp)]
    pairs.sort(key=lambda p: (set(_seeds(p[2], exp)) != set(exp.seeds), p[0], p[1]))
    return [(seed, m) for seed, _, m in pairs]


def write_results(exp: Experiment, results: dict[str, Any], timings: dict[str, float], out: Path) -> None:
    results["aggregate"] = aggregate(results, exp)
    results["timings"] = dict(timings)
    results["machine"] = machine_description()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_figure(exp, out)
    write_markdown(exp, results, out)


def _mean_std(values: list[float | None]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals), "values": vals}


def aggregate(results: dict[str, Any], exp: Experiment) -> dict[str, Any]:
    """Per method and sweep: mean and spread over seeds of the overall and the narrow-region rate."""
    table: dict[str, Any] = {}
    for name, entry in results["methods"].items():
        row: dict[str, Any] = {"seeds_done": sorted(int(k) for k in entry["seeds"])}
        for sweep in exp.sweeps:
            per_seed = [s["sweeps"].get(sweep.name, {}) for s in entry["seeds"].values()]
            row[sweep.name] = _mean_std([p.get("rate") for p in per_seed])
            row[f"{sweep.name}_narrow"] = _mean_std([p.get("narrow_rate") for p in per_seed])
        table[name] = row
    return table


def machine_description() -> dict[str, str]:
    import os

    import torch

    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpus": str(os.cpu_count()),
        "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "date": time.strftime("%Y-%m-%d"),
    }


def _fmt(cell: dict[str, Any]) -> str:
    if cell["mean"] is None:
        return "n/a"
    if cell["n"] == 1:
        return f"{cell['mean']:.0%}"
    # Per-seed rates in brackets: with 3 seeds a mean and std alone hide a 100/0/100 split.
    per_seed = ", ".join(f"{100 * v:.0f}" for v in cell["values"])
    return f"{cell['mean']:.0%} ± {cell['std']:.0%} ({per_seed})"


def write_figure(exp: Experiment, out: Path) -> None:
    """Heatmaps side by side: one row per sweep set, one column per method (its first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(exp.sweeps), len(exp.methods)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), dpi=100, squeeze=False)
    for r, sweep in enumerate(exp.sweeps):
        for c, method in enumerate(exp.methods):
            ax = axes[r][c]
            seed = _seeds(method, exp)[0]
            png = out / "sweeps" / sweep.name / f"{method.name}_s{seed}" / "heatmap.png"
            if png.is_file():
                ax.imshow(plt.imread(str(png)))
            ax.set_title(f"{method.name} | {sweep.name}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "heatmaps.png", metadata={"Software": None})
    plt.close(fig)


def write_markdown(exp: Experiment, results: dict[str, Any], out: Path) -> None:
    agg = results["aggregate"]
    lines = [f"# {exp.name}: {exp.task}", ""]
    if exp.notes:
        lines += [exp.notes.strip(), ""]
    # A sweep over the narrow region is all narrow cells: a second column would repeat its first.
    narrow_cols = [s for s in exp.sweeps if s.region != "narrow"]
    header = (["method", "seeds"] + [f"{s.name} (all cells)" for s in exp.sweeps]
              + [f"{s.name}: narrow cells" for s in narrow_cols])
    lines += ["Success rate per sweep" + (f", mean ± std over seeds {list(exp.seeds)} (per seed in brackets, %)"
                                          if len(exp.seeds) > 1 else
                                          f" (seed {exp.seeds[0]})") + ":", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in exp.methods:
        if method.name not in agg:
            lines.append(f"| {method.name} | not run yet |" + " |" * (len(header) - 2))
            continue
        row = agg[method.name]
        cells = [_fmt(row[s.name]) for s in exp.sweeps] + [_fmt(row[f"{s.name}_narrow"]) for s in narrow_cols]
        planned = _seeds(method, exp)
        done = row["seeds_done"]
        seeds = ",".join(map(str, done)) + ("" if len(done) == len(planned) else f" (of {len(planned)} planned)")
        lines.append(f"| {method.name} | {seeds} | " + " | ".join(cells) + " |")
    lines += ["", "![heatmaps](heatmaps.png)", "", "## What was run", ""]
    lines.append(f"- experiment file: `{exp.source}`; dataset recipe: `{exp.recipe}`")
    rollouts = results.get("rollouts")
    if rollouts is not None:
        lines.append(f"- policy rollouts added to the recipe's store: {rollouts['episodes']} episodes of "
                     f"`{rollouts['method']}` seed {rollouts['seed']} from region {rollouts['region']}, "
                     f"{rollouts['successes']} successful, {rollouts['share_of_steps']:.0%} of all steps")
    lines.append(f"- training overrides (all methods): `{' '.join(exp.train_overrides)}`")
    for method in exp.methods:
        if method.name not in results["methods"]:
            continue
        seeds = results["methods"][method.name]["seeds"]
        # What the sweeps acted with: the row's own options over those its reused runs needed (_train).
        used = next(iter(seeds.values())).get("acting", method.acting) if seeds else method.acting
        acting = " ".join(f"{k}={v}" for k, v in sorted(used.items()))
        acting_text = f", acting `{acting}`" if acting else ""
        if method.policy_from is not None:
            lines.append(f"- {method.name}: the trained `{method.policy_from}` runs, no training of its own"
                         f"{acting_text}")
            continue
        first = next(iter(results["methods"][method.name]["seeds"].values()))["train"]
        loss = first.get("losses", {}).get("loss")
        loss_text = f", final loss {loss:.4f}" if isinstance(loss, float) else ""
        lines.append(f"- {method.name}: `{' '.join(method.overrides)}`, {first.get('step')} steps{loss_text}"
                     f"{acting_text}")
    for s in exp.sweeps:
        pert = f", perturbations {list(s.perturb)}" if s.perturb else ""
        lines.append(f"- sweep `{s.name}`: region {s.region}, grid {s.grid[0]}x{s.grid[1]}, "
                     f"{s.episodes_per_cell} episode(s) per cell{pert}")
    t = results["timings"]
    m = results["machine"]
    lines += [f"- time: dataset {t['dataset_s']} s, training {t['train_s']} s, sweeps {t['sweep_s']} s",
              f"- machine: {m['platform']}, {m['cpus']} CPUs, GPU: {m['cuda']}, torch {m['torch']}, {m['date']}",
              "", "Per-run files: `runs/<method>_s<seed>/` (checkpoints, TensorBoard), "
              "`sweeps/<sweep>/<method>_s<seed>/` (sweep.json, heatmap.png, report.md).", ""]
    (out / "results.md").write_text("\n".join(lines))
