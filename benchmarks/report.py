"""Markdown tables from the benchmarks' JSON results, so that no figure is typed in by hand.

Each benchmark writes a JSON file with ``--json``; this script turns a folder of them into the
tables of ``benchmarks/README.md`` and of the book's performance page (a test checks that both
pages hold exactly what this script prints for ``benchmarks/results/``).

Usage::

    python benchmarks/report.py benchmarks/results            # print the tables
    python benchmarks/report.py my_results                    # the same for your own run
    python benchmarks/report.py benchmarks/results --update benchmarks/README.md book/performance.md

The files it reads, when present: ``loader*.json``, ``model_step*.json``, ``end_to_end*.json``,
``step_breakdown*.json``, ``fast_backbone*.json``, ``synthetic_auc*.json`` (one table per kind, one block of rows per file, in name order).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from cral_lib.metrics import MEAN_ALL, MEAN_COUNTED, MIN_POSITIVES, class_table


def _fmt(x, spec: str = ",.1f", none: str = "–") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return none
    return format(x, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _load(folder: Path, kind: str) -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted(folder.glob(f"{kind}*.json"))]


def _blocks(results: list[tuple[str, dict]], caption, header: list[str], rows_of) -> str:
    """One small table per result file, under a line naming the file, the machine and the settings."""
    return "\n\n".join(f"`{name}`: {caption(r)}\n\n{_table(header, rows_of(r))}" for name, r in results)


def loader_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        s = r["settings"]
        return (f"{r['machine']['device']}, {s['images']:,} PNGs of {s['png_size'][0]} px, the training transform "
                f"to {s['crop']} px, batch {s['batch_size']}; (a) with {r['per_image']['workers']} DataLoader workers, "
                f"(b) with {r['cache_batched']['best_torch_threads']} torch threads")

    def rows(r):
        return [[_fmt(r["per_image"]["images_per_s"]), _fmt(r["cache_batched"]["images_per_s"]), f"**{r['ratio']:.1f}×**"]]

    return _blocks(results, caption, ["(a) PNG + per-image transforms, img/s", "(b) cache + batched transforms, img/s",
                                      "(b)/(a)"], rows)


def model_step_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        return (f"{r['device']}, torch {r['torch']}, batch {r['batch_size']}, {r['image_size']} px, {r['steps']} timed "
                f"steps after {r['warmup']} warm-up{', torch.compile' if r['compile'] else ''}; vs plain: the rate over "
                "the plain GAP+FC model's; saved: activations kept for backward; Eq. 4 tensor: the B×C×N×h×w tensor "
                "that only the literal head builds; +CL: channels_last")

    def rows(r):
        return [[row["backbone"], row["model"] + (", literal head" if row["head"] == "literal" else ""),
                 row["precision"].replace("bfloat16", "bf16"), _fmt(row["images_per_s"]),
                 _fmt(row.get("vs_plain"), ".2f"), _fmt(row["gflops_per_image"], ".2f"), _fmt(row["saved_mb"], ",.0f"),
                 _fmt(row["literal_tensor_mb"], ",.1f")] for row in r["rows"]]

    return _blocks(results, caption, ["backbone", "model", "precision", "img/s", "vs plain", "GFLOPs", "saved, MiB",
                                      "Eq. 4 tensor, MiB"], rows)


def end_to_end_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        return (f"{r['device']}, torch {r['torch']}, {r['image_size']} px crops of {r['cache_size']} px, batch "
                f"{r['batch_size']}, amp {r['amp']}{', torch.compile' if r['compile'] else ''}")

    def rows(r):
        out = []
        for row in r["rows"]:
            minutes = row["projected_paper_recipe_minutes"]
            projected = f"{minutes:,.0f} min" if minutes < 120 else f"{minutes / 60:,.1f} h"
            out.append([f"{row['backbone']} + {row['attention']}", row["precision"], _fmt(row["model_images_per_s"]),
                        _fmt(row["loop_images_per_s"]), f"**{row['ratio']:.2f}**", projected,
                        _fmt(row["loop_peak_gib"], ".1f")])
        return out

    return _blocks(results, caption, ["model", "precision", "(a) model step, img/s", "(b) training loop, img/s", "b/a",
                                      "30 epochs × 77,872 images at (b)", "peak GPU memory, GiB"], rows)


def step_breakdown_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        return (f"{r['device']}, {r['backbone']} + {r['attention']}, {r['precision']}, {r['image_size']} px crops of "
                f"{r['cache_size']} px, batch {r['batch_size']}, {r['steps']} steps")

    def rows(r):
        ms, share = r["ms_per_step"], r["share"]
        return [[*[f"{ms[k]:,.1f} ({100 * share[k]:.1f}%)" for k in ms], _fmt(r["images_per_s"])]]

    keys = list(results[0][1]["ms_per_step"]) if results else []
    return _blocks(results, caption, [f"{k}, ms" for k in keys] + ["img/s"], rows)


def fast_backbone_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        return (f"{r['device']}, torch {r['torch']}; CRAL att1 training step (AdamW), batch {r['batch_size']}, "
                f"{r['warmup']} warm-up + {r['steps']} timed steps, best of {r.get('rounds', 1)} rounds; "
                f"vs old: the rate over ResNet-18 at 64 px in fp32")

    def rows(r):
        base = next((x["images_per_s"] for x in r["rows"] if x["candidate"] == "resnet18@64"
                     and x["precision"] == "fp32" and x["format"] == "default"), None)
        return [[x["candidate"], f"{x['crop_px']}", x["map"], x["precision"], x["format"], _fmt(x["images_per_s"]),
                 _fmt(x["ms_per_step"], ",.0f"), _fmt(x["images_per_s"] / base if base else None, ".2f"),
                 _fmt(x["gflops_per_image"], ".2f"), _fmt(x["params_m"], ".2f")] for x in r["rows"]]

    return _blocks(results, caption, ["candidate", "crop px", "map", "precision", "memory format", "img/s", "ms/step",
                                      "vs old", "GFLOP/img", "params (M)"], rows)


def synthetic_auc_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        c = r["config"]
        scale = c.get("attention_lr_scale", 1.0)
        att_opt = c.get("attention_optimizer", "same")
        att_opt = "" if att_opt in ("same", c["optimizer"]) else f"{att_opt} "
        att_lr = f" (attention branch {att_opt}lr {c['lr'] * scale:g})" if scale != 1 or att_opt else ""
        data = f"{r['dataset_images']:,}-image synthetic set, " if r.get("dataset_images") else ""
        precision = f", {r['precision']}" if r.get("precision") else ""
        return (f"{r['machine']}; {data}{c['backbone']} + {c['attention']} from random weights, {c['optimizer']} lr "
                f"{c['lr']:g}{att_lr}, {c['image_size']} px crops, batch {c['batch_size']}, {c['epochs']} epochs{precision}; "
                f"{_seeds(r)}, 95% CI: percentile bootstrap over test {r.get('resample', 'images')}")

    def rows(r):
        att = r.get("attention") or {}
        drop = (f"{att['drop']:+.4f} [{att['drop_ci'][0]:+.4f}, {att['drop_ci'][1]:+.4f}]" if att else "–")
        return [[f"{r['test_images']:,}", f"**{_fmt(r['mean_auc'], '.3f')}** [{_fmt(r['ci_low'], '.3f')}, "
                 f"{_fmt(r['ci_high'], '.3f')}]", f"{r['best_epoch']}", f"{r['seconds']['train']:,.0f} s",
                 "x".join(map(str, att["map_size"])) if att else "–", _fmt(att.get("within_map_range"), ".3f"),
                 _fmt(att.get("mean_attention"), ".3f"), drop]]

    table = _blocks(results, caption, ["test images", "test mean AUC, all classes as the paper [95% CI]", "best epoch", "training time", "maps",
                                       "within-map range", "mean attention", "AUC drop with constant maps [95% CI]"],
                    rows)
    return table + "\n\nPer class (test AUC, with the test positives where the file records them): " + "; ".join(
        f"`{name}`: {per_class_line(r)}" for name, r in results)


def attention_optimizer_table(results: list[tuple[str, dict]]) -> str:
    def caption(r):
        c = r["config"]
        return (f"{r['machine']}; {r['dataset_images']:,}-image synthetic set, {r['test_images']:,} test images; the fast "
                f"recipe ({c['backbone']} + {c['attention']} from random weights, the network trained with {c['optimizer']} "
                f"lr {c['lr']:g}, {c['image_size']} px crops, batch {c['batch_size']}, {c['epochs']} epochs, "
                f"{r['precision']}) with the attention branch's optimizer and rate below; {_seeds(r)}; dead units: att1's "
                f"3x3-convolution units never active on a test image; 95% CI: percentile bootstrap over test "
                f"{r.get('resample', 'images')}")

    def rows(r):
        out = []
        for x in r["rows"]:
            att = x["attention"]
            out.append([x["optimizer"], f"{x['branch_lr']:g}", f"{_fmt(x['mean_auc'], '.3f')} [{_fmt(x['ci_low'], '.3f')}, "
                        f"{_fmt(x['ci_high'], '.3f')}]", f"{x['dead_units'][0]}, {x['dead_units'][1]} of {x['units'][0]}",
                        _fmt(100 * x["share_below_0.01"], ".1f"), _fmt(100 * x["share_above_0.99"], ".1f"),
                        _fmt(att["within_map_range"], ".3f"), _fmt(att["between_class_spread"], ".3f"),
                        _fmt(att["mean_attention"], ".3f"),
                        f"{att['drop']:+.4f} [{att['drop_ci'][0]:+.4f}, {att['drop_ci'][1]:+.4f}]"])
        return out

    return _blocks(results, caption, ["branch optimizer", "branch lr", "test mean AUC [95% CI]", "dead units (conv1, conv2)",
                                      "% below 0.01", "% above 0.99", "within-map range", "between-class spread",
                                      "mean attention", "AUC drop with constant maps [95% CI]"], rows)


def _seeds(r: dict) -> str:
    n = int(r.get("training_seeds", 1))
    return f"{n} training seed{'s' if n != 1 else ''}"


def per_class_line(r: dict) -> str:
    """One result's per-class AUCs, with the rule of :func:`cral_lib.metrics.class_table` when it records positives."""
    positives = r.get("per_class_positives")
    if not positives:
        values = " · ".join(f"{c} {_fmt(v, '.2f')}" for c, v in r["per_class"].items())
        return (f"{values} (test positives not recorded in this file, so the classes under {MIN_POSITIVES} cannot be "
                "flagged: rerun `benchmarks/synthetic_auc.py`; the mean of the table above is the paper's, over "
                "every class with an AUC)")
    frame = pd.DataFrame({"auc": pd.Series(r["per_class"], dtype=float),
                          "n_pos": pd.Series(positives, dtype="Int64")})
    ct = class_table(frame)
    cells = [f"{c} {_fmt(row['auc'], '.2f')} ({int(row['n_pos'])}){row['flag']}" for c, row in ct.iloc[:-2].iterrows()]
    return (" · ".join(cells) + f"; {MEAN_COUNTED}: **{_fmt(ct.loc[MEAN_COUNTED, 'auc'], '.3f')}** "
            f"({len(ct.attrs['counted'])} classes); {MEAN_ALL}: {_fmt(ct.loc[MEAN_ALL, 'auc'], '.3f')} (marked: "
            f"includes the flagged classes). In brackets: test positives; {ct.attrs['rule']}")


SECTIONS = {
    "loader": ("Data loader (PNG pipeline versus cache)", loader_table),
    "model_step": ("Model step (random tensors, no data loading)", model_step_table),
    "end_to_end": ("End to end: the training loop versus the model step", end_to_end_table),
    "step_breakdown": ("One training step, part by part", step_breakdown_table),
    "fast_backbone": ("The fast mode's backbone: 7 x 7 maps at the least cost", fast_backbone_table),
    "synthetic_auc": ("Learnability of the synthetic data", synthetic_auc_table),
    "attention_optimizer": ("The attention branch's optimizer and rate", attention_optimizer_table),
}


def report(folder: Path, level: int = 3) -> str:
    """All tables for the JSON files in ``folder``, as Markdown."""
    parts = []
    for kind, (title, render) in SECTIONS.items():
        results = _load(folder, kind)
        if results:
            parts.append(f"{'#' * level} {title}\n\n{render(results)}\n")
    if not parts:
        raise SystemExit(f"no benchmark results (*.json) in {folder}: run the benchmarks with --json first")
    return "\n".join(parts)


START, END = "<!-- benchmark tables: start -->", "<!-- benchmark tables: end -->"


def tables_in(page: str) -> str:
    """The text between the markers of a page (what ``--update`` writes there)."""
    if START not in page or END not in page:
        raise ValueError(f"the page has no {START} ... {END} block")
    return page.split(START, 1)[1].split(END, 1)[0].strip("\n")


def update(path: Path, tables: str) -> None:
    """Replace the block between the markers of ``path`` with ``tables``."""
    page = path.read_text()
    tables_in(page)  # raises when the markers are missing
    head, rest = page.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{tables.strip()}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a folder of benchmark JSON files")
    p.add_argument("--level", type=int, default=3, help="Markdown heading level of the sections (default 3)")
    p.add_argument("--update", nargs="+", type=Path, metavar="PAGE",
                   help=f"write the tables into these Markdown pages, between {START} and {END}")
    args = p.parse_args(argv)
    if not args.folder.is_dir():
        p.error(f"{args.folder} is not a folder; give the folder the benchmarks wrote their --json files to")
    tables = report(args.folder, args.level)
    if not args.update:
        sys.stdout.write(tables)
    for page in args.update or []:
        try:
            update(page, tables)
        except (OSError, ValueError) as err:
            p.error(f"cannot update {page}: {err}")
        print(f"updated {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
