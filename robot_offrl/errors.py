"""Error types shared across the stations.

Every error a user can fix (bad store, bad config, bad observation) derives from ``UserError`` so
the command line prints it as one clear line instead of a traceback, while real bugs still raise.
"""


class UserError(Exception):
    """Something the user can fix; the message says what and, where possible, how."""


class ConfigError(UserError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class ObservationError(UserError, ValueError):
    """An observation does not match the schema (missing key, wrong shape or dtype, NaN)."""


class NonFiniteActionError(UserError):
    """The networks produced NaN/inf actions; none of them was returned or queued.

    Weights and statistics are checked at load, so this means the computation itself overflowed;
    a caller driving hardware must hold, not retry with the same inputs.
    """


class MissingExtraError(UserError, ImportError):
    """A command needs an optional extra (lerobot, viewer, ...) that is not installed."""
