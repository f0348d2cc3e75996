"""Files a person opens after a sweep: heatmap.png, report.md and MP4 videos.

Matplotlib runs on the Agg backend (no display on a workstation or CI box); videos go through
imageio's ffmpeg plugin, which ships its own binary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.spec import TaskSpec


def rate_grid(summary: dict[str, Any]) -> np.ndarray:
    """(ny, nx) success rates; NaN where a cell was not run (a single shard)."""
    nx, ny = summary["config"]["grid"]
    grid = np.full((ny, nx), np.nan)
    for c in summary["cells"]:
        grid[c["iy"], c["ix"]] = c["rate"]
    return grid


def write_heatmap(summary: dict[str, Any], spec: TaskSpec, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cfg = summary["config"]
    region = spec.region(cfg["region"])
    grid = rate_grid(summary)
    fig, ax = plt.subplots(figsize=(5.5, 4.6), dpi=100)
    extent = (region.x[0], region.x[1], region.y[0], region.y[1])
    im = ax.imshow(grid, origin="lower", extent=extent, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="equal")
    for c in summary["cells"]:
        ax.text(c["x"], c["y"], f"{c['successes']}/{c['episodes']}", ha="center", va="center", fontsize=7)
    narrow = spec.narrow
    ax.add_patch(
        Rectangle((narrow.x[0], narrow.y[0]), narrow.x[1] - narrow.x[0], narrow.y[1] - narrow.y[0],
                  fill=False, edgecolor="black", linewidth=2.0, linestyle="--", label="narrow (expert) region")
    )
    ax.set_xlim(min(extent[0], narrow.x[0]), max(extent[1], narrow.x[1]))
    ax.set_ylim(min(extent[2], narrow.y[0]), max(extent[3], narrow.y[1]))
    ax.set_xlabel("object x [m] (relative to task origin)")
    ax.set_ylabel("object y [m]")
    total = summary["totals"]
    rate = "n/a" if total["rate"] is None else f"{total['rate']:.0%}"
    ax.set_title(f"{cfg['task']} | {cfg['policy']} | {cfg['region']} | success {rate}", fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.colorbar(im, ax=ax, label="success rate")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def write_report(summary: dict[str, Any], spec: TaskSpec, path: Path, videos: Sequence[Path] = ()) -> None:
    cfg = summary["config"]
    t, n = summary["totals"], summary["narrow"]
    lines = [
        f"# Sweep: {cfg['task']} with {cfg['policy']}",
        "",
        f"- region `{cfg['region']}` {spec.region(cfg['region']).to_dict()}, grid {cfg['grid'][0]}x{cfg['grid'][1]}, "
        f"{cfg['episodes_per_cell']} episode(s) per cell, seed {cfg['seed']}, horizon {cfg['horizon'] or spec.horizon}",
        f"- perturbations: {cfg['perturbations'] or 'none'}",
        f"- shard: {summary['shard'] or 'all cells'}",
    ]
    if summary.get("stopped"):
        st = summary["stopped"]
        lines.append(f"- **stopped early** after {st['after_episodes']} of {st['of']} episodes: {st['error']}")
    lines += [
        "",
        "| | cells | episodes | successes | rate |",
        "|---|---|---|---|---|",
        f"| all | {t['cells']} | {t['episodes']} | {t['successes']} | {_pct(t['rate'])} |",
        f"| inside narrow | {n['cells']} | {n['episodes']} | {n['successes']} | {_pct(n['rate'])} |",
        "",
        "![success heatmap](heatmap.png)",
        "",
        "## Cells",
        "",
        "| cell | x | y | narrow | successes / episodes |",
        "|---|---|---|---|---|",
    ]
    for c in summary["cells"]:
        lines.append(
            f"| {c['cell']} | {c['x']:.3f} | {c['y']:.3f} | {'yes' if c['in_narrow'] else ''} | "
            f"{c['successes']} / {c['episodes']} |"
        )
    if videos:
        lines += ["", "## Videos", ""] + [f"- [{v.name}]({v.as_posix()})" for v in videos]
    path.write_text("\n".join(lines) + "\n")


def write_video(frames: Sequence[np.ndarray], path: Path, fps: int = 20) -> None:
    if not frames:
        raise ConfigError(f"no frames to write to {path}")
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=7) as writer:
        for f in frames:
            writer.append_data(np.asarray(f, dtype=np.uint8))
