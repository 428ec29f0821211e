"""Named starts (``imagenet``, ``imagenet_mae``): resolved to local files, loaded through timm.

No test reaches the hub: each builds the weights files it needs (timm's own architectures,
random weights) and ``HF_HUB_OFFLINE=1`` stands for this machine's and CI's lack of network.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from explorer.errors import CheckpointError
from explorer.models import create_cnn, create_mae, create_vit_classifier
from explorer.models.starts import init_mae_encoder, resolve_start


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """An empty weights folder and Hugging Face cache, and no hub."""
    monkeypatch.setenv("CXR_EXPLORER_WEIGHTS", str(tmp_path / "weights"))
    import huggingface_hub.constants

    # read once at import by huggingface_hub, so the module's value is what counts
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


@pytest.fixture(scope="module")
def imagenet_densenet() -> dict[str, torch.Tensor]:
    """What timm's densenet121.tv_in1k file holds: the architecture with a 1000-class head."""
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in
            timm.create_model("densenet121", num_classes=1000).state_dict().items()}


def test_densenet_imagenet_from_the_weights_folder_goes_through_timm(offline, imagenet_densenet):
    save_file(imagenet_densenet, offline / "densenet121.tv_in1k.safetensors")
    model = create_cnn("densenet121", num_classes=14, weights="imagenet")
    assert model.classifier.out_features == 14   # timm replaced ImageNet's head
    assert torch.equal(model.features.conv0.weight, imagenet_densenet["features.conv0.weight"])
    assert torch.equal(model.features.denseblock4.denselayer16.conv2.weight,
                       imagenet_densenet["features.denseblock4.denselayer16.conv2.weight"])


def test_imagenet_from_the_hugging_face_cache(offline, tmp_path, imagenet_densenet):
    """The layout timm's downloads leave in the Hugging Face cache is found offline."""
    repo = tmp_path / "hf" / "models--timm--densenet121.tv_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(imagenet_densenet, repo / "snapshots" / "abc123" / "model.safetensors")
    assert resolve_start("densenet121", "imagenet", "finetune.weights").parent.name == "abc123"
    model = create_cnn("densenet121", num_classes=3, weights="imagenet")
    assert torch.equal(model.features.norm5.weight, imagenet_densenet["features.norm5.weight"])


def test_imagenet_offline_without_a_file_names_the_file_to_provide(offline):
    with pytest.raises(CheckpointError) as err:
        create_cnn("densenet121", num_classes=14, weights="imagenet")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("finetune.weights: imagenet")
    assert str(offline / "densenet121.tv_in1k.safetensors") in msg
    assert "timm/densenet121.tv_in1k" in msg and "offline" in msg


def test_imagenet_file_of_another_network_is_one_line(offline):
    resnet = timm.create_model("resnet18", num_classes=1000).state_dict()
    save_file({k: v.contiguous() for k, v in resnet.items()},
              offline / "densenet121.tv_in1k.safetensors")
    with pytest.raises(CheckpointError) as err:
        create_cnn("densenet121", num_classes=14, weights="imagenet")
    assert "features.conv0.weight" in str(err.value) and "\n" not in str(err.value)


def test_vit_sizes_without_published_weights_take_a_file_named_after_the_arch(offline):
    with pytest.raises(CheckpointError) as err:
        resolve_start("vit_nano", "imagenet", "pretrain.from_checkpoint")
    assert str(offline / "vit_nano.imagenet.safetensors") in str(err.value)
    assert "timm publishes no ImageNet supervised weights for vit_nano" in str(err.value)
    deit = create_vit_classifier("vit_nano", img_size=64, patch_size=4, num_classes=1000,
                                 global_pool="token")
    save_file({k: v.contiguous() for k, v in deit.state_dict().items()},
              offline / "vit_nano.imagenet.safetensors")
    path = resolve_start("vit_nano", "imagenet", "pretrain.from_checkpoint")
    vit = create_vit_classifier("vit_nano", img_size=32, patch_size=4, num_classes=14,
                                encoder_state=path)
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, deit.blocks[1].mlp.fc2.weight)


def test_continued_mae_starts_from_the_encoder_and_keeps_sincos_positions(offline):
    src = create_mae("vit_nano", img_size=64, patch_size=4, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    torch.save({"model": src.state_dict(), "epoch": 799}, offline / "vit_nano.imagenet_mae.pth")
    mae = create_mae("vit_nano", img_size=32, patch_size=4, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    pos = mae.pos_embed.clone()
    init_mae_encoder(mae, "vit_nano", "imagenet_mae")
    assert torch.equal(mae.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert torch.equal(mae.decoder_pred.weight, src.decoder_pred.weight)  # same decoder: kept
    assert torch.equal(mae.pos_embed, pos)   # MAE's fixed sin-cos grid of this image size


def test_continued_mae_from_a_file_of_another_width_is_one_line(tmp_path):
    other = create_mae("vit_micro", img_size=32, patch_size=4, decoder_dim=32, decoder_depth=1,
                       decoder_heads=2)
    torch.save(other.state_dict(), tmp_path / "micro.pth")
    mae = create_mae("vit_nano", img_size=32, patch_size=4, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    with pytest.raises(CheckpointError) as err:
        init_mae_encoder(mae, "vit_nano", str(tmp_path / "micro.pth"))
    msg = str(err.value)
    assert msg.startswith("pretrain.init_from ") and "'cls_token'" in msg and "\n" not in msg
