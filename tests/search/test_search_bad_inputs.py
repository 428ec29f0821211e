"""Bad data, checkpoints, storage and command lines: one line, exit code 2, nothing changed.

Every CLI case runs the real ``python -m explorer.search`` in-process at smoke scale on real
files written here, and checks that stderr is exactly one ``error: ...`` line naming what is
at fault, and that no file under the test's folder (storage, reports, data, checkpoints, the
working directory) was created, deleted or rewritten. All of them must stop before Ray starts:
``explorer.search.cluster.connect`` is replaced by a tripwire, so a case that slips through
fails fast instead of launching a cluster. stderr is read as a fresh process would print it
(pytest's own log and warning capture would hide a stray warning line). Malformed specs are in
``tests/spec/test_spec_load.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import explorer.metrics  # noqa: F401  (sklearn: imported here, not inside the first test's time)
from explorer.data import FINDINGS, DataConfig, load_data
from explorer.models import create_mae
from explorer.search import cluster
from explorer.search.cli import main
from explorer.search.experiment import Experiment
from explorer.spec import load_spec
from explorer.train.finetune import check_validation

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "search_spaces" / "layer_decay.yaml"   # searches no pre-training parameter
SMOKE = ("--set", "scale=smoke")


# -- harness ----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_ray(monkeypatch, tmp_path):
    """Fail (instead of starting Ray) if a bad input gets past the checks; run from tmp_path so
    default paths (runs/, reports/) land where the snapshot sees them."""
    def tripwire(address, verbose):
        raise AssertionError("reached cluster.connect: this bad input was not refused "
                             "before Ray starts")

    monkeypatch.setattr(cluster, "connect", tripwire)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with (size, mtime) for files. Folder mtimes are left out: the
    storage write probe creates and deletes a file, which touches its folder and nothing else."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = ("dir",) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def _show_like_python(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def fresh_process_stderr():
    """stderr as the real command prints it. pytest captures log records and warnings itself,
    which would hide a stray warning line printed before the error line."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers.clear()   # no handler: logging's last resort prints WARNING+ to stderr
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()   # Python's default filters, not pytest's
            for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                        ResourceWarning):
                warnings.simplefilter("ignore", cat)
            warnings.showwarning = _show_like_python
            yield
    finally:
        root.handlers[:] = handlers


def run_cli(capsys, *args: str, spec: Path = SPACE) -> tuple[int, str]:
    """(exit code, stderr) of ``python -m explorer.search SPEC --set scale=smoke ARGS``."""
    with fresh_process_stderr():
        try:
            code = main([str(spec), *SMOKE, *args])
        except SystemExit as exc:   # argparse exits on its own
            code = exc.code
    return code, capsys.readouterr().err


def refused(tmp_path, capsys, *args: str, names: tuple[str, ...] = (),
            spec: Path = SPACE) -> str:
    """Run the CLI, check: exit 2, one stderr line 'error: ...' containing every string of
    ``names``, nothing under tmp_path changed. Returns the line."""
    storage = ("--storage", str(tmp_path / "runs")) if "--storage" not in args else ()
    reports = ("--reports", str(tmp_path / "reports")) if "--reports" not in args else ()
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, *storage, *reports, *args, spec=spec)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert snapshot(tmp_path) == before, "a refused run changed files on disk"
    return lines[0]


def data_args(source: str, root: Path, *sets: str) -> list[str]:
    out = ["--set", f"data.source={source}", "--set", f"data.root={root}"]
    for s in sets:
        out += ["--set", s]
    return out


# -- real files -------------------------------------------------------------------------------
def grey(seed: int, size: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return ((x * 7 + y * 3 + seed * 11) % 256).astype(np.uint8)


NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def nih_folder(root: Path, patients: int = 24, test_patients: int = 4) -> Path:
    """NIH release layout: 2 PNGs per patient in images/, the last ``test_patients`` in
    test_list.txt; labels cycle the 14 findings (every third image 'No Finding')."""
    (root / "images").mkdir(parents=True)
    rows, train_val, test = [], [], []
    for p in range(1, patients + 1):
        for f in range(2):
            k = 2 * p + f
            name = f"{p:08d}_{f:03d}.png"
            label = "No Finding" if k % 3 == 0 else f"{FINDINGS[k % 14]}|{FINDINGS[(k * 5) % 14]}"
            rows.append(f"{name},{label},{f},{p},50,M,PA,64,64,0.1,0.1")
            (test if p > patients - test_patients else train_val).append(name)
            Image.fromarray(grey(k), "L").save(root / "images" / name)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([NIH_HEADER, *rows]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root


def nih_images(root: Path) -> list[Path]:
    listed = (root / "train_val_list.txt").read_text().split()
    return [root / "images" / n for n in listed]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def csv_folder(root: Path, rows: list[tuple[str, str, dict]], *,
               path_column: str = "path") -> Path:
    """An image folder plus labels.csv: (patient, split, {finding: 0/1}) per image, columns
    path, patient, split, Effusion, Mass."""
    (root / "img").mkdir(parents=True)
    lines = [f"{path_column},patient,split,Effusion,Mass"]
    for i, (patient, split, labels) in enumerate(rows):
        rel = f"img/{i:03d}.png"
        Image.fromarray(grey(i), "L").save(root / rel)
        lines.append(f"{rel},{patient},{split},{labels.get('Effusion', 0)},"
                     f"{labels.get('Mass', 0)}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


CSV_SETS = ("data.patient_column=patient", "data.split_column=split")


def csv_rows(val: list[dict] | None) -> list[tuple[str, str, dict]]:
    """6 train patients with both findings mixed, 2 test patients, and ``val`` (2 images per
    label dict, one patient each)."""
    mixed = [{"Effusion": 1}, {"Mass": 1}, {"Effusion": 1, "Mass": 1}, {}]
    rows = [(f"t{p}", "train", mixed[(p + i) % 4]) for p in range(6) for i in range(2)]
    rows += [(f"s{p}", "test", mixed[p]) for p in range(2) for _ in range(2)]
    rows += [(f"v{j}", "val", labels) for j, labels in enumerate(val or []) for _ in range(2)]
    return rows


def chexpert_folder(root: Path, path_column: str = "Path") -> Path:
    data = root / "CheXpert-v1.0-small"
    data.mkdir(parents=True)
    header = (f"{path_column},Sex,Age,Frontal/Lateral,AP/PA,Cardiomegaly,Edema,Consolidation,"
              "Atelectasis,Pleural Effusion")
    for csv, split in (("train.csv", "train"), ("valid.csv", "valid")):
        rows = [header]
        for p in range(4):
            rel = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study1/view1_frontal.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grey(p), "L").save(root / rel)
            rows.append(f"{rel},Female,60,Frontal,AP,1.0,0.0,,-1.0,0.0")
        (data / csv).write_text("\n".join(rows) + "\n")
    return data


def chestmnist_arrays(n: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{s}_{k}": (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if k == "images"
                         else rng.integers(0, 2, (n, 14), dtype=np.uint8))
            for s in ("train", "val", "test") for k in ("images", "labels")}


@pytest.fixture(scope="module")
def densenet_state() -> dict[str, torch.Tensor]:
    import timm

    return timm.create_model("densenet121", pretrained=False, num_classes=14).state_dict()


def densenet_weights_args(path: Path) -> list[str]:
    """The DenseNet-121 baseline of the spec, started from ``path``."""
    return ["--set", "baselines=[{recipe: densenet121_baseline, "
                     f"overrides: {{finetune: {{weights: '{path}'}}}}}}]"]


def previous_experiment(storage: Path, *sets: str) -> Path:
    """What a finished run leaves: the experiment record, stage times and a results file."""
    exp = Experiment(storage, "layer_decay")
    exp.create(load_spec(SPACE, ["scale=smoke", *sets]))
    (exp.dir / "results").mkdir()
    (exp.dir / "results" / "trials.parquet").write_bytes(b"PAR1 previous results PAR1")
    (exp.dir / "stages.json").write_text(json.dumps({"search": 12.0}))
    return exp.dir


# -- data -------------------------------------------------------------------------------------
def test_missing_data_root(tmp_path, capsys):
    root = tmp_path / "no-such-folder"
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=(str(root), "data.root"))


def test_data_root_not_set_for_a_file_source(tmp_path, capsys):
    refused(tmp_path, capsys, "--set", "data.source=chestxray14",
            names=("data.root is not set", "chestxray14"))


def test_nih_root_without_the_label_csv(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    (root / "Data_Entry_2017_v2020.csv").unlink()
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=("Data_Entry_2017_v2020.csv", str(root)))


def test_nih_root_without_train_val_list(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    (root / "train_val_list.txt").unlink()
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=(str(root / "train_val_list.txt"),))


def test_nih_csv_with_unknown_finding_names(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    csv = root / "Data_Entry_2017_v2020.csv"
    text = csv.read_text().splitlines()
    text[1] = text[1].replace(text[1].split(",")[1], "Pneumonitis|Covid", 1)
    text[2] = text[2].replace(text[2].split(",")[1], "Effusion|Covid", 1)
    csv.write_text("\n".join(text) + "\n")
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=(str(csv), "Finding Labels", "['Covid', 'Pneumonitis']"))


def test_nih_split_whose_images_are_all_missing(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    for png in nih_images(root):
        png.unlink()
    refused(tmp_path, capsys, *data_args("chestxray14", root),
            names=("train split is empty", "40 labelled images have no file", str(root)))


def test_a_few_missing_images_are_left_out_and_counted_once(tmp_path, caplog):
    root = nih_folder(tmp_path / "nih")
    for png in nih_images(root)[:3]:
        png.unlink()
    with caplog.at_level(logging.WARNING, logger="explorer"):
        b = load_data(DataConfig(source="chestxray14", root=str(root), image_size=32,
                                 eval_crop_pct=1.0), cache_dir=tmp_path / "cache")
    assert b.notes["rows_without_file"] == 3
    assert len(b.train) + len(b.val) + len(b.test) == 48 - 3
    warned = [r.getMessage() for r in caplog.records if "no file" in r.getMessage()]
    assert len(warned) == 1 and "3 labelled images" in warned[0], warned


def test_unreadable_files_under_the_threshold_are_skipped_and_listed(tmp_path):
    root = nih_folder(tmp_path / "nih")
    pngs = nih_images(root)
    truncate(pngs[0])
    pngs[1].write_text("this is not an image\n")
    before = snapshot(root)
    b = load_data(DataConfig(source="chestxray14", root=str(root), image_size=32,
                             eval_crop_pct=1.0), cache_dir=tmp_path / "cache")
    skipped = {s["path"]: s["reason"] for s in b.notes["skipped_files"]}
    assert set(skipped) == {f"images/{pngs[0].name}", f"images/{pngs[1].name}"}
    assert all(reason for reason in skipped.values())
    assert len(b.train) + len(b.val) + len(b.test) == 48 - 2
    kept = set(b.train.image_ids) | set(b.val.image_ids)
    assert pngs[0].name not in kept and pngs[1].name not in kept
    assert snapshot(root) == before


def test_unreadable_files_above_max_bad_fraction(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    pngs = nih_images(root)
    for png in pngs[:3]:
        truncate(png)
    pngs[3].write_bytes(b"GIF89a but not really")
    line = refused(tmp_path, capsys, *data_args("chestxray14", root),
                   names=("4 of 48", "max_bad_fraction=0.05", str(root)))
    assert any(p.name in line for p in pngs[:4]), line


def test_empty_split(tmp_path, capsys):
    root = csv_folder(tmp_path / "csv", csv_rows(val=None))   # no row says 'val'
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=("labels.csv", "val split is empty", "column 'split'", "data.split_column"))


def test_validation_split_where_no_finding_has_both_classes(tmp_path, capsys):
    root = csv_folder(tmp_path / "csv", csv_rows(val=[{}, {}]))   # val: all negative
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=("no finding has both positive and negative cases in the validation",))


def test_a_finding_without_positives_is_noted_not_an_error(tmp_path):
    root = csv_folder(tmp_path / "csv", csv_rows(val=[{"Effusion": 1}, {}]))  # val: no Mass
    b = load_data(DataConfig(source="csv", root=str(root), image_size=32, eval_crop_pct=1.0,
                             patient_column="patient", split_column="split"),
                  cache_dir=tmp_path / "cache")
    check_validation(b)   # AUC is defined for Effusion: the search may go on
    assert b.notes["no_positive"]["val"] == ["Mass"]
    assert b.notes["positives"]["val"] == {"Effusion": 2, "Mass": 0}


def test_csv_source_with_a_wrong_column_name(tmp_path, capsys):
    root = csv_folder(tmp_path / "csv", csv_rows(val=[{"Mass": 1}, {}]), path_column="file")
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=("labels.csv", "['path']", "data.path_column"))


def test_csv_split_column_with_unknown_values(tmp_path, capsys):
    rows = [(p, "training" if s == "train" else s, lab)
            for p, s, lab in csv_rows(val=[{"Mass": 1}, {}])]
    root = csv_folder(tmp_path / "csv", rows)
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=("labels.csv", "'split'", "['training']"))


def test_csv_patient_in_two_splits(tmp_path, capsys):
    rows = csv_rows(val=[{"Mass": 1}, {}])
    rows[-1] = ("t0", "val", {})   # t0 is a train patient
    root = csv_folder(tmp_path / "csv", rows)
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=("labels.csv", "t0", "patient-disjoint"))


def test_chestmnist_npz_with_missing_keys(tmp_path, capsys):
    arrays = chestmnist_arrays()
    path = tmp_path / "chestmnist.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if not k.startswith("val_")})
    refused(tmp_path, capsys, *data_args("chestmnist", path),
            names=(str(path), "'val_images'", "'val_labels'"))


def test_corrupt_chestmnist_npz(tmp_path, capsys):
    path = tmp_path / "chestmnist.npz"
    np.savez(path, **chestmnist_arrays())
    truncate(path)   # an interrupted download
    refused(tmp_path, capsys, *data_args("chestmnist", path),
            names=(str(path), "not a readable .npz"))


def test_chexpert_csv_without_the_path_column(tmp_path, capsys):
    data = chexpert_folder(tmp_path / "chexpert", path_column="Image")
    refused(tmp_path, capsys, *data_args("chexpert", data),
            names=(str(data / "train.csv"), "['Path']"))


def test_chexpert_labels_other_than_1_0_minus_1(tmp_path, capsys):
    data = chexpert_folder(tmp_path / "chexpert")
    csv = data / "train.csv"
    csv.write_text(csv.read_text().replace("Frontal,AP,1.0,", "Frontal,AP,yes,", 1))
    refused(tmp_path, capsys, *data_args("chexpert", data),
            names=(str(csv), "'Cardiomegaly'", "1, 0, -1"))


def test_chexpert_source_pointed_at_an_nih_folder(tmp_path, capsys):
    root = nih_folder(tmp_path / "nih")
    refused(tmp_path, capsys, *data_args("chexpert", root),
            names=("no CheXpert train.csv", str(root), "data.root"))


# -- checkpoints ------------------------------------------------------------------------------
def test_missing_checkpoint(tmp_path, capsys):
    path = tmp_path / "mae_pretrained.pth"
    refused(tmp_path, capsys, "--set", f"pretrain.from_checkpoint={path}",
            names=(str(path), "does not exist"))


def test_missing_baseline_weights(tmp_path, capsys):
    path = tmp_path / "densenet121.pth"
    refused(tmp_path, capsys, *densenet_weights_args(path), names=(str(path), "does not exist"))


def test_empty_weights_file(tmp_path, capsys):
    path = tmp_path / "densenet121.pth"
    path.touch()
    refused(tmp_path, capsys, *densenet_weights_args(path), names=(str(path), "empty"))


def test_garbage_checkpoint(tmp_path, capsys):
    path = tmp_path / "mae_pretrained.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    refused(tmp_path, capsys, "--set", f"pretrain.from_checkpoint={path}",
            names=(str(path), "not a readable PyTorch or safetensors"))


class _WritesAFile:
    """Unpickling this creates ``marker``: what a hostile .pth could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "cwd" / "PWNED"
    path = tmp_path / "mae_pretrained.pth"
    torch.save({"model": _WritesAFile(marker)}, path)
    refused(tmp_path, capsys, "--set", f"pretrain.from_checkpoint={path}",
            names=(str(path), "weights_only", "io.open"))
    assert not marker.exists()
    torch.load(path, weights_only=False)   # the file really is armed: an unsafe load runs it
    assert marker.exists()


def test_safetensors_with_a_wrong_shape_for_densenet121(tmp_path, capsys, densenet_state):
    from safetensors.torch import save_file

    state = dict(densenet_state)
    state["features.conv0.weight"] = torch.zeros(64, 1, 7, 7)   # a 1-channel stem
    path = tmp_path / "densenet121_grey.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    refused(tmp_path, capsys, *densenet_weights_args(path),
            names=(str(path), "features.conv0.weight", "[64, 1, 7, 7]", "[64, 3, 7, 7]"))


def test_truncated_safetensors(tmp_path, capsys, densenet_state):
    from safetensors.torch import save_file

    path = tmp_path / "densenet121.safetensors"
    save_file(densenet_state, str(path))
    truncate(path)
    refused(tmp_path, capsys, *densenet_weights_args(path),
            names=(str(path), "not a readable safetensors file"))


def test_weights_path_is_a_model_folder(tmp_path, capsys):
    folder = tmp_path / "densenet121-hf"   # e.g. a Hugging Face snapshot folder
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    refused(tmp_path, capsys, *densenet_weights_args(folder), names=(str(folder), "directory"))


def test_resnet50_weights_for_the_densenet_baseline(tmp_path, capsys):
    import timm

    path = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), path)
    refused(tmp_path, capsys, *densenet_weights_args(path),
            names=(str(path), "features.conv0.weight", "model.arch"))


def test_vit_checkpoint_with_another_patch_size(tmp_path, capsys):
    mae = create_mae("vit_nano", img_size=32, patch_size=8, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)   # smoke scale uses patch 4
    path = tmp_path / "vit_nano_p8.pth"
    torch.save({"model": mae.state_dict(), "epoch": 10}, path)
    refused(tmp_path, capsys, "--set", f"pretrain.from_checkpoint={path}",
            names=(str(path), "patch_embed.proj.weight", "[64, 3, 8, 8]", "model.patch_size"))


def test_state_dict_without_tensors(tmp_path, capsys):
    path = tmp_path / "mae_pretrained.pth"
    torch.save({"epoch": 799, "args": {"lr": 1.5e-4}, "model": {}}, path)
    refused(tmp_path, capsys, "--set", f"pretrain.from_checkpoint={path}",
            names=(str(path), "no tensors"))


# -- storage and command line -----------------------------------------------------------------
def test_storage_under_a_regular_file(tmp_path, capsys):
    """Fails for root too: nothing can be created below a file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    refused(tmp_path, capsys, "--storage", str(blocker / "runs"),
            names=(str(blocker / "runs"), "not writable"))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write to. chmod 0o500 does not stop root; the immutable attribute
    (chattr +i, ext4/xfs/btrfs with CAP_LINUX_IMMUTABLE) does."""
    folder = tmp_path / "shared"
    folder.mkdir()
    previous_experiment(folder)   # e.g. a resume on a mount that became read-only
    if os.geteuid() != 0:
        folder.chmod(0o500)
        undo = partial(folder.chmod, 0o700)
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)],
                                                   capture_output=True).returncode == 0:
        undo = partial(subprocess.run, ["chattr", "-i", str(folder)], check=True)
    else:
        pytest.skip("running as root without chattr +i here: no folder is read-only for root")
    try:
        yield folder
    finally:
        undo()


def test_storage_that_is_not_writable(tmp_path, capsys, read_only_folder):
    refused(tmp_path, capsys, "--storage", str(read_only_folder), "--resume",
            names=(str(read_only_folder), "not writable"))


def test_storage_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "runs.tar"
    path.write_bytes(b"archive")
    refused(tmp_path, capsys, "--storage", str(path), names=(str(path), "not a folder"))


def test_rerun_of_an_existing_experiment_without_resume(tmp_path, capsys):
    old = previous_experiment(tmp_path / "runs")
    refused(tmp_path, capsys, names=(str(old), "--resume", "--name"))


def test_resume_with_a_changed_spec(tmp_path, capsys):
    old = previous_experiment(tmp_path / "runs")
    refused(tmp_path, capsys, "--resume", "--set", "search.num_samples=9",
            names=(str(old), "spec differs", "--name"))


def test_resume_of_an_experiment_with_an_unreadable_record(tmp_path, capsys):
    old = previous_experiment(tmp_path / "runs")
    (old / "experiment.json").write_text('{"name": "layer_decay", "sp')   # cut off mid-write
    refused(tmp_path, capsys, "--resume", names=(str(old / "experiment.json"), "--name"))


def test_resume_when_the_data_is_gone(tmp_path, capsys):
    gone = tmp_path / "unmounted-nfs" / "nih"
    sets = ["data.source=chestxray14", f"data.root={gone}"]
    previous_experiment(tmp_path / "runs", *sets)
    refused(tmp_path, capsys, "--resume", *data_args("chestxray14", gone),
            names=(str(gone), "does not exist"))


@pytest.mark.parametrize("flag", [("--extend", "2"), ("--retry-failed",)],
                         ids=["extend", "retry-failed"])
def test_extend_or_retry_of_an_experiment_that_does_not_exist(tmp_path, capsys, flag):
    refused(tmp_path, capsys, *flag,
            names=(str(tmp_path / "runs" / "layer_decay"), "no experiment to extend or retry"))


def test_extend_by_a_negative_number(tmp_path, capsys):
    previous_experiment(tmp_path / "runs")
    refused(tmp_path, capsys, "--extend", "-2", names=("--extend -2", "positive"))


@pytest.mark.parametrize("name", ["../x", "a b", "x/y"])
def test_experiment_name_with_illegal_characters(tmp_path, capsys, name):
    refused(tmp_path, capsys, "--name", name, names=(f"--name {name!r}",))


def test_spec_that_would_run_a_command_is_rejected(tmp_path, capsys):
    marker = tmp_path / "cwd" / "MARKER"
    spec = tmp_path / "evil.yaml"
    spec.write_text(SPACE.read_text() + f'\ndescription: !!python/object/apply:os.system '
                                        f'["touch {marker}"]\n')
    refused(tmp_path, capsys, spec=spec, names=(str(spec), "python/object/apply:os.system"))
    assert not marker.exists()
    yaml.unsafe_load(spec.read_text())   # the spec really is armed: an unsafe loader runs it
    assert marker.exists()
    marker.unlink()


# -- command-line edge cases ------------------------------------------------------------------
def test_extend_by_zero(tmp_path, capsys):
    refused(tmp_path, capsys, "--extend", "0", names=("--extend 0",))


def test_cnn_weights_on_a_vit_recipe(tmp_path, capsys):
    path = tmp_path / "densenet121.pth"
    refused(tmp_path, capsys, "--set", f"finetune.weights={path}", names=("finetune.weights",))


def test_extend_that_is_not_a_number(tmp_path, capsys):
    refused(tmp_path, capsys, "--extend", "many", names=("--extend", "'many'"))


def test_storage_in_a_bucket_that_does_not_exist(tmp_path, capsys, s3):
    uri = s3.uri("runs", bucket="no-such-bucket")
    line = refused(tmp_path, capsys, "--storage", uri,
                   names=("--storage s3://no-such-bucket/runs: not writable",
                          "bucket does not exist"))
    assert "endpoint_override" not in line, "the URI's options are not echoed"


def test_storage_url_of_an_unknown_kind(tmp_path, capsys):
    refused(tmp_path, capsys, "--storage", "ftp://host/runs",
            names=("--storage ftp://host/runs", "Unrecognized filesystem type"))


def test_partial_download_whose_validation_split_is_unusable(tmp_path, capsys):
    root = csv_folder(tmp_path / "csv", csv_rows(val=[{}, {}]))
    (root / "img" / "000.png").unlink()   # one train image never downloaded
    refused(tmp_path, capsys, *data_args("csv", root, *CSV_SETS),
            names=("no finding has both positive and negative cases",))


# -- pre-training data and named starts -------------------------------------------------------
def test_a_pooled_source_that_does_not_exist(tmp_path, capsys):
    gone = tmp_path / "mimic-cxr"
    refused(tmp_path, capsys, "--set", f"pretrain.data=[{{source: phantom}}, "
                                       f"{{source: folder, root: {gone}}}]",
            names=("pretrain.data.1 (folder)", str(gone), "does not exist",
                   "fix pretrain.data.1.root"))


def test_a_pool_that_the_leakage_guard_empties(tmp_path, capsys):
    """Pooling only the fine-tuning data's own validation and test splits leaves nothing."""
    refused(tmp_path, capsys, "--set", "pretrain.data=[{source: phantom, splits: [val, test]}]",
            names=("pre-training pool is empty", "leakage guard"))


def test_a_pooled_source_that_sets_the_image_size(tmp_path, capsys):
    refused(tmp_path, capsys, "--set", "pretrain.data=[{source: phantom, image_size: 64}]",
            names=("pretrain.data.0", "image_size is set by the recipe's data section"))


def test_init_from_a_file_of_another_architecture(tmp_path, capsys):
    other = create_mae("vit_micro", img_size=32, patch_size=4, decoder_dim=32, decoder_depth=1,
                       decoder_heads=2)
    path = tmp_path / "vit-micro_mae.pth"
    torch.save({"model": other.state_dict()}, path)
    refused(tmp_path, capsys, "--set", f"pretrain.init_from={path}",
            names=("pretrain.init_from", str(path), "'cls_token'", "[1, 1, 128]",
                   "set model.arch and model.patch_size"))


def test_imagenet_weights_offline_without_a_file(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("CXR_EXPLORER_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    refused(tmp_path, capsys, "--set", "baselines=[{recipe: densenet121_imagenet}]",
            names=("finetune.weights: imagenet",
                   str(tmp_path / "weights" / "densenet121.tv_in1k.safetensors"),
                   "timm/densenet121.tv_in1k", "offline"))


def test_moco_on_a_vit_recipe(tmp_path, capsys):
    refused(tmp_path, capsys, "--set", "pretrain.method=mocov2",
            names=("MoCo v2 pre-training is for CNN recipes",))


def test_finetune_weights_on_a_moco_baseline(tmp_path, capsys):
    refused(tmp_path, capsys, "--set", "baselines=[{recipe: densenet121_mocov2, overrides: "
                                       "{finetune: {weights: imagenet}}}]",
            names=("densenet121_mocov2", "would replace the MoCo v2 encoder",
                   "pretrain.init_from"))
