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

from robot_offrl.data.errors import EpisodeValidationError, SchemaError, StoreCorruptError
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
    def from_record(cls, index: int, record: object) -> EpisodeMeta:
        """Parse one index record strictly: a hand-edited ``"expert": "false"`` must not read as True."""
        where = f"episode {index}: index record {record!r}"
        if not isinstance(record, Mapping):
            raise StoreCorruptError(f"{where} is not an object; {_INDEX_DAMAGED}")
        missing = [name for name in RECORD_FIELDS if name not in record]
        if missing:
            raise StoreCorruptError(f"{where} lacks field(s) {', '.join(missing)}; {_INDEX_DAMAGED}")
        start, length, uid = (_record_int(record, name, where) for name in ("start", "length", "uid"))
        if start < 0 or length < 0 or uid < 0:
            raise StoreCorruptError(f"{where}: start, length and uid must not be negative; {_INDEX_DAMAGED}")
        expert = record["expert"]
        if not isinstance(expert, bool):
            raise StoreCorruptError(f"{where}: expert is {expert!r}, not true or false; {_INDEX_DAMAGED}")
        attrs = record["attrs"]
        if not isinstance(attrs, Mapping):
            raise StoreCorruptError(f"{where}: attrs is {attrs!r}, not an object; {_INDEX_DAMAGED}")
        try:
            source = check_source(record["source"], episode=index)
            success = check_success(record["success"], episode=index)
        except SchemaError as err:
            raise StoreCorruptError(f"{err} (index record {record!r}); {_INDEX_DAMAGED}") from err
        return cls(index, start, length, expert, source, success, uid, dict(attrs))


# Fields every index record has (``to_record`` writes all of them).
RECORD_FIELDS: tuple[str, ...] = ("uid", "start", "length", "expert", "source", "success", "attrs")
_INDEX_DAMAGED = "the store's index/zarr.json was edited or damaged"


def _record_int(record: Mapping[str, Any], name: str, where: str) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreCorruptError(f"{where}: {name} is {value!r}, not an integer; {_INDEX_DAMAGED}")
    return value


def parse_index_records(index_attrs: Mapping[str, Any], where: str) -> tuple[list[EpisodeMeta], int, int, int]:
    """(episodes, num_steps, next_uid, generation) from index/zarr.json's attributes, checked strictly.

    Refuses what would make later operations silently wrong: a duplicate uid (a split would claim two
    episodes), a ``next_uid`` not above every uid (the next append would reuse one), non-integer counters.
    """
    records = index_attrs.get("episodes") if isinstance(index_attrs, Mapping) else None
    if not isinstance(records, list):
        raise StoreCorruptError(f"{where}: the episode index has no 'episodes' list; {_INDEX_DAMAGED}")
    counters = []
    for name in ("num_steps", "next_uid", "generation"):
        value = index_attrs.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StoreCorruptError(
                f"{where}: the episode index's {name} is {value!r}, not a non-negative integer; {_INDEX_DAMAGED}"
            )
        counters.append(value)
    num_steps, next_uid, generation = counters
    episodes = [EpisodeMeta.from_record(i, r) for i, r in enumerate(records)]
    seen: dict[int, int] = {}
    for m in episodes:
        if m.uid in seen:
            raise StoreCorruptError(
                f"{where}: episode {m.index}: uid {m.uid} is also the uid of episode {seen[m.uid]}; {_INDEX_DAMAGED}"
            )
        seen[m.uid] = m.index
        if m.uid >= next_uid:
            raise StoreCorruptError(
                f"{where}: episode {m.index}: uid {m.uid} is not below the index's next_uid {next_uid}; "
                f"{_INDEX_DAMAGED}"
            )
    return episodes, num_steps, next_uid, generation


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
