"""CNN baselines: timm DenseNet-121 / ResNet-50, forward and weights files."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from explorer.errors import CheckpointError, SpecError
from explorer.models import create_cnn
from explorer.names import CNN_ARCHS


@pytest.fixture(scope="module")
def imagenet_densenet():
    """A 1000-class DenseNet-121 state dict, as ImageNet weights files have it."""
    torch.manual_seed(0)
    return timm.create_model("densenet121", pretrained=False).state_dict()


@pytest.mark.parametrize("arch", CNN_ARCHS)
def test_forward_backward_and_channels_last(arch):
    torch.manual_seed(0)
    model = create_cnn(arch, num_classes=14, drop_rate=0.1).eval()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 14)
    fast = model.to(memory_format=torch.channels_last)
    assert torch.allclose(fast(x.to(memory_format=torch.channels_last)), out, atol=1e-4)
    model.train()(x).sum().backward()
    assert model.get_classifier().weight.grad is not None


def test_imagenet_weights_load_and_the_head_is_new(tmp_path, imagenet_densenet):
    path = tmp_path / "densenet121_imagenet.pth"
    torch.save(imagenet_densenet, path)
    torch.manual_seed(1)
    model = create_cnn("densenet121", num_classes=14, weights=path)
    got = model.state_dict()
    for name in ["features.conv0.weight", "features.denseblock4.denselayer16.conv2.weight",
                 "features.norm5.running_var"]:
        assert torch.equal(got[name], imagenet_densenet[name]), name
    assert got["classifier.weight"].shape == (14, 1024)


def test_same_size_head_is_loaded(tmp_path):
    torch.manual_seed(2)
    trained = create_cnn("resnet50", num_classes=14)
    save_file(trained.state_dict(), tmp_path / "r50.safetensors")
    model = create_cnn("resnet50", num_classes=14, weights=tmp_path / "r50.safetensors")
    assert torch.equal(model.fc.weight, trained.fc.weight)


def test_old_torchvision_densenet_names_and_missing_step_counters(tmp_path, imagenet_densenet):
    old = {}
    for k, v in imagenet_densenet.items():
        if k.endswith("num_batches_tracked"):
            continue
        old[k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")] = v
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save({"state_dict": old}, tmp_path / "old.pth")
    model = create_cnn("densenet121", num_classes=14, weights=tmp_path / "old.pth")
    assert torch.equal(model.features.denseblock1.denselayer1.norm1.weight,
                       imagenet_densenet["features.denseblock1.denselayer1.norm1.weight"])


def test_mismatches_name_the_first_bad_tensor(tmp_path, imagenet_densenet):
    bad = dict(imagenet_densenet)
    bad["features.denseblock2.denselayer3.conv1.weight"] = torch.zeros(128, 7, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        create_cnn("densenet121", num_classes=14, weights=tmp_path / "bad.pth")
    msg = str(info.value)
    assert "'features.denseblock2.denselayer3.conv1.weight'" in msg and "[128, 7, 1, 1]" in msg
    assert str(tmp_path / "bad.pth") in msg and "\n" not in msg

    torch.save(imagenet_densenet, tmp_path / "dn.pth")
    with pytest.raises(CheckpointError, match=r"has no tensor 'conv1\.weight'"):
        create_cnn("resnet50", num_classes=14, weights=tmp_path / "dn.pth")


def test_unknown_arch():
    with pytest.raises(SpecError, match="vgg16"):
        create_cnn("vgg16", num_classes=14)
