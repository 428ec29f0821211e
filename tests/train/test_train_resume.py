"""Checkpoint cadence, the background writer, and best weights kept apart from the resume
state (explorer.train.cadence, explorer.train.resume), on real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.data import load_data
from explorer.spec.config import CheckpointConfig
from explorer.spec.recipes import resolve_recipe
from explorer.train.artifacts import TrialArtifacts
from explorer.train.cadence import Cadence, Writer
from explorer.train.resume import MOVED_BEST, RESUME, Recorder, load_state


def test_cadence_by_epochs_or_minutes():
    now = [0.0]
    by_epochs = Cadence(CheckpointConfig(every_epochs=3), start_epoch=2, clock=lambda: now[0])
    assert [e for e in range(3, 10) if by_epochs.due(e) and by_epochs.mark(e) is None] == [5, 8]
    by_time = Cadence(CheckpointConfig(every_epochs=None, every_minutes=15), 0,
                      clock=lambda: now[0])
    now[0] = 14 * 60
    assert not by_time.due(100)
    now[0] = 15 * 60
    assert by_time.due(101)
    with pytest.raises(ValueError, match="every_epochs or every_minutes"):
        CheckpointConfig(every_epochs=None, every_minutes=None)


def test_writer_runs_jobs_in_order_and_raises_a_failure_in_the_training_thread():
    done: list[int] = []
    w = Writer()
    for i in range(5):
        w.submit(lambda i=i: done.append(i))
    w.flush()
    assert done == [0, 1, 2, 3, 4]

    def fail() -> None:
        raise OSError("disk full")

    w.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        w.flush()
    w.close()


@pytest.fixture(scope="module")
def data():
    return load_data(resolve_recipe("mae_vit_small_xray", "smoke").data)


def _epoch(rec: Recorder, st: dict, model, opt, epoch: int, auc: float) -> None:
    """Epoch ``epoch`` with validation mean AUC ``auc``: new weights, recorded."""
    with torch.no_grad():
        model.weight.fill_(float(epoch))
    st["epoch"] = epoch
    st["history"].append({"epoch": epoch, "val_mean_auc": auc})
    new_best = st["best"] is None or auc > st["best"]["val_mean_auc"]
    if new_best:
        st["best"] = {"epoch": epoch, "val_mean_auc": auc}
        st["best_probs"] = np.full((len(rec.data.val), 14), auc, np.float32)
    rec.epoch_done(st, model, opt, new_best, {"best_epoch": st["best"]["epoch"]})


def test_a_run_killed_after_a_newer_best_resumes_with_the_best_of_its_state(data, tmp_path):
    art = TrialArtifacts(tmp_path)
    model = torch.nn.Linear(2, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = Recorder(art, data, CheckpointConfig(every_epochs=2), start_epoch=0)
    st = {"epoch": 0, "history": [], "best": None, "best_probs": None}
    _epoch(rec, st, model, opt, 1, 0.6)   # best 1
    _epoch(rec, st, model, opt, 2, 0.5)   # resume state at 2, naming best 1
    _epoch(rec, st, model, opt, 3, 0.7)   # best 3 replaces best_model.pt ...
    rec.flush()
    weights = torch.load(tmp_path / "best_model.pt", weights_only=True)["weight"]
    assert float(weights[0, 0]) == 3.0
    assert (tmp_path / MOVED_BEST.format(1)).is_file()   # ... after moving best 1 aside
    rec.abandon()  # killed here: the resume state is still that of epoch 2

    back = load_state(tmp_path / RESUME, torch.nn.Linear(2, 1, bias=False),
                      torch.optim.SGD(model.parameters(), lr=0.1))
    assert back["epoch"] == 2 and back["best"]["epoch"] == 1
    again = Recorder(art, data, CheckpointConfig(every_epochs=2), start_epoch=2)
    again.restore(back)
    weights = torch.load(tmp_path / "best_model.pt", weights_only=True)["weight"]
    assert float(weights[0, 0]) == 1.0, "best_model.pt is the best the resume state names"
    assert not list(tmp_path.glob(MOVED_BEST.format("*")))
    val = art.read_predictions("val")
    assert np.allclose(val[data.findings[0]], 0.6)

    # the resumed run goes on: a later state leaves no moved-aside file behind
    st = {**back, "history": list(back["history"])}
    _epoch(again, st, model, opt, 3, 0.8)
    _epoch(again, st, model, opt, 4, 0.9)
    again.close()
    assert torch.load(tmp_path / RESUME, weights_only=True)["best"]["epoch"] == 4
    assert not list(tmp_path.glob(MOVED_BEST.format("*")))
    assert art.read_json("history.json")[-1]["epoch"] == 4
