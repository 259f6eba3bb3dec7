"""Per-sample metrics over the demo dataset stay what they were (within 1e-6).

``tests/data/demo_eval_metrics.csv`` holds ``harmbench eval``'s per-sample values
for the demo dataset's test split (``datasets/demo.toml``, built as below) for the
``composite`` and ``reinhard`` methods under three profiles, every metric but
LPIPS. It was generated once, before the evaluation pipeline was reorganised for
speed, by running this module's :func:`current_values` with the code of ``main``
at commit ``84736ee``::

    PYTHONPATH=<main checkout> python tests/test_eval_regression.py OUT.csv

The test builds the demo dataset, evaluates it with the current code and compares
every value (relative and absolute tolerance 1e-6). Building the dataset also
checks that the recipes still make the same samples (the key list must match).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "datasets" / "demo.toml"
CSV = Path(__file__).resolve().parent / "data" / "demo_eval_metrics.csv"
METHODS = ("composite", "reinhard")
PROFILES = (("harmbench", "fixed256"), ("iharm", "fixed256"), ("dovenet", "fixed256"))
VALUES = ("mse", "psnr", "fmse", "fpsnr", "ssim", "fssim", "input_mse", "fg_ratio")


def build_demo(out: Path) -> Path:
    from harmbench.generate import build_dataset

    build_dataset(DEMO, out, workers=2, resume=False, progress=False)
    return out


def current_values(data: Path, work: Path):
    """Per-sample values (one row per method × profile × sample) from ``harmbench eval`` on ``data``."""
    import pandas as pd

    from harmbench.eval.loop import evaluate

    frames = []
    for method in METHODS:
        for profile, resize in PROFILES:
            res = evaluate(
                method,
                data,
                work / f"{method}-{profile}",
                split="test",
                device="cpu",
                profile=profile,
                resize=resize,
                previews=0,
                progress=False,
                workers=0,
            )
            df = res.samples[["key", *VALUES]].copy()
            df.insert(0, "profile", profile)
            df.insert(0, "method", method)
            frames.append(df)
    return pd.concat(frames).sort_values(["method", "profile", "key"]).reset_index(drop=True)


@pytest.mark.slow
def test_demo_per_sample_metrics_unchanged(tmp_path):
    import pandas as pd

    want = pd.read_csv(CSV)
    got = current_values(build_demo(tmp_path / "demo"), tmp_path)
    assert list(got[["method", "profile", "key"]].itertuples(index=False)) == list(
        want[["method", "profile", "key"]].itertuples(index=False)
    )
    assert len(got) == len(METHODS) * len(PROFILES) * 29  # the demo test split
    for col in VALUES:
        np.testing.assert_allclose(
            got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-6, atol=1e-6, err_msg=col
        )
    # batches made by 2 DataLoader workers, of 5 images: the same values
    from harmbench.eval.loop import evaluate

    res = evaluate(
        "reinhard",
        tmp_path / "demo",
        tmp_path / "w2",
        split="test",
        device="cpu",
        previews=0,
        progress=False,
        workers=2,
        batch_size=5,
    )
    rows = want[(want["method"] == "reinhard") & (want["profile"] == "harmbench")].set_index("key")
    df = res.samples.set_index("key").loc[rows.index]
    for col in VALUES:
        np.testing.assert_allclose(
            df[col].to_numpy(float), rows[col].to_numpy(float), rtol=1e-6, atol=1e-6, err_msg=f"workers=2 {col}"
        )


if __name__ == "__main__":  # regenerate: python tests/test_eval_regression.py OUT.csv
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = current_values(build_demo(Path(tmp) / "demo"), Path(tmp))
    table.to_csv(sys.argv[1], index=False, float_format="%.17g")
