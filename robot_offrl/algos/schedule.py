"""Which optimiser steps train on augmented neighbour pairs only (``algo.nn_augment.schedule``).

The reference spends about half of the policy's updates on augmented pairs: every other epoch
trains the policy on them alone, with no critic update, and the other epochs train policy and
critic on real windows. ``alternate`` reproduces that with blocks of ``block_steps`` optimiser steps
(the reference's epoch is 100); ``augmented_share`` of the blocks are augmented-only, spread evenly.
``mixed`` (the legacy form) draws pairs and real windows into the same batches and masks the pairs
out of TD, so the share of pairs is whatever the dataset holds.

Whether a step is augmented-only is a pure function of the step, like the batch itself
(train/batching.py), so a resumed run follows the same schedule as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robot_offrl.algos.config import NNAugmentConfig
from robot_offrl.train.batching import StepBatchSampler, step_generator


@dataclass(frozen=True)
class UpdateSchedule:
    augmented_share: float = 0.0  # 0: every step trains on real windows (mixed schedule, or no pairs)
    block_steps: int = 1

    @classmethod
    def for_training(cls, aug: NNAugmentConfig, num_augmented: int) -> UpdateSchedule:
        """The schedule a run follows; without pairs (none found, or augmentation off) there is nothing to alternate."""
        if not aug.enabled or aug.schedule != "alternate" or num_augmented == 0:
            return cls()
        return cls(aug.augmented_share, aug.block_steps)

    @property
    def active(self) -> bool:
        return self.augmented_share > 0

    def augmented_only(self, step: int) -> bool:
        """Block b is augmented-only when floor((b + 1) * share) > floor(b * share): with share 0.5 the odd blocks."""
        if not self.active:
            return False
        block = step // self.block_steps
        return math.floor((block + 1) * self.augmented_share) > math.floor(block * self.augmented_share)


class ScheduledBatchSampler(StepBatchSampler):
    """Per step, a batch of real windows (items < num_base) or of augmented pairs only (items >= num_base)."""

    def __init__(
        self,
        num_base: int,
        num_augmented: int,
        schedule: UpdateSchedule,
        batch_size: int,
        seed: int,
        start_step: int,
        end_step: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(num_base + num_augmented, batch_size, seed, start_step, end_step, rank, world_size)
        if num_base <= 0:
            raise ValueError("cannot sample batches without real windows")
        self.num_base = num_base
        self.num_augmented = num_augmented
        self.schedule = schedule

    def batch_for_step(self, step: int) -> list[int]:
        augmented = self.schedule.augmented_only(step) and self.num_augmented > 0
        count, offset = (self.num_augmented, self.num_base) if augmented else (self.num_base, 0)
        gen = step_generator(self.seed, step)
        global_batch = torch.randint(count, (self.batch_size * self.world_size,), generator=gen) + offset
        lo = self.rank * self.batch_size
        return global_batch[lo : lo + self.batch_size].tolist()
