"""Scoring a split: probabilities from a model, computed on every rank and gathered on rank 0.

Each rank predicts its shard of the validation split (every ``world_size``-th batch of the
single-process order: no padding, no duplicate, ``explorer.train.inputs.shard_indices``), the
shards are gathered on rank 0 and put back in split order, and rank 0 computes the AUCs from
the very [N, C] probabilities the single-process path gives (same batches, same outputs): on 8
GPUs validation takes an eighth of the time instead of leaving 7 GPUs idle in the report
barrier.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist

from explorer.data.config import DataConfig
from explorer.data.transforms import device_batches, model_input
from explorer.train.inputs import LoaderPlan, eval_loader, shard_indices
from explorer.train.session import Session

NO_PROCESSES = LoaderPlan(0, False, None, "scoring in this process")


@torch.no_grad()
def predict_batches(model: torch.nn.Module, batches, channels_last: bool = False) -> np.ndarray:
    """Sigmoid probabilities [N, C] in batch order, computed in float32 even where training
    uses bf16 autocast: bf16 logits keep 8 significant bits, so close scores tie and every AUC
    computed from them is pulled towards 0.5 (measured on an H200: BENCHMARKS.md, section 7)."""
    model.eval()
    out = [torch.sigmoid(model(model_input(x, channels_last)).float()).cpu()
           for x, _ in batches]
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def predict(model: torch.nn.Module, dataset, device: torch.device, batch_size: int,
            data: DataConfig, channels_last: bool = False,
            lp: LoaderPlan = NO_PROCESSES) -> np.ndarray:
    """Probabilities [N, C] for every item of ``dataset`` (uint8 images), in one process."""
    loader = eval_loader(dataset, batch_size, lp)
    return predict_batches(model, device_batches(loader, data, device), channels_last)


def gather_rows(session: Session, local: np.ndarray, n: int, batch: int, width: int
                ) -> np.ndarray | None:
    """``local``: this rank's rows [., width] for its ``shard_indices``. On rank 0, all ``n``
    rows in item order; None on the other ranks. Shards are padded to one length for
    ``all_gather`` and the padding dropped."""
    w = session.world_size
    if w == 1:
        return local
    shards = [shard_indices(n, batch, r, w) for r in range(w)]
    pad = torch.zeros(max(map(len, shards)), width, dtype=torch.float32)
    if len(local):
        pad[: len(local)] = torch.from_numpy(local)
    if dist.get_backend() == "nccl":
        pad = pad.to(session.device())
    parts = [torch.empty_like(pad) for _ in range(w)]
    dist.all_gather(parts, pad)
    if not session.is_main:
        return None
    out = np.empty((n, width), dtype=np.float32)
    for shard, part in zip(shards, parts):
        out[shard] = part[: len(shard)].cpu().numpy()
    return out


class Validator:
    """Scores ``dataset`` each epoch with this rank's shard; keeps its loader (and its loader
    processes) between epochs."""

    def __init__(self, dataset, n_classes: int, session: Session, data: DataConfig,
                 device: torch.device, batch_size: int, lp: LoaderPlan,
                 channels_last: bool = False):
        self.n, self.width, self.session = len(dataset), n_classes, session
        self.batch, self.channels_last = batch_size, channels_last
        loader = eval_loader(dataset, batch_size, lp, session.rank, session.world_size)
        self.batches = device_batches(loader, data, device)

    def __call__(self, model: torch.nn.Module) -> np.ndarray | None:
        """Probabilities [N, C] on rank 0 (None on the others); every rank must call it."""
        local = predict_batches(model, self.batches, self.channels_last)
        return gather_rows(self.session, local, self.n, self.batch, self.width)


def score(labels: np.ndarray, probs: np.ndarray, findings) -> tuple[float, list[float | None]]:
    """Mean AUC over the findings that have both classes, and each finding's AUC (None where
    undefined)."""
    from explorer.metrics import per_class_auc

    table = per_class_auc(labels, probs, findings)
    defined = table["auc"].dropna()
    mean = float(defined.mean()) if len(defined) else float("nan")
    return mean, [None if math.isnan(a) else float(a) for a in table["auc"]]
