"""Which windows each optimisation step sees, as a pure function of (seed, step, rank).

Making the batch a function of the step (not of an iterator's history) is what lets a resumed run
see exactly the batches an uninterrupted run would, for any number of DataLoader workers, and lets
DDP ranks draw disjoint slices of one global batch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch
from torch.utils.data import Sampler

from robot_offrl.errors import UserError

T = TypeVar("T")


class DataWorkerError(UserError):
    """A user error (a damaged chunk, a bad observation) raised inside a DataLoader worker process."""


def _user_error_in_worker(err: Exception) -> str | None:
    """The one-line message of a robot_offrl UserError a DataLoader worker raised, else None.

    PyTorch re-raises a worker's exception with the worker's whole traceback as its message, and as a
    RuntimeError when the exception type cannot be rebuilt from one string (``ChunkCorruptError``). The
    traceback's last line is ``module.Class: message``; only our own user errors are turned back into
    one line, anything else keeps its traceback.
    """
    text = str(err)
    if "DataLoader worker" not in text or "Original Traceback" not in text:
        return None
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    qualified, sep, message = last.partition(": ")
    module, _, name = qualified.rpartition(".")
    if not sep or not module.startswith("robot_offrl"):
        return None
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return message if isinstance(cls, type) and issubclass(cls, UserError) else None


def surface_worker_errors(batches: Iterable[T]) -> Iterator[T]:
    """Iterate a DataLoader so a worker's user error reaches the CLI as its one line, not a traceback."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            message = _user_error_in_worker(err)
            if message is None:
                raise
            raise DataWorkerError(message) from err
        yield batch


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
