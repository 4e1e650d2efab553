"""A synthetic ChestX-ray14 in the exact layout of the NIH release.

The real dataset (42 GB) cannot ship with the book, yet every notebook, test and CI run must
go through the code path that reads the real one. :func:`make_synthetic` (``cral synth``)
writes a folder that the reader cannot tell from a real download:

```
DIR/
  Data_Entry_2017_v2020.csv      every column of the real header, one row per image
  train_val_list.txt             the official-style, patient-disjoint split
  test_list.txt
  BBox_List_2017.csv             header "Image Index,Finding Label,Bbox [x,y,w,h],,,"
  images_001/images/*.png        the first 4,999 images (as NIH's first archive)
  images_002/images/*.png        then 10,000 per folder
  ...
  SYNTHETIC.json                 the parameters; "complete": true is written last
```

What is real and what is not:

- **Rows are real.** Whole real patients are sampled from the real metadata
  (:func:`cral_lib.data.nih_metadata`) with all their images, so labels, their co-occurrence
  and prevalence, follow-up structure, views, ages and sexes follow the real distribution in
  expectation. The last patient drawn for a split may be cut to its first follow-ups so that
  the counts come out exact.
- **Patients are renumbered** from 90,000,001 upwards (the real ones are 1-30,805), so that no
  synthetic image poses as a real one. Image names keep NIH's pattern ``PPPPPPPP_FFF.png``
  (patient, follow-up). ``OriginalImage[Width,Height]`` and ``OriginalImagePixelSpacing[x,y]``
  are copied from the real image a row was drawn from (they describe a scanner image, not the
  PNG, as in the real release).
- **The split is patient-disjoint in the official proportions**: test patients are drawn
  first until ``round(n * 25,596 / 112,120)`` images, then train_val patients for the rest
  (86,524 / 25,596 of 112,120 in the release).
- **Images are phantoms** (:mod:`cral_lib.data.phantom`): each label has a visual signature at
  an anatomically sensible place; a patient's images share their anatomy and a finding stays
  where it was on a follow-up.
- **Boxes** are written for every image with a localized finding (all classes but Edema and
  Emphysema), one per image and finding, in the PNG's pixel frame, with NIH's spelling
  ``Infiltrate`` for Infiltration. (The real list has 984 boxes on 880 images of 8 classes.)

Determinism: the same ``n_images``, ``image_size`` and ``seed`` give the same bytes, whatever
``workers`` is: each image is drawn from generators seeded by ``(seed, image number)`` and
``(seed, patient)``.

Safety: :func:`make_synthetic` never overwrites what a user made. It writes into an empty (or
new) folder; reuses a complete dataset made with the same parameters at once; resumes one that
was interrupted; and refuses anything else unless ``overwrite=True`` (``--overwrite``), which
deletes only the release's own files and folders. It never overwrites a folder that looks like
a real release. Two processes asking for the same folder at once take turns (a lock on the
folder on POSIX systems).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .._io import atomic_write_text, default_workers, worker_context
from .._version import __version__
from ..errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import pandas as pd

#: The version of the synthetic dataset's content; bumped when the same parameters would
#: give different files (it is part of the parameters a complete dataset must match).
SYNTH_VERSION = 1

#: The marker file; ``"complete": true`` is written into it last.
MARKER = "SYNTHETIC.json"
#: Names of the release files, as NIH writes them.
DATA_ENTRY = "Data_Entry_2017_v2020.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_LIST = "BBox_List_2017.csv"
#: Where an unfinished generation keeps the boxes of the images it has written.
PARTS = ".synthetic-parts"

#: Images in NIH's first archive (``images_001``) and in each later one.
FIRST_FOLDER_IMAGES = 4999
FOLDER_IMAGES = 10000
#: The official split of the release.
OFFICIAL_TRAIN_VAL = 86524
OFFICIAL_TEST = 25596
OFFICIAL_TOTAL = OFFICIAL_TRAIN_VAL + OFFICIAL_TEST
#: Synthetic patient numbers start above this (real ones end at 30,805).
PATIENT_OFFSET = 90_000_000

#: Image sides and counts that :func:`make_synthetic` accepts.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 4096
MAX_IMAGES = OFFICIAL_TOTAL

_FOLDER_RE = re.compile(r"^images_\d{3}$")
_SAMPLE_STREAM = 101  # seed-sequence stream of the patient sampling (distinct from phantom's)
_PNG_COMPRESS_LEVEL = 3


# --------------------------------------------------------------------------------------
# Validation and small helpers
# --------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, lo: int, hi: int | None, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer {hint}, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be {hint}, got {value}")
    return value


def _check_params(n_images: Any, image_size: Any, seed: Any) -> tuple[int, int, int]:
    n = _check_int("n_images (--images)", n_images, 1, MAX_IMAGES, f"from 1 to {MAX_IMAGES:,}")
    size = _check_int(
        "image_size (--size)", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
        f"from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels",
    )
    seed = _check_int("seed (--seed)", seed, 0, 2**63 - 1, "from 0 upwards")
    return n, size, seed


def image_folder(position: int) -> str:
    """Return the archive folder (``images_NNN``) of the image at ``position`` (0-based).

    NIH's first archive holds 4,999 images and each later one 10,000.

    Args:
        position: the image's row in ``Data_Entry`` (0-based).

    Returns:
        The folder name, e.g. ``"images_001"``.
    """
    if position < FIRST_FOLDER_IMAGES:
        return "images_001"
    return f"images_{2 + (position - FIRST_FOLDER_IMAGES) // FOLDER_IMAGES:03d}"


def _parameters(n: int, size: int, seed: int) -> dict[str, int]:
    return {"n_images": n, "image_size": size, "seed": seed, "version": SYNTH_VERSION}


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(root: Path, params: dict[str, int], complete: bool, **extra: Any) -> None:
    data = {
        "generator": "cral_lib.data.synth.make_synthetic",
        "cral_lib": __version__,
        **params,
        **extra,
        "complete": complete,
    }
    atomic_write_text(root / MARKER, json.dumps(data, indent=2) + "\n")


def _release_files_present(root: Path) -> bool:
    return all((root / name).is_file() for name in (DATA_ENTRY, TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST))


def is_synthetic_complete(root: str | os.PathLike, n_images: int, image_size: int, seed: int) -> bool:
    """Tell whether ``root`` holds a complete synthetic dataset made with these parameters.

    Checks the marker (``SYNTHETIC.json``: same parameters, same generator version,
    ``complete: true``), the four release files and the last image. It does not read every
    image (use the reader for that).

    Args:
        root: the folder.
        n_images: number of images asked for.
        image_size: image side asked for.
        seed: seed asked for.

    Returns:
        True when the folder can be used as it is.
    """
    root = Path(root).expanduser()
    marker = _read_marker(root)
    if not marker or marker.get("complete") is not True:
        return False
    try:
        params = _parameters(int(n_images), int(image_size), int(seed))
    except (TypeError, ValueError):
        return False
    if any(marker.get(k) != v for k, v in params.items()):
        return False
    if not _release_files_present(root):
        return False
    last = marker.get("last_image")
    return bool(last) and (root / last).is_file()


@contextmanager
def _folder_lock(root: Path, progress: bool) -> Iterator[None]:
    """Hold an exclusive lock on the folder (POSIX ``flock``); no-op where unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"waiting for another process that is writing {root} ...", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # pragma: no cover - a file system without locks (some NFS)
            pass
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _owned_entries(root: Path) -> list[Path]:
    """The entries of ``root`` that a synthetic release consists of."""
    names = {MARKER, PARTS, DATA_ENTRY, "Data_Entry_2017.csv", TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST}
    return [p for p in root.iterdir() if p.name in names or (p.is_dir() and _FOLDER_RE.match(p.name))]


def _visible_entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(f".{MARKER}.tmp"))


# --------------------------------------------------------------------------------------
# The rows: whole real patients, renumbered, in a patient-disjoint split
# --------------------------------------------------------------------------------------


def split_counts(n_images: int) -> tuple[int, int]:
    """Return ``(train_val, test)`` image counts for ``n_images`` in the official proportions.

    Args:
        n_images: total number of images.

    Returns:
        The two counts; ``test = round(n_images * 25,596 / 112,120)``.
    """
    test = int(round(n_images * OFFICIAL_TEST / OFFICIAL_TOTAL))
    return n_images - test, test


def synthetic_metadata(n_images: int, seed: int = 0) -> "pd.DataFrame":
    """Draw the rows of a synthetic release: real patients, renumbered, split by patient.

    Real patients are taken in a random order (seeded by ``seed``) with all their images:
    first for the test split until it holds ``round(n * 25,596 / 112,120)`` images, then for
    train_val until ``n`` is reached; the last patient of each split may be cut to its first
    follow-ups so that the counts are exact. Patients are then numbered from 90,000,001 in a
    random order and the rows sorted by image name, as in the release.

    Args:
        n_images: number of rows (1 to 112,120).
        seed: the dataset seed.

    Returns:
        A DataFrame with the columns of :data:`cral_lib.data.metadata.DATA_ENTRY_COLUMNS` plus
        ``split`` (``"train_val"`` or ``"test"``) and ``folder`` (``images_NNN``), one row per
        image, in file order.

    Raises:
        ConfigError: ``n_images`` or ``seed`` out of range.
    """
    import numpy as np

    from .metadata import nih_metadata

    n, _, seed = _check_params(n_images, MIN_IMAGE_SIZE, seed)
    meta = nih_metadata().sort_values(["Patient ID", "Follow-up #"], kind="stable").reset_index(drop=True)
    pids = meta["Patient ID"].to_numpy()
    starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]])
    counts = np.diff(np.r_[starts, len(pids)])
    rng = np.random.default_rng([seed, _SAMPLE_STREAM])
    order = rng.permutation(len(starts))
    n_train_val, n_test = split_counts(n)

    picks: list[tuple[int, int, str]] = []  # (patient position, images taken, split)
    pos = 0
    for split, budget in (("test", n_test), ("train_val", n_train_val)):
        while budget > 0:
            p = int(order[pos])
            pos += 1
            take = int(min(counts[p], budget))
            picks.append((p, take, split))
            budget -= take
    numbers = rng.permutation(len(picks)) + PATIENT_OFFSET + 1
    rows, splits, new_ids = [], [], []
    for (p, take, split), number in zip(picks, numbers):
        rows.append(np.arange(starts[p], starts[p] + take))
        splits += [split] * take
        new_ids += [int(number)] * take
    frame = meta.iloc[np.concatenate(rows)].reset_index(drop=True)
    frame["Patient ID"] = np.asarray(new_ids, dtype=np.int64)
    frame["split"] = splits
    frame["Image Index"] = [
        f"{pid:08d}_{fu:03d}.png" for pid, fu in zip(frame["Patient ID"], frame["Follow-up #"])
    ]
    frame = frame.sort_values("Image Index", kind="stable").reset_index(drop=True)
    frame["folder"] = [image_folder(i) for i in range(len(frame))]
    return frame


# --------------------------------------------------------------------------------------
# Rendering (in worker processes)
# --------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(templates, root: str, size: int, seed: int) -> None:
    _WORKER.update(templates=templates, root=root, size=size, seed=seed)


def _render_chunk(tasks: list[tuple]) -> list[tuple[int, str, float, float, float, float]]:
    """Draw and write the images of one chunk; return their boxes."""
    from PIL import Image

    from .phantom import make_phantom

    root, size, seed = Path(_WORKER["root"]), _WORKER["size"], _WORKER["seed"]
    boxes = []
    for index, relpath, labels, view, sex, age, patient in tasks:
        ph = make_phantom(
            labels, size=size, view=view, sex=sex, age=age, seed=seed, image_id=index,
            patient_id=patient, templates=_WORKER["templates"],
        )
        path = root / relpath
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(ph.image, mode="L").save(tmp, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        os.replace(tmp, path)
        for label, (x, y, w, h) in ph.boxes.items():
            boxes.append((index, label, x, y, w, h))
    return boxes


def _chunk_size(n: int) -> int:
    return max(25, math.ceil(n / 400))


# --------------------------------------------------------------------------------------
# Writing the release files
# --------------------------------------------------------------------------------------


def _data_entry_text(frame) -> str:
    from .metadata import DATA_ENTRY_COLUMNS, DATA_ENTRY_HEADER

    body = frame.loc[:, list(DATA_ENTRY_COLUMNS)].to_csv(index=False, header=False, lineterminator="\n")
    return DATA_ENTRY_HEADER + "\n" + body


def _bbox_text(frame, boxes: list[tuple]) -> str:
    from .metadata import BBOX_HEADER, BOX_LABEL_ALIASES

    to_nih = {v: k for k, v in BOX_LABEL_ALIASES.items()}
    names = frame["Image Index"].tolist()
    lines = [BBOX_HEADER]
    for index, label, x, y, w, h in sorted(boxes, key=lambda b: (b[0], _class_rank(b[1]))):
        values = ",".join(repr(float(v)) for v in (x, y, w, h))
        lines.append(f"{names[index]},{to_nih.get(label, label)},{values},,,")
    return "\n".join(lines) + "\n"


def _class_rank(label: str) -> int:
    from .. import CLASSES

    return CLASSES.index(label)


def _load_parts(parts: Path, chunks: list[tuple[int, int]]) -> dict[int, list[tuple]]:
    done: dict[int, list[tuple]] = {}
    for start, stop in chunks:
        path = parts / f"boxes-{start:06d}-{stop:06d}.json"
        try:
            done[start] = [tuple(b) for b in json.loads(path.read_text())]
        except (OSError, ValueError):
            continue
    return done


# --------------------------------------------------------------------------------------
# The public entry points
# --------------------------------------------------------------------------------------


def _prepare_folder(root: Path, params: dict[str, int], overwrite: bool) -> bool:
    """Decide what to do with ``root`` (locked). Returns True when a generation can resume."""
    entries = _visible_entries(root)
    if not entries:
        return False
    marker = _read_marker(root)
    if marker is not None and marker.get("generator", "").startswith("cral_lib.data.synth"):
        same = all(marker.get(k) == v for k, v in params.items())
        if same and not overwrite:
            return True  # an interrupted generation with the same parameters: resume it
        if not overwrite:
            made = ", ".join(f"{k}={marker.get(k)}" for k in ("n_images", "image_size", "seed", "version"))
            raise DataError(
                f"{root} holds a synthetic dataset made with other parameters ({made}); "
                "choose another folder, or pass overwrite=True (cral synth --overwrite) to replace it"
            )
    else:
        if (root / DATA_ENTRY).exists() or (root / "Data_Entry_2017.csv").exists():
            raise DataError(
                f"{root} looks like a ChestX-ray14 release (it has a Data_Entry CSV and no "
                f"{MARKER}); refusing to write a synthetic dataset over it, even with overwrite. "
                "Choose another folder"
            )
        if not overwrite:
            shown = ", ".join(repr(p.name) for p in entries[:3]) + (" ..." if len(entries) > 3 else "")
            raise DataError(
                f"{root} is not empty ({shown}) and holds no synthetic dataset; choose an empty "
                "or new folder, or pass overwrite=True (cral synth --overwrite) to write the "
                "synthetic release's files into it"
            )
    for path in _owned_entries(root):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return False


def make_synthetic(
    root: str | os.PathLike,
    n_images: int = 1000,
    image_size: int = 1024,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic ChestX-ray14 in the exact release layout (``cral synth``).

    See the module documentation for the layout and what is real in it. The same
    ``n_images``, ``image_size`` and ``seed`` give the same files, byte for byte, whatever
    ``workers`` is.

    Args:
        root: the folder to write (created if needed). It must be empty or new, or hold a
            synthetic dataset made with the same parameters (then it is reused when complete
            and resumed when interrupted).
        n_images: number of images (1 to 112,120).
        image_size: side of the square PNGs in pixels (32 to 4096; NIH's are 1024).
        seed: the dataset seed.
        workers: processes that draw images (default: all CPU cores; 1 draws in this
            process). On macOS and Windows the workers are spawned, so a script that calls
            this with several workers needs an ``if __name__ == "__main__":`` guard.
        progress: show a progress bar and a summary line.
        overwrite: replace what ``root`` holds: a synthetic dataset made with other
            parameters, or the release's files (``Data_Entry``, split lists, box list,
            ``images_NNN/``) among other files, which are left alone. A folder that looks like
            a real release (a ``Data_Entry`` CSV without ``SYNTHETIC.json``) is never touched.

    Returns:
        The folder (absolute path).

    Raises:
        ConfigError: a parameter is out of range.
        DataError: ``root`` is a file, or holds something this call must not overwrite.
    """
    n, size, seed = _check_params(n_images, image_size, seed)
    if workers is not None:
        workers = _check_int("workers (--workers)", workers, 1, None, "of at least 1")
    root = Path(root).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; choose a folder for the synthetic dataset")
    if is_synthetic_complete(root, n, size, seed) and not overwrite:
        if progress:
            print(f"Using the synthetic dataset at {root} ({n} images, {size} px, seed {seed}).")
        return root
    root.mkdir(parents=True, exist_ok=True)
    params = _parameters(n, size, seed)
    with _folder_lock(root, progress):
        if is_synthetic_complete(root, n, size, seed) and not overwrite:
            if progress:
                print(f"Using the synthetic dataset at {root} ({n} images, {size} px, seed {seed}).")
            return root
        _prepare_folder(root, params, overwrite)
        _generate(root, n, size, seed, workers, progress, params)
    return root


def _generate(root: Path, n: int, size: int, seed: int, workers: int | None, progress: bool,
              params: dict[str, int]) -> None:
    from tqdm.auto import tqdm

    started = time.perf_counter()
    _write_marker(root, params, complete=False)
    frame = synthetic_metadata(n, seed)
    parts = root / PARTS
    parts.mkdir(exist_ok=True)
    for folder in sorted(set(frame["folder"])):
        (root / folder / "images").mkdir(parents=True, exist_ok=True)

    step = _chunk_size(n)
    chunks = [(a, min(a + step, n)) for a in range(0, n, step)]
    done = _load_parts(parts, chunks)
    todo = [c for c in chunks if c[0] not in done]
    names = frame["Image Index"].tolist()
    folders = frame["folder"].tolist()
    labels = frame["Finding Labels"].tolist()
    views = frame["View Position"].tolist()
    sexes = frame["Patient Gender"].tolist()
    ages = frame["Patient Age"].tolist()
    patients = frame["Patient ID"].tolist()

    def tasks(chunk: tuple[int, int]) -> list[tuple]:
        return [
            (i, f"{folders[i]}/images/{names[i]}", tuple(labels[i].split("|")), views[i], sexes[i],
             float(ages[i]), int(patients[i]))
            for i in range(*chunk)
        ]

    pool = None
    results: Iterator[list[tuple]] = iter(())
    if todo:
        from .phantom import lung_templates

        templates = lung_templates()
        count = min(workers or default_workers(), len(todo))
        init = (templates, str(root), size, seed)
        if count <= 1:
            _init_worker(*init)
            results = map(_render_chunk, (tasks(c) for c in todo))
        else:
            # the pool is started before the progress bar's thread exists
            pool = worker_context().Pool(count, _init_worker, init)
            results = pool.imap(_render_chunk, (tasks(c) for c in todo))
    bar = tqdm(total=n, initial=n - sum(b - a for a, b in todo), desc="cral synth", unit="img",
               disable=not progress, dynamic_ncols=True)
    try:
        for (start, stop), boxes in zip(todo, results):
            atomic_write_text(parts / f"boxes-{start:06d}-{stop:06d}.json", json.dumps(boxes))
            done[start] = boxes
            bar.update(stop - start)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    boxes = [b for start, _ in chunks for b in done[start]]
    atomic_write_text(root / DATA_ENTRY, _data_entry_text(frame))
    for split, name in (("train_val", TRAIN_VAL_LIST), ("test", TEST_LIST)):
        listed = sorted(frame.loc[frame["split"] == split, "Image Index"])
        atomic_write_text(root / name, "".join(f"{x}\n" for x in listed))
    atomic_write_text(root / BBOX_LIST, _bbox_text(frame, boxes))
    shutil.rmtree(parts, ignore_errors=True)
    n_train_val, n_test = split_counts(n)
    _write_marker(
        root, params, complete=True,
        train_val=n_train_val, test=n_test, patients=int(frame["Patient ID"].nunique()),
        boxes=len(boxes), last_image=f"{folders[-1]}/images/{names[-1]}",
    )
    if progress:
        took = time.perf_counter() - started
        print(f"Wrote {n} synthetic images ({size} px, seed {seed}) to {root} in {took:.0f} s.")


def default_synthetic_dir(n_images: int = 2000, image_size: int = 256, seed: int = 0) -> Path:
    """Return where :func:`resolve_data_dir` keeps its default synthetic dataset.

    ``$CRAL_HOME/synthetic/chestxray14-v<version>-n<N>-s<S>-seed<K>`` (``CRAL_HOME`` defaults to
    ``~/.cache/cral``).

    Args:
        n_images: number of images.
        image_size: image side.
        seed: dataset seed.

    Returns:
        The folder (it may not exist yet).
    """
    home = Path(os.environ.get("CRAL_HOME") or Path.home() / ".cache" / "cral").expanduser()
    return home / "synthetic" / f"chestxray14-v{SYNTH_VERSION}-n{n_images}-s{image_size}-seed{seed}"


def looks_like_release(folder: str | os.PathLike) -> bool:
    """Tell whether a folder has a ChestX-ray14 release's ``Data_Entry`` CSV and its images.

    The images may be PNGs or only the image cache: a ``cral download --cache-only`` folder
    holds the CSVs, the lists and ``cache/<size>/`` without a single PNG.

    Args:
        folder: the folder.

    Returns:
        True when it holds ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv`` and an
        ``images_NNN/`` or ``images/`` folder, or a complete cache under ``cache/``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    has_csv = (folder / DATA_ENTRY).is_file() or (folder / "Data_Entry_2017.csv").is_file()
    has_images = (folder / "images").is_dir() or any(
        p.is_dir() and _FOLDER_RE.match(p.name) for p in folder.iterdir()
    )
    from .cache import is_complete_cache

    has_cache = any(is_complete_cache(p) for p in (folder / "cache").glob("*") if p.is_dir())
    return has_csv and (has_images or has_cache)


def resolve_data_dir(
    data_dir: str | os.PathLike | None = None,
    *,
    n_images: int = 2000,
    image_size: int = 256,
    seed: int = 0,
) -> Path:
    """Return the data folder of a notebook, and say which one was chosen.

    In order: ``data_dir`` when given; else the environment variable ``CRAL_DATA_DIR``; else
    a synthetic dataset made on first use (and reused afterwards) under ``$CRAL_HOME`` or
    ``~/.cache/cral`` (see :func:`default_synthetic_dir`).

    Args:
        data_dir: a release folder (real or synthetic), e.g. a notebook parameter.
        n_images: size of the default synthetic dataset.
        image_size: image side of the default synthetic dataset.
        seed: seed of the default synthetic dataset.

    Returns:
        The folder (absolute path).

    Raises:
        DataError: the folder given (argument or ``CRAL_DATA_DIR``) does not exist or does not
            look like a release folder.
        ConfigError: bad parameters for the default synthetic dataset.
    """
    for value, origin in ((data_dir, "data_dir"), (os.environ.get("CRAL_DATA_DIR"), "CRAL_DATA_DIR")):
        if value is None or not str(value).strip():  # "" (a notebook's default) means "not given"
            continue
        folder = Path(value).expanduser().absolute()
        if not folder.is_dir():
            raise DataError(
                f"{origin}={str(value)!r}: no such folder; point it at a ChestX-ray14 release "
                "folder (a download, or one made with 'cral synth --out DIR')"
                + (", or unset it to use the synthetic dataset" if origin == "CRAL_DATA_DIR" else "")
            )
        if not looks_like_release(folder):
            raise DataError(
                f"{origin}={str(value)!r} is not a ChestX-ray14 release folder: it needs "
                f"{DATA_ENTRY} (or Data_Entry_2017.csv) and images_NNN/ (or images/); make one "
                "with 'cral synth --out DIR'"
                + (", or unset CRAL_DATA_DIR to use the synthetic dataset" if origin == "CRAL_DATA_DIR" else "")
            )
        print(f"Data: {folder} (from {origin})")
        return folder
    n, size, seed = _check_params(n_images, image_size, seed)
    folder = default_synthetic_dir(n, size, seed)
    if is_synthetic_complete(folder, n, size, seed):
        print(f"Data: {folder} (synthetic: {n} images, {size} px, seed {seed})")
        return folder
    print(f"Data: {folder} (synthetic: {n} images, {size} px, seed {seed}; made now, reused afterwards)")
    return make_synthetic(folder, n, size, seed, progress=True)


__all__ = [
    "BBOX_LIST",
    "DATA_ENTRY",
    "MARKER",
    "SYNTH_VERSION",
    "TEST_LIST",
    "TRAIN_VAL_LIST",
    "default_synthetic_dir",
    "image_folder",
    "is_synthetic_complete",
    "looks_like_release",
    "make_synthetic",
    "resolve_data_dir",
    "split_counts",
    "synthetic_metadata",
]
