"""Score every baseline on the test split of the labelme-outdoor shards; writes baselines/results.json.

    python baselines/make_results.py --data /tmp/lo-shards [--size 128] [--threads 2]

Rows: ``composite`` (do nothing), the classical colour transfers (``reinhard``, ``histmatch``,
``xiao``, ``idt``; background as reference) and the committed learned CPU baselines
(``*-cpu``). Images are resized to ``size × size`` like the training loader; metrics are the
``harmbench`` profile on the 0–255 scale (MSE, fMSE, PSNR), means over the split's images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROWS = ("composite", "reinhard", "histmatch", "xiao", "idt", "hen-ctn-cpu", "dovenet-cpu", "bargainnet-cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()

    import torch

    from harmbench.models import get_model
    from harmbench.train.checkpoint import dataset_index_hash
    from harmbench.train.evaluate import evaluate

    torch.set_num_threads(args.threads)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    digest = dataset_index_hash(args.data)
    for name in [r for r in args.rows.split(",") if r]:
        t0 = time.perf_counter()
        res = evaluate(get_model(name), args.data, args.split, image_size=args.size, batch_size=16)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["index_sha256"] = digest
        results[name] = res
        print(
            f"{name:16s} MSE {res['mse']:8.2f}  fMSE {res['fmse']:8.2f}  PSNR {res['psnr']:6.2f}  ({res['seconds']} s)",
            flush=True,
        )
        out_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    comp = results.get("composite")
    print("\n| method | MSE | fMSE | PSNR | MSE vs composite | fMSE vs composite |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        rel = {k: f"{100 * (r[k] / comp[k] - 1):+.1f} %" if comp else "" for k in ("mse", "fmse")}
        print(f"| {name} | {r['mse']:.2f} | {r['fmse']:.2f} | {r['psnr']:.2f} | {rel['mse']} | {rel['fmse']} |")


if __name__ == "__main__":
    main()
