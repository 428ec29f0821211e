"""CNN baselines (DenseNet-121, the study's reference, and ResNet-50) from timm.

Weights come from a file the user points at, or from a named start (``imagenet``), which
``explorer.models.starts`` resolves to a local file and loads through timm's pretrained path.
timm's DenseNet/ResNet names equal torchvision's (old torchvision DenseNet files with
``norm.1``-style names are renamed), so both kinds of state dict load.
The models are plain convolutional nets: ``model.to(memory_format=torch.channels_last)`` with
channels-last inputs works and is the fast layout on GPUs.
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
from torch import Tensor, nn

from explorer.errors import SpecError
from explorer.models.checkpoints import check_fitting_state, load_weights_file
from explorer.names import CNN_ARCHS

# Older torchvision DenseNet files say "denselayer1.norm.1.weight" where timm has "norm1.weight".
_OLD_DENSENET = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def create_cnn(arch: str, *, num_classes: int, weights: str | Path | None = None,
               drop_rate: float = 0.0) -> nn.Module:
    """A timm CNN classifier, optionally initialised from a weights file or a named start.

    Args:
        arch: "densenet121" or "resnet50".
        num_classes: outputs of the classifier head.
        weights: a timm/torchvision state dict (.pth/.pt/.bin) or .safetensors, or a named
            start ("imagenet": timm's ImageNet weights, see ``explorer.models.starts``). A head
            of a different size (e.g. ImageNet's 1000 classes) is dropped and stays freshly
            initialised; every other tensor must fit.
        drop_rate: dropout before the classifier.

    Raises:
        SpecError: unknown arch. CheckpointError: the file cannot be read or does not fit.
    """
    from explorer.models.starts import is_named

    if arch not in CNN_ARCHS:
        raise SpecError(f"model.arch '{arch}' is not a CNN baseline; use one of "
                        f"{', '.join(CNN_ARCHS)}")
    if is_named(weights):
        return _from_start(arch, str(weights), num_classes=num_classes, drop_rate=drop_rate)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                              drop_rate=drop_rate)
    if weights is not None:
        state = check_cnn_weights(arch, load_weights_file(weights), num_classes=num_classes,
                                  source=f"weights file {weights}", model=model)
        model.load_state_dict(state, strict=False)
    return model


def _from_start(arch: str, name: str, *, num_classes: int, drop_rate: float) -> nn.Module:
    """A named start (``imagenet``) through timm's pretrained loader, which replaces the
    classifier for ``num_classes``. The file is checked against the architecture first, so a
    file of another network fails in one line naming its first bad tensor."""
    from explorer.models.starts import TIMM_TAGS, start_state

    state, path = start_state(arch, name, "finetune.weights")
    check_cnn_weights(arch, state, num_classes=num_classes, source=f"weights file {path}")
    return timm.create_model(TIMM_TAGS.get((arch, name), arch), pretrained=True,
                             num_classes=num_classes, drop_rate=drop_rate,
                             pretrained_cfg_overlay=dict(state_dict=state))


def check_cnn_weights(arch: str, state: dict[str, Tensor], *, num_classes: int, source: str,
                      model: nn.Module | None = None) -> dict[str, Tensor]:
    """``state`` with old torchvision names renamed and another head dropped, after checking
    that it fits ``arch`` (a one-line ``CheckpointError`` naming the first bad tensor)."""
    if model is None:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    state = {_OLD_DENSENET.sub(r"\1\2.", k): v for k, v in state.items()}
    head = model.pretrained_cfg["classifier"] + "."
    model_state = model.state_dict()
    state = {k: v for k, v in state.items() if not _is_other_head(k, v, head, model_state)}
    check_fitting_state(
        model, state, what=f"{arch} ({num_classes} classes)", source=source,
        # old files lack BatchNorm step counters (read only when momentum=None, not here)
        may_be_missing=lambda k: k.startswith(head) or k.endswith("num_batches_tracked"),
        fix="set model.arch to the checkpoint's (densenet121 or resnet50)",
    )
    return state


def _is_other_head(name: str, value: Tensor, head: str, model_state: dict[str, Tensor]) -> bool:
    # A model without a classifier (num_classes=0: MoCo's backbone) has no place for any.
    return name.startswith(head) and (name not in model_state
                                      or value.shape != model_state[name].shape)
