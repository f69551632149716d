"""How commands print: aligned tables for people, `--json` for scripts, durations in words.

One place, so every listing looks and parses the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "DurationType",
    "echo_json",
    "echo_table",
    "format_duration",
    "json_option",
    "relative_time",
]


def json_option(func: F) -> F:
    """`--json`: print machine-readable JSON instead of the table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    """Columns padded to their widest cell; ``empty`` when there is nothing to show."""
    if not rows:
        click.echo(empty)
        return
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def format_duration(seconds: float) -> str:
    """``3d 4h``, ``25m``, ``40s``: the two largest units, for people reading a listing."""
    seconds = int(abs(seconds))
    units = (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if seconds >= size or (name == "s" and not parts):
            parts.append(f"{seconds // size}{name}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def relative_time(value: str | None, *, now: datetime | None = None) -> str | None:
    """An ISO timestamp from the API as "in 29d 23h" or "3h 2m ago" (None stays None)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = (moment - (now or datetime.now(UTC))).total_seconds()
    return f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(delta)} ago"


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a bare number of seconds) -> timedelta."""

    name = "duration"
    _UNITS: ClassVar[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        number, unit = (text[:-1], text[-1]) if text[-1:] in self._UNITS else (text, "s")
        try:
            amount = float(number)
        except ValueError:
            self.fail(f"{value!r} is not a duration (examples: 90s, 30m, 12h, 7d, 2w)", param, ctx)
        if amount < 0:
            self.fail("a duration cannot be negative", param, ctx)
        return timedelta(seconds=amount * self._UNITS[unit])
