"""Reading weights files safely, and checking that a state dict fits a model.

``load_weights_file`` accepts the formats people actually have:

- the study's released training dicts ``{model, optimizer, epoch, scaler, args}`` (``model``
  is taken);
- a plain state dict (``.pth``, ``.pt``, ``.bin``), e.g. ``timm`` or ``torchvision`` weights;
- a wrapper with ``state_dict`` (timm's ``train.py``, Lightning) and, only when no live weights
  are present, EMA weights under ``model_ema`` / ``state_dict_ema``;
- ``.safetensors`` (recognised by its header, whatever the file is called).

Pickles are read with ``torch.load(weights_only=True)`` only, so a file cannot run code when it is
opened. The one class allowed besides plain data is ``argparse.Namespace``: the released MAE
checkpoints store their command line under ``args`` as a Namespace, which ``weights_only``
refuses by default (torch 2.14), and a Namespace only receives attributes whose values still
pass the same restricted unpickler. ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``)
prefixes are removed.
"""

from __future__ import annotations

import argparse
import re
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from explorer.errors import CheckpointError, error_line

# Live weights first: EMA weights are a fallback, never silently preferred.
WRAPPER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")
_PREFIXES = ("module.", "_orig_mod.")


def load_weights_file(path: str | Path) -> dict[str, Tensor]:
    """Read a weights file into a flat ``{name: tensor}`` dict on the CPU.

    Raises:
        CheckpointError: missing/empty/unreadable file, a pickle that is not plain weights, or a
            file holding no tensors. The message is one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist: check the path")
    if path.is_dir():
        raise CheckpointError(f"weights file {path} is a directory, not a file: point at the "
                              f"weights file in it (.pth, .pt, .bin or .safetensors)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {path} is empty (0 bytes): the copy or download "
                              f"was cut short; get the file again")
    obj = _read_safetensors(path) if _is_safetensors(path) else _read_pickle(path)
    return _strip_prefixes(_unwrap(obj, path), path)


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte little-endian header length, then a JSON object.
    if path.suffix == ".safetensors":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError as e:
        raise CheckpointError(f"weights file {path} cannot be read ({_first_line(e)})") from None
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and header_len < path.stat().st_size


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"weights file {path} is not a readable safetensors file "
                              f"({_first_line(e)}): get the file again") from None


def _read_pickle(path: Path) -> object:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on a malformed file
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused:
            raise CheckpointError(
                f"weights file {path} is not a plain weights file (refused by weights_only): it "
                f"needs {refused.group(1)}, which could run code when loaded; re-save only the "
                f"state dict (torch.save(model.state_dict()) or .safetensors) where you trust it"
            ) from None
        raise CheckpointError(f"weights file {path} is not a readable PyTorch or safetensors "
                              f"weights file ({_describe_load_error(e)}): get the file again or "
                              f"point at the weights file itself") from None


def _describe_load_error(e: Exception) -> str:
    text = str(e)
    if "Weights only load failed" in text or isinstance(e, EOFError):
        return "its bytes are not a torch.save pickle or zip archive"
    return f"{type(e).__name__}: {_first_line(e)}"


def _first_line(e: Exception) -> str:
    """The first sentence of an exception message, short enough for a one-line error."""
    line = error_line(e, limit=10**6).split(". ")[0]
    return line if len(line) <= 160 else line[:157] + "..."


def _is_tensor_dict(obj: object) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()))


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    if _is_tensor_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"weights file {path} holds a {type(obj).__name__}, not a dict "
                              f"of tensors: save the weights with "
                              f"torch.save(model.state_dict(), path)")
    for key in WRAPPER_KEYS:
        if _is_tensor_dict(obj.get(key)):
            return dict(obj[key])
    keys = ", ".join(repr(k) for k in list(obj)[:8]) + (", ..." if len(obj) > 8 else "")
    raise CheckpointError(
        f"weights file {path} contains no tensors to load: expected a state dict or one under "
        f"{', '.join(repr(k) for k in WRAPPER_KEYS)}; its top-level keys are [{keys}]"
    )


def _strip_prefixes(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith(_PREFIXES):
            name = name.removeprefix("module.").removeprefix("_orig_mod.")
        if name in out:
            raise CheckpointError(f"weights file {path} holds '{name}' twice "
                                  f"(with and without a module./_orig_mod. prefix)")
        out[name] = value
    return out


def shape_str(t: Tensor | torch.Size) -> str:
    return "[" + ", ".join(str(s) for s in (t.shape if isinstance(t, Tensor) else t)) + "]"


def load_fitting_state(model: nn.Module, state: Mapping[str, Tensor], *, what: str, source: str,
                       may_be_missing: Callable[[str], bool], fix: str) -> None:
    """``check_fitting_state``, then load ``state`` into ``model`` (non-strict: the tensors
    allowed to be missing keep their initialisation)."""
    check_fitting_state(model, state, what=what, source=source, may_be_missing=may_be_missing,
                        fix=fix)
    model.load_state_dict(state, strict=False)


def check_fitting_state(model: nn.Module, state: Mapping[str, Tensor], *, what: str,
                        source: str, may_be_missing: Callable[[str], bool], fix: str) -> None:
    """Check, in the model's key order, that ``state`` fits ``model``.

    Every model tensor must be in ``state`` with the same shape unless ``may_be_missing(name)``
    (fresh heads and the like keep their initialisation); ``state`` may hold nothing else.
    ``what`` names the model and ``fix`` says what to change, in the error message.

    Raises:
        CheckpointError: one line naming the FIRST tensor that does not fit, with both shapes.
    """
    model_state = model.state_dict()
    hint = f"the weights are for a different architecture: {fix}"
    for name, tensor in model_state.items():
        if name not in state:
            if may_be_missing(name):
                continue
            raise CheckpointError(f"{source}: has no tensor '{name}' {shape_str(tensor)} that "
                                  f"the {what} needs; {hint}")
        if state[name].shape != tensor.shape:
            raise CheckpointError(f"{source}: tensor '{name}' has shape {shape_str(state[name])} "
                                  f"in the checkpoint but {shape_str(tensor)} in the {what}; "
                                  f"{hint}")
    for name, tensor in state.items():
        if name not in model_state:
            raise CheckpointError(f"{source}: tensor '{name}' {shape_str(tensor)} has no place "
                                  f"in the {what}; {hint}")
