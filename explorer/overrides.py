"""``--set KEY=VALUE``: parse, and apply to the spec as data, with one-line errors.

Keys are dotted paths into the spec (``data.root``, ``baselines.0.recipe``). Sections are made
on the way when missing; list items must exist. Searched parameter names contain dots
themselves (``search.params.finetune.layer_decay.low``), so below ``search.params`` a key is
matched against the parameter names first.
"""

from __future__ import annotations

import re
from typing import Any

from explorer.errors import SpecError
from explorer.safe_yaml import RefusedYaml, load_yaml

_KEY = re.compile(r"[A-Za-z_]\w*(\.\w+)*")
#: Fields of one searched parameter (``explorer.spec.ParamSpace``), the last part of a key
#: such as ``search.params.pretrain.mask_ratio.high``.
PARAM_FIELDS = ("type", "low", "high", "log", "step", "choices", "when")


def parse_set(item: str) -> tuple[str, Any]:
    """``key.path=value`` with the value read as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set scale=smoke")
    key, _, text = item.partition("=")
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise SpecError(f"--set {item!r}: '{key}' is not a dotted key such as data.root")
    if not text.strip():
        return key, ""
    try:
        return key, load_yaml(text, f"--set {key}")
    except RefusedYaml:
        raise
    except SpecError:
        return key, text   # not YAML (e.g. a Windows path): the plain string


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _param_key(params: dict, rest: list[str]) -> tuple[str, list[str]]:
    """(parameter name, remaining parts) for the parts after ``search.params``."""
    for n in range(len(rest), 0, -1):   # an existing name, longest first
        name = ".".join(rest[:n])
        if name in params:
            return name, rest[n:]
    if len(rest) > 2 and rest[-1] in PARAM_FIELDS:   # a new parameter with one field
        return ".".join(rest[:-1]), rest[-1:]
    return ".".join(rest), []


def _item(cur: list, part: str, where: str, item: str) -> int:
    """The list index ``part`` names in ``cur``, or why it names none."""
    if not part.isdigit():
        raise SpecError(f"--set {item!r}: {where} is a list: give an item number, "
                        f"e.g. {where}.0.{part}")
    index = int(part)
    if index >= len(cur):
        raise SpecError(f"--set {item!r}: {where} has {len(cur)} item(s), so there is no item "
                        f"{index}" + (f" (0 to {len(cur) - 1})" if cur else ""))
    return index


def set_value(raw: dict, key: str, value: Any, item: str) -> None:
    """Set ``key`` (dotted) in ``raw`` to ``value``, or a SpecError saying why it cannot be."""
    parts, cur, trail = key.split("."), raw, []
    while True:
        part = parts.pop(0)
        where = ".".join(trail) or "the spec"
        if isinstance(cur, list):
            part = _item(cur, part, where, item)
        elif not isinstance(cur, dict):
            raise SpecError(f"--set {item!r}: {where} is a value ({_shown(cur)}), not a "
                            f"section: set it whole, e.g. --set {where}=...")
        elif trail == ["search", "params"]:
            part, parts = _param_key(cur, [part, *parts])
        if not parts:
            cur[part] = value
            return
        if isinstance(cur, dict) and part not in cur:
            if parts[0].isdigit():
                raise SpecError(f"--set {item!r}: {'.'.join([*trail, part])} is not in the "
                                f"spec, so it has no item {parts[0]}: set the whole list, "
                                f"e.g. --set {'.'.join([*trail, part])}=[...]")
            cur[part] = {}
        cur, trail = cur[part], [*trail, str(part)]


def apply_sets(raw: dict, sets: list[str]) -> dict:
    for item in sets:
        key, value = parse_set(item)
        set_value(raw, key, value, item)
    return raw
