"""Bad inputs an adversary tries, class by class: ``--set`` paths and values, YAML that expands,
recipe values that only a trial's constructors refuse, environment settings, data rows
(duplicates, blank cells, leaks between splits, paths leaving the root) and unusual files.

Every case runs the real ``python -m explorer.search`` in process with the harness of
``test_search_bad_inputs``: exit code 2, one stderr line ``error: ...`` naming what is at fault, no
file under the test's folder created, changed or deleted, and ``cluster.connect`` a tripwire,
so a case that gets past the checks fails instead of starting Ray. A few run as real
processes, to show what a user sees. The damaged results stores of the report command are in
``tests/report/test_report_inputs.py``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_search_bad_inputs import (  # noqa: F401  (_no_ray: the autouse tripwire, used by name)
    CSV_SETS,
    SPACE,
    _no_ray,
    chestmnist_arrays,
    chexpert_folder,
    csv_folder,
    csv_rows,
    data_args,
    nih_folder,
    refused,
    run_cli,
    snapshot,
)

from explorer.data import DataConfig, load_data
from explorer.errors import MAX_LINE

REPO = Path(__file__).resolve().parents[2]
S = "--set"
SMOKE_SET = (S, "scale=smoke")


def sets(*items: str) -> list[str]:
    return [x for item in items for x in (S, item)]


def bomb(levels: int = 6) -> str:
    """A YAML list whose aliases expand to 9**levels items: a few hundred bytes."""
    parts = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


# -- --set paths and values -------------------------------------------------------------------
SET_CASES = [
    ("path into a value", sets("scale.x=1"), ["--set 'scale.x=1'", "scale is a value"]),
    ("list item out of range", sets("baselines.3.recipe=x"), ["baselines has 1 item(s)",
                                                               "no item 3"]),
    ("name into a list", sets("baselines.recipe=x"), ["baselines is a list", "baselines.0"]),
    ("item of a list the spec lacks", sets("pretrain.crop_scale.0=0.3"),
     ["pretrain.crop_scale is not in the spec", "--set pretrain.crop_scale=[...]"]),
    ("NUL character in a value", sets('data.root="/data\\0nih"', "data.source=csv"),
     ["data.root", "NUL character"]),
    ("path longer than the file system allows", sets("data.source=csv",
                                                     "data.root=/" + "d" * 5000),
     ["data root", "File name too long", "fix data.root"]),
    ("line break in a path", sets('data.root="/no\\nsuch"', "data.source=csv"),
     ["data root /no\\nsuch does not exist"]),
    ("unicode path", sets("data.root=/nö/日本", "data.source=csv"), ["/nö/日本 does not exist"]),
    ("empty value for data.root", sets("data.root=", "data.source=csv"),
     ["data.root is not set for source 'csv'"]),
    ("alias bomb in a value", sets(f"description={bomb()}"),
     ["--set description", "expands to more than 100,000 values"]),
    ("alias that contains itself", sets("description=&a [*a]"), ["refers to a block"]),
    ("nesting thousands deep", sets("seed=" + "[" * 1000 + "]" * 1000),
     ["--set seed", "nested too deeply"]),
    ("experiment name of 5000 characters", sets("name=" + "n" * 5000),
     ["name: a name of 5000 characters", "at most 100"]),
    ("dotted parameter name under search.params",
     sets("search.params.finetune.layer_decay.low=0.99"),
     ["search.params.finetune.layer_decay: empty or inverted range", "low (0.99)"]),
]


@pytest.mark.parametrize("what,args,names", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_set_paths_and_values(tmp_path, capsys, what, args, names):
    refused(tmp_path, capsys, *args, names=tuple(names))


def test_an_error_line_quoting_a_huge_value_is_cut(tmp_path, capsys):
    line = refused(tmp_path, capsys, *sets("search.num_samples=" + "9x" * 20000),
                   names=("search.num_samples", "valid integer", " [...] "))
    assert len(line) <= len("error: ") + MAX_LINE


# -- recipe values that only a trial's constructors refuse --------------------------------------
P = "search.params."
RECIPE_CASES = [
    ("patch size that does not tile the image", sets("model.patch_size=5"),
     ["the recipe: image size 32 is not a multiple of model.patch_size 5"]),
    ("searched image size whose range holds a size the patch does not tile",
     sets(P + "data.image_size={type: int, low: 32, high: 40}"),
     ["the search space reaches data.image_size 33", "model.patch_size 4"]),
    ("decoder width its heads do not divide", sets("pretrain.decoder_heads=3"),
     ["pretrain.decoder_dim 32 must be divisible", "pretrain.decoder_heads 3"]),
    ("searched decoder heads, one of which does not divide the width",
     sets(P + "pretrain.decoder_heads={type: categorical, choices: [2, 3]}"),
     ["the search space reaches pretrain.decoder_heads 3"]),
    ("odd batch under Mixup", sets("finetune.mix=mixup", "finetune.batch_size=31"),
     ["finetune.mix 'mixup' needs an even finetune.batch_size", "got 31"]),
    ("betas the optimizer refuses", sets("finetune.betas=[1.5, 0.9]"),
     ["the fine-tuning optimizer (finetune.*) cannot be built", "beta"]),
    ("image size too small for the DenseNet baseline", sets("data.image_size=16"),
     ["baselines (densenet121_baseline)", "densenet121 classifier at data.image_size 16"]),
    ("eval crop that makes a huge eval resize", sets("data.eval_crop_pct=0.005"),
     ["eval resize", "6400 px", "4096"]),
    ("image size of a billion pixels", sets("data.image_size=1000000000"),
     ["data.image_size is 1000000000 px"]),
    ("negative split seed", sets("data.split_seed=-1"), ["data.split_seed -1 is outside"]),
    ("searcher seed beyond numpy's", sets("search.searcher.seed=4294967296"),
     ["search.searcher.seed 4294967296 is outside"]),
    ("baseline seeds that are negative", sets("baselines=[{recipe: densenet121_baseline, "
                                              "seeds: [0, -3]}]"),
     ["baselines (densenet121_baseline) seed -3"]),
    ("warm-up and epochs searched so that they cross",
     sets(P + "finetune.warmup_epochs={type: int, low: 1, high: 3}",
          P + "finetune.epochs={type: int, low: 2, high: 3}"),
     ["extreme finetune.warmup_epochs 3, finetune.epochs 2", "warmup_epochs (3) exceeds"]),
    ("start point outside the searched range",
     sets("search.points_to_evaluate=[{finetune.layer_decay: 5.0}]"),
     ["search.points_to_evaluate[0]: finetune.layer_decay 5.0 is outside the range"]),
    ("condition on a value the other parameter never takes",
     sets(P + "finetune.mix={type: categorical, choices: [none, mixup]}",
          P + "finetune.mixup_alpha={type: float, low: 0.1, high: 1, "
              "when: {finetune.mix: cutmix}}"),
     ["finetune.mixup_alpha.when: finetune.mix never takes 'cutmix'"]),
    ("searching which images validation holds",
     sets(P + "data.split_seed={type: int, low: 0, high: 3}"),
     ["search.params.data.split_seed: cannot be searched"]),
    ("a value that is not a finite number", sets("data.mean=.inf"),
     ["the recipe: data.mean is inf: give a finite number"]),
    ("a decoder a million blocks deep", sets("pretrain.decoder_depth=1000000"),
     ["pretrain.decoder_depth 1000000", "at most 48"]),
    ("phantom contrast of 1e308", sets("data.phantom_strength=1.0e308"),
     ["data.phantom_strength: Input should be less than or equal to 100"]),
    ("a phantom of a billion images", sets("data.images.train=1000000000"),
     ["data.images.train 1,000,000,000: the phantom draws at most 200,000"]),
    ("a baseline with no seeds", sets("baselines=[{recipe: densenet121_baseline, seeds: 0}]"),
     ["baselines[0].seeds: 0 gives no run", "baselines: [] for none"]),
    ("the same baseline run twice", sets("baselines=[{recipe: densenet121_baseline}, "
                                         "{recipe: densenet121_baseline}]"),
     ["baselines[1]: densenet121_baseline seed 0 is already run by baselines[0]"]),
    ("a bootstrap too large to hold", sets("bootstrap=1000000000"),
     ["bootstrap 1,000,000,000 resamples", "at most 100,000"]),
    ("searching the resources of a trial",
     sets(P + "resources.workers={type: int, low: 1, high: 2}"),
     ["search.params.resources.workers: cannot be searched"]),
]


@pytest.mark.parametrize("what,args,names", RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_recipe_values_refused_before_anything_is_written(tmp_path, capsys, what, args, names):
    refused(tmp_path, capsys, *args, names=tuple(names))


def test_a_refused_spec_leaves_the_name_free(tmp_path, capsys):
    """The name is not stuck: after the refusal nothing exists, so the fixed spec is not told
    that an experiment of that name exists or that its spec differs."""
    refused(tmp_path, capsys, *sets("pretrain.decoder_heads=3"))
    assert not (tmp_path / "runs").exists()
    code, err = run_cli(capsys, "--storage", str(tmp_path / "runs"), "--dry-run")
    assert code == 0 and err == ""


def test_image_cache_larger_than_the_free_disk(tmp_path, capsys):
    """The largest training split the checks allow (200,000 phantom images at 4096 px, 3.4 TB)
    is refused before a byte of it is written, where the disk cannot hold it."""
    need = 200_000 * 4096 * 4096
    if shutil.disk_usage(os.environ["CXR_EXPLORER_CACHE"]).free >= need:
        pytest.skip("the cache disk has 3.4 TB free: this request would fit")
    refused(tmp_path, capsys, *sets("data.image_size=4096", "model.patch_size=64",
                                    "data.images.train=200000"),
            names=("the image cache at", "3355.4 GB for the train split but", "GB are free"))


def test_reports_folder_under_a_file(tmp_path, capsys):
    """The report is written last: a --reports that cannot be created would fail after the
    whole search."""
    blocker = _blocker(tmp_path)
    refused(tmp_path, capsys, "--reports", str(blocker / "reports"),
            names=(f"--reports {blocker / 'reports'}", "which is a file"))


def test_storage_path_longer_than_the_file_system_allows(tmp_path, capsys):
    line = refused(tmp_path, capsys, "--storage", str(tmp_path / ("s" * 5000)),
                   names=("--storage", "not writable (File name too long)"))
    assert len(line) <= len("error: ") + MAX_LINE


# -- YAML files --------------------------------------------------------------------------------
def test_spec_file_with_an_alias_bomb(tmp_path, capsys):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(SPACE.read_text() + f"\ndescription: {bomb(7)}\n")
    assert spec.stat().st_size < 4096
    refused(tmp_path, capsys, spec=spec, names=(str(spec), "expands to more than 100,000"))


def test_spec_file_that_is_not_text(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    refused(tmp_path, capsys, spec=spec, names=(str(spec), "not a text file"))


# -- environment settings -------------------------------------------------------------------
def _blocker(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


ENV_CASES = [
    ("cache under a file", "CXR_EXPLORER_CACHE", lambda t: _blocker(t) / "cache",
     ["the image cache (CXR_EXPLORER_CACHE)", "which is a file"]),
    ("cache that is a file", "CXR_EXPLORER_CACHE", _blocker,
     ["CXR_EXPLORER_CACHE", "exists and is not a folder"]),
    ("mirror under a file", "CXR_EXPLORER_MIRROR", lambda t: _blocker(t) / "mirror",
     ["the remote-storage mirror (CXR_EXPLORER_MIRROR)"]),
    ("lock staleness that is not a number", "CXR_EXPLORER_LOCK_STALE_S", lambda t: "soon",
     ["CXR_EXPLORER_LOCK_STALE_S='soon'", "number of seconds"]),
    ("sync interval below zero", "CXR_EXPLORER_SYNC_S", lambda t: "-5",
     ["CXR_EXPLORER_SYNC_S='-5'"]),
]


@pytest.mark.parametrize("what,variable,value,names", ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_environment_settings(tmp_path, capsys, monkeypatch, what, variable, value, names):
    monkeypatch.setenv(variable, str(value(tmp_path)))
    refused(tmp_path, capsys, names=tuple(names))


def test_storage_setting_under_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXR_EXPLORER_STORAGE", str(_blocker(tmp_path) / "runs"))
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, "--reports", str(tmp_path / "reports"))
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: the storage (CXR_EXPLORER_STORAGE)") and "a file" in err
    assert snapshot(tmp_path) == before


def test_a_bad_setting_read_at_import_is_one_line_in_a_real_process(tmp_path):
    """The lock staleness is read when a lock is made, deep inside a search: a fresh process
    shows the setting is refused first, in one line, before anything else runs."""
    env = {**os.environ, "CXR_EXPLORER_LOCK_STALE_S": "nan", "PYTHONPATH": str(REPO)}
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "explorer.search", str(SPACE), *SMOKE_SET],
                          capture_output=True, text=True, cwd=tmp_path / "cwd", env=env,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "CXR_EXPLORER_LOCK_STALE_S='nan'" in proc.stderr
    assert snapshot(tmp_path) == before


# -- data rows: csv ---------------------------------------------------------------------------
def _edit_csv(root: Path, edit) -> Path:
    csv = root / "labels.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(edit(lines)) + "\n")
    return csv


def _cell(line: str, column: int, value: str) -> str:
    cells = line.split(",")
    cells[column] = value
    return ",".join(cells)


CSV_ROWS = csv_rows(val=[{"Mass": 1}, {}])   # rows 0-11 train (t0-t5), 12-15 test, 16-19 val
CSV_CASES = [
    ("an image twice in one split", lambda ls: [*ls, _cell(ls[1], 1, "t5")],
     (), ["img/000.png", "twice in train", "list each image once"]),
    ("one file under a train and a test patient", lambda ls: [*ls, _cell(_cell(
        ls[1], 1, "s0"), 2, "test")], (),
     ["img/000.png in train (patient t0) and in test (patient s0)", "leak"]),
    ("two spellings of one file", lambda ls: [*ls, _cell(_cell(ls[1], 0, "./img//000.png"),
                                                         2, "test")], (),
     ["listed more than once", "img/000.png"]),
    ("a few blank patient cells", lambda ls: [ls[0], _cell(ls[1], 1, ""), *ls[2:4],
                                              _cell(ls[4], 1, " "), *ls[5:]], (),
     ["column 'patient' is blank on lines 2, 5"]),
    ("every patient cell blank", lambda ls: [ls[0]] + [_cell(x, 1, "") for x in ls[1:]], (),
     ["column 'patient' is blank", "(every row)"]),
    ("blank path cells", lambda ls: [ls[0], _cell(ls[1], 0, ""), *ls[2:]], (),
     ["column 'path' is blank on line 2"]),
    ("blank split cell", lambda ls: [*ls[:3], _cell(ls[3], 2, ""), *ls[4:]], (),
     ["column 'split' is blank on line 4"]),
    ("a path leading out of the root", lambda ls: [ls[0], _cell(ls[1], 0, "../elsewhere.png"),
                                                   *ls[2:]], (),
     ["lead outside data.root", "'../elsewhere.png'", "data.allow_outside_root"]),
    ("an absolute path", lambda ls: [ls[0], _cell(ls[1], 0, "/etc/hostname"), *ls[2:]], (),
     ["lead outside data.root", "'/etc/hostname'"]),
    ("a label column named twice in the header",
     lambda ls: [ls[0] + ",Mass"] + [x + ",1" for x in ls[1:]], (),
     ["the header names column 'Mass' 2 times"]),
    ("a label column named twice in data.label_columns", lambda ls: ls,
     ("data.label_columns=[Mass, Effusion, Mass]",), ["data.label_columns names 'Mass' twice"]),
    ("no label columns", lambda ls: ls, ("data.label_columns=[]",),
     ["data.label_columns is an empty list"]),
]


@pytest.mark.parametrize("what,edit,extra,names", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_csv_rows(tmp_path, capsys, what, edit, extra, names):
    root = csv_folder(tmp_path / "csv", CSV_ROWS)
    csv = _edit_csv(root, edit)
    shown = (str(csv),) if "blank" in what or "outside" in what or "header" in what else ()
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS, *extra),
            names=(*shown, *names))


def test_a_path_outside_the_root_loads_when_allowed(tmp_path):
    root = csv_folder(tmp_path / "csv", CSV_ROWS)
    outside = tmp_path / "shared-images"
    outside.mkdir()
    (root / "img" / "000.png").rename(outside / "000.png")
    _edit_csv(root, lambda ls: [ls[0], _cell(ls[1], 0, str(outside / "000.png")), *ls[2:]])
    cfg = dict(source="csv", root=str(root), image_size=16, eval_crop_pct=1.0,
               patient_column="patient", split_column="split")
    with pytest.raises(Exception, match=r"lead outside data\.root"):
        load_data(DataConfig(**cfg), cache_dir=tmp_path / "cache")
    b = load_data(DataConfig(**cfg, allow_outside_root=True), cache_dir=tmp_path / "cache")
    assert "img/000.png" not in b.train.image_ids
    assert str(outside / "000.png") in b.train.image_ids
    assert len(b.train) == 12


def test_label_file_that_is_a_folder(tmp_path, capsys):
    root = csv_folder(tmp_path / "csv", CSV_ROWS)
    (root / "labels.csv").rename(root / "labels.txt")
    (root / "labels.csv").mkdir()
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS, "data.csv_file=labels.csv"),
            names=(str(root / "labels.csv"), "is a folder", "data.csv_file"))


def test_empty_label_file(tmp_path, capsys):
    root = csv_folder(tmp_path / "csv", CSV_ROWS)
    (root / "labels.csv").write_bytes(b"")
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=(str(root / "labels.csv"), "not a readable CSV"))


# -- data rows: ChestX-ray14 and CheXpert ----------------------------------------------------------
def test_nih_image_in_both_split_lists(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    test_list = root / "test_list.txt"
    first_train = (root / "train_val_list.txt").read_text().split()[0]
    test_list.write_text(test_list.read_text() + first_train + "\n")
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=("train_val_list.txt and test_list.txt", first_train, "leak"))


def _nih_rows(root: Path, edit) -> Path:
    csv = root / "Data_Entry_2017_v2020.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], *edit(lines[1:])]) + "\n")
    return csv


def test_nih_blank_patient_ids(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    csv = _nih_rows(root, lambda rows: [_cell(r, 3, "") if i in (2, 7) else r
                                        for i, r in enumerate(rows)])
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=(str(csv), "column 'Patient ID' is blank on lines 4, 9"))


def test_nih_rows_of_one_image_that_disagree(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    csv = _nih_rows(root, lambda rows: [*rows, _cell(rows[0], 3, "99")])
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=(str(csv), "image 00000001_000.png has rows that disagree", "lines 2, 50"))


def test_chexpert_blank_path(tmp_path, capsys):
    data = chexpert_folder(tmp_path / "chexpert")
    csv = data / "train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], _cell(lines[1], 0, ""), *lines[2:]]) + "\n")
    refused(tmp_path, capsys, *data_args("chexpert", data),
            names=(str(csv), "column 'Path' is blank on line 2"))


def test_chexpert_image_in_train_and_in_valid(tmp_path, capsys):
    data = chexpert_folder(tmp_path / "chexpert")
    train = (data / "train.csv").read_text().splitlines()
    valid = data / "valid.csv"
    valid.write_text(valid.read_text() + train[1] + "\n")
    refused(tmp_path, capsys, *data_args("chexpert", data),
            names=("listed more than once", "patient00000/study1/view1_frontal.jpg",
                   "and in test"))


def test_chexpert_path_leaving_the_data_folder(tmp_path, capsys):
    data = chexpert_folder(tmp_path / "chexpert")
    csv = data / "train.csv"
    text = csv.read_text().replace("CheXpert-v1.0-small/train/patient00001/",
                                   "CheXpert-v1.0-small/../../patient00001/", 1)
    csv.write_text(text)
    refused(tmp_path, capsys, *data_args("chexpert", data),
            names=(str(csv), "lead outside data.root", "../../patient00001"))


# -- ChestMNIST ------------------------------------------------------------------------------
def _npz_with_header(path: Path, arrays: dict, key: str, shape: tuple) -> None:
    """An .npz whose ``key`` claims ``shape`` in its header (no pixel data follows)."""
    np.savez(path, **{k: v for k, v in arrays.items() if k != key})
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                                "shape": shape})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{key}.npy", head.getvalue())   # the header starts with the magic


def test_chestmnist_arrays_that_disagree_in_length(tmp_path, capsys):
    arrays = chestmnist_arrays()
    arrays["train_labels"] = arrays["train_labels"][:7]
    path = tmp_path / "chestmnist.npz"
    np.savez(path, **arrays)
    refused(tmp_path, capsys, *data_args("chestmnist", path),
            names=(str(path), "train_images holds 8 images but train_labels 7 rows"))


def test_chestmnist_header_with_huge_images(tmp_path, capsys):
    path = tmp_path / "chestmnist.npz"
    _npz_with_header(path, chestmnist_arrays(), "train_images", (8, 200_000, 200_000))
    refused(tmp_path, capsys, *data_args("chestmnist", path),
            names=(str(path), "[8, 200000, 200000]", "H up to 1024"))


def test_chestmnist_labels_other_than_0_and_1(tmp_path, capsys):
    arrays = chestmnist_arrays()
    arrays["val_labels"][0, 0] = 2
    path = tmp_path / "chestmnist.npz"
    np.savez(path, **arrays)
    refused(tmp_path, capsys, *data_args("chestmnist", path),
            names=(str(path), "val_labels holds values other than 0 and 1"))


def test_chestmnist_zero_byte_file(tmp_path, capsys):
    path = tmp_path / "chestmnist.npz"
    path.touch()
    refused(tmp_path, capsys, *data_args("chestmnist", path),
            names=(str(path), "not a readable .npz"))


# -- what the data means for the batches -------------------------------------------------------
def test_training_split_of_one_image_for_the_densenet_baseline(tmp_path, capsys):
    refused(tmp_path, capsys, *sets("data.images.train=1"),
            names=("baselines (densenet121_baseline)", "one batch of 1", "batch norm"))


def test_training_split_that_makes_an_odd_batch_under_mixup(tmp_path, capsys):
    refused(tmp_path, capsys, *sets("data.images.train=31", "finetune.mix=mixup"),
            names=("31 training image(s)", "one batch of 31", "needs an even batch"))


# -- unusual files among the images: left out and counted, never a traceback ------------------
def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header says ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_unusual_files_in_the_image_folder(tmp_path):
    root = nih_folder(tmp_path / "nih", patients=48)
    pngs = [root / "images" / n for n in (root / "train_val_list.txt").read_text().split()]
    pngs[0].unlink()
    pngs[0].symlink_to(pngs[0].name)                  # a link to itself: a loop
    pngs[1].unlink()
    pngs[1].mkdir()                                   # a folder named like an image
    pngs[2].unlink()
    os.mkfifo(pngs[2])                                # a pipe: opening it would block
    pngs[3].write_bytes(b"")                          # zero bytes
    pngs[4].write_bytes(_png_claiming(200_000, 200_000))   # a decompression bomb
    b = load_data(DataConfig(source="chestxray14", root=str(root), image_size=16,
                             eval_crop_pct=1.0), cache_dir=tmp_path / "cache")
    assert b.notes["rows_without_file"] == 3          # loop, folder, pipe
    skipped = {s["path"]: s["reason"] for s in b.notes["skipped_files"]}
    assert set(skipped) == {f"images/{pngs[3].name}", f"images/{pngs[4].name}"}
    assert "DecompressionBombError" in skipped[f"images/{pngs[4].name}"]
    assert len(b.train) + len(b.val) + len(b.test) == 96 - 5


def test_csv_data_errors_are_one_line_in_a_real_process(tmp_path):
    """A blank patient cell, which used to be a traceback from the NIH planner."""
    root = nih_folder(tmp_path / "nih")
    _nih_rows(root, lambda rows: [_cell(rows[0], 3, ""), *rows[1:]])
    (tmp_path / "cwd").mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "explorer.search", str(SPACE), *SMOKE_SET,
                           *data_args("chestxray14", root), "--storage", str(tmp_path / "runs")],
                          capture_output=True, text=True, cwd=tmp_path / "cwd", env=env,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "column 'Patient ID' is blank on line 2" in proc.stderr
    assert snapshot(tmp_path) == before

