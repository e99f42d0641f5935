"""Result rows and the one table they are printed as (Markdown, so it reads in a terminal and on GitHub)."""

from __future__ import annotations

import math
from dataclasses import dataclass

Value = float | int | str | None


@dataclass
class Row:
    """One figure of one scenario, measured directly and through the gateway."""

    id: str
    metric: str
    direct: Value
    gateway: Value
    budget: str = ""
    passed: bool | None = None  # None: information only, no budget

    @property
    def ratio(self) -> float | None:
        """gateway / direct, when both are numbers and direct is not zero."""
        if isinstance(self.direct, int | float) and isinstance(self.gateway, int | float) and self.direct:
            return self.gateway / self.direct
        return None


def fmt(value: Value) -> str:
    """A number with as many digits as are worth reading; text as is; None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "nan"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def verdict(row: Row) -> str:
    """pass / FAIL / blank for information rows."""
    if row.passed is None:
        return ""
    return "pass" if row.passed else "**FAIL**"


HEADER = ("id", "metric", "direct", "gateway", "ratio", "budget", "result")


def _cell(text: str) -> str:
    # One physical line per row, whatever an error message contains.
    return " ".join(text.split()).replace("|", "\\|")


def table(rows: list[Row]) -> str:
    """The rows as one aligned Markdown table."""
    cells = [HEADER] + [
        (
            r.id,
            _cell(r.metric),
            fmt(r.direct),
            fmt(r.gateway),
            "—" if r.ratio is None else f"{r.ratio:.2f}×",
            r.budget,
            verdict(r),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    numeric = {2, 3, 4}

    def line(values: tuple[str, ...]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        padded = (v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in pairs)
        return "| " + " | ".join(padded) + " |"

    rule = "|".join("-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths))
    return "\n".join([line(cells[0]), "|" + rule + "|", *(line(c) for c in cells[1:])])


def failures(rows: list[Row]) -> list[Row]:
    """Rows whose budget was missed."""
    return [r for r in rows if r.passed is False]
