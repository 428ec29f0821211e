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


def scale_overlay(scale: str, family: str, source: str | None = None) -> dict:
    """A scale's sections for one recipe: ``all``, then the architecture family's (``vit`` or
    ``cnn``), then ``phantom`` when the fine-tuning data is the built-in phantom (how much of
    it to generate is the demo's choice; for real sources ``data.images`` is only a cap)."""
    if scale not in SCALES:
        raise SpecError(f"unknown scale '{scale}' (choose one of {', '.join(SCALES)})")
    sc = load_scales()[scale]
    out = deep_merge(sc.get("all") or {}, sc.get(family) or {})
    if source == "phantom":
        out = deep_merge(out, sc.get("phantom") or {})
    return out


def _final_source(d: dict, overlays: tuple[dict, ...], params: dict[str, Any] | None) -> str:
    """The fine-tuning data's source once every overlay and parameter is applied."""
    source = (d.get("data") or {}).get("source", "phantom")
    for over in overlays:
        source = (over.get("data") or {}).get("source", source)
    return (params or {}).get("data.source", source)


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
    family = family_of(d.get("model", {}).get("arch", "vit_small"))
    d = deep_merge(d, scale_overlay(scale, family, _final_source(d, overlays, params)))
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


# The study's fine-tuning schedule, in optimizer updates: 75 epochs of its 75,312 training
# images at an effective batch of 1024 (../shared/docs/paper.md).
PAPER_UPDATES = 75 * (75_312 // 1024)
PAPER_DEPTH = 12  # ViT-S/16 and ViT-B/16


def finetune_updates(recipe: Recipe, n_train: int) -> int:
    """Optimizer updates of a fine-tuning run on ``n_train`` images (one worker)."""
    per_update = recipe.finetune.effective_batch if recipe.finetune.batch_policy == "accumulate" \
        else recipe.finetune.batch_size
    return recipe.finetune.epochs * max(1, n_train // per_update)


def scaled_regularisation(paper: Recipe, depth: int, updates: int) -> dict[str, Any]:
    """The ViT's fine-tuning regularisation for a smaller model and a shorter schedule.

    The study set drop path 0.2 and RandAugment m6 for 5,475 updates of a 12-block ViT. Drop
    path removes whole residual blocks, so its rate grows with depth (timm/DeiT/MAE give deeper
    ViTs more); and regularisation only pays once a model can overfit, which takes updates: a
    run of a few hundred updates is under-fitted, and regularising it only slows learning
    (measured at cpu scale: BENCHMARKS / docs). So both shrink in proportion::

        u = min(1, updates / 5475)
        drop_path = 0.2 x (depth / 12) x u        rounded to 0.05
        randaug   = round(6 x u)                  (0: RandAugment off)

    At ``paper`` this gives the study's values; at ``cpu`` and ``smoke`` (4 and 2 blocks, about
    150 and 20 updates) both are off.
    """
    f = paper.finetune
    u = min(1.0, updates / PAPER_UPDATES)
    drop_path = round(round(f.drop_path * depth / PAPER_DEPTH * u / 0.05) * 0.05, 2)
    magnitude = round((f.randaug_magnitude or 0) * u)
    return {"drop_path": drop_path, "randaug_magnitude": magnitude or None}
