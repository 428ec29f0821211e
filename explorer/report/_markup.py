"""Tiny HTML builder that escapes by default: text is escaped unless it is ``Markup``."""

from __future__ import annotations

import html
from collections.abc import Iterable


class Markup(str):
    """Text that is already HTML (built here from escaped parts)."""


def esc(x) -> Markup:
    return x if isinstance(x, Markup) else Markup(html.escape(str(x), quote=True))


def tag(name: str, *children, **attrs) -> Markup:
    """``<name attrs>children</name>``; attribute values and text children are escaped."""
    a = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"'
                for k, v in attrs.items() if v is not None)
    return Markup(f"<{name}{a}>{''.join(esc(c) for c in children)}</{name}>")


def join(parts: Iterable) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def table(headers: list | None, rows: Iterable[list],
          row_classes: Iterable[str | None] | None = None, num_cols: Iterable[int] = ()) -> Markup:
    """A table; ``headers=None`` for a headerless key/value table."""
    nums = set(num_cols)
    head = tag("tr", *(tag("th", h) for h in headers)) if headers is not None else ""
    rows = list(rows)
    classes = list(row_classes) if row_classes is not None else [None] * len(rows)
    body = [tag("tr", *(tag("td", c, class_="num" if j in nums else None)
                        for j, c in enumerate(r)), class_=cls)
            for r, cls in zip(rows, classes)]
    return tag("table", tag("thead", head) if head else "", tag("tbody", *body))
