"""Loading built shards with Hugging Face ``datasets`` (the packaged ``webdataset`` builder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmbench.data.shards import PathLike, shard_files


def load_hf(
    root: PathLike, split: str = "train", *, streaming: bool = False, cache_dir: str | None = None, **kwargs: Any
) -> Any:
    """``datasets.load_dataset("webdataset", data_files={split: shards}, split=split)`` over a built directory.

    Columns are the full member extensions: ``__key__``, ``__url__``,
    ``composite.jpg`` (or ``.png``), ``mask.png``, ``real.jpg`` (images) and
    ``json`` (parsed metadata). The features come from the build's card when
    it has them (see :func:`card_features_of`).
    """
    import datasets

    files = shard_files(root, split)
    if "features" not in kwargs:
        kwargs["features"] = card_features_of(root)
    return datasets.load_dataset(
        "webdataset", data_files={split: files}, split=split, streaming=streaming, cache_dir=cache_dir, **kwargs
    )


def card_features_of(root: PathLike) -> Any:
    """``datasets.Features`` from the build's ``README.md`` card (the union of all samples' json fields), or None.

    Without them ``datasets`` infers the json schema from the first samples
    only and silently drops fields that appear later.
    """
    import datasets
    from harmbench.generate.card import card_features

    card = Path(root) / "README.md"
    if not Path(root).is_dir() or not card.exists():
        return None
    feats = card_features(card.read_text(encoding="utf-8"))
    if not feats or not any(f.get("name") == "json" and "struct" in f for f in feats):
        return None
    return datasets.Features._from_yaml_list(feats)
