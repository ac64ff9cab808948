"""Command line prediction: ``python -m core.predict --checkpoint PATH IMAGE [IMAGE ...]``.

One JSON object per image on stdout: ``image``, ``label``, ``confidence``, ``probabilities`` and
``mirror_average`` (the net read the photo with its mirror image, see
:attr:`core.checkpoint.Checkpoint.mirror_average`). An image that cannot be read gives ``{"image", "error"}`` and
exit status 1 once the others are done; a bad checkpoint gives a one-line message on stderr and
exit status 2.

With ``--explain OUTDIR`` each image also gets ``OUTDIR/<image stem>.gradcam.png``, the heat map
of where the net looked for its answer drawn over what the net saw (Grad-CAM; for the MLP, which
has no conv layer, an input-gradient saliency map), and its JSON line gains ``"gradcam"`` (the
PNG's path) and ``"method"``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from core.inference import predict_image
from core.preprocess import ImageError

# Side of the written heat map: a 64-px net input blown up 4× stays readable next to the photo.
EXPLAIN_SIDE = 256


def _png_path(outdir: Path, image: str, used: set[Path]) -> Path:
    """OUTDIR/<stem>.gradcam.png; a second image with the same stem in one run gets <stem>-2…"""
    stem = Path(image).stem or "image"
    path, n = outdir / f"{stem}.gradcam.png", 1
    while path in used:
        n += 1
        path = outdir / f"{stem}-{n}.gradcam.png"
    used.add(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint saved by TorchLab")
    p.add_argument("--explain", metavar="OUTDIR", default=None,
                   help="also write OUTDIR/<image stem>.gradcam.png: where the net looked (Grad-CAM) over what it saw")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outdir: Path | None = None
    if args.explain is not None:
        outdir = Path(args.explain)
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"error: cannot create the --explain folder {outdir}: {e.strerror or e}; "
                  "give a folder you can write to", file=sys.stderr)
            return 2
    used: set[Path] = set()
    status = 0
    for path in args.images:
        try:
            if outdir is None:
                result = {"image": path, **predict_image(ckpt, path).to_dict()}
            else:
                result = {"image": path, **_explained(ckpt, path, _png_path(outdir, path, used))}
        except (ImageError, OSError) as e:
            result, status = {"image": path, "error": str(e)}, 1
        print(json.dumps(result), flush=True)
    return status


def _explained(ckpt: Checkpoint, image: str, png: Path) -> dict[str, object]:
    """The prediction of one image plus its heat map written to ``png``."""
    from core.explain import explain, save_png  # only --explain pays for the import

    exp = explain(ckpt, image)
    side = max(EXPLAIN_SIDE, exp.heatmap.shape[0])
    save_png(png, exp.overlay(opacity=0.5, size=side))
    return {**exp.prediction.to_dict(), "gradcam": str(png), "method": exp.method}


if __name__ == "__main__":
    sys.exit(main())
