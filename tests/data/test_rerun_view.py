"""`data view`: an episode logged to a real .rrd file, read back with rerun's own reader (no GUI)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema

rr = pytest.importorskip("rerun")
ROOT = Path(__file__).resolve().parents[2]


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    schema = StoreSchema(
        obs=[KeySpec("eef", "float32", (3,), "lowdim"), KeySpec("front", "uint8", (12, 16, 3), "rgb"),
             KeySpec("front_depth", "float32", (12, 16), "depth")],
        action=ActionSpace(["dx", "grip"], ["m", "normalized"], "delta", [-1.0, -1.0], [1.0, 1.0]),
        control_rate_hz=10.0, robot="Panda", task="lift",
    )
    rng = np.random.default_rng(0)
    with EpisodeStore.create(str(tmp_path / "s.zarr"), schema) as store:
        for e, length in enumerate([4, 6]):
            store.append_episode(
                {"eef": rng.normal(size=(length, 3)), "front": rng.integers(0, 256, (length, 12, 16, 3), dtype=np.uint8),
                 "front_depth": rng.uniform(0.2, 2.0, (length, 12, 16)).astype(np.float32)},
                rng.uniform(-1, 1, (length, 2)), expert=e == 0, source="teleop" if e == 0 else "failed",
                success=e == 0, attrs={"operator": "ana"},
            )
    return tmp_path / "s.zarr"


def test_view_writes_an_rrd_that_rerun_reads_back(store_path, tmp_path, cli):
    before = _tree_digest(store_path)
    out = tmp_path / "ep1.rrd"
    code, stdout, err = cli("data", "view", store_path, "--episode", "1", "--save", out)
    assert code == 0, err
    assert f"wrote {out}" in stdout and out.stat().st_size > 0
    assert _tree_digest(store_path) == before  # nothing written into the store

    ep = EpisodeStore.open(str(store_path)).read_episode(1)
    rec = rr.dataframe.load_recording(str(out))
    table = rec.view(index="step", contents="/**").select().read_all()
    assert table.num_rows == len(ep) == 6
    assert table.column("step").to_pylist() == list(range(6))
    grip = [row[0] for row in table.column("/action/grip:Scalar").to_pylist()]
    np.testing.assert_allclose(grip, ep.actions[:, 1], rtol=0, atol=0)
    eef2 = [row[0] for row in table.column("/obs/eef/2:Scalar").to_pylist()]
    np.testing.assert_allclose(eef2, ep.obs["eef"][:, 2], rtol=0, atol=0)
    frames = table.column("/cameras/front:ImageBuffer").to_pylist()
    assert bytes(frames[3][0]) == ep.obs["front"][3].tobytes()
    assert "/cameras/front_depth:ImageBuffer" in table.column_names
    labels = rec.view(index="step", contents="/episode").select_static().read_all()
    text = labels.column("/episode:Text").to_pylist()[0][0]
    assert "expert: False" in text and "source: failed" in text and "success: False" in text and '"operator": "ana"' in text


def test_default_path_is_the_current_folder_and_existing_files_are_kept(store_path, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("data", "view", store_path, "--episode", "0")[0] == 0
    written = tmp_path / "episode_0.rrd"
    assert written.is_file()
    size = written.stat().st_size
    code, _, err = cli("data", "view", store_path, "--episode", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "already exists; pass --overwrite" in err
    assert written.stat().st_size == size
    assert cli("data", "view", store_path, "--episode", "1", "--save", written, "--overwrite")[0] == 0
    assert rr.dataframe.load_recording(str(written)).view(index="step", contents="/**").select().read_all().num_rows == 6


@pytest.mark.parametrize(("args", "needle"), [
    (("--episode", "5"), "episode"),
    (("--episode", "0", "--save", "ep.mp4"), "must end in .rrd"),
    (("--episode", "0", "--save", "no/such/dir/ep.rrd"), "does not exist"),
])
def test_bad_view_arguments_are_one_line_errors(store_path, tmp_path, cli, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("data", "view", store_path, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not list(tmp_path.glob("*.rrd"))


def test_missing_viewer_extra_is_a_one_line_error(store_path, tmp_path):
    code = (
        "import sys; sys.modules['rerun'] = None\n"
        "from robot_offrl.cli.main import main\n"
        f"sys.exit(main(['data', 'view', {str(store_path)!r}, '--episode', '0', '--save', {str(tmp_path / 'x.rrd')!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sim"), str(ROOT / "hardware"), str(ROOT / "cli")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "optional 'viewer' extra" in lines[0], proc.stderr
    assert not (tmp_path / "x.rrd").exists()
