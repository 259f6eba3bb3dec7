"""Training losses of the learned baselines, as pure functions of tensors (and, for the gradient
penalty, of a score function). Image tensors follow each model's scale: [-1, 1] for DoveNet and
BargainNet, normalised Lab for HEN/CTN, the model's normalised input space for PCT-Net.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from harmbench.models.histogram import soft_ab_histogram

# --------------------------------------------------------------------------- GAN (DoveNet)


def hinge_d_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge: ``mean(relu(1 − s_real)) + mean(relu(1 + s_fake))``."""
    return F.relu(1.0 - real_score).mean() + F.relu(1.0 + fake_score).mean()


def generator_adv_loss(fake_score: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge/WGAN game: ``−mean(s_fake)``."""
    return -fake_score.mean()


def gradient_penalty(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    target: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP on per-sample random interpolates: ``weight·mean((‖∇ score(x̂)‖₂ − target)²)``.

    ``score_fn`` maps images to scores (DoveNet: ``(global + verification)/2`` via
    ``DoveNetDiscriminator.gp_score`` with the mask bound). Keeps the graph (create_graph) so the
    penalty trains the discriminator.
    """
    real, fake = real.detach(), fake.detach()
    alpha = torch.rand(
        real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype, generator=generator
    )
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = score_fn(x)
    (grad,) = torch.autograd.grad(score, x, grad_outputs=torch.ones_like(score), create_graph=True)
    norms = (grad.flatten(1) + 1e-16).norm(2, dim=1)
    return ((norms - target) ** 2).mean() * weight


def dovenet_d_loss(disc, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor, *, gp_weight: float = 10.0):
    """DoveNet discriminator loss (hinge on the global and verification scores + gradient penalty).

    ``disc`` is a :class:`~harmbench.models.dovenet.DoveNetDiscriminator`; ``fake`` is detached here.
    Returns ``(total, terms)`` with terms ``d_global``, ``d_verify``, ``d_gp``.
    """
    fake = fake.detach()
    out_f = disc(fake, mask)
    out_r = disc(real, mask)
    d_global = hinge_d_loss(out_r.global_score, out_f.global_score)
    d_verify = hinge_d_loss(out_r.verification_score, out_f.verification_score)
    gp = (
        gradient_penalty(lambda x: disc.gp_score(x, mask), real, fake, weight=gp_weight)
        if gp_weight > 0
        else real.new_zeros(())
    )
    total = d_global + d_verify + gp
    return total, {"d_global": d_global.detach(), "d_verify": d_verify.detach(), "d_gp": gp.detach()}


def dovenet_g_loss(
    disc,
    fake: torch.Tensor,
    real: torch.Tensor,
    mask: torch.Tensor,
    *,
    l1_weight: float = 100.0,
    adv_weight: float = 1.0,
    verify_weight: float = 1.0,
):
    """DoveNet generator loss: ``−λ_a·mean(s_global) − λ_v·mean(s_verif) + λ_L1·L1(fake, real)``.

    Returns ``(total, terms)`` with ``g_global``, ``g_verify``, ``g_l1``.
    """
    out = disc(fake, mask)
    g_global = generator_adv_loss(out.global_score)
    g_verify = generator_adv_loss(out.verification_score)
    l1 = F.l1_loss(fake, real)
    total = adv_weight * g_global + verify_weight * g_verify + l1_weight * l1
    return total, {"g_global": g_global.detach(), "g_verify": g_verify.detach(), "g_l1": l1.detach()}


# --------------------------------------------------------------------------- BargainNet


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    margin: float = 0.1,
    per_dim: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Triplet margin loss ``mean(relu(margin + d(a, p) − d(a, n)))``.

    ``per_dim=True`` reproduces the released BargainNet code: ``nn.TripletMarginLoss`` applied to
    ``(N, L, 1, 1)`` codes measures distances along the last (size-1) axis, i.e. per code
    dimension ``|a_i − p_i|``, and averages over N·L. ``per_dim=False`` is the textbook version
    with Euclidean distances between flattened codes.
    """
    a, p, n = anchor.flatten(1), positive.flatten(1), negative.flatten(1)
    if per_dim:
        d_ap = (a - p + eps).abs()
        d_an = (a - n + eps).abs()
    else:
        d_ap = (a - p + eps).norm(dim=1)
        d_an = (a - n + eps).norm(dim=1)
    return F.relu(margin + d_ap - d_an).mean()


def bargainnet_loss(
    out,
    real: torch.Tensor,
    *,
    triplet_weight: float = 0.01,
    ff_weight: float = 1.0,
    fb_weight: float = 1.0,
    margin: float = 0.1,
    per_dim: bool = True,
):
    """BargainNet loss from a :class:`~harmbench.models.bargainnet.BargainNetOutput`:
    ``L1(harm, real) + λ_tri·[λ_ff·T(z_f, ẑ_f, z̃_f) + λ_fb·T(ẑ_f, z_b, z̃_f)]`` (no detach).

    Returns ``(total, terms)`` with ``l1``, ``triplet``.
    """
    l1 = F.l1_loss(out.harmonized, real)
    t1 = triplet_loss(out.real_fg_code, out.harmonized_fg_code, out.composite_fg_code, margin=margin, per_dim=per_dim)
    t2 = triplet_loss(out.harmonized_fg_code, out.bg_code, out.composite_fg_code, margin=margin, per_dim=per_dim)
    tri = triplet_weight * (ff_weight * t1 + fb_weight * t2)
    return l1 + tri, {"l1": l1.detach(), "triplet": tri.detach()}


# --------------------------------------------------------------------------- HEN/CTN


def soft_histogram_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    bins: int = 32,
    mask: torch.Tensor | None = None,
    unit_sum: bool = False,
) -> torch.Tensor:
    """MSE between soft ab histograms of nLab ``pred`` and ``target`` (target detached)."""
    h_pred = soft_ab_histogram(pred, mask, bins, unit_sum=unit_sum)
    h_target = soft_ab_histogram(target, mask, bins, unit_sum=unit_sum).detach()
    return F.mse_loss(h_pred, h_target)


def ctn_transfer_loss(
    out,
    target: torch.Tensor,
    *,
    side_weights: Sequence[float] = (0.0, 0.5, 0.5, 0.5),
    hist_weight: float = 1.5,
    hist_bins: int = 32,
) -> torch.Tensor:
    """One transfer direction of the HEN/CTN loss from a :class:`~harmbench.models.hen_ctn.CTNOutput`:
    ``MSE(out, target) + λ_h·MSE(H(out), H(target)) + Σ_k w_k·MSE(side_k, ↓target)`` (↓ = bilinear).
    """
    loss = F.mse_loss(out.output, target)
    if hist_weight:
        loss = loss + hist_weight * soft_histogram_loss(out.output, target, bins=hist_bins)
    for w, side in zip(side_weights, out.sides):
        if w:
            down = F.interpolate(target, size=side.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + w * F.mse_loss(side, down)
    return loss


def hen_ctn_loss(fake_b, b: torch.Tensor, fake_a, a: torch.Tensor, idt_a, idt_b, **kwargs):
    """Symmetric HEN/CTN objective: the two transfer directions (:func:`ctn_transfer_loss`) plus the
    identity terms ``MSE(idt_a, a) + MSE(idt_b, b)`` (outputs are CTNOutputs; images nLab).

    Returns ``(total, terms)`` with ``transfer``, ``identity``.
    """
    transfer = ctn_transfer_loss(fake_b, b, **kwargs) + ctn_transfer_loss(fake_a, a, **kwargs)
    identity = F.mse_loss(idt_a.output, a) + F.mse_loss(idt_b.output, b)
    return transfer + identity, {"transfer": transfer.detach(), "identity": identity.detach()}


__all__ = [
    "bargainnet_loss",
    "ctn_transfer_loss",
    "dovenet_d_loss",
    "dovenet_g_loss",
    "generator_adv_loss",
    "gradient_penalty",
    "hen_ctn_loss",
    "hinge_d_loss",
    "soft_histogram_loss",
    "triplet_loss",
]


# --------------------------------------------------------------------------- PCT-Net


def mask_weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, min_area: float = 1000.0
) -> torch.Tensor:
    """Foreground-normalised MSE per image (the iSSAM / PCT-Net pixel loss), ``(N,)``.

    ``Σ_{c,h,w} (pred − target)² / (C · max(Σ_{h,w} M, min_area))``: the squared error of every
    pixel (background included) divided by the foreground's size in values, so small objects
    weigh as much as large ones; ``min_area`` (pixels) bounds the weight of tiny masks.
    ``pred``/``target`` ``(N,C,H,W)`` on any scale, ``mask`` ``(N,1,H,W)`` (channel 0 is used).
    """
    se = (pred - target).pow(2).sum(dim=(1, 2, 3))
    area = mask[:, :1].sum(dim=(1, 2, 3)).clamp_min(min_area)
    return se / (pred.shape[1] * area)


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel gradient magnitude ``sqrt(gx² + gy² + eps)`` of ``x`` ``(N,C,H,W)``.

    ``gx``/``gy``: 3×3 Sobel kernels divided by 8 (the sum of their absolute taps), borders
    replicated; shape kept.
    """
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device) / 8.0
    k = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    n, c, h, w = x.shape
    g = F.conv2d(F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate"), k)
    return (g.pow(2).sum(1) + eps).sqrt().reshape(n, c, h, w)


def param_smoothness(params: torch.Tensor) -> torch.Tensor:
    """PCT-Net's smoothness term on the parameter map ``(N,12,h,w)``: the mean Sobel magnitude."""
    return sobel_magnitude(params).mean()
