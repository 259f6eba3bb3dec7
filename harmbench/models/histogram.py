"""Colour histograms of normalised Lab images for HEN/CTN.

Inputs are normalised Lab tensors ``(N, 3, H, W)`` on [-1, 1] (see :mod:`harmbench.models.lab`);
histogram values are first rescaled to [0, 1] with ``(v+1)/2``. Region masks ``(N, 1, H, W)``
select the pixels that count (1 = counted); ``None`` counts every pixel.

* :func:`hard_ab_histogram` / :func:`hard_l_histogram`: counts as ``np.histogramdd`` with equal
  bins over [0, 1] (the last bin includes 1; values outside are dropped), normalised to sum 1,
  per sample. No gradient (they are HEN inputs, computed without grad in the reference code).
  The ab histogram is ``(N, 1, B, B)`` with **rows indexing b** and columns indexing a.
* :func:`hen_input`: concat(ab histogram, L histogram tiled into one constant plane per bin)
  -> ``(N, 1 + l_bins, ab_bins, ab_bins)`` (9×64×64 by default).
* :func:`soft_ab_histogram`: the differentiable triangular-kernel histogram used by the CTN
  loss: weight of bin k for value v is ``relu(1 - (B-1)·|v - k/B|)``, joint weight = product
  of the a and b weights, averaged over the (masked) pixels -> ``(N, B, B)`` (rows = b);
  the total is ≈ ``(B/(B−1))²`` rather than 1 (``unit_sum=True`` gives exact unit mass).

A region with no pixel yields an all-zero histogram.
"""

from __future__ import annotations

import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) / 2.0


def _flat_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    n, _, h, w = x.shape
    if mask is None:
        return torch.ones(n, h * w, dtype=x.dtype, device=x.device)
    if mask.shape != (n, 1, h, w):
        raise ValueError(f"region mask must have shape {(n, 1, h, w)}, got {tuple(mask.shape)}")
    return (mask > 0.5).to(x.dtype).reshape(n, h * w)


def _bin_index(v: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """np.histogram bin of v in equal bins over [0, 1]; returns (index, inside-range flag)."""
    inside = (v >= 0.0) & (v <= 1.0)
    idx = torch.floor(v * bins).clamp(0, bins - 1).long()
    return idx, inside


def _normalise(h: torch.Tensor) -> torch.Tensor:
    total = h.flatten(1).sum(1).view(-1, *([1] * (h.dim() - 1)))
    return torch.where(total > 0, h / total.clamp_min(1e-12), torch.zeros_like(h))


@torch.no_grad()
def hard_ab_histogram(x: torch.Tensor, mask: torch.Tensor | None = None, bins: int = 64) -> torch.Tensor:
    """Joint (a, b) histogram, ``(N, 1, bins, bins)`` with rows = b, columns = a, summing to 1 per sample."""
    n = x.shape[0]
    w = _flat_mask(x, mask)
    a = _unit(x[:, 1]).reshape(n, -1)
    b = _unit(x[:, 2]).reshape(n, -1)
    ia, ina = _bin_index(a, bins)
    ib, inb = _bin_index(b, bins)
    weight = w * (ina & inb).to(x.dtype)
    offset = torch.arange(n, device=x.device).view(n, 1) * bins * bins
    flat = (offset + ib * bins + ia).reshape(-1)
    counts = torch.bincount(flat, weights=weight.reshape(-1).double(), minlength=n * bins * bins)
    return _normalise(counts.view(n, 1, bins, bins)).to(x.dtype)


@torch.no_grad()
def hard_l_histogram(x: torch.Tensor, mask: torch.Tensor | None = None, bins: int = 8) -> torch.Tensor:
    """Histogram of L, ``(N, bins)``, summing to 1 per sample."""
    n = x.shape[0]
    w = _flat_mask(x, mask)
    v = _unit(x[:, 0]).reshape(n, -1)
    idx, inside = _bin_index(v, bins)
    weight = w * inside.to(x.dtype)
    offset = torch.arange(n, device=x.device).view(n, 1) * bins
    counts = torch.bincount((offset + idx).reshape(-1), weights=weight.reshape(-1).double(), minlength=n * bins)
    return _normalise(counts.view(n, bins)).to(x.dtype)


@torch.no_grad()
def hen_input(x: torch.Tensor, mask: torch.Tensor | None = None, *, ab_bins: int = 64, l_bins: int = 8) -> torch.Tensor:
    """HEN input ``(N, 1 + l_bins, ab_bins, ab_bins)``: ab histogram then one constant plane per L bin."""
    ab = hard_ab_histogram(x, mask, ab_bins)
    lh = hard_l_histogram(x, mask, l_bins)
    planes = lh.view(*lh.shape, 1, 1).expand(-1, -1, ab_bins, ab_bins)
    return torch.cat([ab, planes], dim=1)


def _triangle_weights(v: torch.Tensor, bins: int, unit_sum: bool) -> torch.Tensor:
    """(N, P) values on [0, 1] -> (N, P, bins) weights relu(1 - (bins-1)|v - c_k|)."""
    centres = torch.arange(bins, dtype=v.dtype, device=v.device) / (bins - 1 if unit_sum else bins)
    return torch.relu(1.0 - (bins - 1) * (v.unsqueeze(-1) - centres).abs())


def soft_ab_histogram(
    x: torch.Tensor, mask: torch.Tensor | None = None, bins: int = 32, *, unit_sum: bool = False
) -> torch.Tensor:
    """Differentiable joint ab histogram ``(N, bins, bins)`` (rows = b), averaged over the masked pixels.

    With the reference kernel (centres ``k/B``, slope ``B−1``) neighbouring kernels overlap
    slightly, so a histogram sums to about ``(B/(B−1))²`` (1.066 for B=32), not exactly 1.
    ``unit_sum=True`` puts the centres at ``k/(B−1)`` instead: the kernels then form a
    partition of unity on [0, 1] and every histogram sums to 1.
    """
    n = x.shape[0]
    w = _flat_mask(x, mask)
    wa = _triangle_weights(_unit(x[:, 1]).reshape(n, -1), bins, unit_sum)  # (N, P, B)
    wb = _triangle_weights(_unit(x[:, 2]).reshape(n, -1), bins, unit_sum)
    hist = torch.einsum("npi,npj->nij", wb * w.unsqueeze(-1), wa)  # weight first: no (N, P, B, B) intermediate
    return hist / w.sum(1).clamp_min(1.0).view(n, 1, 1)


__all__ = ["hard_ab_histogram", "hard_l_histogram", "hen_input", "soft_ab_histogram"]
