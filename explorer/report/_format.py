"""Number and name formatting shared by the data step (quotable sentences) and the HTML.

Everything here returns plain text; escaping happens in ``_markup`` (HTML) and ``figures``
(Plotly text).
"""

from __future__ import annotations

from collections.abc import Iterable

SPLIT_NAMES = {"val": "validation", "test": "test"}
ARCH_NAMES = {"densenet121": "DenseNet-121", "resnet50": "ResNet-50", "vit_small": "ViT-S",
              "vit_base": "ViT-B", "vit_tiny": "ViT-Ti", "vit_nano": "ViT-nano",
              "vit_micro": "ViT-micro"}
STATUS_TEXT = {"completed": "completed", "stopped_early": "stopped early by ASHA",
               "failed": "failed", "running": "still running",
               "missing": "finished, record missing"}


def is_missing(x) -> bool:
    """None, NaN and pandas' NA all mean "no value"."""
    if x is None:
        return True
    try:
        return bool(x != x)  # True only for NaN
    except (TypeError, ValueError):  # pd.NA: its comparison is NA, which bool() refuses
        return True


def fmt_auc(x, digits: int = 3) -> str:
    return "n/a" if is_missing(x) else f"{float(x):.{digits}f}"


def fmt_ci(ci, digits: int = 3) -> str:
    if ci is None or any(is_missing(v) for v in ci):
        return ""
    return f"[{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"


def fmt_delta(x, digits: int = 3) -> str:
    return "n/a" if is_missing(x) else f"{float(x):+.{digits}f}"


def fmt_p(p) -> str:
    """``p = 0.17``, ``p = 0.004``, ``p < 0.001``."""
    if is_missing(p):
        return "p n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if p >= 0.01 else f"p = {p:.3f}"


def fmt_int(n) -> str:
    return "n/a" if is_missing(n) else f"{int(n):,}"


def fmt_value(v) -> str:
    """A parameter value as a person would write it (``0.9``, ``6``, ``none``)."""
    if is_missing(v):
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def fmt_seconds(s) -> str:
    if is_missing(s):
        return "n/a"
    s = float(s)
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def param_name(path: str, all_paths: Iterable[str] = ()) -> str:
    """``pretrain.mask_ratio`` -> ``mask ratio``, unless two searched paths share that ending."""
    last = path.rsplit(".", 1)[-1]
    clash = sum(1 for p in all_paths if p.rsplit(".", 1)[-1] == last) > 1
    return path if clash else last.replace("_", " ")


def arch_name(arch) -> str:
    return ARCH_NAMES.get(str(arch), str(arch))


def split_name(split: str) -> str:
    return SPLIT_NAMES.get(split, split)

