"""How tables and plots name each metric."""

#: Display name of each metric key.
METRIC_LABELS = {
    "mse": "MSE",
    "psnr": "PSNR",
    "fmse": "fMSE",
    "fpsnr": "fPSNR",
    "ssim": "SSIM",
    "fssim": "fSSIM",
    "lpips": "LPIPS",
    "flpips": "fLPIPS",
}

__all__ = ["METRIC_LABELS"]
