"""The searched space as a set of configurations: rounding, identity, size, enumeration.

Used by the searcher (``explorer.tuning``) so that no configuration is trained twice, and so a
stepped or categorical space that has been tried in full ends the search instead of repeating
itself. ``params`` is the spec's ``search.params`` dumped to plain dicts (``type``, ``low``,
``high``, ``step``, ``log``, ``choices``, ``when``), in definition order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

#: Spaces with more configurations than this are treated as unbounded: they are never
#: exhausted by a search, and enumerating them would cost more than it tells.
MAX_ENUMERATED = 200_000


def step_decimals(step: float) -> int:
    """Decimal places of a step as written (0.05 -> 2, 0.1 -> 1, 2 -> 0)."""
    exponent = Decimal(str(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def rounded(value: Any, p: dict) -> Any:
    """A stepped float on its grid, without float noise (Optuna returns 0.8500000000000001
    for ``0.5 + 7 * 0.05``); every other value unchanged."""
    if p.get("type") == "float" and p.get("step") and isinstance(value, float):
        return round(value, step_decimals(p["step"]))
    return value


def round_config(config: dict[str, Any], params: dict[str, dict]) -> dict[str, Any]:
    return {k: rounded(v, params[k]) if k in params else v for k, v in config.items()}


def config_key(config: dict[str, Any], params: dict[str, dict]) -> str:
    """One string per distinct configuration (rounded, order-free; absent ``when`` params are
    simply absent)."""
    return json.dumps(round_config(config, params), sort_keys=True, default=str)


def _values(p: dict) -> list[Any] | None:
    """Every value a parameter can take, or None for a continuous range."""
    if p["type"] == "categorical":
        return list(p["choices"])
    if p["type"] == "int":
        return list(range(int(p["low"]), int(p["high"]) + 1, int(p.get("step") or 1)))
    if not p.get("step"):
        return None
    n = round((p["high"] - p["low"]) / p["step"])
    return [rounded(p["low"] + k * p["step"], p) for k in range(n + 1)]


def _active(p: dict, chosen: dict[str, Any]) -> bool:
    when = p.get("when") or {}
    return all(k in chosen and (chosen[k] in v if isinstance(v, list) else chosen[k] == v)
               for k, v in when.items())


def _walk(items: list[tuple[str, dict]], chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if not items:
        yield dict(chosen)
        return
    (name, p), rest = items[0], items[1:]
    if not _active(p, chosen):
        yield from _walk(rest, chosen)
        return
    for v in _values(p) or ():
        chosen[name] = v
        yield from _walk(rest, chosen)
    chosen.pop(name, None)


def space_size(params: dict[str, dict]) -> int | None:
    """How many distinct configurations the space holds; None when unbounded (a continuous
    range, or more than ``MAX_ENUMERATED``)."""
    if any(_values(p) is None for p in params.values()):
        return None
    n = sum(1 for _ in itertools.islice(_walk(list(params.items()), {}), MAX_ENUMERATED + 1))
    return None if n > MAX_ENUMERATED else n


def all_configs(params: dict[str, dict]) -> list[dict[str, Any]]:
    """Every configuration of a bounded space (``space_size`` is not None), in a fixed order."""
    return list(_walk(list(params.items()), {}))
