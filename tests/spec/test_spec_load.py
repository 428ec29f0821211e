"""The spec is a product surface: every malformed spec gets one line and exit code 2."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from explorer.search.cli import main
from explorer.spec import load_spec
from explorer.spec.recipes import SCALES, get_path, resolve_recipe

REPO = Path(__file__).resolve().parents[2]

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
VALID = yaml.safe_load((REPO / "search_spaces" / "mask_ratio.yaml").read_text())


def run_cli(tmp_path, capsys, spec: dict | str, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    storage = tmp_path / "runs"
    code = main([str(path), "--storage", str(storage), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def mutate(path: str, value) -> dict:
    spec = copy.deepcopy(VALID)
    parts = path.split(".")
    cur = spec
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    if value is DELETE:
        del cur[parts[-1]]
    else:
        cur[parts[-1]] = value
    return spec


DELETE = object()

# (what is wrong, the spec, a fragment the one-line message must contain)
MALFORMED = [
    ("unknown top-level key", mutate("serach", {}), "did you mean 'search'"),
    ("unknown search key", mutate("search.num_sample", 3), "did you mean 'num_samples'"),
    ("unknown recipe key in an overlay", mutate("pretrain", {"mask_ratoi": 0.8}),
     "did you mean 'mask_ratio'"),
    ("wrong type", mutate("search.num_samples", "many"), "search.num_samples"),
    ("zero trials", mutate("search.num_samples", 0), "greater than or equal to 1"),
    ("inverted range", mutate("search.params", {"pretrain.mask_ratio":
                                                {"type": "float", "low": 0.9, "high": 0.5}}),
     "inverted range"),
    ("empty range", mutate("search.params", {"pretrain.mask_ratio":
                                             {"type": "float", "low": 0.5, "high": 0.5}}),
     "empty or inverted range"),
    ("mask ratio outside [0, 1)", mutate("search.params", {"pretrain.mask_ratio":
                                                           {"type": "float", "low": 0.5,
                                                            "high": 1.0}}),
     "mask_ratio must be in [0, 1)"),
    ("negative mask ratio in an overlay", mutate("pretrain", {"mask_ratio": -0.1}),
     "mask_ratio must be in [0, 1)"),
    # MAE keeps int(L x (1 - r)) patches (golden counts: tests/models/test_models_reference.py);
    # at cpu scale L = (64 / 8)^2 = 64, so r = 0.99 leaves int(0.64) = 0
    ("a searched mask ratio that leaves no patch visible",
     mutate("search.params", {"pretrain.mask_ratio": {"type": "float", "low": 0.5,
                                                      "high": 0.99}}),
     "leaves no patch visible on a 8x8 grid"),
    ("an overlay image size that leaves no patch visible at the top mask ratio",
     mutate("data", {"image_size": 16}), "leaves no patch visible on a 2x2 grid"),
    ("two searched values that leave no patch visible together",
     mutate("search.params", {"pretrain.mask_ratio": {"type": "float", "low": 0.5, "high": 0.8},
                              "data.image_size": {"type": "categorical", "choices": [16, 64]}}),
     "worst case: pretrain.mask_ratio 0.8, data.image_size 16)"),
    ("crop scale above 1", mutate("search.params", {"pretrain.crop_scale.0":
                                                    {"type": "float", "low": 0.5,
                                                     "high": 1.5}}), "crop scale"),
    ("crop scale of zero", mutate("pretrain", {"crop_scale": [0.0, 1.0]}), "crop scale"),
    ("parameter path not in the recipe", mutate("search.params", {"pretrain.mask_rate":
                                                                  {"type": "float", "low": 0.1,
                                                                   "high": 0.5}}),
     "no such parameter"),
    ("parameter in an unknown section", mutate("search.params", {"optim.lr":
                                                                 {"type": "float", "low": 0.1,
                                                                  "high": 0.5}}),
     "recipe sections"),
    ("scheduler budget above the epochs", mutate("search.scheduler.max_t", 500),
     "exceeds the fine-tuning budget"),
    ("grace period above the epochs", mutate("search.scheduler.grace_period", 99),
     "grace_period (99) exceeds"),
    ("categorical without choices", mutate("search.params", {"finetune.mix":
                                                             {"type": "categorical"}}),
     "non-empty 'choices'"),
    ("log range from zero", mutate("search.params", {"finetune.base_lr":
                                                     {"type": "float", "low": 0.0, "high": 0.1,
                                                      "log": True}}), "log range needs low > 0"),
    ("step not dividing the range", mutate("search.params", {"pretrain.mask_ratio":
                                                             {"type": "float", "low": 0.5,
                                                              "high": 0.9, "step": 0.3}}),
     "does not divide"),
    ("int parameter with fractions", mutate("search.params", {"finetune.epochs":
                                                              {"type": "int", "low": 1.5,
                                                               "high": 4}}), "whole numbers"),
    ("condition on an unsearched parameter",
     mutate("search.params", {"finetune.mixup_alpha": {"type": "float", "low": 0.1, "high": 1,
                                                       "when": {"finetune.mix": "mixup"}}}),
     "is not a searched parameter"),
    ("unknown recipe", mutate("recipe", "mae_vit_huge"), "recipe 'mae_vit_huge' not found"),
    ("unknown scale", mutate("scale", "laptop"), "scale"),
    ("missing search section", mutate("search", DELETE), "search"),
    ("unknown baseline recipe", mutate("baselines", [{"recipe": "vgg16"}]), "vgg16"),
    ("bad experiment name", mutate("name", "../escape"), "name"),
    ("points_to_evaluate naming an unsearched parameter",
     mutate("search.points_to_evaluate", [{"finetune.layer_decay": 0.5}]),
     "not a searched parameter"),
    ("not YAML", "name: [unclosed", "not valid YAML"),
    ("not a mapping", "- just\n- a list\n", "must be a mapping"),
]


@pytest.mark.parametrize("what,spec,fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_one_line_exit_2_nothing_created(tmp_path, capsys, what, spec, fragment):
    code, out, err = run_cli(tmp_path, capsys, spec)
    assert code == 2, (what, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "runs").exists(), "a bad spec must not create anything on disk"


def test_bad_set_override_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(tmp_path, capsys, VALID, "--set", "scale")
    assert code == 2 and "expected KEY=VALUE" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(tmp_path, capsys, VALID, "--set", "data.rot=/x")
    assert code == 2 and "did you mean 'root'" in err


def test_missing_spec_file(tmp_path, capsys):
    code = main([str(tmp_path / "nope.yaml"), "--storage", str(tmp_path / "runs")])
    assert code == 2
    assert "search spec not found" in capsys.readouterr().err


def test_cli_process_exit_code_and_single_line(tmp_path):
    """The real command line, as a user runs it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("search.num_sample", 3)))
    proc = subprocess.run([sys.executable, "-m", "explorer.search", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "num_samples" in proc.stderr


@pytest.mark.parametrize("space", SPACES, ids=[p.stem for p in SPACES])
@pytest.mark.parametrize("scale", SCALES)
def test_every_space_dry_runs_at_every_scale(space, scale, tmp_path, capsys):
    code = main([str(space), "--dry-run", "--set", f"scale={scale}",
                 "--storage", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Pre-trainings needed:" in out and "Rough cost" in out
    assert not (tmp_path / "runs").exists()
    loaded = load_spec(space, [f"scale={scale}"])
    n_pre, _ = loaded.distinct_pretrainings()
    if space.stem in ("layer_decay", "augmentation"):
        assert n_pre == 1 and "Pre-trainings needed: 1 " in out
    else:
        assert n_pre == loaded.spec.search.num_samples


def test_every_space_file_says_what_it_asks_and_found():
    for space in SPACES:
        head = space.read_text().split("\nname:")[0]
        assert "Question:" in head and ("study" in head or "The study" in head), space.name


def test_set_overrides_any_field():
    loaded = load_spec(REPO / "search_spaces" / "mask_ratio.yaml",
                       ["scale=smoke", "search.num_samples=2", "data.source=chestxray14",
                        "data.root=/data/nih", "finetune.epochs=4", "baselines=[]"])
    assert loaded.spec.scale == "smoke" and loaded.spec.search.num_samples == 2
    assert loaded.base.data.source == "chestxray14" and loaded.base.data.root == "/data/nih"
    assert loaded.base.finetune.epochs == 4 and loaded.spec.baselines == []
    assert loaded.base.model.arch == "vit_nano"  # the smoke overlay


def test_trial_recipe_applies_searched_values():
    loaded = load_spec(REPO / "search_spaces" / "crop_scale.yaml")
    r = loaded.recipe_for({"pretrain.crop_scale.0": 0.3})
    assert tuple(r.pretrain.crop_scale) == (0.3, 1.0)
    assert get_path(r.model_dump(), "pretrain.crop_scale.0") == 0.3


def test_scale_is_an_overlay_not_a_code_path():
    paper = resolve_recipe("mae_vit_small_xray", "paper")
    cpu = resolve_recipe("mae_vit_small_xray", "cpu")
    assert type(paper) is type(cpu)
    assert paper.finetune.layer_decay == cpu.finetune.layer_decay == 0.55
    assert cpu.model.arch == "vit_micro" and paper.model.arch == "vit_small"
