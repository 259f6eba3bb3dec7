"""The dataset card (``README.md``) with Hugging Face YAML front matter."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harmbench.generate.stats import FG_BUCKETS

#: Licence ids the Hub knows, keyed by a normalised spelling.
_HUB_LICENSES = {
    "cc0": "cc0-1.0",
    "cc0-1.0": "cc0-1.0",
    "public-domain": "cc0-1.0",
    "mit": "mit",
    "apache-2.0": "apache-2.0",
    "cc-by-2.0": "cc-by-2.0",
    "cc-by-3.0": "cc-by-3.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-3.0": "cc-by-sa-3.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc-by-nc-2.0": "cc-by-nc-2.0",
    "cc-by-nc-3.0": "cc-by-nc-3.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-nc-sa-2.0": "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0": "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "cc-by-nd-4.0": "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0": "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0": "cc-by-nc-nd-4.0",
}


def hub_license(name: str) -> str | None:
    """Map a licence string (``CC BY 4.0``, ``cc-by-4.0``, ``MIT``) to a Hub licence id, or None."""
    s = name.strip().lower().replace("creative commons", "cc").replace("attribution", "by")
    s = re.sub(r"\blicen[cs]e\b", "", s)
    s = re.sub(r"[\s_/]+", "-", s).strip("-")
    return _HUB_LICENSES.get(s)


def size_category(n: int) -> str:
    """Hub ``size_categories`` bucket of ``n`` samples."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for hi, label in bounds:
        if n < hi:
            return label
    return "1B<n<10B"


def json_features(shards: Sequence[Path], chunk: int = 2000) -> list[dict[str, Any]] | None:
    """Hub feature list of the ``json`` member: the union of every sample's fields across ``shards``.

    ``datasets`` alone infers the schema from the first few samples, which drops
    fields that only later samples have (e.g. other methods' parameters); the
    card's features carry the union so nothing is lost.
    """
    try:
        import pyarrow as pa

        import datasets

        schemas = []
        metas: list[dict[str, Any]] = []

        def flush() -> None:
            if metas:
                schemas.append(pa.Table.from_pylist(metas).schema)
                metas.clear()

        for shard in shards:
            with tarfile.open(shard, "r:") as tar:
                for m in tar:
                    if m.isfile() and m.name.endswith(".json"):
                        f = tar.extractfile(m)
                        if f is not None:
                            metas.append(json.loads(f.read()))
                        if len(metas) >= chunk:
                            flush()
        flush()
        if not schemas:
            return None
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        return datasets.Features.from_arrow_schema(schema)._to_yaml_list()
    except Exception:  # noqa: BLE001 - the card is still valid without a json schema
        return None


def card_features(card_text: str) -> list[dict[str, Any]] | None:
    """``dataset_info.features`` of a card's YAML front matter (None if absent)."""
    if not card_text.startswith("---\n"):
        return None
    try:
        front = yaml.safe_load(card_text.split("---\n", 2)[1])
    except yaml.YAMLError:
        return None
    return (front or {}).get("dataset_info", {}).get("features")


def _table(rows: Sequence[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _counts(d: Mapping[str, int], total: int) -> str:
    if not d:
        return "(none)"
    rows = [
        (k, v, f"{100.0 * v / total:.1f}%" if total else "-")
        for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return _table(rows, ("value", "samples", "share"))


def render_card(
    *,
    name: str,
    stats: Mapping[str, Any],
    fields: Sequence[str],
    splits: Mapping[str, Sequence[str]],
    recipe_text: str,
    generator_version: str,
    seed: int,
    config_digest: str,
    json_schema: list[dict[str, Any]] | None,
    license: str | None = None,
    description: str = "",
) -> str:
    """Markdown card: YAML front matter (licence, sizes, configs per split, features) and a body."""
    total = int(stats.get("samples", 0))
    licenses = {k: v for k, v in stats.get("by_license", {}).items()}
    ids = {hub_license(k) for k in licenses if k != "unknown"}
    front: dict[str, Any] = {}
    if license:
        lid = hub_license(license)
        front["license"] = lid or "other"
        if lid is None:
            front["license_name"] = re.sub(r"[^a-z0-9-]+", "-", license.lower()).strip("-") or "custom"
    elif len(ids) == 1 and None not in ids and "unknown" not in licenses:
        front["license"] = ids.pop()
    else:
        front["license"] = "other"
        front["license_name"] = "mixed-source-licences" if len(licenses) > 1 else "unknown"
    front["pretty_name"] = f"harmbench {name}"
    front["size_categories"] = [size_category(total)]
    front["task_categories"] = ["image-to-image"]
    front["tags"] = ["image-harmonization", "synthetic", "webdataset"]
    front["annotations_creators"] = ["machine-generated"]
    front["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": sp, "path": f"{name}-{sp}-*.tar"} for sp in sorted(splits)],
            "default": True,
        }
    ]
    features: list[dict[str, Any]] = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    for f in fields:
        if f == "json":
            features.append(
                {"name": "json", "struct": json_schema} if json_schema else {"name": "json", "dtype": "string"}
            )
        else:
            features.append({"name": f, "dtype": "image"})
    split_info = stats.get("splits", {})
    front["dataset_info"] = {
        "features": features,
        "splits": [
            {"name": sp, "num_examples": int(split_info.get(sp, {}).get("samples", 0))} for sp in sorted(splits)
        ],
    }
    yaml_text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False)

    fg = stats.get("by_fg_ratio", {})
    fg_rows = [
        (f"{b[0]}%", fg.get(b[0], 0), f"{100.0 * fg.get(b[0], 0) / total:.1f}%" if total else "-") for b in FG_BUCKETS
    ]
    split_rows = [
        (sp, split_info.get(sp, {}).get("samples", 0), len(splits[sp]), split_info.get(sp, {}).get("skipped", 0))
        for sp in sorted(splits)
    ]
    skipped = stats.get("skipped", {})
    field_rows = [
        (
            f"`{f}`",
            {
                "json": "metadata: key, split, recipe, method and parameters, category, fg_ratio, sizes, source keys, licence",
                "mask.png": "foreground mask, 8-bit grayscale, 0 = background, 255 = foreground",
            }.get(
                f,
                "composite (input)"
                if f.startswith("composite")
                else "real photo (target)"
                if f.startswith("real")
                else "reference image used by the transfer"
                if f.startswith("reference")
                else "",
            ),
        )
        for f in fields
    ]
    fence = "````" if "```" in recipe_text else "```"
    first_split = sorted(splits)[0] if splits else "train"
    body = f"""
# harmbench {name}

Synthetic image-harmonization triplets (composite, mask, real) generated by
[harmbench](https://github.com/harmbench/harmbench) {generator_version}.
Each composite is the real photo with the masked foreground re-coloured by a
harmonization-style transfer; the task is to recover the real photo.

{description.strip()}

## Dataset details

- Generator: harmbench {generator_version}
- Seed: {seed}
- Recipe digest (sha256): `{config_digest}`
- Samples: {total}

{_table(split_rows, ("split", "samples", "shards", "skipped"))}

## Dataset structure

WebDataset shards (`{name}-<split>-NNNNNN.tar`, uncompressed, members of a
sample adjacent and sorted, reproducible bytes). Each sample has:

{_table(field_rows, ("field", "content"))}

`index.json` lists every shard (wids shard-index format with md5 sums);
`index-<split>.json` has one split each; `stats.json` has the full statistics.

```python
from datasets import load_dataset
ds = load_dataset("webdataset", data_files={{"{first_split}": "{name}-{first_split}-*.tar"}}, split="{first_split}")

from harmbench.data import HarmonizationShards
dataset = HarmonizationShards(".", split="{first_split}")  # float tensors on 0-1, mask on {{0,1}}
```

## Foreground-ratio distribution

{_table(fg_rows, ("foreground ratio", "samples", "share"))}

## Composition

### By recipe

{_counts(stats.get("by_recipe", {}), total)}

### By method

{_counts(stats.get("by_method", {}), total)}

### By category

{_counts(stats.get("by_category", {}), total)}

## Source data and licences

Licences of the source photos, as stated by the sources:

{_counts(licenses, total)}

Skipped inputs: {skipped.get("plan", 0)} at planning, {skipped.get("synth", 0)} at synthesis
(reasons in `stats.json`).

## Recipe

{fence}toml
{recipe_text.rstrip()}
{fence}

## Bias, risks and limitations

Composites are synthetic: the foreground appearance shift comes from a colour
transfer, not from a real capture, so models trained on them inherit the
transfer's biases. Categories and foreground sizes follow the source
annotations (see the tables above). The licences of the source photos apply to
the derived images.

## Citation

Cite harmbench (see its `CITATION.cff`) and the source datasets.
"""
    return f"---\n{yaml_text}---\n{body}"
