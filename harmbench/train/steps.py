"""Per-model training steps: one small registry, one generic trainer.

A :class:`StepSpec` tells the trainer, for one model,

* ``loss_class``: a frozen dataclass of loss options (the ``[loss]`` table) with the paper's weights;
* ``lr``/``betas``: the paper's Adam defaults (used when ``[optim]`` leaves them unset);
* ``param_groups(model)``: ``{optimizer name: parameters}`` (DoveNet: ``g`` and ``d``);
* ``step(model, batch, optimizers, ctx)``: one training iteration (forward, non-finite check,
  backward, optimiser step(s)); returns the loss terms as floats;
* ``objective(model, batch, ctx)``: the supervised objective on a batch without updating
  anything (tests: "one optimiser step lowers it");
* ``required_fields``: the sample fields (stems) the shards must provide.

Batches are dicts with ``composite``/``real`` ``(N,3,H,W)`` RGB on **0–1**, ``mask``
``(N,1,H,W)`` in {0, 1} and ``key`` (list of sample keys). Each step converts to its model's
scale: DoveNet/BargainNet work on **[-1, 1]**, HEN/CTN on normalised Lab (**[-1, 1]**).

Models:

* ``dovenet``: D step (hinge on global + verification scores + gradient penalty on
  ``model.discriminator``), then G step (adversarial terms + 100·L1 on ``model.generator``);
  Adam 2e-4, β (0.5, 0.999).
* ``bargainnet``: ``L1 + 0.01·[T(z_f, ẑ_f, z̃_f) + T(ẑ_f, z_b, z̃_f)]`` on E and G jointly;
  Adam 1e-4, β (0.9, 0.999).
* ``hen-ctn``: pairs are the shards' composites plus, per sample, *hue-augmented* pairs (the
  foreground of the real photo with its hue rotated by δ ~ U[0, 1) turns and its saturation
  scaled by σ ~ U[0.3, 1.2], original L kept, as the paper's colour augmentation) with
  probability ``hue_prob`` and *identical* pairs (composite := real) with probability
  ``identity_prob``. The transfer term runs the CTN exactly as ``HENCTN.harmonize`` does
  (source code map: foreground code on the mask, background code elsewhere; target code: the
  background's) and asks for the real photo (MSE + 1.5·soft 32×32 ab histogram MSE + side-output
  MSEs); the identity term is the paper's ``CTN(x, e_x, e_x) = x`` with global codes. With
  ``symmetric = true`` the reverse direction (real -> composite, target code map = the
  composite's foreground code on the mask) and the composite's identity are added, giving the
  paper's four-pass objective (:func:`harmbench.models.losses.hen_ctn_loss`). Adam 5e-5,
  β (0.5, 0.999).
* ``pctnet-cnn`` / ``pctnet-vit``: the network sees the composite at its low resolution
  (``config.lowres``, as ``harmonize`` with the ``harmbench`` protocol prepares it) and its
  parameters are applied to the batch's images (the "full resolution"); the loss is the
  released training objective in the model's normalised space: foreground-normalised MSE
  (:func:`harmbench.models.losses.mask_weighted_mse`, ``min_area`` 1000 px) on the
  full-resolution output + 0.1 × parameter smoothness (mean Sobel magnitude of the parameter
  map). The released code adds 0.01 × a contrastive term on ImageNet VGG-16 features, which is
  not implemented (no pretrained weights offline). ``identity_prob`` (0 as published) turns a
  fraction of the pairs into identical ones (composite := real). Adam β (0.9, 0.999), lr
  1e-3 (CNN) / 1e-4 (ViT) at the released batch of 16.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmbench.errors import ConfigError, UserError
from harmbench.models import losses
from harmbench.models.lab import normalize_lab, rgb_to_lab, rgb_to_nlab

# --------------------------------------------------------------------------- errors


class NonFiniteLossError(UserError):
    """A loss became NaN/inf: names the step, the loss term and the batch's sample keys."""

    def __init__(self, step: int, term: str, value: float, keys: list[str], note: str = ""):
        self.step, self.term, self.value, self.keys = step, term, value, list(keys)
        shown = ", ".join(self.keys[:16]) + (" …" if len(self.keys) > 16 else "")
        super().__init__(f"step {step}: loss '{term}' is {value} (non-finite); batch sample keys: {shown}{note}")


class BadBatchError(UserError):
    """A batch violates the tensor contract (shape, range, mask values); names the sample keys."""


# --------------------------------------------------------------------------- context


@dataclass
class StepContext:
    """What a step needs besides the model and batch.

    ``step``: 0-based index of this iteration (error messages); ``amp_dtype``: autocast dtype on
    CUDA (``None`` = full precision); ``scaler``: a ``torch.amp.GradScaler`` for fp16 (else
    ``None``); ``generator``: RNG of the data augmentation (HEN/CTN), on the model's device;
    ``grad_clip``: max global grad norm (0 = off); ``loss``: the model's loss dataclass.
    """

    loss: Any
    step: int = 0
    amp_dtype: torch.dtype | None = None
    scaler: Any = None
    generator: torch.Generator | None = None
    grad_clip: float = 0.0

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None or device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)


def check_finite(terms: Mapping[str, torch.Tensor], ctx: StepContext, keys: list[str]) -> None:
    """Raise :class:`NonFiniteLossError` if any loss term is NaN/inf."""
    for name, value in terms.items():
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLossError(ctx.step, name, v, keys)


def _backward_step(
    loss: torch.Tensor, opt: torch.optim.Optimizer, params: list[nn.Parameter], ctx: StepContext
) -> None:
    """Backward + optional clip + optimizer step (through the GradScaler when there is one)."""
    opt.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        if ctx.grad_clip > 0:
            ctx.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, ctx.grad_clip)
        ctx.scaler.step(opt)
    else:
        loss.backward()
        if ctx.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, ctx.grad_clip)
        opt.step()


def _to_pm1(x: torch.Tensor) -> torch.Tensor:
    """RGB 0–1 -> [-1, 1]."""
    return x * 2.0 - 1.0


# --------------------------------------------------------------------------- loss configs


@dataclass(frozen=True)
class DoveNetLoss:
    """DoveNet weights: gradient penalty λ_gp·ratio (10), L1 (100), adversarial global/verification (1, 1)."""

    gp_weight: float = 10.0
    l1_weight: float = 100.0
    adv_weight: float = 1.0
    verify_weight: float = 1.0


@dataclass(frozen=True)
class BargainNetLoss:
    """BargainNet: λ_tri (0.01), sub-weights (1, 1), triplet margin (0.1), per-dimension distances (released code)."""

    triplet_weight: float = 0.01
    ff_weight: float = 1.0
    fb_weight: float = 1.0
    margin: float = 0.1
    per_dim: bool = True


@dataclass(frozen=True)
class HENCTNLoss:
    """HEN/CTN: soft-histogram weight (1.5), side-output weights (0, .5, .5, .5), identity weight (1),
    pair mix (``hue_prob``, ``identity_prob``), hue/saturation augmentation ranges, four-pass ``symmetric``."""

    hist_weight: float = 1.5
    side_weights: tuple[float, float, float, float] = (0.0, 0.5, 0.5, 0.5)
    identity_weight: float = 1.0
    hue_prob: float = 0.3
    identity_prob: float = 0.1
    hue_shift: tuple[float, float] = (0.0, 1.0)
    sat_scale: tuple[float, float] = (0.3, 1.2)
    symmetric: bool = True


@dataclass(frozen=True)
class PCTNetLoss:
    """PCT-Net: pixel weight (1) and ``min_area`` (1000 px) of the foreground-normalised MSE on the
    full-resolution output, smoothness weight (0.1) on the parameter map, ``identity_prob`` (0)."""

    pixel_weight: float = 1.0
    min_area: float = 1000.0
    smooth_weight: float = 0.1
    identity_prob: float = 0.0


def _make_loss(cls: type, options: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in dict(options).items():
        if key not in known:
            raise ConfigError(key, f"unknown loss option; known: {', '.join(sorted(known))}")
        default = known[key].default
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or len(value) != len(default):
                raise ConfigError(key, f"must be a list of {len(default)} numbers, got {value!r}")
            value = tuple(float(v) for v in value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(key, f"must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {value!r}")
        else:
            value = float(value)
            if value < 0:
                raise ConfigError(key, f"must be >= 0, got {value}")
        kwargs[key] = value
    cfg = cls(**kwargs)
    for name in ("hue_prob", "identity_prob"):
        if hasattr(cfg, name) and not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(name, f"must be in [0, 1], got {getattr(cfg, name)}")
    if hasattr(cfg, "hue_prob") and cfg.hue_prob + cfg.identity_prob > 1:
        raise ConfigError("hue_prob", "hue_prob + identity_prob must be <= 1")
    return cfg


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class StepSpec:
    """How to train one model (see the module docstring)."""

    name: str
    loss_class: type
    lr: float
    betas: tuple[float, float]
    param_groups: Callable[[nn.Module], dict[str, list[nn.Parameter]]]
    step: Callable[..., dict[str, float]]
    objective: Callable[..., torch.Tensor]
    required_fields: tuple[str, ...] = ("composite", "real", "mask")
    needs_generator: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def loss_config(self, options: Mapping[str, Any] | None = None) -> Any:
        """The loss dataclass from a ``[loss]`` table (``ConfigError`` names an unknown/bad key)."""
        return _make_loss(self.loss_class, options or {})


STEPS: dict[str, StepSpec] = {}


def register_step(spec: StepSpec) -> StepSpec:
    STEPS[spec.name] = spec
    return spec


def get_step(name: str) -> StepSpec:
    """The :class:`StepSpec` of a learned model; ``ConfigError`` for others."""
    try:
        return STEPS[name]
    except KeyError:
        raise ConfigError(
            "model.name", f"no training step for {name!r}; trainable: {', '.join(sorted(STEPS))}"
        ) from None


def model_class(name: str) -> type:
    """The model class registered as ``name`` (a :class:`~harmbench.models.LearnedHarmonizer` subclass)."""
    from harmbench.models.base import MODELS, LearnedHarmonizer, available_models

    available_models()  # imports every model module, so MODELS is complete
    builder = MODELS.get(name)
    if not (isinstance(builder, type) and issubclass(builder, LearnedHarmonizer)):
        learned = sorted(n for n, b in MODELS.items() if isinstance(b, type) and issubclass(b, LearnedHarmonizer))
        raise ConfigError("model.name", f"{name!r} is not a learned model; use one of {', '.join(learned)}")
    return builder


def make_optimizers(
    model: nn.Module,
    spec: StepSpec,
    *,
    lr: float | None = None,
    betas: Iterable[float] | None = None,
    weight_decay: float = 0.0,
) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter group of ``spec`` (paper lr/betas unless given)."""
    b = tuple(betas) if betas is not None else spec.betas
    return {
        name: torch.optim.Adam(params, lr=lr if lr is not None else spec.lr, betas=b, weight_decay=weight_decay)  # type: ignore[arg-type]
        for name, params in spec.param_groups(model).items()
    }


# --------------------------------------------------------------------------- DoveNet


def _dovenet_groups(model) -> dict[str, list[nn.Parameter]]:
    if model.discriminator is None:
        raise ConfigError("model.options.discriminator", "DoveNet training needs the discriminator (set it to true)")
    return {"g": list(model.generator.parameters()), "d": list(model.discriminator.parameters())}


def _dovenet_step(
    model, batch: Mapping[str, Any], opts: Mapping[str, torch.optim.Optimizer], ctx: StepContext
) -> dict[str, float]:
    cfg: DoveNetLoss = ctx.loss
    comp, real, mask = _to_pm1(batch["composite"]), _to_pm1(batch["real"]), batch["mask"]
    device = comp.device
    disc = model.discriminator
    with ctx.autocast(device):
        fake = model(comp, mask)
    fake = fake.float()
    # D step
    with ctx.autocast(device):
        d_total, d_terms = losses.dovenet_d_loss(disc, real, fake, mask, gp_weight=cfg.gp_weight)
    check_finite({"d_total": d_total, **d_terms}, ctx, batch["key"])
    _backward_step(d_total, opts["d"], list(disc.parameters()), ctx)
    # G step (D frozen)
    for p in disc.parameters():
        p.requires_grad_(False)
    try:
        with ctx.autocast(device):
            g_total, g_terms = losses.dovenet_g_loss(
                disc,
                fake,
                real,
                mask,
                l1_weight=cfg.l1_weight,
                adv_weight=cfg.adv_weight,
                verify_weight=cfg.verify_weight,
            )
        check_finite({"g_total": g_total, **g_terms}, ctx, batch["key"])
        _backward_step(g_total, opts["g"], list(model.generator.parameters()), ctx)
    finally:
        for p in disc.parameters():
            p.requires_grad_(True)
    return {
        "loss": float(g_total.detach()),
        "d": float(d_total.detach()),
        **{k: float(v) for k, v in {**d_terms, **g_terms}.items()},
    }


def _dovenet_objective(model, batch: Mapping[str, Any], ctx: StepContext) -> torch.Tensor:
    """λ_L1·L1(G(composite), real): the supervised part of the generator loss."""
    fake = model(_to_pm1(batch["composite"]), batch["mask"])
    return ctx.loss.l1_weight * F.l1_loss(fake, _to_pm1(batch["real"]))


register_step(StepSpec("dovenet", DoveNetLoss, 2e-4, (0.5, 0.999), _dovenet_groups, _dovenet_step, _dovenet_objective))


# --------------------------------------------------------------------------- BargainNet


def _bargainnet_loss(model, batch: Mapping[str, Any], ctx: StepContext):
    cfg: BargainNetLoss = ctx.loss
    real = _to_pm1(batch["real"])
    out = model(_to_pm1(batch["composite"]), batch["mask"], real)
    return losses.bargainnet_loss(
        out,
        real,
        triplet_weight=cfg.triplet_weight,
        ff_weight=cfg.ff_weight,
        fb_weight=cfg.fb_weight,
        margin=cfg.margin,
        per_dim=cfg.per_dim,
    )


def _bargainnet_step(model, batch, opts, ctx: StepContext) -> dict[str, float]:
    with ctx.autocast(batch["composite"].device):
        total, terms = _bargainnet_loss(model, batch, ctx)
    check_finite({"loss": total, **terms}, ctx, batch["key"])
    _backward_step(total, opts["all"], list(model.parameters()), ctx)
    return {"loss": float(total.detach()), **{k: float(v) for k, v in terms.items()}}


register_step(
    StepSpec(
        "bargainnet",
        BargainNetLoss,
        1e-4,
        (0.9, 0.999),
        lambda m: {"all": list(m.parameters())},
        _bargainnet_step,
        lambda m, b, c: _bargainnet_loss(m, b, c)[0],
    )
)


# --------------------------------------------------------------------------- HEN/CTN


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB 0–1 ``(N,3,H,W)`` -> HSV with H, S, V on 0–1 (skimage convention)."""
    r, g, b = rgb.unbind(1)
    v, _ = rgb.max(1)
    mn, _ = rgb.min(1)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = delta.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV on 0–1 -> RGB 0–1."""
    h, s, v = hsv.unbind(1)
    h6 = (h % 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, (cr, cg, cb) in enumerate(choices):
        sel = i == k
        out[0] = torch.where(sel, cr, out[0])
        out[1] = torch.where(sel, cg, out[1])
        out[2] = torch.where(sel, cb, out[2])
    return torch.stack(out, 1)


def hue_augment_nlab(rgb: torch.Tensor, delta: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The paper's colour augmentation -> normalised Lab on [-1, 1].

    ``rgb`` 0–1 ``(N,3,H,W)``; hue += ``delta`` (turns), saturation ×= ``sigma`` (clamped to 1),
    back to RGB, to Lab, then the **original L** is put back. ``delta``/``sigma``: ``(N,)``.
    """
    hsv = rgb_to_hsv(rgb)
    h = (hsv[:, 0] + delta.view(-1, 1, 1)) % 1.0
    s = (hsv[:, 1] * sigma.view(-1, 1, 1)).clamp(0.0, 1.0)
    shifted = hsv_to_rgb(torch.stack([h, s, hsv[:, 2]], 1))
    lab = rgb_to_lab(shifted)
    lab = torch.cat([rgb_to_lab(rgb)[:, :1], lab[:, 1:]], 1)
    return normalize_lab(lab)


def hen_ctn_pairs(
    batch: Mapping[str, Any], cfg: HENCTNLoss, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source nLab, target nLab, mask) for one HEN/CTN step: the batch's composites with a
    fraction replaced by hue-augmented foregrounds of the real photo and by identical pairs."""
    comp, real, mask = batch["composite"], batch["real"], batch["mask"]
    n = comp.shape[0]
    dev = comp.device
    u = torch.rand(n, device=dev, generator=generator)
    delta = cfg.hue_shift[0] + (cfg.hue_shift[1] - cfg.hue_shift[0]) * torch.rand(n, device=dev, generator=generator)
    sigma = cfg.sat_scale[0] + (cfg.sat_scale[1] - cfg.sat_scale[0]) * torch.rand(n, device=dev, generator=generator)
    real_n = rgb_to_nlab(real)
    src = rgb_to_nlab(comp)
    use_hue = (u < cfg.hue_prob).view(-1, 1, 1, 1)
    use_idt = ((u >= cfg.hue_prob) & (u < cfg.hue_prob + cfg.identity_prob)).view(-1, 1, 1, 1)
    if bool(use_hue.any()):
        aug = hue_augment_nlab(real, delta, sigma)
        src = torch.where(use_hue, aug * mask + real_n * (1 - mask), src)
    src = torch.where(use_idt, real_n, src)
    return src, real_n, mask


def _hen_ctn_loss(model, batch: Mapping[str, Any], ctx: StepContext, pairs=None):
    cfg: HENCTNLoss = ctx.loss
    src, tgt, mask = pairs if pairs is not None else hen_ctn_pairs(batch, cfg, ctx.generator)
    bg = 1.0 - mask
    h_src_fg = model.histogram(src, mask)
    h_bg = model.histogram(src, bg)  # composite and real share the background
    h_src = model.histogram(src)
    h_tgt = model.histogram(tgt)
    e_src_fg, e_bg, e_src, e_tgt = (model.hen(h) for h in (h_src_fg, h_bg, h_src, h_tgt))
    # an empty foreground/background (crops) gives an all-zero histogram; keep its code (as harmonize does)
    src_map = model.paint_codes(e_src_fg.flatten(1).unsqueeze(1), mask, default=e_bg)
    kw = {"side_weights": cfg.side_weights, "hist_weight": cfg.hist_weight, "hist_bins": model.config.soft_hist_bins}
    fake = model.transfer(src, src_map, e_bg)
    idt_t = model.transfer(tgt, e_tgt, e_tgt)
    if cfg.symmetric:
        h_tgt_fg = model.histogram(tgt, mask)
        e_tgt_fg = model.hen(h_tgt_fg)
        tgt_map = model.paint_codes(e_tgt_fg.flatten(1).unsqueeze(1), mask, default=e_bg)
        back = model.transfer(tgt, tgt_map, src_map)
        idt_s = model.transfer(src, e_src, e_src)
        transfer = losses.ctn_transfer_loss(fake, tgt, **kw) + losses.ctn_transfer_loss(back, src, **kw)
        identity = F.mse_loss(idt_t.output, tgt) + F.mse_loss(idt_s.output, src)
    else:
        transfer = losses.ctn_transfer_loss(fake, tgt, **kw)
        identity = F.mse_loss(idt_t.output, tgt)
    total = transfer + cfg.identity_weight * identity
    return total, {"transfer": transfer.detach(), "identity": identity.detach()}


def _hen_ctn_step(model, batch, opts, ctx: StepContext) -> dict[str, float]:
    with ctx.autocast(batch["composite"].device):
        total, terms = _hen_ctn_loss(model, batch, ctx)
    check_finite({"loss": total, **terms}, ctx, batch["key"])
    _backward_step(total, opts["all"], list(model.parameters()), ctx)
    return {"loss": float(total.detach()), **{k: float(v) for k, v in terms.items()}}


def _hen_ctn_objective(model, batch, ctx: StepContext) -> torch.Tensor:
    """The full HEN/CTN loss on the batch's own pairs (no augmentation)."""
    pairs = (rgb_to_nlab(batch["composite"]), rgb_to_nlab(batch["real"]), batch["mask"])
    return _hen_ctn_loss(model, batch, ctx, pairs=pairs)[0]


register_step(
    StepSpec(
        "hen-ctn",
        HENCTNLoss,
        5e-5,
        (0.5, 0.999),
        lambda m: {"all": list(m.parameters())},
        _hen_ctn_step,
        _hen_ctn_objective,
        needs_generator=True,
    )
)


# --------------------------------------------------------------------------- PCT-Net


def identity_pairs(batch: Mapping[str, Any], prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """The batch's composites (RGB 0–1) with each replaced by its real image with probability ``prob``."""
    comp = batch["composite"]
    if prob <= 0:
        return comp
    u = torch.rand(comp.shape[0], device=comp.device, generator=generator)
    return torch.where((u < prob).view(-1, 1, 1, 1), batch["real"], comp)


def _pctnet_loss(model, batch: Mapping[str, Any], ctx: StepContext, comp: torch.Tensor | None = None):
    cfg: PCTNetLoss = ctx.loss
    comp = identity_pairs(batch, cfg.identity_prob, ctx.generator) if comp is None else comp
    real, mask = batch["real"], batch["mask"]
    image_lr, mask_lr = model.lowres_input(comp, mask)
    out = model(image_lr, mask_lr, model.normalize(comp), mask)
    pixel = losses.mask_weighted_mse(out.images_fullres, model.normalize(real), mask, min_area=cfg.min_area).mean()
    smooth = losses.param_smoothness(out.params)
    total = cfg.pixel_weight * pixel + cfg.smooth_weight * smooth
    return total, {"pixel": pixel.detach(), "smooth": smooth.detach()}


def _pctnet_step(model, batch, opts, ctx: StepContext) -> dict[str, float]:
    with ctx.autocast(batch["composite"].device):
        total, terms = _pctnet_loss(model, batch, ctx)
    check_finite({"loss": total, **terms}, ctx, batch["key"])
    _backward_step(total, opts["all"], list(model.parameters()), ctx)
    return {"loss": float(total.detach()), **{k: float(v) for k, v in terms.items()}}


def _pctnet_objective(model, batch, ctx: StepContext) -> torch.Tensor:
    """The PCT-Net loss on the batch's own pairs (no identity pairs drawn)."""
    return _pctnet_loss(model, batch, ctx, comp=batch["composite"])[0]


for _name, _lr in (("pctnet-cnn", 1e-3), ("pctnet-vit", 1e-4)):
    register_step(
        StepSpec(
            _name,
            PCTNetLoss,
            _lr,
            (0.9, 0.999),
            lambda m: {"all": list(m.parameters())},
            _pctnet_step,
            _pctnet_objective,
            needs_generator=True,
        )
    )


# --------------------------------------------------------------------------- batch checks


def check_batch(batch: Mapping[str, Any]) -> None:
    """Validate a collated batch (RGB 0–1, mask {0,1}, matching shapes); :class:`BadBatchError` names the keys."""
    keys = list(batch.get("key", []))
    where = "batch with keys " + ", ".join(map(str, keys[:16]))
    for name in ("composite", "real", "mask"):
        if name not in batch:
            raise BadBatchError(f"{where}: no '{name}' tensor")
    comp, real, mask = batch["composite"], batch["real"], batch["mask"]
    if comp.dim() != 4 or comp.shape[1] != 3:
        raise BadBatchError(f"{where}: composite must be (N, 3, H, W), got {tuple(comp.shape)}")
    if real.shape != comp.shape:
        raise BadBatchError(f"{where}: real {tuple(real.shape)} does not match composite {tuple(comp.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != comp.shape[0] or mask.shape[2:] != comp.shape[2:]:
        raise BadBatchError(
            f"{where}: mask must be (N, 1, H, W) = {(comp.shape[0], 1, *comp.shape[2:])}, got {tuple(mask.shape)}"
        )
    for name, t in (("composite", comp), ("real", real)):
        if not torch.isfinite(t).all() or float(t.min()) < -1e-4 or float(t.max()) > 1 + 1e-4:
            bad = _bad_rows(t, lambda x: (~torch.isfinite(x)) | (x < -1e-4) | (x > 1 + 1e-4))
            raise BadBatchError(f"{where}: {name} must be finite RGB on 0–1; bad samples: {[keys[i] for i in bad]}")
    binary = (mask == 0) | (mask == 1)
    if not binary.all():
        bad = _bad_rows(mask, lambda x: ~((x == 0) | (x == 1)))
        raise BadBatchError(f"{where}: mask values must be 0 or 1; bad samples: {[keys[i] for i in bad]}")


def _bad_rows(t: torch.Tensor, pred: Callable[[torch.Tensor], torch.Tensor]) -> list[int]:
    return [i for i in range(t.shape[0]) if bool(pred(t[i]).any())]


__all__ = [
    "STEPS",
    "BadBatchError",
    "BargainNetLoss",
    "DoveNetLoss",
    "HENCTNLoss",
    "NonFiniteLossError",
    "PCTNetLoss",
    "StepContext",
    "StepSpec",
    "check_batch",
    "check_finite",
    "get_step",
    "hen_ctn_pairs",
    "hsv_to_rgb",
    "hue_augment_nlab",
    "identity_pairs",
    "make_optimizers",
    "model_class",
    "register_step",
    "rgb_to_hsv",
]
