"""The experiment pipeline behind `make demo` and bench/rise_sim, end to end on a tiny budget.

Checks the plumbing (dataset -> training -> sweeps -> table, reuse on rerun), not the outcome.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_offrl.data import EpisodeStore
from robot_offrl.errors import ConfigError
from robot_offrl_sim.experiment import load_experiment, run_experiment


def _write(tmp_path, **changes):
    recipe = tmp_path / "tiny_recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "task": "lift", "seed": 0, "horizon": 40, "cameras": [],
        "parts": [{"kind": "expert", "episodes": 2, "region": "narrow"},
                  {"kind": "play", "episodes": 2, "region": "wide"}],
    }))
    exp = {
        "name": "tiny", "task": "lift", "recipe": str(recipe), "seeds": [0],
        "train_overrides": ["trainer.steps=3", "trainer.batch_size=8", "trainer.warmup_steps=1",
                            "trainer.log_every=1", "trainer.checkpoint_every=3", "trainer.val_fraction=0",
                            "trainer.progress=false", "policy.hidden_dim=32", "policy.num_blocks=1",
                            "critic.hidden_dim=32", "critic.num_layers=1"],
        "methods": [{"name": "bc_expert", "overrides": ["algo=bc"]},
                    {"name": "rise", "overrides": ["algo=rise", "algo.selection.num_candidates=4"]},
                    {"name": "rise_k1", "policy_from": "rise", "acting": {"num_candidates": 1}}],
        "sweeps": [{"name": "wide", "region": "wide", "grid": "1x1", "episodes_per_cell": 1, "horizon": 10},
                   {"name": "pushed", "region": "narrow", "grid": "1x1", "episodes_per_cell": 1, "horizon": 10,
                    "perturb": ["object:0.05,0@3"]}],
        "workers": 1,
        **changes,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_experiment_runs_end_to_end_and_reuses_finished_stages(tmp_path, capsys):
    exp = load_experiment(_write(tmp_path))
    out = tmp_path / "out"
    messages: list[str] = []
    results = run_experiment(exp, out, log=messages.append)
    table = (out / "results.md").read_text()
    assert "| bc_expert |" in table and "| rise |" in table and "| rise_k1 |" in table and "pushed" in table
    assert "rise_k1: the trained `rise` runs, no training of its own, acting `num_candidates=1`" in table
    # The narrow-cell column only for sweeps beyond the narrow region, where it says something new.
    assert "wide: narrow cells" in table and "pushed: narrow cells" not in table
    assert (out / "heatmaps.png").stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    for method in ("bc_expert", "rise", "rise_k1"):
        entry = saved["methods"][method]["seeds"]["0"]
        assert entry["train"]["step"] == 3
        assert entry["sweeps"]["wide"]["episodes"] == 1
        assert entry["sweeps"]["pushed"]["episodes"] == 1
        assert 0.0 <= results["aggregate"][method]["wide"]["mean"] <= 1.0
    # The acting-only row swept rise's own weights with one candidate, and trained nothing.
    assert not (out / "runs" / "rise_k1_s0").exists()
    k1 = json.loads((out / "sweeps" / "wide" / "rise_k1_s0" / "sweep.json").read_text())["config"]
    assert k1["policy"] == f"checkpoint:{out / 'runs' / 'rise_s0'}" and k1["policy_kwargs"] == {"num_candidates": 1}
    again: list[str] = []
    run_experiment(exp, out, log=again.append)
    assert sum("reuse" in m for m in again) == 1 + 2 + 6, again  # dataset, 2 runs, 3x2 sweeps
    # A finished sweep made with other acting options is not passed off as this row's result.
    changed = yaml.safe_load(Path(exp.source).read_text())
    changed["methods"][2]["acting"] = {"num_candidates": 2}
    Path(exp.source).write_text(yaml.safe_dump(changed))
    with pytest.raises(ConfigError, match="swept with acting options"):
        run_experiment(load_experiment(exp.source), out, log=again.append)
    # Nor a finished run trained with other settings than its row now asks for.
    changed["methods"][2]["acting"] = {"num_candidates": 1}
    changed["methods"][1]["overrides"] = [*changed["methods"][1]["overrides"], "algo.lipschitz_weight=0.5"]
    Path(exp.source).write_text(yaml.safe_dump(changed))
    with pytest.raises(ConfigError, match=r"trained with other settings .*algo.lipschitz_weight: 0.1 -> 0.5"):
        run_experiment(load_experiment(exp.source), out, log=again.append)
    # An acting setting the runs stored otherwise (a changed sampler default, say) retrains nothing:
    # the runs are reused and swept as the file now asks, and the old sweeps are not passed off for it.
    changed["methods"][1]["overrides"] = changed["methods"][1]["overrides"][:-1]
    changed["train_overrides"] = [*changed["train_overrides"], "policy.num_inference_steps=3"]
    Path(exp.source).write_text(yaml.safe_dump(changed))
    with pytest.raises(ConfigError, match=r"swept with acting options \{\}, but 'bc_expert' now asks for "
                                          r"\{'num_inference_steps': 3\}"):
        run_experiment(load_experiment(exp.source), out, log=again.append)
    shutil.rmtree(out / "sweeps")
    resteps: list[str] = []
    run_experiment(load_experiment(exp.source), out, log=resteps.append)
    assert sum("already trained" in m and "acts with {'num_inference_steps': 3}" in m for m in resteps) == 2, resteps
    k1 = json.loads((out / "sweeps" / "wide" / "rise_k1_s0" / "sweep.json").read_text())["config"]["policy_kwargs"]
    assert k1 == {"num_inference_steps": 3, "num_candidates": 1}
    acted = json.loads((out / "sweeps" / "wide" / "rise_s0" / "timing.json").read_text())["acting"]
    assert acted["num_inference_steps"] == 3
    assert json.loads((out / "results.json").read_text())["methods"]["rise"]["seeds"]["0"]["acting"] == {
        "num_inference_steps": 3}
    assert "rise_k1: the trained `rise` runs, no training of its own, acting `num_candidates=1 num_inference_steps=3`" in (
        out / "results.md").read_text()

    # The benchmark's critic probe reads the same runs and store.
    probe = _bench_module("rise_sim/critic_probe.py")
    store = EpisodeStore.open(str(out / "data" / "tiny_recipe.zarr"))
    report = probe.probe(out / "runs" / "rise_s0", store, count=8, num_candidates=4, seed=0)
    assert 0.0 <= report["q_auc_expert_vs_non_expert"] <= 1.0
    for side in ("expert", "non_expert"):
        assert report[side]["candidate_q_std"] >= 0 and np.isfinite(report[side]["q_data_mean"])
    assert probe.probe(out / "runs" / "bc_expert_s0", store, 8, 4, 0)["critic"] is False
    flow = probe.value_flow(out / "runs" / "rise_s0", store, contact=0.5)
    assert sum(b["steps"] for b in flow["v_non_expert_by_distance_to_expert"]) > 0
    assert np.isfinite(flow["v_expert_mean"]) and set(flow["v_steps_before_first_contact"]) == {"0", "5", "10", "20", "40"}

    # A trained critic can be swept at another K / replanning interval than it was trained with.
    from robot_offrl_cli.main import main

    sweep_out = tmp_path / "k2"
    argv = ["sweep", "--checkpoint", str(out / "runs" / "rise_s0"), "--task", "lift", "--grid", "1x1",
            "--horizon", "5", "--quiet", "--candidates", "2", "--n-action-steps", "4", "--amp", "bf16", "--inference-steps", "3", "--conv1d", "native",
            "--prune-after", "1", "--prune-keep", "1", "--out", str(sweep_out)]
    assert main(argv) == 0
    assert json.loads((sweep_out / "sweep.json").read_text())["config"]["policy_kwargs"] == {
        "n_action_steps": 4, "num_candidates": 2, "amp": "bf16", "num_inference_steps": 3, "conv1d": "native",
        "prune_after": 1, "prune_keep": 1}
    acting = json.loads((sweep_out / "timing.json").read_text())["acting"]
    assert (acting["num_candidates"], acting["amp"], acting["acting_dtype"], acting["conv1d"]) == (
        2, "bf16", "bfloat16", "native")
    assert (acting["prune_after"], acting["prune_keep"]) == (1, 1)
    capsys.readouterr()
    assert main([*argv[:2], str(out / "runs" / "bc_expert_s0"), *argv[3:-1], str(tmp_path / "bc_k2")]) == 2
    assert "needs a critic" in capsys.readouterr().err
    assert main(["sweep", "--policy", "scripted:lift", "--task", "lift", "--candidates", "2",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--checkpoint policies only" in capsys.readouterr().err
    for flag, value in (("--candidates", "0"), ("--n-action-steps", "0"), ("--temperature", "0"), ("--amp", "fp16"),
                        ("--inference-steps", "0"), ("--conv1d", "gemm"), ("--prune-after", "-1"),
                        ("--prune-keep", "0")):
        assert main([*argv[:-1], str(tmp_path / "bad"), flag, value]) == 2
        assert f"{flag} must be" in capsys.readouterr().err


def _bench_module(relative: str):
    path = Path(__file__).resolve().parents[2] / "bench" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_critic_probe_auc_counts_ties_as_half():
    probe = _bench_module("rise_sim/critic_probe.py")
    assert probe.auc(np.array([2.0, 3.0]), np.array([1.0])) == 1.0
    assert probe.auc(np.array([0.0]), np.array([1.0, 2.0])) == 0.0
    assert probe.auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_bad_experiment_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="needs at least one method"):
        load_experiment(_write(tmp_path, methods=[]))
    with pytest.raises(ConfigError, match="grid must look like"):
        load_experiment(_write(tmp_path, sweeps=[{"name": "w", "grid": "seven"}]))
    with pytest.raises(ConfigError, match="cannot parse perturbation"):
        load_experiment(_write(tmp_path, sweeps=[{"name": "w", "perturb": ["shove"]}]))


@pytest.mark.parametrize(("methods", "needle"), [
    ([{"name": "a"}, {"name": "a"}], "listed twice"),
    ([{"name": "a", "acting": {"num_candidates": 0}}], "num_candidates must be an integer >= 1"),
    ([{"name": "a", "acting": {"temperature": -1.0}}], "temperature must be > 0"),
    ([{"name": "a", "acting": {"selection": "best"}}], "selection must be one of"),
    ([{"name": "a", "acting": {"candidates": 2}}], "unknown acting option"),
    ([{"name": "k1", "policy_from": "rise"}], "policy_from must name a method listed above it"),
    ([{"name": "k1", "policy_from": "rise"}, {"name": "rise"}], "policy_from must name a method listed above it"),
    ([{"name": "rise"}, {"name": "k1", "policy_from": "rise", "overrides": ["algo=bc"]}], "cannot have training"),
    ([{"name": "rise", "seeds": [0]}, {"name": "k1", "policy_from": "rise", "seeds": [0, 1]}],
     r"seeds \[1\] are not trained by 'rise'"),
])
def test_bad_methods_are_refused_before_anything_runs(tmp_path, methods, needle):
    with pytest.raises(ConfigError, match=needle):
        load_experiment(_write(tmp_path, methods=methods, seeds=[0, 1]))


def test_run_order_puts_the_main_comparison_before_fewer_seed_ablations(tmp_path):
    from robot_offrl_sim.experiment import run_order

    exp = load_experiment(_write(tmp_path, seeds=[0, 1], methods=[
        {"name": "bc", "overrides": ["algo=bc"]},
        {"name": "ablation", "overrides": ["algo=rise"], "seeds": [0]},
        {"name": "rise", "overrides": ["algo=rise"]},
        {"name": "rise_k1", "policy_from": "rise", "acting": {"num_candidates": 1}},
    ]))
    assert [(seed, m.name) for seed, m in run_order(exp)] == [
        (0, "bc"), (0, "rise"), (0, "rise_k1"), (1, "bc"), (1, "rise"), (1, "rise_k1"), (0, "ablation")]


def test_table_shows_each_seeds_rate_beside_mean_and_spread(tmp_path):
    from robot_offrl_sim.experiment import aggregate, write_markdown

    exp = load_experiment(_write(tmp_path, seeds=[0, 1], methods=[{"name": "bc", "overrides": ["algo=bc"]}]))
    per_seed = {"wide": 1.0, "pushed": 0.5}, {"wide": 0.0, "pushed": 0.5}
    results = {"methods": {"bc": {"seeds": {
        str(seed): {"train": {"step": 3}, "sweeps": {name: {"rate": r, "narrow_rate": None} for name, r in rates.items()}}
        for seed, rates in enumerate(per_seed)}}},
        "timings": {"dataset_s": 0, "train_s": 0, "sweep_s": 0}, "machine": {k: "x" for k in
                                                                            ("platform", "cpus", "cuda", "torch", "date")}}
    results["aggregate"] = aggregate(results, exp)
    write_markdown(exp, results, tmp_path)
    row = next(line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| bc |"))
    assert row == "| bc | 0,1 | 50% ± 50% (100, 0) | 50% ± 0% (50, 50) | n/a |"


def test_shipped_experiment_files_load():
    from robot_offrl.config import config_dir

    for path in sorted((config_dir() / "experiment").glob("*.yaml")):
        exp = load_experiment(path)
        assert exp.methods and exp.sweeps, path


def test_experiment_cli_prints_the_table(tmp_path, capsys):
    from robot_offrl_cli.main import main

    out = tmp_path / "cli_out"
    assert main(["experiment", "--experiment", str(_write(tmp_path)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "bc_expert: wide" in printed
    assert (out / "results.md").is_file()


@pytest.mark.render
def test_gpu_image_experiment_file_runs_end_to_end_on_a_tiny_budget(tmp_path):
    """The paper-scale file's own methods, overrides and sweeps (U-Net, two cameras, Square), with only
    the budget, the sizes and the GPU-only switches shrunk, so "the same command on a GPU" is a tested
    path and not just a file."""
    from robot_offrl.config import config_dir

    gpu = yaml.safe_load((config_dir() / "experiment" / "square_image_gpu.yaml").read_text())
    recipe = yaml.safe_load((Path(config_dir()).parent / gpu["recipe"]).read_text())
    recipe.update(horizon=12, parts=[{"kind": "expert", "episodes": 1, "region": "narrow"},
                                     {"kind": "play", "episodes": 1, "region": "wide"}])
    (tmp_path / "tiny_image.yaml").write_text(yaml.safe_dump(recipe))
    budget_keys = ("trainer.steps", "trainer.batch_size", "trainer.num_workers", "trainer.compile")
    kept = [o for o in gpu["train_overrides"] if not o.startswith(budget_keys)]
    assert "policy=unet" in kept and any(o.startswith("task.image_keys=") for o in kept)
    gpu.update(
        recipe=str(tmp_path / "tiny_image.yaml"), seeds=[0], workers=1,
        train_overrides=[*kept, "trainer.steps=2", "trainer.batch_size=2", "trainer.num_workers=0",
                         "trainer.compile=false", "trainer.warmup_steps=1", "trainer.val_fraction=0",
                         "trainer.checkpoint_every=2", "trainer.progress=false", "critic.hidden_dim=32"],
        methods=[m for m in gpu["methods"] if m["name"] in ("bc_expert", "rise")],
        sweeps=[{**s, "grid": "1x1", "episodes_per_cell": 1, "horizon": 3} for s in gpu["sweeps"]],
    )
    for method in gpu["methods"]:
        method["overrides"] = [o.replace("num_candidates=64", "num_candidates=2") for o in method["overrides"]]
    path = tmp_path / "square_image_tiny.yaml"
    path.write_text(yaml.safe_dump(gpu))
    out = tmp_path / "out"
    results = run_experiment(load_experiment(path), out, log=lambda _: None)
    assert set(results["methods"]) == {"bc_expert", "rise"}
    store = EpisodeStore.open(str(out / "data" / "tiny_image.zarr"))
    assert {"agentview_image", "robot0_eye_in_hand_image"} <= set(store.schema.obs_keys)
    for sweep in gpu["sweeps"]:
        assert results["methods"]["rise"]["seeds"]["0"]["sweeps"][sweep["name"]]["episodes"] == 1


@pytest.mark.parametrize(("name", "rows"), [("lift_reset", None), ("can_reset", {"bc_expert", "rise_partial_only"})])
def test_benchmark_files_run_end_to_end_on_a_tiny_budget(tmp_path, name, rows):
    """Issue #14's benchmark files with only the budget shrunk, so a rerun fails on data, not on the file.
    Lift keeps every row (the data-filter row per cheap-data kind, the ablations, selection off); Can,
    whose rows are the same, keeps two to save suite time."""
    from robot_offrl.config import config_dir

    exp = yaml.safe_load((config_dir() / "experiment" / f"{name}.yaml").read_text())
    recipe = yaml.safe_load((Path(config_dir()).parent / exp["recipe"]).read_text())
    assert recipe["task"] == exp["task"]  # the store is built with the observations the runs train on
    recipe.update(horizon=40, parts=[{**p, "episodes": 1} for p in recipe["parts"]])
    (tmp_path / "tiny_recipe.yaml").write_text(yaml.safe_dump(recipe))
    kept = [o for o in exp["train_overrides"] if not o.startswith(("trainer.steps", "trainer.batch_size"))]
    exp.update(
        recipe=str(tmp_path / "tiny_recipe.yaml"), seeds=[0], workers=1,
        train_overrides=[*kept, "trainer.steps=2", "trainer.batch_size=4", "trainer.warmup_steps=1",
                         "trainer.val_fraction=0", "trainer.checkpoint_every=2", "trainer.progress=false",
                         "policy.hidden_dim=32", "policy.num_blocks=1", "critic.hidden_dim=32"],
        sweeps=[{**s, "grid": "1x1", "episodes_per_cell": 1, "horizon": 3} for s in exp["sweeps"]],
    )
    exp["methods"] = [m for m in exp["methods"] if rows is None or m["name"] in rows]
    for method in exp["methods"]:  # 40-step episodes: without the skips rise still finds neighbour pairs
        if "algo=rise" in method.get("overrides", []):
            method["overrides"] += ["algo.nn_augment.skip_first=0", "algo.nn_augment.skip_first_expert=0"]
    path = tmp_path / f"{name}_tiny.yaml"
    path.write_text(yaml.safe_dump(exp))
    results = run_experiment(load_experiment(path), tmp_path / "out", log=lambda _: None)
    assert set(results["methods"]) == {m["name"] for m in exp["methods"]}
    store = EpisodeStore.open(str(tmp_path / "out" / "data" / "tiny_recipe.zarr"))
    assert {e.source for e in store.episodes} >= {"scripted", "play", "partial"}
    assert store.schema.key("object").shape == (7,)  # pose only: no gripper-to-object vector


def test_rollout_stage_adds_an_earlier_policys_attempts_before_the_rows_train(tmp_path):
    """Issue #14's free cheap data: bc_expert trained on the recipe's store, run from the wide region,
    its episodes appended (non-expert, source policy_rollout) before any row trains; reused on rerun."""
    base = yaml.safe_load(_write(tmp_path).read_text())
    variant = {"extends": "exp.yaml", "name": "tiny_rollouts",
               "rollouts": {"method": "bc_expert", "episodes": 2, "seed": 0},
               "extra_methods": [{"name": "rise_rollouts_only", "seeds": [0],
                                  "overrides": ["algo=rise", "algo.selection.num_candidates=4",
                                                "algo.data_filter=sources",
                                                "algo.sources=[scripted,policy_rollout]"]}]}
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(variant))
    exp = load_experiment(path)
    assert [m.name for m in exp.methods] == [*(m["name"] for m in base["methods"]), "rise_rollouts_only"]
    assert exp.sweeps == load_experiment(tmp_path / "exp.yaml").sweeps  # everything else from the base
    out = tmp_path / "out"
    results = run_experiment(exp, out, log=lambda _: None)
    store = EpisodeStore.open(str(out / "data" / "tiny_recipe.zarr"))
    before = EpisodeStore.open(str(out / "data" / "tiny_recipe_before_rollouts.zarr"))
    rollouts = [m for m in store.episodes if m.source == "policy_rollout"]
    assert len(rollouts) == 2 and not any(m.expert for m in rollouts)
    assert store.num_episodes == before.num_episodes + 2
    assert all(m.attrs["generator_details"]["checkpoint"].endswith("rollout_policy_bc_expert_s0") for m in rollouts)
    assert results["rollouts"]["episodes"] == 2 and 0 <= results["rollouts"]["successes"] <= 2
    assert "policy rollouts added to the recipe's store: 2 episodes of `bc_expert`" in (out / "results.md").read_text()
    assert "rise_rollouts_only" in results["methods"]
    again: list[str] = []
    run_experiment(exp, out, log=again.append)
    assert not any("rollouts:" in m for m in again), again  # the final store is reused as it stands


@pytest.mark.parametrize(("content", "needle"), [
    ({"extends": "missing.yaml"}, "does not exist"),
    ({"extends": "loop.yaml"}, "loops back"),
    ({"extends": "exp.yaml", "rollouts": {"method": "nobody", "episodes": 2}}, "rollouts.method must name"),
    ({"extends": "exp.yaml", "rollouts": {"method": "rise_k1", "episodes": 2}}, "rollouts.method must name"),
    ({"extends": "exp.yaml", "rollouts": {"method": "bc_expert", "episodes": 0}}, "rollouts.episodes must be"),
    ({"extends": "exp.yaml", "rollouts": {"method": "bc_expert", "episodes": 2, "bogus": 1}}, "rollouts needs"),
])
def test_bad_variants_and_rollout_stages_are_refused(tmp_path, content, needle):
    _write(tmp_path)
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=needle):
        load_experiment(tmp_path / "loop.yaml")
