"""Fixed 2-D sine-cosine position embeddings (MAE encoder and decoder).

Each patch at grid position (row, col) gets a ``dim``-vector: the first half encodes the column,
the second half the row; within each half, the first quarter of ``dim`` is ``sin(pos * w_k)`` and
the second quarter ``cos(pos * w_k)`` with frequencies ``w_k = 10000 ** (-k / (dim / 4))``. The
class token's position is all zeros. This is the layout the released MAE checkpoints store in
``pos_embed`` / ``decoder_pos_embed``, so a freshly built model equals a released one there.
"""

from __future__ import annotations

import torch


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[N] positions -> [N, dim] embedding: dim/2 sines then dim/2 cosines."""
    quarter = dim // 2
    freqs = 10000.0 ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    angles = positions.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid_size: int | tuple[int, int], *, cls_token: bool = True
                        ) -> torch.Tensor:
    """The fixed embedding for a ``grid_size`` patch grid, row-major like ``PatchEmbed``.

    Args:
        dim: embedding width; must be divisible by 4 (sin and cos for each of two axes).
        grid_size: patches per side, or (rows, cols).
        cls_token: prepend one all-zero position for the class token.

    Returns:
        float32 tensor [rows * cols (+1), dim].
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    row_idx, col_idx = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    emb = torch.cat([_sincos_1d(dim // 2, col_idx.flatten()),
                     _sincos_1d(dim // 2, row_idx.flatten())], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()
