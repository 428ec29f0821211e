"""What every typed configuration here shares: unknown keys are refused, and a pydantic error
becomes one line a user can act on (``where: key: message (did you mean ...?)``).

The recipe (``explorer.spec.config``), its ``data:`` section (``explorer.data.config``) and
the search spec (``explorer.spec.search_spec``) all build on ``Strict``.
"""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """A model that refuses keys it does not declare (a misspelt key is an error, never ignored)."""

    model_config = ConfigDict(extra="forbid")


def _loc_str(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid field names of the (nested) model that ``loc`` points into."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                       None)
    return list(current.model_fields) if current is not None else []


def one_line(err: ValidationError, model: type[BaseModel], where: str) -> str:
    """First problem of ``err`` as ``where: key: message (did you mean ...?)``."""
    e = err.errors()[0]
    loc = tuple(e["loc"])
    key = _loc_str(loc) or "(top level)"
    if e["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        valid = _fields_at(model, loc)
        if not close and valid:
            hint = f" (valid keys: {', '.join(valid)})"
        return f"{where}: unknown key '{key}'{hint}"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = e.get("input")
    shown = "" if isinstance(value, dict) or value is None or "got " in msg else f" (got {value!r})"
    more = len(err.errors()) - 1
    tail = f" [+{more} more problem{'s' if more > 1 else ''}]" if more else ""
    return f"{where}: {key}: {msg}{shown}{tail}"
