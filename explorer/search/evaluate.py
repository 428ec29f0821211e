"""Scoring the test split, once, for the finalists and the baselines.

The search never sees the test split. After it, the top recipes (by validation mean AUC) and
the baselines are scored on it exactly once: if ``test_predictions.parquet`` exists it is never
recomputed, so resuming or re-running the finalisation cannot turn the test set into a second
validation set.
"""

from __future__ import annotations

from explorer.spec.config import Recipe
from explorer.storage import Store
from explorer.train.artifacts import TrialArtifacts


def score_test(recipe: Recipe, data, art: TrialArtifacts) -> bool:
    """Write ``test_predictions.parquet`` from ``best_model.pt``; False without a test split."""
    import torch

    from explorer.train.finetune import build_classifier, predict
    from explorer.train.pretrain import EncoderInfo

    if art.path("test_predictions.parquet").is_file():
        return True
    if len(data.test) == 0 or not art.path("best_model.pt").is_file():
        return False
    from explorer.data import XrayDataset, build_transform

    bare = recipe.model_copy(update={
        "finetune": recipe.finetune.model_copy(update={"weights": None})})
    model = build_classifier(bare, len(data.findings), EncoderInfo(None, None, "none"))
    model.load_state_dict(torch.load(art.path("best_model.pt"), map_location="cpu",
                                     weights_only=True))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    ds = XrayDataset(data.test, build_transform(recipe.data, train=False))
    probs = predict(model, ds, device, recipe.finetune.batch_size, recipe.data)
    art.write_predictions("test", data.test, probs, data.findings)
    return True


def score_finalist(store: Store, rel: str) -> bool:
    """Rebuild the trial's recipe and data from its record (``rel`` in the storage) and score
    test; in the driver or as a Ray task."""
    import torch

    from explorer.data import load_data
    from explorer.spec.recipes import build_recipe

    store.pull(rel, exact=False)
    store.fetch(f"{rel}/best_model.pt")
    art = TrialArtifacts(store.path(rel))
    recipe = build_recipe(art.read_json("config.json")["recipe"])
    torch.set_num_threads(max(1, int(recipe.resources.cpus_per_worker)))
    scored = score_test(recipe, load_data(recipe.data), art)
    store.push(f"{rel}/test_predictions.parquet")
    return scored
