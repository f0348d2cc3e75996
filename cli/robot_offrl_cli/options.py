"""Option parsing shared by the subcommands."""

from __future__ import annotations


def csv_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the one parser for comma-separated options."""
    return [t.strip() for t in text.split(",") if t.strip()]
