"""``harmbench transfer``: colour transfer between photos, regions or labelled segments."""

from __future__ import annotations

import argparse

from harmbench.commands._args import add_option_argument, parse_options

NAME = "transfer"
HELP = "colour transfer: a photo after another, a region after a region (same or other photo), or label by label"
DESCRIPTION = (
    "Recolours SOURCE after REFERENCE (default: SOURCE itself). Without masks the whole photo changes; with "
    "--source-mask only that region changes, toward the colours of --reference-mask's region (default: the rest of "
    "the photo when REFERENCE is SOURCE, else the whole REFERENCE); with --source-labels/--reference-labels every "
    "source label takes the colours of the same label in the reference (label maps: one grey level or RGB colour per "
    "label). Examples: harmbench transfer face.png --source-mask inpainted.png --reference-mask skin.png -o fixed.png; "
    "harmbench transfer SRC.png REF.png --method hen-ctn --weights latest_net_C_A.pth,latest_net_G_A.pth "
    "--protocol official -o OUT.png (the authors' test output)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harmbench.transfer._apply import METHODS

    p.add_argument("source", help="photo to recolour")
    p.add_argument("reference", nargs="?", default=None, help="photo whose colours to take (default: SOURCE)")
    p.add_argument("-o", "--out", required=True, help="output image (png/jpg)")
    p.add_argument("--method", default="histmatch", choices=METHODS, help="transfer method (default histmatch)")
    p.add_argument(
        "--weights",
        default=None,
        help="hen-ctn weights: the authors' C.pth,G.pth (any order) or a harmbench checkpoint "
        "(default: the committed CPU weights hen-ctn-cpu)",
    )
    p.add_argument(
        "--protocol",
        default="harmbench",
        choices=("harmbench", "official"),
        help="hen-ctn: harmbench (default; any size) or official (the authors' test script: 700 px rule, "
        "30 px padding and their crop)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of randomised methods (idt; default 0)")
    add_option_argument(p, "method option (op parameter or hen-ctn model option; repeatable; values parsed as TOML)")
    p.add_argument("--source-mask", metavar="M", help="region of SOURCE to recolour (white = change)")
    p.add_argument("--reference-mask", metavar="M", help="region of REFERENCE whose colours to take")
    p.add_argument("--source-labels", metavar="L", help="label map of SOURCE (semantic transfer)")
    p.add_argument("--reference-labels", metavar="L", help="label map of REFERENCE (semantic transfer)")
    p.add_argument(
        "--keep-all",
        action="store_true",
        help="hen-ctn: keep the network's output outside the regions too (default: source pixels there)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto …")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harmbench.eval.score import resolve_device
    from harmbench.fileio import atomic_write_bytes
    from harmbench.imaging import binarize, encode_image, read_mask, read_rgb
    from harmbench.transfer import transfer

    device = resolve_device(args.device)
    names = {
        "source": args.source,
        "reference": args.reference or args.source,
        "source_mask": args.source_mask,
        "reference_mask": args.reference_mask,
        "source_labels": args.source_labels,
        "reference_labels": args.reference_labels,
    }
    out = transfer(
        read_rgb(args.source),
        None if args.reference is None else read_rgb(args.reference),
        method=args.method,
        source_mask=None if args.source_mask is None else binarize(read_mask(args.source_mask)),
        reference_mask=None if args.reference_mask is None else binarize(read_mask(args.reference_mask)),
        source_labels=None if args.source_labels is None else read_rgb(args.source_labels),
        reference_labels=None if args.reference_labels is None else read_rgb(args.reference_labels),
        weights=args.weights,
        protocol=args.protocol,
        seed=args.seed,
        options=parse_options(args.options),
        keep_all=args.keep_all,
        device=device,
        names={k: v for k, v in names.items() if v is not None},
    )
    target = Path(args.out)
    fmt = "jpg" if target.suffix.lower() in (".jpg", ".jpeg") else "png"
    atomic_write_bytes(target, encode_image(out, fmt, quality=95))
    print(f"wrote {target} ({out.shape[1]}x{out.shape[0]})")
    return 0
