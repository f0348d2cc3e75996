"""Run under torchrun by test_ddp.py: train a few steps, then each rank saves the weights it holds."""

from __future__ import annotations

import sys

from safetensors.torch import save_file

from robot_offrl.config import compose
from robot_offrl.train import distributed
from robot_offrl.train.loop import Trainer


def run() -> None:
    overrides = sys.argv[1:]
    info = distributed.from_environment()
    cfg = compose("train", overrides)
    trainer_device = "cpu"
    cfg.trainer.device = trainer_device
    from robot_offrl.device import select_device

    distributed.init_process_group(info, select_device(trainer_device))
    try:
        trainer = Trainer(cfg, info)
        result = trainer.run()
        state = {k: v.detach().clone().contiguous() for k, v in trainer.agent.state_dict().items()}
        save_file(state, f"{cfg.out}/rank{info.rank}.safetensors")
        print(f"rank {info.rank} of {info.world_size} finished at step {result.step}")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    run()
