"""The episode store: zarr v3 reader/writer, validation, operations and importers (docs/dataset.md).

``robot_offrl.data.sampler`` (training windows) is imported by its users directly, not from here.
"""

from robot_offrl.data.episode import Episode, EpisodeBuffer, EpisodeMeta
from robot_offrl.data.errors import (
    EpisodeIndexError,
    EpisodeValidationError,
    SchemaError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    StoreReadOnlyError,
    StoreVersionError,
)
from robot_offrl.data.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SOURCES,
    ActionSpace,
    KeySpec,
    StoreSchema,
)
from robot_offrl.data.stats import KeyStats, NormStats
from robot_offrl.data.store import UNSET, EpisodeStore, SparseChunksWarning, UncommittedDataWarning

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SOURCES",
    "UNSET",
    "ActionSpace",
    "Episode",
    "EpisodeBuffer",
    "EpisodeIndexError",
    "EpisodeMeta",
    "EpisodeStore",
    "EpisodeValidationError",
    "KeySpec",
    "KeyStats",
    "NormStats",
    "SchemaError",
    "StoreCorruptError",
    "StoreError",
    "StoreExistsError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "StoreSchema",
    "StoreVersionError",
    "SparseChunksWarning",
    "UncommittedDataWarning",
]
