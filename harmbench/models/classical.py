"""Classical baselines: the identity (``composite``) and colour-transfer ops used as harmonizers.

The transfer wrappers run the :mod:`harmbench.transfer` op per image on CPU numpy
(``float32 (H, W, 3)`` on 0–1) with the composite's **background** ``~mask`` as the
reference region, then return to the input's device and dtype. Images whose mask is
empty or covers the whole image (no reference region) are returned unchanged.
Randomised ops (``idt``) get a fresh ``numpy.random.default_rng(seed)`` per image, so a
result does not depend on the image's position in the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from harmbench.models.base import Harmonizer, register_model, validate_inputs


@register_model("composite")
class CompositeBaseline(Harmonizer):
    """Identity: returns the composite (the "do nothing" reference row of every leaderboard)."""

    name = "composite"

    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        composite, _ = validate_inputs(composite, mask)
        return composite.clone()


class TransferHarmonizer(Harmonizer):
    """Harmonize with colour-transfer op ``op_name`` (foreground recoloured towards the background).

    ``params`` are passed to the op unchanged; ``seed`` seeds the per-image RNG.
    """

    def __init__(self, op_name: str, *, seed: int = 0, **params: Any):
        self.name = op_name  # type: ignore[misc]
        self.op_name = op_name
        self.seed = int(seed)
        self.params = dict(params)

    def op(self) -> Callable[..., np.ndarray]:
        from harmbench.transfer import get_transfer

        return get_transfer(self.op_name)

    def harmonize_array(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One image: ``float32 (H, W, 3)`` 0–1 and ``bool (H, W)`` -> ``float32 (H, W, 3)`` 0–1."""
        if not mask.any() or mask.all():
            return image
        rng = np.random.default_rng(self.seed)
        out = self.op()(image, mask, image, ~mask, rng=rng, **self.params)
        return np.asarray(out, dtype=np.float32)

    def harmonize(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        composite, mask = validate_inputs(composite, mask)
        images = composite.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        masks = mask.detach().to("cpu")[:, 0].numpy() > 0.5
        outs = [self.harmonize_array(img, m) for img, m in zip(images, masks)]
        out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2)
        return out.to(device=composite.device, dtype=composite.dtype).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"TransferHarmonizer({self.op_name!r}, seed={self.seed}, params={self.params})"


def _builder(op_name: str) -> Callable[..., TransferHarmonizer]:
    def build(**params: Any) -> TransferHarmonizer:
        return TransferHarmonizer(op_name, **params)

    build.takes_seed = True  # type: ignore[attr-defined]
    build.__name__ = f"build_{op_name}"
    build.__doc__ = f"Harmonizer using the ``{op_name}`` colour transfer with the background as reference."
    return build


CLASSICAL_OPS = ("reinhard", "histmatch", "ychist", "xiao", "idt")
for _op in CLASSICAL_OPS:
    register_model(_op)(_builder(_op))

__all__ = ["CLASSICAL_OPS", "CompositeBaseline", "TransferHarmonizer"]
