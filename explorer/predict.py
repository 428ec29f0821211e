"""``python -m explorer.predict MODEL IMAGES... --out preds.csv``: probabilities for new images.

MODEL is an export (``python -m explorer.export``) or a finished search's folder, whose model
(the report verdict's recipe, or ``--trial``) is exported on the fly. IMAGES are image files,
folders (searched recursively for image files) or CSV files listing paths (a ``path`` column,
else the first column; relative paths are relative to the CSV). Every image goes through the
search's own evaluation steps (``decode_grey`` to the cached square, then ``build_transform``
with ``train=False``), in batches. Unreadable images are listed and skipped; the CSV has one
row per readable image: its path and one probability per finding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from explorer.data.images import BadImage, decode_grey
from explorer.errors import DataError, OneLineParser, UserError

EPILOG = """examples:
  python -m explorer.predict exports/mask_ratio ../shared/data/chestxray14-mini --out preds.csv
  python -m explorer.predict runs/mask_ratio scan1.png scan2.jpg --out preds.csv
  python -m explorer.predict exports/mask_ratio my_list.csv --out preds.csv --batch-size 256
"""
#: What a folder is searched for (Pillow reads all of them); other files there are ignored.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SHOWN_SKIPPED = 20  # unreadable images printed; all of them go to OUT.skipped.csv


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m explorer.predict", epilog=EPILOG,
                description=__doc__.splitlines()[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an export folder, or a finished search's folder (runs/NAME)")
    p.add_argument("images", nargs="+", help="image files, folders or CSV lists of paths")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--trial", help="with a search folder: the trial to use (default: the "
                                   "report verdict's recipe)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--workers", type=int, default=0,
                   help="processes decoding images (default 0: in this process)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# -- inputs -------------------------------------------------------------------------------------
def _from_csv(path: Path) -> list[Path]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV of image paths ({e})") from None
    if df.shape[1] == 0:
        return []
    column = "path" if "path" in df.columns else df.columns[0]
    return [p if p.is_absolute() else path.parent / p
            for p in (Path(v) for v in df[column] if v.strip())]


def image_paths(items: list[str]) -> list[Path]:
    """Every image named by the arguments, in order (folders sorted), without repeats."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise DataError(f"{p}: no image files here or below "
                                f"({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif p.suffix.lower() == ".csv" and p.is_file():
            listed = _from_csv(p)
            if not listed:
                raise DataError(f"{p}: lists no image paths")
            paths += listed
        elif p.exists():
            paths.append(p)  # named explicitly: tried whatever its suffix
        else:
            raise DataError(f"{p}: no such file or folder")
    return list(dict.fromkeys(paths))


# -- the model ----------------------------------------------------------------------------------
def load_export(folder: Path):
    """(timm model in eval mode, findings, the search's ``DataConfig`` for evaluation)."""
    import timm

    from explorer.data import DataConfig
    from explorer.export import read_export_config

    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    ex = read_export_config(folder)["explorer"]
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder}: no model.safetensors beside config.json; export again")
    pre = ex["preprocessing"]
    data = DataConfig(image_size=pre["image_size"], eval_crop_pct=pre["eval_crop_pct"],
                      mean=pre["mean"], std=pre["std"])
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    return model.eval(), list(ex["findings"]), data


class ImageFiles:
    """A map-style dataset: item i is (i, tensor or None, why it could not be read)."""

    def __init__(self, paths: list[Path], data):
        from explorer.data import build_transform

        self.paths, self.size = paths, data.eval_size
        self.transform = build_transform(data, train=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            grey = decode_grey(str(self.paths[i]), self.size)
        except BadImage as e:
            return i, None, str(e)
        return i, self.transform(Image.fromarray(grey, mode="L")), None


def _as_list(items):
    return items


def predict_files(model, data, paths: list[Path], batch_size: int = 64, workers: int = 0,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(probabilities [n_readable, C] float32, indices of the readable paths, {index: reason}
    for the unreadable ones). float32 throughout, as the search's own validation predictions."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from explorer.data.transforms import model_input, normalise

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    loader = DataLoader(ImageFiles(paths, data), batch_size=batch_size, num_workers=workers,
                        collate_fn=_as_list)
    probs, done, bad = [], [], {}
    # A bar only on a terminal, and only once a run has lasted 2 s (short runs stay quiet).
    with tqdm(total=len(paths), unit="img", file=sys.stdout, delay=2,
              disable=None if progress else True) as bar, torch.no_grad():
        for batch in loader:
            ok = [(i, x) for i, x, _ in batch if x is not None]
            bad.update({i: why for i, x, why in batch if x is None})
            if ok:
                x = normalise(torch.stack([x for _, x in ok]).to(device), data)
                probs.append(torch.sigmoid(model(model_input(x)).float()).cpu().numpy())
                done += [i for i, _ in ok]
            bar.update(len(batch))
    out = np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)
    return out.astype(np.float32), np.asarray(done, dtype=np.int64), bad


# -- the command --------------------------------------------------------------------------------
def _write_csv(df, path: Path) -> None:
    """Atomically (a temp file, then a rename): an interrupted run leaves the old file."""
    from explorer.storage import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.batch_size < 1 or args.workers < 0:
        raise UserError("--batch-size must be at least 1 and --workers at least 0")
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; name the CSV file to write")
    paths = image_paths(args.images)
    model_dir = Path(args.model)
    is_search = not (model_dir / "config.json").is_file() and \
        (model_dir / "results" / "meta.json").is_file()
    if args.trial and not is_search:
        raise UserError(f"--trial {args.trial}: needs a search folder (runs/NAME) as MODEL, "
                        f"and {model_dir} is not one")
    with tempfile.TemporaryDirectory(prefix="cxr-export-") as tmp:
        if is_search:  # its model, exported where only this run sees it
            from explorer.export import export

            model_dir = export(model_dir, Path(tmp) / "model", trial=args.trial)
        model, findings, data = load_export(model_dir)
    probs, done, bad = predict_files(model, data, paths, args.batch_size, args.workers)
    skipped = out.with_name(out.stem + ".skipped.csv")
    if bad:
        print(f"skipped {len(bad)} unreadable image(s) of {len(paths)}:")
        for i in sorted(bad)[:SHOWN_SKIPPED]:
            print(f"  {paths[i]}: {bad[i]}")
        if len(bad) > SHOWN_SKIPPED:
            print(f"  ... and {len(bad) - SHOWN_SKIPPED} more")
    if not len(done):
        first = min(bad)
        raise DataError(f"none of the {len(paths)} image(s) could be read (e.g. {paths[first]}: "
                        f"{bad[first]}); nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(probs, columns=findings)
    df.insert(0, "path", [str(paths[i]) for i in done])
    _write_csv(df, out)
    if bad:
        _write_csv(pd.DataFrame({"path": [str(paths[i]) for i in sorted(bad)],
                                 "reason": [bad[i] for i in sorted(bad)]}), skipped)
        print(f"all unreadable images are listed in {skipped}")
    else:
        skipped.unlink(missing_ok=True)  # a previous run's list no longer applies
    print(f"wrote {len(done)} prediction(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
