"""Qualitative grid: composite | each method's output | real | mask, one row per sample.

Built from the previews every run saves (``previews/<key>.{composite,output,real,mask}.png``
at evaluation size, the same keys for every run on the same data).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from harmbench.eval.records import PREVIEWS


def preview_keys_of(run_dir: Path) -> set[str]:
    d = Path(run_dir) / PREVIEWS
    return {p.name[: -len(".output.png")] for p in d.glob("*.output.png")} if d.is_dir() else set()


def _load(run_dir: Path, key: str, what: str) -> np.ndarray:
    img = Image.open(Path(run_dir) / PREVIEWS / f"{key}.{what}.png")
    return np.asarray(img.convert("RGB"))


def qualitative_grid(
    runs: Sequence[tuple[str, Path]], path: Path, k: int = 6, title: str = "", cell_px: int = 160
) -> Path | None:
    """Write the grid for ``runs`` (``(label, run_dir)``, first one supplies composite/real/mask); None when
    the runs share no preview. ``k``: rows (samples); ``cell_px``: width of one image in the figure."""
    if k <= 0 or not runs:
        return None
    shared = set.intersection(*(preview_keys_of(d) for _, d in runs))
    keys = sorted(shared)[:k]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    first = runs[0][1]
    cols = ["input (composite)"] + [label for label, _ in runs] + ["real", "mask"]
    ncol, nrow = len(cols), len(keys)
    dpi = 100
    h_in = cell_px / dpi
    top = 0.55 if title else 0.3
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * h_in * 1.05, nrow * h_in * 1.08 + top), dpi=dpi, squeeze=False)
    for i, key in enumerate(keys):
        images = [_load(first, key, "composite")] + [_load(d, key, "output") for _, d in runs]
        images += [_load(first, key, "real"), _load(first, key, "mask")]
        for j, img in enumerate(images):
            ax = axes[i][j]
            ax.imshow(img, interpolation="lanczos")
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if i == 0:
                ax.set_title(cols[j], fontsize=8, pad=3)
            if j == 0:
                ax.set_ylabel(key if len(key) <= 24 else key[:22] + "…", fontsize=7, rotation=90)
    height = fig.get_size_inches()[1]
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / height)
    fig.tight_layout(pad=0.3, h_pad=0.3, w_pad=0.2, rect=(0, 0, 1, 1 - (top - 0.1) / height))
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["preview_keys_of", "qualitative_grid"]
