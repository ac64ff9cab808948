"""Command line prediction: ``python -m core.predict --checkpoint PATH IMAGE [IMAGE ...]``.

One JSON object per image on stdout. An image that cannot be read gives ``{"image", "error"}`` and
exit status 1 once the others are done; a bad checkpoint gives a one-line message on stderr and
exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.checkpoint import CheckpointError, load_checkpoint
from core.inference import predict_image
from core.preprocess import ImageError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint saved by TorchLab")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    for path in args.images:
        try:
            result = {"image": path, **predict_image(ckpt, path).to_dict()}
        except (ImageError, OSError) as e:
            result, status = {"image": path, "error": str(e)}, 1
        print(json.dumps(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
