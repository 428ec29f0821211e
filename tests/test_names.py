"""The facts and helpers every layer shares: the architecture registry, one-line errors, the
strict base of every typed config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from explorer.errors import error_line
from explorer.names import ARCHS, CNN_ARCHS, VIT_ARCHS, VIT_SIZES, family_of
from explorer.schema import Strict, one_line
from explorer.spec.config import ModelConfig


def test_one_registry_of_architectures():
    assert set(ARCHS) == set(VIT_ARCHS) | set(CNN_ARCHS) and not set(VIT_ARCHS) & set(CNN_ARCHS)
    assert all(family_of(a) == "vit" for a in VIT_SIZES)
    assert [family_of(a) for a in CNN_ARCHS] == ["cnn"] * len(CNN_ARCHS)
    for arch in ARCHS:  # the recipe schema accepts exactly the registry
        assert ModelConfig(arch=arch).family == family_of(arch)
    with pytest.raises(ValidationError):
        ModelConfig(arch="vit_giant")


def test_error_line_takes_the_first_or_last_non_empty_line():
    err = RuntimeError("\n  summary line  \ndetail\n\n  cause: boom \n")
    assert error_line(err) == "summary line"
    assert error_line(err, last=True) == "cause: boom"
    assert error_line(ValueError()) == "ValueError"
    assert error_line(ValueError("x" * 500)) == "x" * 300


def test_strict_models_refuse_unknown_keys_in_one_line():
    class Section(Strict):
        epochs: int = 1

    class Top(Strict):
        finetune: Section = Section()

    with pytest.raises(ValidationError) as info:
        Top.model_validate({"finetune": {"epoch": 3}})
    assert one_line(info.value, Top, "SPEC") == \
        "SPEC: unknown key 'finetune.epoch' (did you mean 'epochs'?)"
