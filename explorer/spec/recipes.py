"""Recipes as data: loading ``recipes/*.yaml``, scale overlays, dotted paths and config hashes."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from explorer.errors import SpecError
from explorer.names import family_of
from explorer.safe_yaml import read_yaml_file
from explorer.schema import one_line
from explorer.spec.config import Recipe

SCALES = ("smoke", "cpu", "paper")
REPO_ROOT = Path(__file__).resolve().parents[2]  # explorer/spec/recipes.py -> the project


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ./recipes, then the installed project's recipes/."""
    dirs = [Path.cwd() / "recipes", REPO_ROOT / "recipes"]
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML file as data (``yaml.safe_load``, bounded: see ``explorer.safe_yaml``), with
    one-line errors."""
    return read_yaml_file(Path(path), what)


def find_recipe(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    for d in recipe_dirs():
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for d in recipe_dirs() for f in d.glob("*.yaml")} - {"scales"})
    raise SpecError(f"recipe '{name_or_path}' not found (known recipes: {', '.join(known)})")


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of ``base`` with ``over`` merged in; nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_recipe_dict(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict:
    """The recipe as a plain dict, with ``base:`` inheritance resolved."""
    path = find_recipe(name_or_path)
    data = read_yaml(path, "recipe")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a recipe must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    if base in _seen:
        raise SpecError(f"{path}: recipe inheritance loops through '{base}'")
    return deep_merge(load_recipe_dict(base, (*_seen, name_or_path)), data)


def load_scales() -> dict:
    for d in recipe_dirs():
        if (d / "scales.yaml").is_file():
            return read_yaml(d / "scales.yaml", "scales file")
    raise SpecError("recipes/scales.yaml not found")


def scale_overlay(scale: str, family: str) -> dict:
    if scale not in SCALES:
        raise SpecError(f"unknown scale '{scale}' (choose one of {', '.join(SCALES)})")
    sc = load_scales()[scale]
    return deep_merge(sc.get("all") or {}, sc.get(family) or {})


def scale_search_defaults(scale: str) -> dict:
    return dict(load_scales()[scale].get("search") or {})


def split_path(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def set_path(d: dict, path: str, value: Any) -> None:
    """Set ``a.b.0`` in nested dicts/lists, creating dicts on the way (lists must exist)."""
    parts = split_path(path)
    cur: Any = d
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[p]
        else:
            cur = cur.setdefault(p, {})
    last = parts[-1]
    if isinstance(cur, (list, tuple)):
        cur = list(cur)
        cur[last] = value
        set_path(d, ".".join(str(p) for p in parts[:-1]), cur)
    else:
        cur[last] = value


def get_path(obj: Any, path: str) -> Any:
    cur = obj
    for p in split_path(path):
        cur = cur[p] if isinstance(cur, (list, tuple, dict)) else getattr(cur, p)
    return cur


def has_path(model_dict: dict, path: str) -> bool:
    try:
        get_path(model_dict, path)
    except (KeyError, IndexError, AttributeError, TypeError):
        return False
    return True


def build_recipe(d: dict, where: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(d)
    except ValidationError as err:
        raise SpecError(one_line(err, Recipe, where)) from None


def resolve_recipe_dict(name: str, scale: str, overlays: tuple[dict, ...] = (),
                        params: dict[str, Any] | None = None) -> dict:
    """Recipe dict -> scale overlay -> spec overlays -> searched parameter values."""
    d = load_recipe_dict(name)
    d = deep_merge(d, scale_overlay(scale, family_of(d.get("model", {}).get("arch", "vit_small"))))
    for over in overlays:
        d = deep_merge(d, over)
    for path, value in (params or {}).items():
        set_path(d, path, value)
    return d


def resolve_recipe(name: str, scale: str, overlays: tuple[dict, ...] = (),
                   params: dict[str, Any] | None = None, where: str = "recipe") -> Recipe:
    return build_recipe(resolve_recipe_dict(name, scale, overlays, params), where)


def config_hash(obj: Any, n: int = 12) -> str:
    """A short, stable content hash of JSON-able data (or a pydantic model)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]
