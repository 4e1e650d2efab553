"""Predict the 14 findings of your own chest X-rays with a trained run (or an exported model file).

Reads PNG, JPEG and DICOM files (DICOM needs the optional pydicom: pip install "cral-lib[dicom]");
a folder is searched for them. Each image goes through the run's own preprocessing (the cache's
grey conversion and resize, then the run's test transform). For each image: the 14
probabilities and the findings called positive at the run's thresholds (chosen on the
validation split by `cral evaluate`). Writes OUT/predictions.csv (one row per image, one column
per class, the findings called, and the reason when a file got no prediction) and, with
--heatmaps, one PNG per finding called in OUT/heatmaps/ (attention map and CAM over the image).

A file that cannot be used (not an image, an unreadable DICOM, a lateral film, an image far
from the training images' grey levels) is reported on one line with the reason; the others are
still predicted. Exit status: 0 when every file was predicted, 1 when some were reported, 2 on
bad options.

examples:
  cral predict --run runs/r50_att1 chest.png
  cral predict --run runs/r50_att1 scans/ --out results --heatmaps
  cral predict --model model.pt study.dcm --device cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError

HELP = "the findings of your own images (PNG, JPEG, DICOM) with a trained run, with heatmaps"
ORDER = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders of them")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", "--run-dir", dest="run", help="the run folder written by `cral train`")
    source.add_argument("--model", help="a model file written by `cral export` (instead of --run)")
    parser.add_argument("--out", default="predictions", help="folder for predictions.csv and heatmaps/ "
                                                              "(default: predictions)")
    parser.add_argument("--checkpoint", default="best", help="with --run: best, last, or a checkpoint file "
                                                              "(default: best)")
    parser.add_argument("--heatmaps", action="store_true", help="one PNG per finding called: attention map and CAM")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: the run's)")
    parser.add_argument("--no-checks", action="store_true",
                        help="predict lateral films and images far from the training intensities anyway")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _table(frame, classes) -> list[str]:
    """The short table printed: each image with its findings called, or its most probable finding."""
    width = min(40, max([len(Path(n).name) for n in frame["image"]] + [5]))
    lines = [f"{'image':<{width}}  findings called (probability)"]
    for row in frame.itertuples(index=False):
        name = Path(row.image).name[:width]
        if row.error:
            lines.append(f"{name:<{width}}  not predicted: {row.error.split(':')[0]}")
            continue
        probs = {c: getattr(row, c) for c in classes}
        found = [f for f in row.findings.split(";") if f]
        if found:
            text = ", ".join(f"{f} {probs[f]:.3f}" for f in found)
        else:
            top = max(probs, key=probs.get)
            text = f"none (most probable: {top} {probs[top]:.3f})"
        lines.append(f"{name:<{width}}  {text}")
    return lines


def run(args: argparse.Namespace) -> int:
    # torch, pandas and the model load when the command runs, not when `cral --help` builds the parser
    import warnings

    from ..inference import Predictor, write_heatmaps

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder for predictions.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.model:
            predictor = Predictor.from_file(args.model, device=args.device, batch_size=args.batch_size)
        else:
            predictor = Predictor.from_run(args.run, args.checkpoint, device=args.device, batch_size=args.batch_size)
    for w in caught:
        print(f"cral predict: note: {w.message}", file=sys.stderr)
    frame = predictor.predict(args.images, checks=not args.no_checks, progress=not args.no_progress)
    if frame.empty:
        raise ConfigError(f"no PNG, JPEG or DICOM file found in {' '.join(args.images)}")
    for row in frame.itertuples(index=False):
        if row.error:
            print(f"cral predict: {row.image}: {row.error}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    from .._io import atomic_write_text  # light; here beside the other writes

    atomic_write_text(out / "predictions.csv", frame.to_csv(index=False, float_format="%.6f"))
    print("\n".join(_table(frame, predictor.classes)))
    bad = int((frame["error"] != "").sum())
    done = len(frame) - bad
    rule = predictor.info.get("threshold_rule")
    print(f"\npredicted {done} of {len(frame)} images"
          + (f"; findings called at the thresholds chosen on the validation split ({rule})" if rule else "")
          + f"; wrote {out / 'predictions.csv'}")
    if args.heatmaps:
        written = write_heatmaps(predictor, frame, out / "heatmaps")
        print(f"wrote {len(written)} heatmaps (one per finding called) into {out / 'heatmaps'}")
    return 1 if bad else 0
