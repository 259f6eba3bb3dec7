"""Named metric protocol profiles: each reproduces one public evaluation codebase.

A :class:`Profile` fixes every choice that changes a number — resize filter for
images and for masks, mask threshold and when it is applied, PSNR peak and
epsilon, fMSE formula and epsilon, compute dtype, SSIM convention and
foreground-ratio buckets — and records them with :meth:`Profile.to_dict`.

``iharm``
    SamsungLabs ``image_harmonization`` (iDIH/iS2AM) and its forks. Images are
    resized by albumentations ``Resize`` = OpenCV ``INTER_LINEAR`` on uint8; the
    mask (``raw / 255``, float32) rides along as an *image* target
    (``no_nearest_for_masks``), so it stays continuous after resizing and fMSE
    weights pixels by it. ``MSE = mean((P−T)²)``, ``PSNR = 10·log10(max(T)² /
    (MSE + 1e-6))``, ``fMSE = Σ M·(P−T)² / (3·ΣM + 1e-6)``, float32 tensors; the
    network's output is scored as floats (not rounded to 8 bits).
    Samsung reads the mask's first channel with OpenCV; harmbench's raw masks
    are luma, identical for grey masks.
``dovenet``
    bcmi ``evaluation.py`` (and DoveNet/BargainNet ``test.py``): PIL BICUBIC on
    the 8-bit RGB images; the mask is ``convert('1')`` (dithered 1-bit) *before*
    the resize, which PIL then performs with NEAREST whatever filter is asked.
    skimage ``mean_squared_error`` on float32 arrays (float64 accumulation),
    ``PSNR`` with ``data_range = P.max() − P.min()`` and no epsilon, ``fMSE =
    mse(P·M, T·M)·H·W / ΣM``. An empty mask gives ``nan``, as in the script.
``zhenglab``
    zhenglab ``evaluation/ih_evaluation.py`` (IntrinsicHarmony, HarmonyTransformer):
    saved 8-bit results, PIL BICUBIC (through torchvision) when not already 256,
    the mask ``convert('1')`` then resized (NEAREST, forced), ``PSNR`` with peak
    255, ``fMSE`` as bcmi, ``fPSNR = 10·log10(255² / fMSE)``, SSIM/fSSIM from
    ``pytorch_ssim`` with window 11. The script hard-codes ``256·256`` in fMSE;
    this profile uses ``H·W`` (the same at 256). Its torch fMSE accumulates in
    float32; this profile accumulates in float64 (relative difference < 1e-6).
``harmbench`` (the default)
    * Peak fixed at 255, so PSNR is a monotone function of MSE and comparable
      across images and methods (``max(T)`` or the prediction's range reward
      or punish image content, and shift the composite baseline by ~0.15 dB).
    * ``eps = 1e-6`` added to MSE/fMSE in (f)PSNR: finite for exact matches
      (≈108 dB cap), bias below 1e-5 dB for any MSE ≥ 1.
    * Images resized with PIL BICUBIC on 8-bit data: antialiased when
      shrinking (OpenCV ``INTER_LINEAR`` aliases on large HAdobe5k images) and
      8-bit like every saved result.
    * Mask: ``raw / 255`` resized as a float image with an antialiased filter
      (PIL BILINEAR), *then* binarised with ``> 0.5``. Thresholding after the
      resize keeps the object boundary where coverage crosses one half (no
      dithering, no nearest-neighbour jitter), and the binary mask makes fMSE
      the plain foreground mean and ``mask.mean()`` equal the Samsung
      foreground ratio. Unresized raw masks are binarised the same way (``raw > 127.5``).
    * fMSE ``Σ M·(P−T)² / (3·ΣM)`` without epsilon: an empty foreground gives
      ``nan`` (undefined) rather than a misleading 0; aggregators skip and count it.
    * float64 accumulation of every per-image sum (elementwise work in float32,
      exact for 8-bit values; SSIM statistics on mean-centred float32 data).
    * SSIM: Wang et al. Gaussian window (11, σ = 1.5), data range 255, only
      windows fully inside the image; fSSIM is the foreground mean of the same map.
    * Buckets 0–5 %, 5–15 %, 15–100 % are half-open ``[lo, hi)`` (the last one
      includes 100 %), so every image falls in exactly one bucket.

``pctnet``
    rakutentech ``PCT-Net-Image-Harmonization`` ``scripts/evaluate_iHarmony4.py``
    with ``iharm/inference/metrics.py`` (a Samsung fork). Preparation as ``iharm``
    (OpenCV ``INTER_LINEAR`` to 256 for the images, the mask ``raw / 255`` resized
    as a float image and kept continuous); the script reports the same metrics at
    low resolution (``fixed256``) and at the photo's own size (``none``: the raw
    image and the raw ``/ 255`` mask, no resize). ``MSE = mean(M·(P−T)²)`` over all
    pixels and channels (background error ignored, divided by the full image size),
    ``PSNR = 10·log10(255² / (MSE + 1e-6))`` on that value, ``fMSE = Σ M·(P−T)² /
    (3·ΣM + 1e-6)``, SSIM from ``pytorch_msssim.ssim`` (Gaussian 11, σ 1.5, data
    range 255, valid windows) between ``P·M + T·(1−M)`` and ``T``. float32 torch,
    float predictions (clamped to 0–255, not rounded).
``dccf``
    rockeyben ``DCCF`` ``scripts/evaluate_upsample_refiner.py`` with
    ``iharm/inference/metrics.py``: as ``pctnet`` except the PSNR peak, ``max(T)``
    (Samsung's). Full resolution is the raw photo (the network's full-resolution
    branch sees a 768×1024 resize, but the output is brought back to the raw size
    and scored against the raw real image and mask).

SSIM is not defined by the ``iharm`` and ``dovenet`` codebases; those profiles
use the ``harmbench`` SSIM convention and say so in ``to_dict()``. LPIPS (alex,
v0.1) is the same in every profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import numpy as np

from harmbench.errors import UserError
from harmbench.metrics.pixel import FMSE_FORMULAS, MSE_FORMULAS, PEAK_RULES, SSIM_INPUTS
from harmbench.metrics.resize import IMAGE_FILTERS, MASK_RULES, RESIZES, resize_image, target_size
from harmbench.metrics.ssim import PYTORCH_SSIM, WANG_VALID, SSIMConvention

BUCKET_EDGES = (0.0, 0.05, 0.15, 1.0)
BUCKET_NAMES = ("0-5", "5-15", "15-100")
FG_RATIO_RULE = "(mask > 0.5).sum() / (H * W), after resizing (SamsungLabs evaluate_model_fg_ratios.py)"


@dataclass(frozen=True)
class PreparedSample:
    """One sample after a profile's CPU-side handling.

    ``pred``/``target``: float32 ``(3, H', W')`` on 0–255; ``mask``: float32
    ``(1, H', W')`` in [0, 1] (continuous for ``iharm``); ``fg_ratio`` in [0, 1].
    """

    pred: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    fg_ratio: float

    @property
    def size(self) -> tuple[int, int]:
        return int(self.target.shape[1]), int(self.target.shape[2])


def _bucket_name(lo: float, hi: float) -> str:
    return f"{lo * 100:g}-{hi * 100:g}"


@dataclass(frozen=True)
class Profile:
    """A complete metric protocol. Build samples with :meth:`prepare`, score with
    :func:`harmbench.metrics.compute_metrics`.

    ``mse_formula``: ``"mean"`` (``mean((P−T)²)``) or ``"masked_mean"`` (``mean(M·(P−T)²)``,
    PCT-Net/DCCF); PSNR is computed from that value. ``ssim_input``: ``"prediction"`` or
    ``"pasted"`` (SSIM between ``P·M + T·(1−M)`` and ``T``). ``resolutions``: the
    ``(label, resize)`` pairs at which the codebase's evaluation script reports metrics
    (one ``harmbench`` run scores one ``resize``; a protocol with a ``"full"`` entry also
    defines full-resolution numbers).

    ``pred_8bit``: the codebase scores saved 8-bit results, so a model's float output is
    rounded to 8 bits (0–255 integers) before scoring (``harmbench eval``); ``False``: the
    output is scored as floats, as SamsungLabs scores its network's tensors.

    ``exif_orientation``: files are read as displayed (the EXIF orientation tag applied,
    as OpenCV ``imread`` does) or as stored (PIL ``Image.open``); ``reader`` says which
    reader the codebase uses.
    """

    name: str
    source: str
    image_filter: str
    mask_rule: str
    mask_binary: bool
    mask_threshold: str
    psnr_peak: str
    psnr_eps: float
    fmse_formula: str
    fmse_eps: float
    fpsnr_peak: str
    fpsnr_eps: float
    dtype: str
    pred_8bit: bool
    ssim: SSIMConvention
    ssim_origin: str
    mse_formula: str = "mean"
    ssim_input: str = "prediction"
    resolutions: tuple[tuple[str, str], ...] = (("low", "fixed256"),)
    bucket_edges: tuple[float, ...] = BUCKET_EDGES
    bucket_inclusive: str = "half-open"
    empty_mask: str = ""
    exif_orientation: bool = True
    reader: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for what, value, known in (
            ("mse_formula", self.mse_formula, MSE_FORMULAS),
            ("fmse_formula", self.fmse_formula, FMSE_FORMULAS),
            ("psnr_peak", self.psnr_peak, PEAK_RULES),
            ("fpsnr_peak", self.fpsnr_peak, PEAK_RULES),
            ("ssim_input", self.ssim_input, SSIM_INPUTS),
        ):
            if value not in known:
                raise ValueError(f"profile {self.name}: {what} {value!r} is not one of {known}")
        if not self.resolutions or any(r not in RESIZES for _, r in self.resolutions):
            raise ValueError(f"profile {self.name}: resolutions must map labels to {RESIZES}, got {self.resolutions!r}")
        if self.image_filter not in IMAGE_FILTERS:
            raise ValueError(f"profile {self.name}: unknown image filter {self.image_filter!r}")
        if self.mask_rule not in MASK_RULES:
            raise ValueError(f"profile {self.name}: unknown mask rule {self.mask_rule!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"profile {self.name}: dtype must be float32 or float64")
        if self.bucket_inclusive not in ("both", "half-open"):
            raise ValueError(f"profile {self.name}: bucket_inclusive must be 'both' or 'half-open'")

    # ---- preparation -------------------------------------------------------------------------

    def prepare(
        self,
        pred_u8: np.ndarray,
        real_u8: np.ndarray,
        mask_raw_u8: np.ndarray,
        resize: str = "fixed256",
        name: str | None = None,
    ) -> PreparedSample:
        """Resize and convert one sample exactly as this profile's codebase does.

        ``pred_u8``/``real_u8``: ``uint8 (H, W, 3)``; ``mask_raw_u8``: ``uint8 (H, W)`` on
        0–255 (as :func:`harmbench.imaging.read_mask` returns). The output size follows
        ``resize`` applied to the real image; a prediction already at that size is not
        resized again. ``name`` (a sample key or file) is used in error messages.
        """
        where = f"{name}: " if name else ""
        real = _check_image(real_u8, "real", where)
        pred = _check_image(pred_u8, "pred", where)
        raw = _check_mask(mask_raw_u8, where)
        h, w = real.shape[:2]
        size = target_size(h, w, resize)
        if raw.shape not in ((h, w), size):
            raise UserError(f"{where}mask is {raw.shape[0]}x{raw.shape[1]} but the real image is {h}x{w}")
        if pred.shape[:2] not in ((h, w), size):
            raise UserError(
                f"{where}pred is {pred.shape[0]}x{pred.shape[1]}; expected the real image's size {h}x{w} "
                f"or the resized size {size[0]}x{size[1]} (resize={resize})"
            )
        target = resize_image(real, size, self.image_filter)
        pred = resize_image(pred, size, self.image_filter)
        mask = MASK_RULES[self.mask_rule](raw, size)
        fg_ratio = float((mask > 0.5).sum()) / float(size[0] * size[1])
        return PreparedSample(
            pred=np.ascontiguousarray(pred.transpose(2, 0, 1), dtype=np.float32),
            target=np.ascontiguousarray(target.transpose(2, 0, 1), dtype=np.float32),
            mask=np.ascontiguousarray(mask[None], dtype=np.float32),
            fg_ratio=fg_ratio,
        )

    # ---- buckets -----------------------------------------------------------------------------

    @property
    def bucket_names(self) -> tuple[str, ...]:
        e = self.bucket_edges
        return tuple(_bucket_name(lo, hi) for lo, hi in zip(e[:-1], e[1:]))

    def fg_buckets(self, fg_ratio: float) -> list[str]:
        """Bucket names containing ``fg_ratio`` (several for a boundary value under ``"both"``)."""
        e = self.bucket_edges
        out = []
        for i, (lo, hi) in enumerate(zip(e[:-1], e[1:])):
            last = i == len(e) - 2
            if self.bucket_inclusive == "both":
                inside = lo <= fg_ratio <= hi
            else:
                inside = lo <= fg_ratio < hi or (last and fg_ratio == hi)
            if inside:
                out.append(_bucket_name(lo, hi))
        return out

    # ---- record ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ssim"] = self.ssim.to_dict()
        d["bucket_edges"] = list(self.bucket_edges)
        d["bucket_names"] = list(self.bucket_names)
        d["notes"] = list(self.notes)
        d["resolutions"] = dict(self.resolutions)
        d["fg_ratio_rule"] = FG_RATIO_RULE
        d["image_filter_doc"] = _first_line(IMAGE_FILTERS[self.image_filter].__doc__)
        d["mask_rule_doc"] = " ".join((MASK_RULES[self.mask_rule].__doc__ or "").split())
        d["resizes"] = list(RESIZES)
        return d


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").split())


def _check_image(a, field_name: str, where: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise UserError(f"{where}{field_name} must be a uint8 (H, W, 3) array, got {a.dtype} {tuple(a.shape)}")
    return a


def _check_mask(a, where: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * np.uint8(255)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise UserError(f"{where}mask must be a raw uint8 (H, W) array on 0-255, got {a.dtype} {tuple(a.shape)}")
    return a


_SAME_SSIM = "not defined by this codebase; uses the harmbench convention"

_DCCF_FAMILY_NOTES = (
    "fPSNR is not defined by this script; computed with this profile's PSNR rule on fMSE",
    "fSSIM is not defined by this script; the mask-weighted mean of the same SSIM map (pasted prediction)",
    "buckets are not defined by this script; harmbench's half-open rule is used",
    "the script accumulates in float32 torch; this profile accumulates in float64 (relative difference < 1e-6)",
    (
        "low resolution = resize fixed256, full resolution = resize none (the script reports both from one run; "
        "harmbench scores one resize per run)"
    ),
)

_PCTNET = Profile(
    name="pctnet",
    source="rakutentech/PCT-Net-Image-Harmonization @ 1572176e scripts/evaluate_iHarmony4.py "
    "(runs/test_PCTNet.sh: --resize-strategy Fixed256 --res FR|LR), iharm/inference/{metrics,evaluation}.py, "
    "iharm/data/{hdataset,transforms,base}.py",
    image_filter="cv2_linear",
    mask_rule="cv2_linear_float",
    mask_binary=False,
    mask_threshold="none (continuous mask; raw / 255 at full resolution; > 0.5 only for the foreground ratio)",
    psnr_peak="255",
    psnr_eps=1e-6,
    fmse_formula="masked_sum",
    fmse_eps=1e-6,
    fpsnr_peak="255",
    fpsnr_eps=1e-6,
    dtype="float64",
    pred_8bit=False,
    ssim=WANG_VALID,
    ssim_origin="PCT-Net: pytorch_msssim.ssim(P*M + T*(1-M), T) with its defaults (data_range 255, Gaussian "
    "window 11, sigma 1.5, K=(0.01, 0.03), valid windows, mean over channels)",
    bucket_inclusive="half-open",
    empty_mask="mse = 0 (background ignored), psnr = 10*log10(255^2 / 1e-6), fmse = 0 (epsilon), fpsnr finite",
    exif_orientation=True,
    reader="cv2.imread (iharm's data loader; IMREAD_COLOR applies the EXIF orientation)",
    mse_formula="masked_mean",
    ssim_input="pasted",
    resolutions=(("low", "fixed256"), ("full", "none")),
    notes=(
        (
            "MSE = mean(M*(P-T)^2) over all pixels and channels: background error ignored, divided by the "
            "full image size; PSNR uses that MSE"
        ),
        *_DCCF_FAMILY_NOTES,
        "the script's SE column (sum of M*(P-T)^2 / 1e6 = mse * 3*H*W / 1e6) is not reported",
    ),
)

# DCCF scores as PCT-Net does except for the PSNR peak (max of the target)
_DCCF = dataclasses.replace(
    _PCTNET,
    name="dccf",
    source="rockeyben/DCCF @ 96188d1 scripts/evaluate_upsample_refiner.py (runs/test_dccf_*_pretrain.sh: "
    "--resize-strategy Fixed256, --res HR|LR), iharm/inference/{metrics,evaluation}.py, iharm/data/*.py",
    psnr_peak="target_max",
    fpsnr_peak="target_max",
    ssim_origin="DCCF: pytorch_msssim.ssim(P*M + T*(1-M), T) with its defaults (data_range 255, Gaussian "
    "window 11, sigma 1.5, K=(0.01, 0.03), valid windows, mean over channels)",
    empty_mask="mse = 0 (background ignored), psnr = 10*log10(max(T)^2 / 1e-6), fmse = 0 (epsilon), fpsnr finite",
    notes=(
        (
            "MSE = mean(M*(P-T)^2) over all pixels and channels: background error ignored, divided by the "
            "full image size; PSNR uses that MSE with peak max(T)"
        ),
        *_DCCF_FAMILY_NOTES,
        (
            "full resolution: the network's full-resolution input is resized to 768x1024, its output is at "
            "the raw size and scored against the raw real image and raw / 255 mask"
        ),
        (
            "DCCF's low-resolution config reads HAdobe5k pre-shrunk to a longest side of 1024 "
            "(notebooks/resize_dataset.py: cv2 INTER_LANCZOS4, JPEG quality 90) before the 256 resize; "
            "that is dataset preparation, not part of this profile"
        ),
    ),
)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="harmbench",
            source="harmbench default (reasons in harmbench/metrics/profiles.py)",
            image_filter="pil_bicubic",
            mask_rule="pil_bilinear_threshold",
            mask_binary=True,
            mask_threshold="> 0.5 after an antialiased float resize",
            psnr_peak="255",
            psnr_eps=1e-6,
            fmse_formula="masked_sum",
            fmse_eps=0.0,
            fpsnr_peak="255",
            fpsnr_eps=1e-6,
            dtype="float64",
            pred_8bit=True,
            ssim=WANG_VALID,
            ssim_origin="harmbench: Wang et al. 2004 (skimage/torchmetrics convention)",
            bucket_inclusive="half-open",
            empty_mask="fmse, fpsnr, fssim, flpips are nan (undefined); mse, psnr, ssim, lpips unaffected",
            exif_orientation=True,
            reader="harmbench.imaging: files as displayed (EXIF orientation applied)",
        ),
        Profile(
            name="iharm",
            source="SamsungLabs/image_harmonization iharm/inference/metrics.py, iharm/data/{hdataset,transforms}.py, "
            "scripts/evaluate_model.py, scripts/evaluate_model_fg_ratios.py",
            image_filter="cv2_linear",
            mask_rule="cv2_linear_float",
            mask_binary=False,
            mask_threshold="none (continuous mask; > 0.5 only for the foreground ratio)",
            psnr_peak="target_max",
            psnr_eps=1e-6,
            fmse_formula="masked_sum",
            fmse_eps=1e-6,
            fpsnr_peak="target_max",
            fpsnr_eps=1e-6,
            dtype="float32",
            pred_8bit=False,
            ssim=WANG_VALID,
            ssim_origin=_SAME_SSIM,
            bucket_inclusive="both",
            empty_mask="fmse = 0 (epsilon in the denominator), fpsnr finite",
            exif_orientation=True,
            reader="cv2.imread (IMREAD_COLOR applies the EXIF orientation)",
            notes=("fPSNR is not defined by SamsungLabs; computed with this profile's PSNR rule on fMSE",),
        ),
        Profile(
            name="dovenet",
            source="bcmi/Image-Harmonization-Dataset-iHarmony4 evaluation.py; DoveNet and BargainNet test.py",
            image_filter="pil_bicubic",
            mask_rule="pil_1bit_nearest",
            mask_binary=True,
            mask_threshold="PIL convert('1') before resizing (Floyd-Steinberg dither at 128), NEAREST resize",
            psnr_peak="pred_range",
            psnr_eps=0.0,
            fmse_formula="masked_image_mse",
            fmse_eps=0.0,
            fpsnr_peak="pred_range",
            fpsnr_eps=0.0,
            dtype="float64",
            pred_8bit=True,
            ssim=WANG_VALID,
            ssim_origin=_SAME_SSIM,
            bucket_inclusive="half-open",
            empty_mask="fmse = nan (0/0 as in the script)",
            exif_orientation=False,
            reader="PIL Image.open (EXIF orientation not applied)",
            notes=(
                "fPSNR is not defined by these scripts; computed with this profile's PSNR rule on fMSE",
                "buckets are not defined by these scripts; harmbench's half-open rule is used",
                "DoveNet's training-time loader resizes with torchvision bilinear; the offline evaluation.py uses "
                "PIL bicubic, which this profile follows",
            ),
        ),
        Profile(
            name="zhenglab",
            source="zhenglab/IntrinsicHarmony and zhenglab/HarmonyTransformer evaluation/ih_evaluation.py",
            image_filter="pil_bicubic",
            mask_rule="pil_1bit_nearest",
            mask_binary=True,
            mask_threshold="PIL convert('1') before resizing (Floyd-Steinberg dither at 128), NEAREST resize",
            psnr_peak="255",
            psnr_eps=0.0,
            fmse_formula="masked_image_mse",
            fmse_eps=0.0,
            fpsnr_peak="255",
            fpsnr_eps=0.0,
            dtype="float64",
            pred_8bit=True,
            ssim=PYTORCH_SSIM,
            ssim_origin="zhenglab: pytorch_ssim.ssim(window_size=11, mask=mask) -> (ssim, fssim)",
            bucket_inclusive="half-open",
            empty_mask="fmse = nan, fpsnr = nan (0/0 as in the script)",
            exif_orientation=False,
            reader="PIL Image.open (EXIF orientation not applied)",
            notes=(
                "the script hard-codes 256*256 in fMSE; H*W is used (identical at 256)",
                "buckets are not defined by the script; harmbench's half-open rule is used",
            ),
        ),
        _PCTNET,
        _DCCF,
    )
}


DEFAULT_PROFILE = "harmbench"


def get_profile(name: str | Profile | None = None) -> Profile:
    """The profile called ``name`` (default ``"harmbench"``); ``UserError`` naming the choices otherwise."""
    if isinstance(name, Profile):
        return name
    key = DEFAULT_PROFILE if name is None else str(name).strip().lower()
    try:
        return PROFILES[key]
    except KeyError:
        raise UserError(f"profile {name!r} is not one of {', '.join(sorted(PROFILES))}") from None
