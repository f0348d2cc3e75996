"""Which windows each optimisation step sees, as a pure function of (seed, step, rank).

Making the batch a function of the step (not of an iterator's history) is what lets a resumed run
see exactly the batches an uninterrupted run would, for any number of DataLoader workers, and lets
DDP ranks draw disjoint slices of one global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


class StepBatchSampler(Sampler[list[int]]):
    """Yields one batch of dataset indices per training step in ``[start_step, end_step)``."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        start_step: int,
        end_step: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_items <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.end_step = end_step
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def batch_for_step(self, step: int) -> list[int]:
        gen = step_generator(self.seed, step)
        global_batch = torch.randint(self.num_items, (self.batch_size * self.world_size,), generator=gen)
        lo = self.rank * self.batch_size
        return global_batch[lo : lo + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            yield self.batch_for_step(step)
