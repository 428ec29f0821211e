"""Validation on every rank: 2 real gloo processes on CPU give rank 0 the same probabilities,
in the same order, and the same AUCs bit for bit as one process scoring the whole split."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from explorer.data import XrayDataset, build_transform, load_data
from explorer.spec.recipes import resolve_recipe
from explorer.train.session import LocalSession
from explorer.train.validate import NO_PROCESSES, Validator, predict, score

N_VAL = 90  # 6 batches of 16: rank 0 scores batches 0, 2, 4 (48), rank 1 1, 3, 5 (42 images)


def _setup():
    recipe = resolve_recipe("mae_vit_small_xray", "smoke")
    data = load_data(recipe.data)
    val = torch.utils.data.Subset(XrayDataset(data.val, build_transform(recipe.data, train=False)),
                                  range(N_VAL))
    return recipe, data, val


def _model(recipe, weights: str | None = None) -> torch.nn.Module:
    from explorer.models import create_vit_classifier

    torch.manual_seed(0)
    model = create_vit_classifier(recipe.model.arch, img_size=recipe.data.image_size,
                                  patch_size=recipe.model.patch_size, num_classes=14)
    if weights:
        model.load_state_dict(torch.load(weights, weights_only=True))
    return model


def _rank(rank: int, world: int, init: str, weights: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        session = LocalSession()
        session.rank, session.world_size = rank, world
        recipe, data, val = _setup()
        validate = Validator(val, len(data.findings), session, recipe.data, torch.device("cpu"),
                             batch_size=16, lp=NO_PROCESSES)
        probs = validate(_model(recipe, weights))
        if rank == 0:
            np.save(out, probs)
        else:
            assert probs is None
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_give_the_single_process_aucs_bit_for_bit(tmp_path):
    recipe, data, val = _setup()  # builds the cache the ranks then open
    model = _model(recipe)
    with torch.no_grad():  # a model whose scores differ per finding (not a fresh 2e-5 head)
        model.head.weight.normal_(0, 0.5)
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "probs.npy"
    # fork: the ranks start without importing torch and timm again (spawn: +20 s)
    mp.start_processes(_rank, args=(2, str(tmp_path / "init"), str(weights), str(out)), nprocs=2,
                       start_method="fork")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: kernels split work by thread count
    try:
        single = predict(model, val, torch.device("cpu"), 16, recipe.data)
    finally:
        torch.set_num_threads(threads)
    gathered = np.load(out)
    assert gathered.shape == single.shape == (N_VAL, 14)
    np.testing.assert_array_equal(gathered, single)  # same rows, same order, same bits
    labels = data.val.labels[:N_VAL]
    mean_1, per_class_1 = score(labels, single, data.findings)
    mean_2, per_class_2 = score(labels, gathered, data.findings)
    assert per_class_2 == per_class_1 and mean_2 == mean_1
    assert sum(a is not None for a in per_class_1) >= 5  # AUCs, not a split without positives
