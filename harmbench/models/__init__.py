"""Harmonization baselines behind one interface.

``get_model(name, **config)`` builds a registered method; every method implements
``harmonize(composite (N,3,H,W) 0–1, mask (N,1,H,W) {0,1}) -> (N,3,H,W) 0–1``.

Registered: ``composite`` (identity), ``reinhard``, ``histmatch``, ``ychist``, ``xiao``,
``idt`` (colour transfer with the background as reference), ``hen-ctn``, ``dovenet``,
``bargainnet``, ``idih``, ``issam``, ``pctnet-cnn``, ``pctnet-vit`` (PCT-Net: a per-pixel colour
transform predicted at 256 px and applied at the photo's own size). Learned models take
``preset="full"|"small"``, their config fields and ``seed``.
``load_weights(name, "E.pth,G.pth", protocol="official")`` loads the authors' checkpoints
(or a harmbench checkpoint); ``list_cards()`` says where such weights come from;
``load_extractor``/``harmony_scores`` give BargainNet's no-reference harmony score.
"""

from harmbench.models.bargainnet import BargainNet, BargainNetConfig
from harmbench.models.base import (
    MODELS,
    Harmonizer,
    LearnedHarmonizer,
    ModelInputError,
    available_models,
    get_model,
    load_factory,
    register_model,
    validate_inputs,
)
from harmbench.models.cards import ModelCard, get_card, list_cards
from harmbench.models.classical import CompositeBaseline, TransferHarmonizer
from harmbench.models.dovenet import DoveNet, DoveNetConfig, DoveNetDiscriminator
from harmbench.models.harmony import harmony_scores, load_extractor
from harmbench.models.hen_ctn import HENCTN, HENCTNConfig
from harmbench.models.iharm import IDIH, ISSAM, IDIHConfig, ISSAMConfig
from harmbench.models.official import load_weights, save_converted
from harmbench.models.pctnet import PCTNet, PCTNetCNN, PCTNetCNNConfig, PCTNetViT, PCTNetViTConfig

__all__ = [
    "HENCTN",
    "MODELS",
    "BargainNet",
    "BargainNetConfig",
    "CompositeBaseline",
    "DoveNet",
    "DoveNetConfig",
    "DoveNetDiscriminator",
    "HENCTNConfig",
    "Harmonizer",
    "IDIH",
    "IDIHConfig",
    "ISSAM",
    "ISSAMConfig",
    "LearnedHarmonizer",
    "ModelCard",
    "ModelInputError",
    "PCTNet",
    "PCTNetCNN",
    "PCTNetCNNConfig",
    "PCTNetViT",
    "PCTNetViTConfig",
    "TransferHarmonizer",
    "available_models",
    "get_card",
    "get_model",
    "harmony_scores",
    "list_cards",
    "load_extractor",
    "load_factory",
    "load_weights",
    "register_model",
    "save_converted",
    "validate_inputs",
]
