"""``robot-offrl demo``: the whole pipeline on small defaults (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOGS = {
    "demo": """\
example:
  robot-offrl demo --out demo_out
Reruns reuse finished stages (dataset, trained runs, sweeps) found under --out.
""",
    "experiment": """\
example:
  robot-offrl experiment --experiment configs/experiment/lift_rise.yaml --out runs/bench_lift
Reruns reuse finished stages (dataset, trained runs, sweeps) found under --out.
""",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("demo", "build a small Lift dataset, train RISE and BC, sweep both, write a report"),
        ("experiment", "run an experiment file: dataset -> train methods x seeds -> sweeps -> results"),
    ):
        parser = subparsers.add_parser(name, help=helptext, description=helptext, epilog=EPILOGS[name],
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        default = "configs/experiment/demo.yaml" if name == "demo" else None
        parser.add_argument("--experiment", default=default, required=default is None,
                            help="experiment YAML (configs/experiment/)")
        parser.add_argument("--out", default="demo_out" if name == "demo" else None, required=name != "demo",
                            help="output folder (data/, runs/, sweeps/, results.md)")
        parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robot_offrl.config import config_dir

    try:
        from robot_offrl_sim.experiment import load_experiment, run_experiment
    except ImportError as err:
        from robot_offrl.errors import UserError

        raise UserError(f"the simulator package is not importable ({err}); run `make demo` or pip install -e .") from err
    path = Path(args.experiment)
    if not path.exists():
        path = config_dir().parent / args.experiment
    exp = load_experiment(path)
    results = run_experiment(exp, args.out)
    print(f"\nreport: {Path(args.out) / 'results.md'}")
    for method, row in results["aggregate"].items():
        rates = [f"{name} {_percent(cell['mean'])}" for name, cell in row.items() if isinstance(cell, dict)]
        print(f"  {method}: " + ", ".join(rates))
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
