"""One frozen dataclass per config group: each default stated once, every value checked on construction.

Why a small machinery instead of hand-written readers: with a reader per key, a default lived in the
YAML, in the dataclass field and in the reader call, and the copies drifted. Here a field is declared
once with ``setting(default, ...)`` (its type, range and choices in the field's metadata); the same
declaration checks a value whether it comes from a composed Hydra config, a checkpoint's saved config
or a direct ``PolicyConfig(...)`` call, and ``schema_node`` turns it into the Hydra node every YAML file of
the group extends (configs/ files only override; ``robot_offrl.config.compose`` registers the nodes).

Messages name the dotted key (``policy.pred_horizon must be >= 1, got 0``). A null in YAML means "use
the default", the same as leaving the key out. A key no field declares is refused, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from robot_offrl.errors import ConfigError

KINDS = ("bool", "int", "float", "str", "str_list", "int_list", "float_list", "any")


@dataclass(frozen=True)
class Check:
    """What a field accepts; bounds are inclusive (``minimum``/``maximum``) or strict (``above``/``below``)."""

    kind: str
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False  # None is a valid value (not only "use the default")
    range_text: str = ""  # replaces the generic bound in messages, e.g. "in (0, 1)"
    hint: str = ""  # appended to a bound message: why the bound exists


def setting(
    default: Any,
    kind: str | None = None,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    choices: Sequence[Any] | None = None,
    range_text: str = "",
    hint: str = "",
) -> Any:
    """A dataclass field with its default and its checks, declared together (the one place they live)."""
    if kind is None:
        kind = _kind_of(default)
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    if isinstance(default, list):
        default = tuple(default)
    check = Check(kind, minimum, above, maximum, below, tuple(choices) if choices is not None else None,
                  optional=default is None, range_text=range_text, hint=hint)
    return field(default=default, metadata={"check": check})


def group(cls: type, *, flatten: bool = False) -> Any:
    """A nested config group; ``flatten`` reads its keys (named with its ``PREFIX``) from the parent section."""
    return field(default_factory=cls, metadata={"group": cls, "flatten": flatten})


def _kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    raise ValueError(f"state the kind of a setting whose default is {default!r}")


def section(cfg: Any, name: str) -> Mapping[str, Any]:
    """The sub-mapping ``cfg.<name>`` (empty when absent) so every reader can use ``.get``."""
    if cfg is None:
        return {}
    value = cfg.get(name, None) if hasattr(cfg, "get") else None
    if value is None:
        return {}
    if not hasattr(value, "get"):
        raise ConfigError(f"config section '{name}' must be a mapping, got {type(value).__name__}")
    return value


def check_value(check: Check, where: str, value: Any) -> Any:
    """The value in its canonical form (floats as float, lists as tuples), or a ConfigError naming ``where``."""
    if value is None and check.optional:
        return None
    kind = check.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind == "int" and not isinstance(value, int)):
            raise ConfigError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
        value = int(value) if kind == "int" else float(value)
        _check_bounds(check, where, value)
    elif kind == "str":
        if check.choices is None and not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    elif kind == "str_list":
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        value = tuple(value)
    elif kind in ("int_list", "float_list"):
        ok = (int,) if kind == "int_list" else (int, float)
        if isinstance(value, str | int) or not isinstance(value, Sequence) or not all(
            isinstance(v, ok) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where} must be a list of {'integers' if kind == 'int_list' else 'numbers'}, got {value!r}")
        value = tuple(int(v) if kind == "int_list" else float(v) for v in value)
    if check.choices is not None and value not in check.choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, check.choices))}; got {value!r}")
    return value


def _check_bounds(check: Check, where: str, value: float) -> None:
    failed = None
    if check.minimum is not None and value < check.minimum:
        failed = f">= {check.minimum}"
    elif check.above is not None and value <= check.above:
        failed = f"> {check.above}"
    elif check.maximum is not None and value > check.maximum:
        failed = f"<= {check.maximum}"
    elif check.below is not None and value >= check.below:
        failed = f"< {check.below}"
    if failed is not None:
        raise ConfigError(f"{where} must be {check.range_text or failed}{check.hint}, got {value}")


class TypedConfig:
    """Mixin for frozen dataclasses of ``setting`` and ``group`` fields (see the module docstring).

    ``SECTION`` is the dotted name used in messages; ``PREFIX`` the key prefix of a flattened group.
    Subclasses add cross-field checks in ``validate``.
    """

    SECTION: ClassVar[str] = ""
    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            check = f.metadata.get("check")
            if check is not None:
                value = check_value(check, self.where(f.name), getattr(self, f.name))
                object.__setattr__(self, f.name, value)
            elif "group" in f.metadata and not isinstance(getattr(self, f.name), f.metadata["group"]):
                raise ConfigError(f"{self.where(f.name)} must be a {f.metadata['group'].__name__}")
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; runs after every field was checked on its own."""

    @classmethod
    def where(cls, name: str) -> str:
        return f"{cls.SECTION}.{cls.PREFIX}{name}" if cls.SECTION else f"{cls.PREFIX}{name}"

    @classmethod
    def keys(cls) -> list[str]:
        """Every key this group reads from its section (flattened groups' keys with their prefix)."""
        out: list[str] = []
        for f in fields(cls):  # type: ignore[arg-type]
            sub = f.metadata.get("group")
            if sub is not None and f.metadata["flatten"]:
                out.extend(sub.keys())
            else:
                out.append(f"{cls.PREFIX}{f.name}")
        return out

    @classmethod
    def from_mapping(cls, sec: Mapping[str, Any] | None, *, strict: bool = True) -> Any:
        """Build from a config section; missing or null keys take the field's default.

        ``strict`` refuses keys that no field declares (a typo would otherwise be ignored silently).
        """
        sec = sec if sec is not None else {}
        if strict:
            known = set(cls.keys())
            unknown = sorted(str(k) for k in sec if k not in known)
            if unknown:
                names = ", ".join(f"{cls.SECTION}.{k}" if cls.SECTION else k for k in unknown)
                raise ConfigError(f"unknown setting(s) {names}; {cls.SECTION or 'this section'} has "
                                  f"{', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            sub = f.metadata.get("group")
            if sub is not None:
                kwargs[f.name] = sub.from_mapping(sec, strict=False) if f.metadata["flatten"] else sub.from_mapping(
                    section(sec, f.name), strict=strict)
                continue
            value = sec.get(f"{cls.PREFIX}{f.name}", None)
            if value is not None:
                kwargs[f.name] = _plain(value)
        return cls(**kwargs)

    @classmethod
    def schema_node(cls) -> dict[str, Any]:
        """The defaults as a plain mapping: the Hydra node every YAML file of the group overrides."""
        node: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):  # type: ignore[arg-type]
            value = getattr(defaults, f.name)
            sub = f.metadata.get("group")
            if sub is not None:
                child = sub.schema_node()
                if f.metadata["flatten"]:
                    node.update(child)
                else:
                    node[f.name] = child
            else:
                node[f"{cls.PREFIX}{f.name}"] = list(value) if isinstance(value, tuple) else value
        return node


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain Python values, so checks and dataclass fields see lists and dicts."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a core dependency
        return value
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value

