"""collect / build-dataset / sweep --record write stores that validate, with the right flags and sources."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from robot_offrl.data import EpisodeStore
from robot_offrl.data.validate import find_problems
from robot_offrl.errors import UserError
from robot_offrl_sim.collect import collect
from robot_offrl_sim.sweep import SweepConfig, run_sweep


def _cli(argv: list[str]) -> int:
    """The same dispatch as robot-offrl's root command, over the sim module's parsers only."""
    from robot_offrl_cli import sim_cmd

    parser = argparse.ArgumentParser(prog="robot-offrl")
    sim_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def test_collect_expert_and_play_into_one_store(lift_env, tmp_path: Path) -> None:
    out = str(tmp_path / "lift.zarr")
    assert collect("lift", "expert", 2, out, horizon=90, env=lift_env, seed=1) == [0, 1]
    assert collect("lift", "play", 1, out, horizon=40, env=lift_env, seed=1) == [2]
    store = EpisodeStore.open(out)
    assert find_problems(store) == []
    assert [(e.expert, e.source, e.success) for e in store.episodes[:2]] == [(True, "scripted", True)] * 2
    play = store.episodes[2]
    assert (play.expert, play.source, play.length) == (False, "play", 40)
    for meta in store.episodes:
        ic = meta.attrs["initial_condition"]
        region = lift_env.spec.region(meta.attrs["region"])
        assert region.contains(ic["x"], ic["y"]) and ic["seed"] == meta.attrs["seed"]
    ep = store.read_episode(0)
    assert ep.actions.shape == (ep.meta.length, 7) and ep.obs["object"].shape == (ep.meta.length, 10)
    assert store.schema.task == "lift" and store.schema.control_rate_hz == 20.0


def test_cli_collect_and_build_dataset(tmp_path: Path) -> None:
    out = tmp_path / "cli.zarr"
    assert _cli(["sim", "collect", "--task", "lift", "--kind", "partial", "--episodes", "2", "--horizon", "30",
                 "--quiet", "--out", str(out)]) == 0
    store = EpisodeStore.open(str(out))
    assert [(e.expert, e.source) for e in store.episodes] == [(False, "partial")] * 2
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "name: tiny\ntask: lift\nseed: 3\nhorizon: 30\nparts:\n"
        "  - {kind: expert, episodes: 1}\n  - {kind: failed, episodes: 1, region: wide}\n"
    )
    built = tmp_path / "built.zarr"
    assert _cli(["sim", "build-dataset", str(recipe), "--quiet", "--out", str(built)]) == 0
    store = EpisodeStore.open(str(built))
    assert find_problems(store) == []
    assert [(e.expert, e.source) for e in store.episodes] == [(True, "scripted"), (False, "failed")]
    assert store.episodes[0].attrs["recipe"] == "tiny"
    with pytest.raises(UserError, match="already exists"):
        _cli(["sim", "build-dataset", str(recipe), "--quiet", "--out", str(built)])
    with pytest.raises(UserError, match="unknown camera"):
        _cli(["sim", "collect", "--task", "lift", "--kind", "play", "--episodes", "1", "--cameras", "nope",
              "--out", str(tmp_path / "x.zarr")])
    # The benchmark kinds are collectable from the CLI too; the kind list is collect's, not the parser's.
    assert _cli(["sim", "collect", "--task", "lift", "--kind", "reset_play", "--episodes", "1", "--quiet",
                 "--out", str(tmp_path / "reset.zarr")]) == 0
    assert [(e.expert, e.source) for e in EpisodeStore.open(str(tmp_path / "reset.zarr")).episodes] == [(False, "play")]
    with pytest.raises(UserError, match="unknown episode kind 'nope'; use one of .*failed_smooth"):
        _cli(["sim", "collect", "--task", "lift", "--kind", "nope", "--episodes", "1", "--out", str(tmp_path / "y.zarr")])
    with pytest.raises(UserError, match="policy_rollout needs one"):
        _cli(["sim", "collect", "--task", "lift", "--kind", "policy_rollout", "--episodes", "1",
              "--out", str(tmp_path / "y.zarr")])
    with pytest.raises(UserError, match="no cells"):
        _cli(["sweep", "--policy", "scripted:lift", "--task", "lift", "--grid", "0x2", "--out", str(tmp_path / "s")])


def test_sweep_record_writes_policy_rollouts(tmp_path: Path) -> None:
    store_path = str(tmp_path / "rollouts.zarr")
    run_sweep(SweepConfig(task="lift", policy="scripted:lift", grid=(2, 1), horizon=20, record=store_path),
              tmp_path / "sweep")
    store = EpisodeStore.open(store_path)
    assert find_problems(store) == []
    assert [(e.expert, e.source, e.attrs["sweep_cell"]) for e in store.episodes] == [
        (False, "policy_rollout", 0), (False, "policy_rollout", 1)]
    assert all(e.success is False and e.length == 20 for e in store.episodes)  # 20 steps: too short to lift


@pytest.mark.parametrize("recipe", sorted(Path(__file__).resolve().parents[2].glob("datasets/*.yaml")))
def test_shipped_recipes_parse(recipe: Path) -> None:
    from robot_offrl_sim.recipes import load_recipe

    r = load_recipe(recipe)
    assert any(p.kind == "expert" and p.region == "narrow" for p in r.parts)
    assert all(p.region == "wide" for p in r.parts if p.kind != "expert")
