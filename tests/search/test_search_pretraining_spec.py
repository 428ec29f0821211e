"""Spec refusals of the pre-training stage and multi-fidelity pre-training (one line each, before
anything is written: the CLI prints a ``SpecError`` as ``error: ...`` and exits 2)."""

from __future__ import annotations

import pytest

from explorer.errors import SpecError
from explorer.search.cli import main
from explorer.spec import load_spec
from explorer.spec.search_spec import MEASURED_MILESTONES, FidelitySpec

SPACE = "search_spaces/mask_ratio.yaml"


@pytest.mark.parametrize("sets,message", [
    (["recipe=densenet121_baseline", "search.params={finetune.base_lr: {type: float, low: 0.001, "
      "high: 0.01}}", "search.points_to_evaluate=[]", "search.pretraining.stage=true"],
     "search.pretraining.stage: the recipe does not pre-train"),
    (["resources.workers=2", "search.pretraining.fidelity={}"],
     "search.pretraining.fidelity: the pre-training stage trains each encoder as one Ray task "
     "on one worker; resources.workers is 2"),
    (["scale=smoke", "search.pretraining.fidelity.milestones=[0.9]"],
     "search.pretraining.fidelity.milestones: [0.9] of 2 pre-training epochs leave no "
     "milestone before the end"),
    (["search.pretraining.fidelity.milestones=[0.5, 0.3]"],
     "milestones must be increasing fractions"),
    (["search.pretraining.fidelity.milestones=[1.0]"], "milestones must be increasing"),
])
def test_pretraining_spec_refusals(sets, message, tmp_path, capsys):
    with pytest.raises(SpecError) as e:
        load_spec(SPACE, sets)
    assert message in str(e.value)
    args = [SPACE, "--storage", str(tmp_path / "s"), "--reports", str(tmp_path / "r")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_default_milestones_are_the_measured_ones():
    assert FidelitySpec().milestones == list(MEASURED_MILESTONES)
