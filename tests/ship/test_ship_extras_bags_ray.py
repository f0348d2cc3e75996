"""The bag importer and the Ray back end stay optional: extras of their own, installed by `make test` only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ship_support import REPO, tomllib


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_rosbags_and_ray_are_optional_extras_that_make_test_installs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not {"rosbags", "ray"} & base
    assert {_name(r) for r in extras["bags"]} == {"rosbags"}
    assert {_name(r) for r in extras["ray"]} == {"ray"}
    match = re.search(r"^EXTRAS \?= (\S+)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert match and {"bags", "ray"} <= set(match.group(1).split(","))


def test_without_the_extras_the_commands_name_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base install (package import blocked here) gets one line naming the extra, not a traceback."""
    import sys

    from robot_offrl_cli.main import main

    monkeypatch.setitem(sys.modules, "rosbags", None)  # `import rosbags...` now raises ImportError
    monkeypatch.setitem(sys.modules, "rosbags.highlevel", None)
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    code = main(["data", "import-bag", str(tmp_path / "bag"), str(tmp_path / "out.zarr"),
                 "--config", str(REPO / "hardware" / "config" / "record.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'robot-offrl[bags]'" in err, err
    code = main(["sweep", "--policy", "scripted:lift", "--task", "lift", "--grid", "1x1", "--horizon", "2",
                 "--backend", "ray", "--quiet", "--out", str(tmp_path / "sweep")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'robot-offrl[ray]'" in err, err
    assert not (tmp_path / "out.zarr").exists()
