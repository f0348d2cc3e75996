"""Episodes as the store hands them out, and the in-RAM buffer recorders fill step by step.

A recorder never writes a half episode: it accumulates steps in an ``EpisodeBuffer`` and commits the
whole episode at once, so an operator who aborts a bad demonstration simply clears the buffer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_offrl.data.errors import EpisodeValidationError, StoreCorruptError
from robot_offrl.data.schema import check_source, check_success

if TYPE_CHECKING:
    from robot_offrl.data.store import EpisodeStore


@dataclass(frozen=True)
class EpisodeMeta:
    """One committed episode's place in the arrays and its labels.

    ``uid`` never changes (not even when earlier episodes are deleted), so a stored train/val split
    keeps meaning the same episodes; ``index`` is the episode's current position.
    """

    index: int
    start: int
    length: int
    expert: bool
    source: str
    success: bool | None
    uid: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.length

    def to_record(self) -> dict[str, Any]:
        """The JSON form kept in the episode index (the index position is implicit)."""
        return {
            "uid": self.uid,
            "start": self.start,
            "length": self.length,
            "expert": self.expert,
            "source": self.source,
            "success": self.success,
            "attrs": self.attrs,
        }

    @classmethod
    def from_record(cls, index: int, record: Mapping[str, Any]) -> EpisodeMeta:
        try:
            return cls(
                index=index,
                start=int(record["start"]),
                length=int(record["length"]),
                expert=bool(record["expert"]),
                source=str(record["source"]),
                success=check_success(record["success"], episode=index),
                uid=int(record["uid"]),
                attrs=dict(record.get("attrs") or {}),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StoreCorruptError(
                f"episode {index}: index record {dict(record)!r} is malformed ({err}); "
                "the store's index/zarr.json was edited or damaged"
            ) from err


@dataclass
class Episode:
    """A whole episode read into memory."""

    meta: EpisodeMeta
    obs: dict[str, np.ndarray]
    actions: np.ndarray

    def __len__(self) -> int:
        return self.meta.length


def check_attrs_json(attrs: Mapping[str, Any] | None, *, episode: int | str | None = None) -> dict[str, Any]:
    """Episode attributes live in JSON; refuse what JSON cannot hold now rather than at the next commit."""
    if attrs is None:
        return {}
    if not isinstance(attrs, Mapping):
        raise EpisodeValidationError(f"attrs must be a dict, got {type(attrs).__name__}", episode=episode)
    try:
        return json.loads(json.dumps(dict(attrs), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise EpisodeValidationError(
            f"attrs are not JSON-serialisable ({err}); convert numpy values with .tolist()", episode=episode
        ) from err


class EpisodeBuffer:
    """Steps of one episode held in RAM until the recorder decides to keep or drop them."""

    def __init__(self) -> None:
        self._obs: list[dict[str, np.ndarray]] = []
        self._actions: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._actions)

    def add(self, obs: Mapping[str, np.ndarray], action: np.ndarray) -> None:
        """Append one step; the observation is copied so a recorder may reuse its buffers."""
        step = len(self._actions)
        if self._obs and set(obs) != set(self._obs[0]):
            missing = sorted(set(self._obs[0]) - set(obs))
            extra = sorted(set(obs) - set(self._obs[0]))
            raise EpisodeValidationError(
                f"step {step} has different observation keys than step 0 (missing {missing}, extra {extra})",
                episode="(buffer)",
            )
        self._obs.append({k: np.array(v, copy=True) for k, v in obs.items()})
        self._actions.append(np.array(action, copy=True))

    def clear(self) -> None:
        self._obs.clear()
        self._actions.clear()

    def as_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Stack the steps; shapes are checked by the store's validation, which names the key."""
        if not self._actions:
            raise EpisodeValidationError("the buffer holds no steps; an empty episode cannot be saved",
                                         episode="(buffer)")
        keys = list(self._obs[0])
        obs: dict[str, np.ndarray] = {}
        for key in keys:
            try:
                obs[key] = np.stack([step[key] for step in self._obs])
            except ValueError as err:
                raise EpisodeValidationError(
                    f"steps have different shapes ({err})", episode="(buffer)", key=key
                ) from err
        try:
            actions = np.stack(self._actions)
        except ValueError as err:
            raise EpisodeValidationError(
                f"steps have different shapes ({err})", episode="(buffer)", key="actions"
            ) from err
        return obs, actions

    def commit(
        self,
        store: EpisodeStore,
        *,
        expert: bool,
        source: str,
        success: bool | None = None,
        attrs: Mapping[str, Any] | None = None,
        clear: bool = True,
    ) -> int:
        """Append the buffered steps to ``store`` as one episode; returns its index and empties the buffer."""
        check_source(source, episode="(buffer)")
        obs, actions = self.as_arrays()
        index = store.append_episode(
            obs=obs, actions=actions, expert=expert, source=source, success=success, attrs=attrs
        )
        if clear:
            self.clear()
        return index
