"""Loaders over built shards: torch IterableDataset (decoding, worker/node splitting) and HF datasets."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from harmbench.data import HarmonizationShards, collate, load_hf, shard_files
from harmbench.fileio import atomic_write_json
from harmbench.generate import synthetic as syn
from harmbench.generate.index import dataset_index
from harmbench.generate.plan import make_shards
from harmbench.generate.runner import write_shard
from harmbench.generate.writer import OutputOptions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Shards written by the build's worker function (no Ray needed here), with their index."""
    root = tmp_path_factory.mktemp("data")
    recs = syn.make_photos(root / "src", 5, width=72, height=48)
    specs = syn.plan_photos(recs, seed=2, test_every=5)
    out = root / "out"
    out.mkdir()
    stats = [write_shard(t, str(out), OutputOptions(), syn.synthesize) for t in make_shards(specs, "dd", 3)]
    atomic_write_json(out / "index.json", dataset_index("dd", stats))
    keys = {sp: sorted(s.key for s in specs if s.split == sp) for sp in ("train", "test")}
    return out, keys


def test_shard_files(built):
    out, _ = built
    assert [p.rsplit("/", 1)[1] for p in shard_files(out, "test")] == ["dd-test-000000.tar"]
    assert len(shard_files(out, "train")) == 4 and len(shard_files(out, None)) == 5


def test_items_are_float_tensors(built):
    out, keys = built
    items = list(HarmonizationShards(out, "train"))
    assert [i["key"] for i in items] == keys["train"]
    it = items[0]
    assert it["composite"].shape == (3, 48, 72) and it["real"].shape == (3, 48, 72)
    assert it["mask"].shape == (1, 48, 72)
    for k in ("composite", "real", "mask"):
        assert it[k].dtype == torch.float32 and it[k].min() >= 0.0 and it[k].max() <= 1.0
    assert set(it["mask"].unique().tolist()) == {0.0, 1.0}
    assert it["meta"]["key"] == it["key"] and it["meta"]["split"] == "train"
    diff = (it["composite"] - it["real"]).abs().sum(0)
    assert diff[it["mask"][0] > 0].mean() > diff[it["mask"][0] == 0].mean()  # the edit is in the foreground


@pytest.mark.parametrize("split", ["train", "test"])  # 4 shards >= 2 workers; 1 shard < 2 workers
def test_each_sample_once_across_two_workers(built, split):
    out, keys = built
    ds = HarmonizationShards(out, split, shuffle=4, seed=1)
    dl = DataLoader(ds, batch_size=None, num_workers=2)
    seen = Counter(item["key"] for item in dl)
    assert sorted(seen) == keys[split] and set(seen.values()) == {1}


def test_node_split_is_a_partition(built):
    out, keys = built
    for split in ("train", "test"):
        parts = [[i["key"] for i in HarmonizationShards(out, split, rank=r, world_size=3)] for r in range(3)]
        allk = [k for p in parts for k in p]
        assert sorted(allk) == keys[split] and len(allk) == len(set(allk))


def test_shuffle_is_seeded_per_epoch(built):
    out, keys = built
    ds = HarmonizationShards(out, "train", shuffle=8, seed=7)
    a = [i["key"] for i in ds]
    b = [i["key"] for i in ds]
    ds.set_epoch(1)
    c = [i["key"] for i in ds]
    assert a == b and sorted(a) == sorted(c) == keys["train"]
    assert a != keys["train"] and a != c


def test_resize_crop_and_collate(built):
    out, _ = built
    ds = HarmonizationShards(out, "train", resize=(40, 60), crop=32, shuffle=2)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert batch["composite"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert len(batch["key"]) == 4 and isinstance(batch["meta"][0], dict)
    with pytest.raises(ValueError, match="crop"):
        next(iter(HarmonizationShards(out, "train", crop=100)))


def test_hflip_mirrors_whole_samples_about_half_the_time(built):
    """``hflip``: each sample is either as stored or mirrored left-right, composite, real and mask alike;
    the draws are seeded (same epoch, same choices) and both outcomes occur."""
    out, keys = built
    plain = {i["key"]: i for i in HarmonizationShards(out, "train")}
    flipped = list(HarmonizationShards(out, "train", hflip=True, seed=3))
    again = list(HarmonizationShards(out, "train", hflip=True, seed=3))
    outcomes = []
    for item, twin in zip(flipped, again):
        ref = plain[item["key"]]
        mirrored = torch.equal(item["composite"], ref["composite"].flip(-1))
        assert mirrored or torch.equal(item["composite"], ref["composite"])
        for k in ("real", "mask"):  # the same choice for every image of the sample
            assert torch.equal(item[k], ref[k].flip(-1) if mirrored else ref[k])
        assert torch.equal(item["composite"], twin["composite"])
        outcomes.append(mirrored)
    assert len(outcomes) == len(keys["train"]) and any(outcomes) and not all(outcomes)
    assert not torch.equal(plain[keys["train"][0]]["composite"], plain[keys["train"][0]]["composite"].flip(-1))


def test_hf_load_dataset(built, tmp_path):
    out, keys = built
    ds = load_hf(out, "train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == len(keys["train"])
    assert {"__key__", "composite.jpg", "mask.png", "real.jpg", "json"} <= set(ds.column_names)
    row = ds[0]
    assert row["__key__"] == keys["train"][0]
    assert row["composite.jpg"].size == (72, 48) and row["mask.png"].mode == "L"
    assert row["json"]["key"] == row["__key__"]
    st = load_hf(out, "test", streaming=True, cache_dir=str(tmp_path / "hf"))
    assert [r["__key__"] for r in st] == keys["test"]


def test_card_features_keep_fields_of_later_samples(tmp_path):
    """Fields that only later samples have survive HF loading through the card's features."""
    import numpy as np

    from harmbench.generate.card import json_features, render_card
    from harmbench.generate.writer import DeterministicTarWriter, canonical_json
    from harmbench.imaging import encode_image

    img = encode_image(np.zeros((8, 8, 3), np.uint8), "jpg")
    mask = encode_image(np.zeros((8, 8), np.uint8), "png")
    with open(tmp_path / "h-train-000000.tar", "wb") as f:
        w = DeterministicTarWriter(f)
        for i in range(8):
            params = {"a": 1} if i < 6 else {"b": "late"}
            w.write(
                f"k{i}",
                {
                    "composite.jpg": img,
                    "mask.png": mask,
                    "real.jpg": img,
                    "json": canonical_json({"key": f"k{i}", "params": params}),
                },
            )
        w.close()
    feats = json_features([tmp_path / "h-train-000000.tar"])
    params = next(f for f in feats if f["name"] == "params")["struct"]
    assert {p["name"] for p in params} == {"a", "b"}
    card = render_card(
        name="h",
        stats={"samples": 8},
        fields=["composite.jpg", "json", "mask.png", "real.jpg"],
        splits={"train": ["h-train-000000.tar"]},
        recipe_text="",
        generator_version="t",
        seed=0,
        config_digest="0",
        json_schema=feats,
    )
    (tmp_path / "README.md").write_text(card)
    ds = load_hf(tmp_path, "train", cache_dir=str(tmp_path / "hf"))
    assert ds[7]["json"]["params"]["b"] == "late" and ds[0]["json"]["params"]["a"] == 1


def test_indexed_access_matches_the_stream(built):
    """wids random access gives the same items as the streaming pipeline, addressable by index and key."""
    from harmbench.data.indexed import IndexedShards
    from harmbench.data.shards import iter_tar_samples

    out, keys = built
    streamed = {i["key"]: i for i in HarmonizationShards(out, "train")}
    ds = IndexedShards(out, "train")
    assert len(ds) == len(keys["train"]) and sorted(ds.keys()) == keys["train"]
    for idx in (0, len(ds) - 1, -1):
        item = ds[idx]
        ref = streamed[item["key"]]
        for k in ("composite", "mask", "real"):
            assert torch.equal(item[k], ref[k])
        assert item["meta"] == ref["meta"]
    key = keys["train"][3]
    assert ds[ds.index_of(key)]["key"] == key
    raw = ds.raw(ds.index_of(key))  # bytes exactly as stored in the tar
    stored = next(s for shard in shard_files(out, "train") for s in iter_tar_samples(shard) if s["__key__"] == key)
    assert raw == stored
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(KeyError, match="no sample"):
        ds.index_of("absent")


def test_indexed_dataset_with_a_sampler(built):
    from torch.utils.data.distributed import DistributedSampler

    from harmbench.data.indexed import IndexedShards

    out, keys = built
    ds = IndexedShards(out, "train", resize=(24, 36))
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3, drop_last=True)
        seen += [ds[i]["key"] for i in sampler]
    assert len(seen) == len(set(seen)) == 2 * (len(ds) // 2)
    assert ds[0]["composite"].shape == (3, 24, 36)


def test_indexed_errors_name_the_folder(built, tmp_path):
    from harmbench.data.indexed import IndexedShards
    from harmbench.errors import UserError

    out, _ = built
    with pytest.raises(UserError, match="no index.json"):
        IndexedShards(tmp_path)
    with pytest.raises(UserError, match="no samples for split 'val'"):
        IndexedShards(out, "val")
