"""Masked autoencoder (He et al. 2022) on timm's ViT pieces, as the study pre-trains it.

Attribute names equal the released MAE checkpoints (and timm's ViT for the encoder), so
``state_dict()`` has the layout of ``vit-s_CXR_0.3M_mae.pth``'s ``model`` and
``encoder_state_dict()`` loads straight into ``create_vit_classifier``.

Shapes: B images, L = (img/patch)^2 patches, K = visible patches, D encoder width, Dd decoder width.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from explorer.errors import SpecError
from explorer.models.pos_embed import sincos_pos_embed_2d
from explorer.models.vit import DECODER_PREFIXES, check_grid, vit_size

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)  # the released checkpoints' norm


def visible_patches(num_patches: int, mask_ratio: float) -> int:
    """Patches the encoder sees: ``int(L * (1 - r))``, truncated exactly as MAE's reference
    ``random_masking`` (facebookresearch/mae and lambert-x/medical_mae) computes it, float
    rounding included: 19 of 196 at the study's 0.90 (rounding would give 20)."""
    return int(num_patches * (1 - mask_ratio))


def check_visible_patches(image_size: int, patch_size: int, mask_ratio: float) -> None:
    """A SpecError when ``mask_ratio`` leaves no patch of the grid visible."""
    if patch_size < 1 or image_size % patch_size:
        return   # not a patch grid at all: ``check_grid`` names that
    side = image_size // patch_size
    if visible_patches(side * side, mask_ratio) < 1:
        raise SpecError(
            f"pretrain.mask_ratio {mask_ratio} leaves no patch visible on a {side}x{side} grid "
            f"(data.image_size {image_size} / model.patch_size {patch_size}; MAE keeps "
            f"int({side * side} x (1 - mask_ratio)) = 0): lower the mask ratio to at most "
            f"1 - 1/{side * side} or use more patches")


def check_decoder(decoder_dim: int, decoder_heads: int) -> None:
    """A SpecError when the decoder's attention heads or its 2-D sin-cos position embedding
    (four quarters: sin/cos of x/y) cannot split ``decoder_dim``."""
    if decoder_dim % decoder_heads or decoder_dim % 4:
        raise SpecError(f"pretrain.decoder_dim {decoder_dim} must be divisible by 4 and by "
                        f"pretrain.decoder_heads {decoder_heads}")


class MaskedAutoencoderViT(nn.Module):
    """ViT encoder on the visible patches, a light ViT decoder that predicts the masked pixels.

    Args:
        img_size, patch_size: square input side and patch side (pixels).
        embed_dim, depth, num_heads: the encoder (see ``VIT_SIZES``).
        decoder_dim, decoder_depth, decoder_heads: the decoder (512 x 2 for the study's ViT-S).
        norm_pix_loss: regress each patch normalised by its own mean and variance.
        in_chans: image channels (grey X-rays are replicated to 3).
    """

    def __init__(self, *, img_size: int, patch_size: int, embed_dim: int, depth: int,
                 num_heads: int, decoder_dim: int, decoder_depth: int, decoder_heads: int,
                 norm_pix_loss: bool = False, in_chans: int = 3, mlp_ratio: float = 4.0):
        super().__init__()
        grid = check_grid(img_size, patch_size)
        self.patch_size, self.in_chans, self.norm_pix_loss = patch_size, in_chans, norm_pix_loss
        # Attribute order matches the released checkpoints' key order.
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim),
                                      requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=_LayerNorm)
            for _ in range(depth))
        self.norm = _LayerNorm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_dim),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=_LayerNorm)
            for _ in range(decoder_depth))
        self.decoder_norm = _LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size * patch_size * in_chans)
        self._init_weights(grid)

    @torch.no_grad()
    def _init_weights(self, grid: int) -> None:
        for pos in (self.pos_embed, self.decoder_pos_embed):
            pos.copy_(sincos_pos_embed_2d(pos.shape[-1], grid)[None])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # as MAE / JAX ViT
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The patch projection is a Linear on flattened patches, so it is initialised like one.
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    def patchify(self, imgs: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, L, p*p*C], patches row-major, pixels (row, col, channel) inside."""
        b, c, h, w = imgs.shape
        p = self.patch_size
        x = imgs.reshape(b, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: Tensor) -> Tensor:
        """[B, L, p*p*C] -> [B, C, H, W] (square images), the inverse of ``patchify``."""
        b, n, _ = x.shape
        p, c = self.patch_size, self.in_chans
        side = round(n ** 0.5)
        x = x.reshape(b, side, side, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, side * p, side * p)

    def patch_target(self, imgs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Regression target [B, L, p*p*C] and each patch's mean and std [B, L, 1].

        With ``norm_pix_loss`` the target is ``(patch - mean) / std``; otherwise the raw patch
        (mean/std are returned anyway so callers can undo the normalisation).
        """
        target = self.patchify(imgs)
        mean = target.mean(dim=-1, keepdim=True)
        # Unbiased variance, as MAE, in two passes: torch.var over the last dim is ~6x slower
        # on CPU (6.4 vs 1.1 ms at the cpu scale's batch; bench/masking.py).
        centred = target - mean
        var = centred.pow(2).sum(dim=-1, keepdim=True) / max(target.shape[-1] - 1, 1)
        std = (var + 1e-6).sqrt()
        if self.norm_pix_loss:
            target = centred / std
        return target, mean, std

    def random_masking(self, x: Tensor, mask_ratio: float, noise: Tensor | None = None
                       ) -> tuple[Tensor, Tensor, Tensor]:
        """Keep a random subset of tokens per image.

        Args:
            x: [B, L, D] patch tokens (position already added).
            mask_ratio: fraction to hide; ``K = visible_patches(L, mask_ratio)`` stay (at least 1:
                the spec refuses ratios that leave none).
            noise: [B, L] uniform noise (the K smallest stay); drawn from the global RNG if None.

        Returns:
            visible tokens [B, K, D], mask [B, L] (1 = hidden), ids_restore [B, L].
        """
        b, n, d = x.shape
        keep = visible_patches(n, mask_ratio)
        if keep < 1:   # the spec refuses such recipes up front; this guards direct calls
            raise ValueError(f"mask_ratio {mask_ratio} leaves no visible patch of {n}")
        if noise is None:
            noise = torch.rand(b, n, device=x.device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        ids_keep = ids_shuffle[:, :keep]
        visible = x.gather(1, ids_keep[..., None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)  # float32 even under autocast: exact sums
        mask[:, :keep] = 0
        return visible, mask.gather(1, ids_restore), ids_restore

    def forward_encoder(self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """imgs [B, C, H, W] -> latent [B, 1+K, D], mask [B, L], ids_restore [B, L]."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """latent [B, 1+K, D] -> per-patch pixel prediction [B, L, p*p*C] in original order."""
        x = self.decoder_embed(latent)
        b, k1, d = x.shape
        hidden = self.mask_token.expand(b, ids_restore.shape[1] + 1 - k1, -1)
        patches = torch.cat([x[:, 1:], hidden], dim=1)
        patches = patches.gather(1, ids_restore[..., None].expand(-1, -1, d))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean over hidden patches of the per-patch pixel MSE.

        With nothing hidden (mask ratio 0) the mean is over all patches instead: a plain
        autoencoder, kept so a benchmark can compare masking against no masking.
        """
        # The raw target needs no patch statistics (they cost more than the loss itself).
        target = self.patch_target(imgs)[0] if self.norm_pix_loss else self.patchify(imgs)
        per_patch = (pred - target).pow(2).mean(dim=-1)  # [B, L]
        hidden = mask.sum()
        masked_mean = (per_patch * mask).sum() / hidden.clamp(min=1)
        return torch.where(hidden > 0, masked_mean, per_patch.mean())

    def forward(self, imgs: Tensor, mask_ratio: float, *, noise: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """imgs [B, C, H, W] (normalised) -> (loss [], pred [B, L, p*p*C], mask [B, L] 1=hidden).

        ``noise`` [B, L] fixes which patches are hidden (the smallest values stay visible).
        """
        if not 0 <= mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def encoder_state_dict(self) -> dict[str, Tensor]:
        """The encoder's tensors under timm ViT names (no decoder); they share storage."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(DECODER_PREFIXES)}


def create_mae(arch: str, *, img_size: int, patch_size: int, decoder_dim: int,
               decoder_depth: int, decoder_heads: int, norm_pix_loss: bool = False
               ) -> MaskedAutoencoderViT:
    """An MAE with a ``VIT_SIZES[arch]`` encoder (the study: vit_small, 224, 16, 512, 2, 16)."""
    dim, depth, heads = vit_size(arch)
    check_decoder(decoder_dim, decoder_heads)
    return MaskedAutoencoderViT(img_size=img_size, patch_size=patch_size, embed_dim=dim,
                                depth=depth, num_heads=heads, decoder_dim=decoder_dim,
                                decoder_depth=decoder_depth, decoder_heads=decoder_heads,
                                norm_pix_loss=norm_pix_loss)
