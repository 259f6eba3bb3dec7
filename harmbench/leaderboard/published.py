"""Published iHarmony4 test-set numbers (256×256), quoted from papers and READMEs.

These are NOT computed by harmbench and come from other test data (the 7,404
iHarmony4 test images) and other metric code; exports show them in a separate,
labelled table for orientation only. ``verified``: ``"V"`` read in the named
repository file, ``"U"`` quoted from the paper without a second check.
Values: MSE / PSNR (dB) / fMSE on the 0–255 scale; ``None`` where not published.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRow:
    """One method's published "All" row on the iHarmony4 test set at 256×256."""

    method: str
    model: str  # the harmbench model it corresponds to
    mse: float
    psnr: float
    fmse: float | None
    source: str
    verified: str


PUBLISHED_IHARMONY4_256 = (
    PublishedRow(
        "Composite (copy of input)",
        "composite",
        172.47,
        31.78,
        1376.42,
        "zhenglab/HarmonyTransformer README, tag v1.0 (PSNR with data_range 255)",
        "V",
    ),
    PublishedRow("Composite, DoveNet paper", "composite", 172.47, 31.63, None, "DoveNet paper (CVPR 2020)", "U"),
    PublishedRow("DoveNet (released BN model)", "dovenet", 50.87, 34.83, None, "bcmi/DoveNet README", "V"),
    PublishedRow("DoveNet (paper)", "dovenet", 52.36, 34.75, 549.96, "DoveNet paper (CVPR 2020)", "U"),
    PublishedRow("BargainNet", "bargainnet", 37.82, 35.88, 405.23, "BargainNet paper (ICME 2021)", "U"),
)


def published_rows(models: list[str] | None = None) -> list[PublishedRow]:
    """Published rows, restricted to rows whose ``model`` is in ``models`` when given."""
    return [r for r in PUBLISHED_IHARMONY4_256 if models is None or r.model in models]


__all__ = ["PUBLISHED_IHARMONY4_256", "PublishedRow", "published_rows"]
