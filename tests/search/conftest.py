"""What the run package's fast tests share: a smoke-scale spec and its phantom data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPACES = REPO / "search_spaces"


@pytest.fixture(scope="session")
def smoke_loaded():
    """``layer_decay.yaml`` at smoke scale with one DenseNet seed: a ViT search that pre-trains
    nothing searched, and a baseline."""
    from explorer.spec import load_spec

    return load_spec(SPACES / "layer_decay.yaml",
                     ["scale=smoke", "baselines=[{recipe: densenet121_baseline, seeds: 1}]"])


@pytest.fixture(scope="session")
def smoke_data(smoke_loaded):
    from explorer.data import load_data

    return load_data(smoke_loaded.base.data)
