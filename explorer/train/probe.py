"""Cheap quality signals for a partly pre-trained encoder (multi-fidelity pre-training).

An MAE's reconstruction loss cannot rank encoders: it depends on the mask ratio itself (a higher
ratio is a harder task, so its loss is higher whatever the encoder learned). What fine-tuning
will make of an encoder is estimated instead from its frozen features on the train/validation
split, scored like the search itself (validation mean AUC over the findings with both classes):

- ``linear``: one L2-regularised logistic regression per finding on standardised features
  (scikit-learn), the linear probe of the MAE paper in its cheapest form;
- ``knn``: cosine k-nearest neighbours, a finding's probability the share of the ``K``
  nearest training images that have it (scikit-learn's ``KNeighborsRegressor``).

Features: the classifier's pooled representation (mean of the patch tokens, ``fc_norm``) of the
evaluation-size images, no augmentation. ``docs`` hold the measured rank correlation of each
probe at each milestone with the final fine-tuned AUC; the search uses only measured ones.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from explorer.spec.config import Recipe

PROBES = ("linear", "knn")
K = 20


@torch.no_grad()
def features(recipe: Recipe, mae_state: dict, split, device: torch.device | None = None,
             batch_size: int = 256) -> np.ndarray:
    """Pooled encoder features [N, D] of every image of ``split`` (float32, eval transform)."""
    from explorer.data import XrayDataset, build_transform
    from explorer.data.transforms import model_input, normalise
    from explorer.models import create_vit_classifier

    device = device or torch.device("cpu")
    model = create_vit_classifier(recipe.model.arch, img_size=recipe.data.image_size,
                                  patch_size=recipe.model.patch_size, num_classes=1,
                                  global_pool=recipe.model.global_pool,
                                  encoder_state=mae_state).to(device).eval()
    ds = XrayDataset(split, build_transform(recipe.data, train=False))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    out = []
    for imgs, _ in loader:
        x = model_input(normalise(imgs.to(device), recipe.data))
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu())
    return torch.cat(out).numpy()


def _linear(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xtr)
    xtr, xva = scaler.transform(xtr), scaler.transform(xva)
    probs = np.zeros((len(xva), ytr.shape[1]), dtype=np.float32)
    for j in range(ytr.shape[1]):
        y = ytr[:, j]
        if y.min() == y.max():  # one class in train: a constant (its AUC is 0.5 or undefined)
            probs[:, j] = float(y[0])
            continue
        clf = LogisticRegression(C=0.1, max_iter=500).fit(xtr, y)
        probs[:, j] = clf.predict_proba(xva)[:, 1]
    return probs


def _knn(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray) -> np.ndarray:
    from sklearn.neighbors import KNeighborsRegressor

    k = min(K, len(xtr))
    return KNeighborsRegressor(n_neighbors=k, metric="cosine").fit(xtr, ytr).predict(xva)


def probe_scores(recipe: Recipe, mae_state: dict, data, probes: tuple[str, ...] = PROBES,
                 device: torch.device | None = None) -> list[dict]:
    """One record per probe: {probe, value (validation mean AUC), time_s (features shared:
    their time is split evenly)}."""
    from explorer.train.validate import score

    t0 = time.perf_counter()
    xtr = features(recipe, mae_state, data.train, device)
    xva = features(recipe, mae_state, data.val, device)
    feat_s = (time.perf_counter() - t0) / max(1, len(probes))
    ytr = data.train.labels.astype(np.float32)
    out = []
    for name in probes:
        t1 = time.perf_counter()
        probs = {"linear": _linear, "knn": _knn}[name](xtr, ytr, xva)
        value, _ = score(data.val.labels, probs, data.findings)
        out.append({"probe": name, "value": value,
                    "time_s": feat_s + time.perf_counter() - t1})
    return out
