"""The book's editions: the profiles, the plan, the digests, the metadata and the banners.

``tools/book.py execute --profile full`` and ``tools/book.py build --from-executed DIR`` use it;
it has no state and writes nothing itself, so that its pieces can be tested one by one.

- The **fast** profile is what every chapter's parameters cell holds (minutes on a CPU, on the
  book's 10,000-image synthetic set, ``BOOK_DATA`` of tools/book.py): nothing is written here.
- The **full** profile is :data:`FULL`, chapter by chapter: the values that take each parameters
  cell to the paper's scale (ResNet-50 at 224 px of a 256 px cache, batch 64, 30 epochs, SGD,
  ImageNet weights: ``paper_recipe``; att1 in chapters 6, 7, 9 to 11; att1, att2 and the
  ablations in chapter 8), on a real release folder or on :data:`FULL_DATA`.
  DenseNet-121 is the same profile with ``--param backbone=densenet121`` (a second edition; it
  may share the runs folder, its runs have folders of their own).
- :data:`SHRINK` (``--shrink``, for tests only) is the full profile's code path on a tiny set,
  one epoch, the book's small backbone and random weights.

``python tools/book.py profiles`` prints the two profiles side by side (editions/README.md
holds that table; a test checks that it is up to date).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: A parameter value that stands for this machine's CPU core count (resolved at execution).
ALL_CORES = "<all CPU cores>"

#: The synthetic set of the full profile when no --data is given (`cral synth --images 20000`):
#: about 18% of ChestX-ray14, the size benchmarks/run_all.sh measures on a GPU.
FULL_DATA = {"n_images": 20000, "image_size": 256, "seed": 0}

#: The full profile: what each chapter's parameters cell changes to run at the paper's scale.
#: A parameter not named here keeps the cell's value (which is the paper's where the cell
#: says "full scale: the same"). In the chapters with a ``recipe``, ``recipe="paper"`` makes
#: every training knob left at None the paper's (``paper_recipe``: resnet50, imagenet, 224 px
#: crops of a 256 px cache, batch 64, 30 epochs, SGD lr 0.01 / 10 after epoch 20).
FULL: dict[str, dict[str, Any]] = {
    "01_dataset": {},
    "02_data_pipeline": {"timing_images": 2000, "png_workers": ALL_CORES},
    "03_features": {"image_size": 224},
    "04_att1": {"backbone": "resnet50", "weights": "imagenet", "image_size": 224},
    "05_att2": {"backbone": "resnet50", "weights": "imagenet", "image_size": 224, "batch_size": 64},
    "06_training": {"recipe": "paper", "checkpoint_every_steps": 200},
    "07_evaluation": {"recipe": "paper"},
    "08_ablations": {"recipe": "paper"},
    "09_visualization": {"recipe": "paper"},
    "10_localization": {"recipe": "paper"},
    "11_using_a_model": {"recipe": "paper"},
}

#: For tests only (``--shrink``): the synthetic set and the values laid over the full profile,
#: in every chapter that has the parameter, so that its code path runs in seconds on a CPU.
SHRINK_DATA = {"n_images": 240, "image_size": 64, "seed": 0}
SHRINK: dict[str, Any] = {
    "backbone": "small_resnet", "image_size": 64, "cache_size": 64, "crop_size": 64, "batch_size": 8,
    "epochs": 1, "checkpoint_every_steps": 4, "n_boot": 20, "timing_images": 16, "n_crop_draws": 500,
    "big_png_images": 0, "png_workers": 1, "seeds": [0], "attentions": ["att1"],
}
#: Chapters whose backbone the shrink keeps (chapter 3 draws the paper's networks' features).
SHRINK_KEEPS_BACKBONE = ("03_features",)

PROFILES = ("fast", "full")


# ----------------------------------------------------------------------------- parameters


def cell_parameters(ipynb: Path) -> dict[str, Any]:
    """The parameters a chapter's ``parameters`` cell defines, with their (fast) values."""
    nb = json.loads(Path(ipynb).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    source = "".join(cells[0]["source"])
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def chapter_parameters(stem: str, cell: dict[str, Any], profile: str, *, weights: str = "imagenet",
                       shrink: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters papermill gives one chapter: the profile's, then ``--param``'s.

    Only parameters the chapter's cell defines are given. With ``weights="none"`` every chapter
    that has ``weights`` starts from random weights (``"none"`` for a recipe, None otherwise).
    """
    params: dict[str, Any] = dict(FULL.get(stem, {})) if profile == "full" else {}
    if shrink:
        params.update({k: v for k, v in SHRINK.items()
                       if not (k == "backbone" and stem in SHRINK_KEEPS_BACKBONE)})
    if weights == "none" and "weights" in cell:
        params["weights"] = "none" if "recipe" in cell else None
    params.update(overrides or {})
    params = {k: ((os.cpu_count() or 1) if v == ALL_CORES else v) for k, v in params.items() if k in cell}
    return params


def profile_table(sources: list[Path]) -> str:
    """The two profiles side by side, chapter by chapter, as markdown (``tools/book.py profiles``)."""
    from cral_lib.train.config import fast_recipe, paper_recipe

    lines = ["| chapter | parameter | fast (the parameters cell) | full |", "|---|---|---|---|"]
    for src in sources:
        cell = cell_parameters(src.with_suffix(".ipynb"))
        full = FULL.get(src.stem, {})
        changed = [k for k in cell if k in full and full[k] != cell[k]]
        if not changed:
            lines.append(f"| {src.stem} | (none) | the cell's values | the same |")
        for i, name in enumerate(changed):
            shown = FULL[src.stem][name]
            lines.append(f"| {src.stem if i == 0 else ''} | `{name}` | `{cell[name]!r}` | `{shown!r}` |")
    fast, paper = fast_recipe().to_dict(), paper_recipe().to_dict()
    lines += ["", "The two recipes (`fast_recipe` and `paper_recipe` of cral_lib/train/config.py), the fields "
              "in which they differ:", "", "| field | fast | full (paper) |", "|---|---|---|"]
    lines += [f"| `{k}` | `{fast[k]!r}` | `{paper[k]!r}` |" for k in fast if fast[k] != paper[k]]
    lines += ["", "Chapter 8's grid trains the fast recipe with `ABLATION_FAST` of cral_lib/book.py on top "
              "(fewer epochs, a subset of the images), and chapter 10's baseline with `BASELINE_FAST` (a subset "
              "of the images); with the paper's recipe both train the recipe as it is, so chapter 10's baseline "
              "is then chapter 8's \"w/o attention\" run."]
    lines += ["", f"Data: fast, the book's synthetic set (`BOOK_DATA` of tools/book.py); full, `--data DIR` "
              f"(a release folder) or `cral synth` with {FULL_DATA}."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- runs


def _grid(attentions: list[str]) -> list[tuple[str, str]]:
    grid = [(att, var) for att in attentions for var in ("cral", "no_category", "no_residual")]
    return grid + [("none", "no_attention")]


def chapter_runs(stem: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``book.recipe`` calls a chapter makes to get its training runs, from its parameter values.

    ``values`` is the cell's values with the chapter's parameters on top. The knobs a chapter
    passes are the parameters that are fields of TrainConfig (as its cells do); chapter 8 trains
    its grid over each of its ``seeds``, chapter 10 chapter 6's run and its own baseline (in the
    paper's recipe, chapter 8's baseline of the first seed).
    """
    from cral_lib.train.config import TrainConfig

    if "recipe" not in values:
        return []
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data_dir", "device", "out_dir"}
    knobs = {k: v for k, v in values.items() if k in fields}
    base = {"name": values["recipe"], **knobs}
    if stem.startswith("08_"):
        seeds = list(values.get("seeds") or [knobs.get("seed", 0)])
        return [{**base, "ablation": True, "attention": a, "variant": v, "seed": s}
                for a, v in _grid(list(values["attentions"])) for s in seeds]
    if stem.startswith("10_"):
        return [base, {**base, "baseline": True, "attention": "none", "variant": "no_attention"}]
    return [base]


def run_state(run_dir: Path, epochs: int) -> tuple[str, int]:
    """(``done`` | ``partial`` | ``new``, epochs finished) of a run folder."""
    log = run_dir / "metrics.jsonl"
    done = len([ln for ln in log.read_text().splitlines() if ln.strip()]) if log.exists() else 0
    if done >= epochs:
        return "done", done
    if done or (run_dir / "checkpoints" / "last.pt").exists():
        return "partial", done
    return "new", done


def run_fingerprint(run_dir: Path) -> str:
    """What a chapter saw of a run: its metrics log, which changes exactly when the run trains.

    (Its config is in the folder's name; ``config.yaml`` itself is rewritten by every chapter that
    resumes the run with its own resumable fields, so it does not count.)
    """
    log = run_dir / "metrics.jsonl"
    return hashlib.sha256(log.read_bytes() if log.exists() else b"-").hexdigest()[:16]


# ----------------------------------------------------------------------------- the machine and the data


def device_name() -> str:
    """The GPU's name, or the CPU's, as the benchmarks write it into their results."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def data_description(data_dir: Path) -> dict[str, Any]:
    """Real or synthetic, how many images, and where (for the plan, the manifest, the banners)."""
    marker = data_dir / "SYNTHETIC.json"
    lists = {}
    for name in ("train_val_list.txt", "test_list.txt"):
        path = data_dir / name
        lists[name] = len([ln for ln in path.read_text().split() if ln]) if path.exists() else None
    out: dict[str, Any] = {"path": str(data_dir), "train_val": lists["train_val_list.txt"],
                           "test": lists["test_list.txt"]}
    if marker.exists():
        meta = json.loads(marker.read_text())
        out.update(kind="synthetic", images=meta.get("n_images"), size=meta.get("image_size"),
                   seed=meta.get("seed"), generator=meta.get("generator"))
    else:
        out.update(kind="real", images=(lists["train_val_list.txt"] or 0) + (lists["test_list.txt"] or 0) or None)
    return out


def describe_data(data: dict[str, Any]) -> str:
    n = f"{data['images']:,}" if data.get("images") else "an unknown number of"
    if data["kind"] == "synthetic":
        return f"synthetic (`cral synth`), {n} images at {data.get('size')} px"
    return f"real ChestX-ray14, {n} images"


# ----------------------------------------------------------------------------- the measured rates


def _rows(results_dir: Path) -> list[dict[str, Any]]:
    """Every training-rate row of the benchmark results: end_to_end's and model_step's."""
    rows = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or "image_size" not in data:
            continue
        for row in data["rows"]:
            if "loop_images_per_s" in row:
                kind, rate = "end_to_end", row["loop_images_per_s"]
                attention = row.get("attention")
                val = row.get("loop_val_images_per_s")
            elif "images_per_s" in row and "model" in row:
                kind, rate, val = "model_step", row["images_per_s"], None
                if row.get("head") == "literal":
                    continue  # the slow reference head, not what training runs
                model = row["model"]
                attention = "none" if model.startswith("plain") else model.split()[-1]
            else:
                continue
            if not rate:
                continue
            rows.append({"file": path, "kind": kind, "device": data.get("device", ""), "backbone": row.get("backbone"),
                         "attention": attention, "precision": row.get("precision"), "image_size": data["image_size"],
                         "batch_size": data.get("batch_size"), "rate": float(rate),
                         "val_rate": float(val) if val else None})
    return rows


def _same_device(a: str, b: str) -> bool:
    return a == b or (a.startswith("CPU (") and b.startswith("CPU (") and a.split(",")[0] == b.split(",")[0])


def measured_rate(results_dir: Path, device: str, backbone: str, attention: str, image_size: int,
                  precision: str) -> dict[str, Any] | None:
    """The best-matching measured training rate (img/s) of this model on this device, or None.

    Only rows measured on this device (a GPU by its name; a CPU by its architecture) and for this
    backbone and crop size count; among them the end-to-end loop beats the bare model step, the
    same attention branch and precision beat another.
    """
    rows = [r for r in _rows(results_dir) if _same_device(r["device"], device) and r["backbone"] == backbone
            and r["image_size"] == image_size]
    if not rows:
        return None
    return max(rows, key=lambda r: (r["attention"] == attention, r["kind"] == "end_to_end",
                                    r["precision"] == precision, r["rate"]))


def wanted_precision(device: str, amp: str) -> str:
    """The precision name (as the benchmarks write it) a run with ``amp`` gets on ``device``."""
    if amp == "off" or device.startswith("CPU ("):
        return "fp32"
    if amp in ("bf16", "fp16"):
        return {"bf16": "bfloat16", "fp16": "float16"}[amp]
    from cral_lib.device import native_bf16

    return "bfloat16" if native_bf16("cuda") else "float16"


# ----------------------------------------------------------------------------- digests and metadata


def digest(source: Path, params: dict[str, Any], context: dict[str, Any], runs: dict[str, str]) -> str:
    """One chapter's inputs: its source, its parameters, the profile and data, and the runs it used."""
    blob = json.dumps({"source": source.read_text(), "params": params, "context": context, "runs": runs},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def stamp(ipynb: Path, meta: dict[str, Any]) -> None:
    """Store the edition's metadata in an executed notebook (``metadata.cral_edition``)."""
    import nbformat

    nb = nbformat.read(ipynb, as_version=4)
    nb.metadata["cral_edition"] = meta
    tmp = ipynb.with_name(ipynb.name + ".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, ipynb)


def stored(ipynb: Path) -> dict[str, Any] | None:
    """The edition metadata of an executed notebook, or None (not executed, or cut short)."""
    try:
        return json.loads(ipynb.read_text()).get("metadata", {}).get("cral_edition")
    except (OSError, ValueError):
        return None


def banner(meta: dict[str, Any], what: str = "This page") -> str:
    """The admonition at the top of every page of an edition: profile, data, GPU, date, weights."""
    dates = meta.get("dates") or [meta["date"]]
    date = dates[0][:10] if dates[0][:10] == dates[-1][:10] else f"{dates[0][:10]} to {dates[-1][:10]}"
    profile = {"full": "full (the paper's parameters)", "fast": "fast (minutes on a CPU)"}[meta["profile"]]
    if meta.get("shrink"):
        profile += ", shrunk to tiny sizes for a test"
    gpu = meta["device"] if not meta["device"].startswith("CPU (") else f"none, executed on a {meta['device']}"
    lines = [f"{what} shows outputs of the **{profile}** edition of the book.", "",
             f"- data: {describe_data(meta['data'])}", f"- GPU: {gpu}", f"- outputs made: {date} (UTC)"]
    if meta.get("weights") == "none":
        lines.append("- the backbones started from **random weights** (`--weights none`), not from the "
                     "ImageNet weights of the paper")
    else:
        lines.append("- the backbones started from their ImageNet weights, as in the paper")
    kind = "warning" if meta.get("weights") == "none" or meta.get("shrink") else "note"
    return "\n".join([":::{admonition} This edition", f":class: {kind}", *lines, ":::"])


__all__ = ["ALL_CORES", "FULL", "FULL_DATA", "PROFILES", "SHRINK", "SHRINK_DATA", "banner", "cell_parameters",
           "chapter_parameters", "chapter_runs", "data_description", "describe_data", "device_name", "digest",
           "measured_rate", "now", "profile_table", "run_fingerprint", "run_state", "stamp", "stored",
           "wanted_precision"]
