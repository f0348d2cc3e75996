"""The newcomer, Docker and scaling docs say only true things: every `robot-offrl` command in them parses
with the real parser (train overrides compose with Hydra), every repository path they name exists, and
docs/newcomer.md's real-arm walkthrough (its Python and YAML blocks, then its commands) runs end to end.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ship_support import REPO, fenced_shell_lines, robot_offrl_argvs

from robot_offrl.config import compose
from robot_offrl_cli.main import build_parser, main

DOCS = {name: REPO / "docs" / name for name in ("newcomer.md", "docker.md", "scaling.md")}
NEWCOMER = DOCS["newcomer.md"]


def _blocks(markdown: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", markdown.read_text(), flags=re.S)


@pytest.fixture
def my_arm_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """configs/ plus the task YAML docs/newcomer.md tells the reader to add."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (yaml_block,) = _blocks(NEWCOMER, "yaml")
    first_line = yaml_block.splitlines()[0]
    assert first_line == "# configs/task/my_arm.yaml"
    (tmp_path / first_line[2:]).write_text(yaml_block)
    monkeypatch.setenv("ROBOT_OFFRL_CONFIGS", str(configs))
    return configs


@pytest.mark.parametrize("doc", DOCS.values(), ids=DOCS.keys())
def test_every_command_parses(doc: Path, my_arm_configs: Path):
    parser = build_parser()
    argvs = [a for a in robot_offrl_argvs(doc) if "..." not in a]
    assert argvs, f"{doc.name} shows no robot-offrl command"
    for argv in argvs:
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as err:
            raise AssertionError(f"{doc.name}: `robot-offrl {' '.join(argv)}` does not parse") from err
        if getattr(args, "accepts_overrides", False):
            compose("train", [*args.overrides, *extra])  # unknown keys or groups raise ConfigError
        else:
            assert not extra, f"{doc.name}: `robot-offrl {' '.join(argv)}`: unrecognized {extra}"


def test_torchrun_lines_use_the_cli_module():
    for doc in DOCS.values():
        for line in fenced_shell_lines(doc):
            if "torchrun" in line and "--help" not in line:
                assert "-m robot_offrl_cli.main train" in line, f"{doc.name}: {line}"


PATH_PREFIXES = ("docs/", "docker/", "hardware/", "configs/", "datasets/", "tests/", "bench/", "sim/", "robot_offrl/")


@pytest.mark.parametrize("doc", DOCS.values(), ids=DOCS.keys())
def test_named_repository_paths_exist(doc: Path):
    text = doc.read_text()
    prefixes = "|".join(map(re.escape, PATH_PREFIXES))
    names = set(re.findall(rf"(?<![\w/.$-])((?:{prefixes})[\w./-]*\w)", text))
    names = {n for n in names if "my_arm" not in n and "<" not in n}
    assert names, f"{doc.name} names no repository path"
    missing = sorted(n for n in names if not (REPO / n).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_docker_doc_states_the_images_were_not_built():
    text = " ".join(DOCS["docker.md"].read_text().split())
    assert "could not be built on the development machine" in text
    assert "hadolint" in text


def test_newcomer_real_arm_walkthrough_runs(tmp_path: Path, my_arm_configs: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (python_block,) = _blocks(NEWCOMER, "python")
    exec(compile(python_block, str(NEWCOMER), "exec"), {"__name__": "newcomer_doc"})
    assert "6 episodes, 180 steps" in capsys.readouterr().out

    argvs = robot_offrl_argvs(NEWCOMER)
    flags = [a for a in argvs if a[:2] == ["data", "flag"]]
    assert len(flags) == 2
    for argv in flags:
        assert main(argv) == 0
    from robot_offrl.data import EpisodeStore

    store = EpisodeStore.open("data/my_arm.zarr")
    assert [m.expert for m in store.episodes] == [True] * 3 + [False] * 3
    assert [m.success for m in store.episodes] == [True] * 3 + [None] * 3

    (train,) = [a for a in argvs if a[0] == "train" and "algo=rise" in a and "--cfg" not in a]
    budget = ["trainer=small", "trainer.steps=2", "trainer.batch_size=4", "trainer.checkpoint_every=2",
              "trainer.val_every=2", "trainer.log_every=1", "trainer.progress=false", "trainer.device=cpu"]
    assert main([*train, *budget]) == 0, capsys.readouterr().err
    run = Path(next(a.split("=", 1)[1] for a in train if a.startswith("out=")))
    assert (run / "checkpoints" / "latest").is_file()

    from robot_offrl.runtime import PolicyRuntime

    policy = PolicyRuntime.load(run, device="cpu", num_candidates=2, num_inference_steps=2)
    assert policy.action_space.names == ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
    obs = {"joint_pos": np.zeros(6, np.float32), "robot0_gripper_qpos": np.zeros(2, np.float32),
           "agentview_image": np.zeros((84, 84, 3), np.uint8)}
    action = policy.act(obs)
    assert action.shape == (7,) and np.isfinite(action).all()
