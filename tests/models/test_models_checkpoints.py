"""load_weights_file on real files in the formats people have, and on bad ones."""

import argparse

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from explorer.errors import CheckpointError
from explorer.models import create_mae, load_weights_file


def _mae_state():
    torch.manual_seed(0)
    return create_mae("vit_nano", img_size=32, patch_size=8, decoder_dim=32, decoder_depth=1,
                      decoder_heads=4).state_dict()


def _timm_state():
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                             num_classes=3).state_dict()


def _assert_same(got, want):
    assert set(got) == set(want)  # safetensors stores keys sorted
    for k in want:
        assert torch.equal(got[k], want[k]), k


def _error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_weights_file(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_released_training_dict_with_namespace_args(tmp_path):
    """The study's files: {model, optimizer, epoch, scaler, args=argparse.Namespace}."""
    state = _mae_state()
    params = [torch.nn.Parameter(v.clone()) for v in list(state.values())[:3]]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95))
    sum(p.sum() for p in params).backward()
    opt.step()
    args = argparse.Namespace(model="mae_vit_small_patch16_dec512d2b", mask_ratio=0.9,
                              input_size=224, norm_pix_loss=False, blr=1.5e-4, lr=None,
                              random_resize_range=[0.5, 1.0], datasets_names=["chexpert"])
    path = tmp_path / "vit-s_CXR_0.3M_mae.pth"
    torch.save({"model": state, "optimizer": opt.state_dict(), "epoch": 799,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 12},
                "args": args}, path)
    before = list(torch.serialization.get_safe_globals())
    _assert_same(load_weights_file(path), state)
    # the Namespace allowance is scoped to our read, not left switched on for the process
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    assert list(torch.serialization.get_safe_globals()) == before


@pytest.mark.parametrize("name", ["weights.pth", "weights.pt", "pytorch_model.bin"])
def test_plain_state_dict(tmp_path, name):
    state = _timm_state()
    torch.save(state, tmp_path / name)
    _assert_same(load_weights_file(tmp_path / name), state)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_ddp_and_compile_prefixes_are_stripped(tmp_path, prefix):
    state = _timm_state()
    torch.save({"model": {prefix + k: v for k, v in state.items()}}, tmp_path / "ddp.pth")
    _assert_same(load_weights_file(tmp_path / "ddp.pth"), state)


def test_wrappers_prefer_live_weights_over_ema(tmp_path):
    state = _timm_state()
    ema = {k: v + 1 for k, v in state.items()}
    torch.save({"state_dict": state, "state_dict_ema": ema, "epoch": 3}, tmp_path / "a.pth")
    _assert_same(load_weights_file(tmp_path / "a.pth"), state)
    torch.save({"model_ema": ema, "epoch": 3}, tmp_path / "b.pth")
    _assert_same(load_weights_file(tmp_path / "b.pth"), ema)


def test_safetensors_by_suffix_or_by_content(tmp_path):
    state = _timm_state()
    save_file(state, tmp_path / "w.safetensors")
    save_file(state, tmp_path / "named-like-a.pth")
    _assert_same(load_weights_file(tmp_path / "w.safetensors"), state)
    _assert_same(load_weights_file(tmp_path / "named-like-a.pth"), state)


class _WritesAFile:
    """A pickle payload that writes a file when unpickled (what a hostile checkpoint does)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').write('pwned')",)


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"model": _timm_state(), "extra": _WritesAFile(target)}, path)
    msg = _error(path)
    assert "is not a plain weights file (refused by weights_only)" in msg
    assert "needs exec" in msg
    assert not target.exists()
    # the payload is real: an unrestricted load would have run it
    torch.load(path, weights_only=False)
    assert target.read_text() == "pwned"


def test_unreadable_files(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.pth")
    assert "is a directory" in _error(tmp_path)
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "is empty" in _error(tmp_path / "empty.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint\xff" * 50)
    assert "not a readable PyTorch or safetensors" in _error(tmp_path / "garbage.pth")
    torch.save(_timm_state(), tmp_path / "full.pth")
    blob = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(blob[: len(blob) // 2])
    assert "not a readable" in _error(tmp_path / "truncated.pth")
    save_file(_timm_state(), tmp_path / "full.safetensors")
    blob = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(blob[: len(blob) // 2])
    assert "not a readable safetensors" in _error(tmp_path / "truncated.safetensors")


def test_files_without_tensors(tmp_path):
    torch.save({"epoch": 3, "model": {}, "args": {"lr": 1e-3}}, tmp_path / "none.pth")
    msg = _error(tmp_path / "none.pth")
    assert "contains no tensors" in msg and "'epoch'" in msg
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    assert "holds a list" in _error(tmp_path / "list.pth")
