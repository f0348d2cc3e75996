"""The ``ray`` sweep back end: each episode is a Ray task running ``sweep.run_job``.

Nothing about an episode depends on where it runs (its seed comes from (seed, cell, episode)), so a Ray
sweep's ``sweep.json`` equals a local one. A Ray worker is a long-lived process like a pool worker:
``run_job`` builds its simulator and policy once per process and reuses them for later tasks. Ray is
an optional extra (``pip install 'robot-offrl[ray]'``), imported only here.

Connects to ``--address`` (``ray://host:10001`` or ``host:6379``, or ``auto`` for the cluster this
machine belongs to); without it starts a local instance for the duration of the sweep. When Ray is
already initialised in this process (a notebook, a test), that instance is used and left running.
"""

from __future__ import annotations

from typing import Any

from robot_offrl.errors import UserError
from robot_offrl.extras import require
from robot_offrl_sim.sweep_backends import Progress


def _connect(ray: Any, address: str | None) -> bool:
    """Initialise Ray unless it already is; True when this sweep started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as err:  # ray.init raises bare Exception too (e.g. 'Failed to get node info')
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UserError(f"--backend ray: cannot start or reach {where} ({' '.join(str(err).split())})") from None
    return True


def run_ray(jobs: list[dict[str, Any]], config: Any, progress: bool) -> list[dict[str, Any]]:
    """Submit one task per job (1 CPU each) and collect the outputs as they finish."""
    from robot_offrl_sim.sweep import run_job

    ray = require("ray", "ray", "--backend ray")
    started = _connect(ray, config.backend_options.get("address"))
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(run_job)  # retried once if its node dies
        pending = [task.remote(job) for job in jobs]
        counter = Progress(len(jobs), progress)
        results: list[dict[str, Any]] = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                results.extend(ray.get(done))
            except ray.exceptions.RayTaskError as err:
                for ref in pending:
                    ray.cancel(ref)
                cause = getattr(err, "cause", None)
                if isinstance(cause, UserError):  # e.g. a checkpoint the cluster's nodes cannot read
                    raise UserError(f"in a Ray task: {cause}") from None
                raise
            counter.step(len(done))
        counter.close()
        return results
    finally:
        if started:
            ray.shutdown()
