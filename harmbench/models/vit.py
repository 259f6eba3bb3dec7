"""The ViT backbone of PCT-Net (Guerreiro et al., CVPR 2023): patch tokens -> 12-channel latent.

Input ``x = [RGB, mask]`` (N,4,h,w) with ``h``, ``w`` multiples of ``patch``. Each
non-overlapping ``patch×patch`` patch is flattened in (row in patch, column in patch, channel)
order and embedded linearly; the tokens (row-major over the patch grid, no positional embedding,
no class token) pass ``depth`` post-norm transformer encoder layers (multi-head attention,
exact-GELU feed-forward, LayerNorm eps 1e-5); a transposed convolution with kernel = stride =
``patch`` maps them back to ``latent`` channels at ``h×w``, followed by tanh.
"""

from __future__ import annotations

import torch
from torch import nn


class ViTBackbone(nn.Module):
    """Patch transformer: (N, in_ch, h, w) -> latent (N, latent, h, w) in (−1, 1)."""

    def __init__(
        self,
        in_ch: int = 4,
        dim: int = 256,
        depth: int = 9,
        heads: int = 2,
        ffn: int = 512,
        patch: int = 4,
        latent: int = 12,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch * patch * in_ch, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="gelu", batch_first=True)
            for _ in range(depth)
        )
        self.decode = nn.ConvTranspose2d(dim, latent, kernel_size=patch, stride=patch)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N,C,h,w) -> (N, (h/p)·(w/p), p·p·C), patches row-major, features (py, px, c)."""
        n, c, h, w = x.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"ViT input sides must be multiples of {p}, got {h}x{w}")
        return (
            x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        t = self.embed(self.tokens(x))
        for layer in self.layers:
            t = layer(t)
        grid = t.transpose(1, 2).reshape(n, -1, h // self.patch, w // self.patch)
        return torch.tanh(self.decode(grid))


__all__ = ["ViTBackbone"]
