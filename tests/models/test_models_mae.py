"""MaskedAutoencoderViT: shapes, masking, loss, checkpoint key layout, paper-size forward."""

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from timm.optim import create_optimizer_v2

from explorer.errors import SpecError
from explorer.models import MaskedAutoencoderViT, create_mae, sincos_pos_embed_2d

IMG, PATCH = 64, 8
L = (IMG // PATCH) ** 2


def _nano(norm_pix_loss=False) -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return create_mae("vit_nano", img_size=IMG, patch_size=PATCH, decoder_dim=32,
                      decoder_depth=1, decoder_heads=4, norm_pix_loss=norm_pix_loss)


def _imgs(b=2, seed=1):
    return torch.randn(b, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _patch_pixels(imgs, k):
    """The [B, 3, p, p] view of patch k (row-major)."""
    side = IMG // PATCH
    r, c = divmod(k, side)
    return imgs[:, :, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH]


def test_forward_shapes():
    loss, pred, mask = _nano()(_imgs(), 0.75)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (2, L, PATCH * PATCH * 3)
    assert mask.shape == (2, L)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9, 0.95])
def test_masking_keeps_truncated_visible_patches(ratio):
    model = _nano()
    keep = int(L * (1 - ratio))   # as MAE's random_masking (golden counts: test_models_reference)
    latent, mask, ids_restore = model.forward_encoder(_imgs(3), ratio)
    assert latent.shape == (3, 1 + keep, 64)
    assert mask.sum(dim=1).tolist() == [L - keep] * 3
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(L).expand(3, L))


def test_mask_follows_noise_and_differs_between_images():
    model = _nano()
    noise = torch.rand(2, L, generator=torch.Generator().manual_seed(5))
    _, _, mask = model(_imgs(), 0.75, noise=noise)
    kept = noise.argsort(dim=1)[:, :16]  # the 16 smallest noise values stay visible
    for i in range(2):
        assert mask[i, kept[i]].sum() == 0 and mask[i].sum() == L - 16
    assert not torch.equal(mask[0], mask[1])


def test_visible_tokens_are_the_embedded_patches():
    model = _nano()
    imgs = _imgs(1)
    noise = torch.rand(1, L)
    tokens = model.patch_embed(imgs) + model.pos_embed[:, 1:]
    visible, _, _ = model.random_masking(tokens, 0.75, noise)
    assert torch.equal(visible[0], tokens[0, noise[0].argsort()[:16]])


def test_patchify_layout_and_inverse():
    model = _nano()
    imgs = _imgs()
    x = model.patchify(imgs)
    # MAE's layout: patches row-major, pixels (row, col, channel) inside a patch
    expected = torch.einsum("nchpwq->nhwpqc", imgs.reshape(2, 3, 8, PATCH, 8, PATCH))
    assert torch.equal(x, expected.reshape(2, L, PATCH * PATCH * 3))
    assert torch.equal(x[:, 9], _patch_pixels(imgs, 9).permute(0, 2, 3, 1).reshape(2, -1))
    assert torch.equal(model.unpatchify(x), imgs)


def test_loss_counts_only_masked_patches():
    model = _nano()
    imgs = _imgs()
    pred = torch.randn(2, L, PATCH * PATCH * 3)
    mask = torch.zeros(2, L)
    mask[:, :40] = 1
    loss = model.forward_loss(imgs, pred, mask)
    per_patch = (pred - model.patchify(imgs)).pow(2).mean(-1)
    assert loss.item() == pytest.approx(per_patch[:, :40].mean().item(), rel=1e-6)

    visible_changed = imgs.clone()
    _patch_pixels(visible_changed, 50).add_(3.0)  # patch 50 is visible
    assert model.forward_loss(visible_changed, pred, mask).item() == pytest.approx(loss.item())
    hidden_changed = imgs.clone()
    _patch_pixels(hidden_changed, 5).add_(3.0)  # patch 5 is masked
    assert model.forward_loss(hidden_changed, pred, mask).item() != pytest.approx(loss.item())


def test_mask_ratio_zero_encodes_everything_and_averages_all_patches():
    model = _nano()
    imgs = _imgs()
    loss, pred, mask = model(imgs, 0.0)
    assert mask.sum() == 0
    latent, _, _ = model.forward_encoder(imgs, 0.0)
    assert latent.shape[1] == 1 + L
    per_patch = (pred - model.patchify(imgs)).pow(2).mean(-1)
    assert loss.item() == pytest.approx(per_patch.mean().item(), rel=1e-5)
    loss.backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_norm_pix_loss_normalises_each_target_patch():
    model = _nano(norm_pix_loss=True)
    imgs = _imgs()
    target, mean, std = model.patch_target(imgs)
    assert torch.allclose(target.mean(-1), torch.zeros(2, L), atol=1e-5)
    assert torch.allclose(target.std(-1), torch.ones(2, L), atol=1e-3)
    assert torch.allclose(target * std + mean, model.patchify(imgs), atol=1e-5)
    # per-patch brightness/contrast changes leave a norm_pix target unchanged, not a raw one
    pred, mask = torch.randn(2, L, PATCH * PATCH * 3), torch.ones(2, L)
    brighter = imgs * 2.0 + 0.7
    assert model.forward_loss(brighter, pred, mask).item() == pytest.approx(
        model.forward_loss(imgs, pred, mask).item(), rel=1e-4)
    raw = _nano(norm_pix_loss=False)
    assert raw.forward_loss(brighter, pred, mask).item() != pytest.approx(
        raw.forward_loss(imgs, pred, mask).item(), rel=1e-2)


def test_fixed_pos_embeds_and_initialisation():
    model = _nano()
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    assert torch.equal(model.pos_embed[0], sincos_pos_embed_2d(64, 8))
    assert torch.equal(model.decoder_pos_embed[0], sincos_pos_embed_2d(32, 8))
    assert model.cls_token.std().item() == pytest.approx(0.02, rel=0.6)
    w = model.patch_embed.proj.weight  # xavier-uniform on the flattened [D, 3*p*p] view
    bound = (6 / (w.shape[0] + w[0].numel())) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert model.decoder_pred.bias.abs().sum() == 0


def test_training_steps_reduce_the_loss_and_leave_pos_embeds_fixed():
    model = _nano()
    gen = torch.Generator().manual_seed(2)
    # smooth images: hidden patches are predictable from visible ones, unlike white noise
    imgs = F.interpolate(torch.randn(4, 3, 4, 4, generator=gen), size=IMG, mode="bilinear")
    noise = torch.rand(4, L, generator=gen)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    pos = model.pos_embed.detach().clone()
    losses = []
    for _ in range(20):
        loss, _, _ = model(imgs, 0.75, noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert model.pos_embed.grad is None and torch.equal(model.pos_embed, pos)


def test_rejects_bad_settings():
    with pytest.raises(SpecError, match="vit_huge"):
        create_mae("vit_huge", img_size=64, patch_size=8, decoder_dim=32, decoder_depth=1,
                   decoder_heads=4)
    with pytest.raises(SpecError, match=r"not a multiple of model\.patch_size 7"):
        create_mae("vit_nano", img_size=64, patch_size=7, decoder_dim=32, decoder_depth=1,
                   decoder_heads=4)
    with pytest.raises(SpecError, match="decoder_heads 5"):
        create_mae("vit_nano", img_size=64, patch_size=8, decoder_dim=32, decoder_depth=1,
                   decoder_heads=5)
    with pytest.raises(ValueError, match="mask_ratio"):
        _nano()(_imgs(), 1.0)


def _released_layout(embed_dim, depth, dec_dim, dec_depth, img, patch):
    """Key -> shape of a released MAE checkpoint's "model" (paper.md): timm ViT encoder names
    plus the decoder keys."""
    enc = VisionTransformer(img_size=img, patch_size=patch, embed_dim=embed_dim, depth=depth,
                            num_heads=6, num_classes=0, global_pool="token", qkv_bias=True)
    layout = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    n = (img // patch) ** 2
    layout |= {"mask_token": (1, 1, dec_dim), "decoder_pos_embed": (1, n + 1, dec_dim),
               "decoder_embed.weight": (dec_dim, embed_dim), "decoder_embed.bias": (dec_dim,),
               "decoder_norm.weight": (dec_dim,), "decoder_norm.bias": (dec_dim,),
               "decoder_pred.weight": (patch * patch * 3, dec_dim),
               "decoder_pred.bias": (patch * patch * 3,)}
    decoder_block = Block(dec_dim, 16, qkv_bias=True).state_dict()
    for i in range(dec_depth):
        layout |= {f"decoder_blocks.{i}.{k}": tuple(v.shape) for k, v in decoder_block.items()}
    return layout


@pytest.fixture(scope="module")
def vit_s_mae():
    torch.manual_seed(0)
    return create_mae("vit_small", img_size=224, patch_size=16, decoder_dim=512,
                      decoder_depth=2, decoder_heads=16)


def test_state_dict_has_the_released_key_layout(vit_s_mae):
    got = {k: tuple(v.shape) for k, v in vit_s_mae.state_dict().items()}
    assert got == _released_layout(384, 12, 512, 2, 224, 16)
    assert got["pos_embed"] == (1, 197, 384)
    enc = vit_s_mae.encoder_state_dict()
    assert not any(k.startswith(("decoder_", "mask_token")) for k in enc)
    assert set(enc) == {k for k in got if not k.startswith(("decoder_", "mask_token"))}


def test_paper_size_forward(vit_s_mae):
    imgs = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        loss, pred, mask = vit_s_mae(imgs, 0.9)
        latent, _, _ = vit_s_mae.forward_encoder(imgs, 0.9)
    assert pred.shape == (2, 196, 768) and mask.shape == (2, 196)
    assert mask.sum(1).tolist() == [196 - 19] * 2  # int(19.6) = 19 visible patches, as MAE
    assert latent.shape == (2, 20, 384) and torch.isfinite(loss)


def test_timm_optimizer_skips_fixed_embeddings_and_decays_like_mae():
    model = _nano()
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95))
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert id(model.pos_embed) not in decay_of and id(model.decoder_pos_embed) not in decay_of
    assert len(decay_of) == sum(p.requires_grad for p in model.parameters())
    assert decay_of[id(model.blocks[0].attn.qkv.weight)] == 0.05
    assert decay_of[id(model.blocks[0].attn.qkv.bias)] == 0.0
    assert decay_of[id(model.norm.weight)] == 0.0
