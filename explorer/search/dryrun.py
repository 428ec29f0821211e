"""``--dry-run``: what a search would do and roughly cost, without doing any of it."""

from __future__ import annotations

import yaml

from explorer.spec import LoadedSpec, ParamSpace
from explorer.spec.recipes import config_hash
from explorer.train.inputs import describe as describe_inputs


def describe_space(p: ParamSpace) -> str:
    if p.type == "categorical":
        text = "one of " + ", ".join("off" if c is None else str(c) for c in p.choices or [])
    else:
        text = f"{p.type} in [{p.low:g}, {p.high:g}]"
        if p.log:
            text += ", log scale"
        if p.step:
            text += f", step {p.step:g}"
    if p.when:
        text += "; only when " + ", ".join(f"{k} in {v}" for k, v in p.when.items())
    return text


def _images(n: int | None, source: str) -> str:
    if n is not None:
        return f"{n:,}" if source == "phantom" else f"at most {n:,}"
    return "all"


def pool_lines(pool) -> list[str]:
    """The pre-training pool, planned (no pixels decoded): what it holds, and what the leakage
    guard leaves out and why."""
    if pool is None:
        return []
    notes = pool.notes()
    lines = [f"Pre-training data (pretrain.data, labels ignored): {pool.describe()}"]
    if notes["excluded_total"]:
        why = "; ".join(f"{n:,} {notes['reasons'][r]}" for r, n in notes["excluded"].items())
        lines.append(f"  left out by the leakage guard: {notes['excluded_total']:,} ({why})")
    else:
        lines.append("  left out by the leakage guard: none (no pooled image or patient is in "
                     "the fine-tuning data's validation or test split)")
    return lines


def dry_run_text(loaded: LoadedSpec, name: str) -> str:
    from explorer.data.pool import plan_pool

    spec, base = loaded.spec, loaded.base
    s = spec.search
    # planned here, so a pooled source that does not exist fails the dry run in one line
    pool = plan_pool(base.data, base.pretrain.data) if base.pretrains and base.pretrain.data \
        else None
    n_pre, why = loaded.distinct_pretrainings()
    sizes = base.data.images
    train = _images(sizes.train, base.data.source)
    sched = s.scheduler
    lines = [
        f"Search '{name}' from {loaded.path or 'spec'} at scale '{spec.scale}'",
        f"Base recipe '{spec.recipe}' (config hash {config_hash(base)}), resolved:",
        "  " + yaml.safe_dump(base.model_dump(mode="json"), sort_keys=False)
        .rstrip().replace("\n", "\n  "),
        "Searched parameters:",
        *[f"  {k}: {describe_space(v)}" for k, v in s.params.items()],
        f"Trials: {s.num_samples} ({s.searcher.type.upper()}, seed {s.searcher.seed}"
        + (f", {s.searcher.n_startup_trials} random start-up trials" if s.searcher.type == "tpe"
           else "") + ")"
        + (f", at most {s.max_concurrent} at a time" if s.max_concurrent else ""),
        ("Scheduler: none (every trial runs all epochs)" if sched.type == "none" else
         f"Scheduler: ASHA on fine-tuning epochs (grace {loaded.grace_period}, max "
         f"{loaded.max_t}, reduction factor {sched.reduction_factor:g})"),
        f"Pre-trainings needed: {n_pre} ({why})",
        *pool_lines(pool),
        "Per trial:", *describe_inputs(base),
    ]
    base_runs = []
    for b in spec.baselines:
        seeds = spec.baseline_seeds(b)
        r = loaded.baseline_recipe(b, seed=seeds[0] if seeds else 0, where="baselines")
        base_runs.append((b.recipe, seeds, r))
        lines.append(f"Baseline: {b.recipe} ({r.model.arch}) x {len(seeds)} seeds {seeds}"
                     + (f", {r.pretrain.method} pre-training shared by its seeds"
                        if r.pretrains else ""))
    if not spec.baselines:
        lines.append("Baselines: none (baselines: [])")
    lines.append(f"Finalists scored once on the test split: {spec.finalists}")
    lines.append(f"Rough cost (epochs x images; train images: {train}):")
    pre, ft = base.pretrain, base.finetune
    pre_images = f"{pool.images:,}" if pool is not None else train
    lines.append(f"  pre-training  {n_pre} x {pre.epochs} epochs x {pre_images} images")
    lines.append(f"  fine-tuning   {s.num_samples} x {ft.epochs} epochs x {train} images "
                 "(upper bound: ASHA stops weak trials early)")
    for recipe_name, seeds, r in base_runs:
        if r.pretrains:   # one encoder for all of its seeds
            lines.append(f"  pre-training  1 x {r.pretrain.epochs} epochs x {pre_images} images "
                         f"({r.pretrain.method}, {recipe_name}; shared across searches)")
        lines.append(f"  baselines     {len(seeds)} x {r.finetune.epochs} epochs x {train} images "
                     f"({recipe_name}, cached across searches)")
    n_test = spec.finalists + sum(len(seeds) for _, seeds, _ in base_runs)
    lines.append(f"  test scoring  {n_test} models x "
                 f"{_images(sizes.test, base.data.source)} test images, once")
    return "\n".join(lines)
