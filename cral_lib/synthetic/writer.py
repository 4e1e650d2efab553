"""The writer of the synthetic ChestX-ray14, in the exact layout of the NIH release (``cral synth``).

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
  SYNTHETIC.json                 the parameters, how the findings show; "complete": true is written last
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
- **Images are phantoms** (:mod:`cral_lib.synthetic.phantom`): each label has a visual signature at
  an anatomically sensible place; a patient's images share their anatomy and a finding stays
  where it was on a follow-up.
- **Every label shows** (:mod:`~cral_lib.synthetic.visibility`): drawn alone on the patient's
  normal film, each finding changes at least ``MIN_PIXELS`` pixels of the 256 px image by
  ``MIN_CONTRAST`` grey levels or more; one that would not is drawn again elsewhere, then stronger. ``SYNTHETIC.json`` records,
  under ``visibility``, the rule, per class how many findings were drawn as first drawn, moved,
  raised or are still hidden, and the hidden ones by image: those labels are the release's
  label noise.
- **Boxes** are written for every image with a localized finding that shows (all classes but
  Edema and Emphysema), one per image and finding: the box of the pixels the finding changed, in
  the PNG's pixel frame, with NIH's spelling ``Infiltrate`` for Infiltration. (The real list has
  984 boxes on 880 images of 8 classes.)

Determinism: the same ``n_images``, ``image_size`` and ``seed`` give the same bytes, whatever
``workers`` is: each image is drawn from generators seeded by ``(seed, image number)`` and
``(seed, patient)``.

Safety: :func:`make_synthetic` never overwrites what a user made. It writes into an empty (or
new) folder; reuses a complete dataset made with the same parameters at once; resumes one that
was interrupted; and refuses anything else unless ``overwrite=True`` (``--overwrite``), which
deletes only the release's own files and folders. It never overwrites a folder that looks like
a real release. Two processes asking for the same folder at once take turns (a lock on the
folder on POSIX systems).

The rows come from :mod:`~cral_lib.synthetic.rows`, the images from the workers of
:mod:`~cral_lib.synthetic.workers` (:func:`~cral_lib.synthetic.phantom.make_phantom`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no folder lock (two processes must not share a folder)
    fcntl = None

from .._io import atomic_write_text, default_workers, keep_from_workers, worker_context, worker_init
from .._version import __version__
from ..data.files import BBOX_CSV, CSV_NAMES, DATA_ENTRY, IMAGE_FOLDER_RE, TEST_LIST, TRAIN_VAL_LIST
from ..errors import DataError
from . import workers as image_workers
from .rows import bbox_text, check_int, check_params, data_entry_text, split_counts, synthetic_metadata
from .templates import lung_templates
from .visibility import summarize

#: The version of the synthetic dataset's content; bumped when the same parameters would
#: give different files (it is part of the parameters a complete dataset must match).
SYNTH_VERSION = 3

#: The marker file; ``"complete": true`` is written into it last.
MARKER = "SYNTHETIC.json"
#: The generator named in the marker. Its value is the one folders were made with from the
#: start (``cral_lib.data.synth`` still exports :func:`make_synthetic`), so that a folder made
#: before the writer moved here is recognized and resumed.
GENERATOR = "cral_lib.data.synth.make_synthetic"
#: The box list, under the name the writer has always used for it.
BBOX_LIST = BBOX_CSV
#: Where an unfinished generation keeps the boxes of the images it has written.
PARTS = ".synthetic-parts"


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
        "generator": GENERATOR,
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
    if fcntl is None:  # pragma: no cover - Windows
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
        keep_from_workers(fd)  # the image workers close their copy: the lock is this process's alone
        yield
    finally:
        keep_from_workers(fd, keep=False)
        os.close(fd)  # closing the descriptor releases the lock


def _owned_entries(root: Path) -> list[Path]:
    """The entries of ``root`` that a synthetic release consists of."""
    names = {MARKER, PARTS, *CSV_NAMES, TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST}
    return [p for p in root.iterdir() if p.name in names or (p.is_dir() and IMAGE_FOLDER_RE.match(p.name))]


def _visible_entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(f".{MARKER}.tmp"))


def load_parts(parts: Path, chunks: list[tuple[int, int]]) -> dict[int, dict[str, list[tuple]]]:
    """What the chunks of an interrupted generation left (start -> ``{"boxes", "findings"}``)."""
    done: dict[int, dict[str, list[tuple]]] = {}
    for start, stop in chunks:
        path = parts / f"boxes-{start:06d}-{stop:06d}.json"
        try:
            data = json.loads(path.read_text())
            done[start] = {key: [tuple(b) for b in data[key]] for key in ("boxes", "findings")}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return done


def _prepare_folder(root: Path, params: dict[str, int], overwrite: bool) -> bool:
    """Decide what to do with ``root`` (locked). Returns True when a generation can resume."""
    entries = _visible_entries(root)
    if not entries:
        return False
    marker = _read_marker(root)
    if marker is not None and marker.get("generator", "").startswith(GENERATOR.rsplit(".", 1)[0]):
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
        if any((root / name).exists() for name in CSV_NAMES):
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
    n, size, seed = check_params(n_images, image_size, seed)
    if workers is not None:
        workers = check_int("workers (--workers)", workers, 1, None, "of at least 1")
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
    started = time.perf_counter()
    _write_marker(root, params, complete=False)
    frame = synthetic_metadata(n, seed)
    parts = root / PARTS
    parts.mkdir(exist_ok=True)
    for folder in sorted(set(frame["folder"])):
        (root / folder / "images").mkdir(parents=True, exist_ok=True)

    step = image_workers.chunk_size(n)
    chunks = [(a, min(a + step, n)) for a in range(0, n, step)]
    done = load_parts(parts, chunks)
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
        templates = lung_templates()
        count = min(workers or default_workers(), len(todo))
        init = (templates, str(root), size, seed)
        if count <= 1:
            image_workers.init_worker(*init)
            results = map(image_workers.render_chunk, (tasks(c) for c in todo))
        else:
            # the pool is started before the progress bar's thread exists
            # workers die with this process (worker_init): a kill -9 leaves none behind
            pool = worker_context().Pool(count, worker_init, (image_workers.init_worker, *init))
            results = pool.imap(image_workers.render_chunk, (tasks(c) for c in todo))
    bar = tqdm(total=n, initial=n - sum(b - a for a, b in todo), desc="cral synth", unit="img",
               disable=not progress, dynamic_ncols=True)
    try:
        for (start, stop), chunk in zip(todo, results):
            atomic_write_text(parts / f"boxes-{start:06d}-{stop:06d}.json", json.dumps(chunk))
            done[start] = chunk
            bar.update(stop - start)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    boxes = [b for start, _ in chunks for b in done[start]["boxes"]]
    shows = summarize([f for start, _ in chunks for f in done[start]["findings"]], names)
    atomic_write_text(root / DATA_ENTRY, data_entry_text(frame))
    for split, name in (("train_val", TRAIN_VAL_LIST), ("test", TEST_LIST)):
        listed = sorted(frame.loc[frame["split"] == split, "Image Index"])
        atomic_write_text(root / name, "".join(f"{x}\n" for x in listed))
    atomic_write_text(root / BBOX_LIST, bbox_text(frame, boxes))
    shutil.rmtree(parts, ignore_errors=True)
    n_train_val, n_test = split_counts(n)
    _write_marker(
        root, params, complete=True,
        train_val=n_train_val, test=n_test, patients=int(frame["Patient ID"].nunique()),
        boxes=len(boxes), visibility=shows, last_image=f"{folders[-1]}/images/{names[-1]}",
    )
    if progress:
        took = time.perf_counter() - started
        print(f"Wrote {n} synthetic images ({size} px, seed {seed}) to {root} in {took:.0f} s.")


__all__ = [
    "BBOX_LIST",
    "DATA_ENTRY",
    "GENERATOR",
    "MARKER",
    "SYNTH_VERSION",
    "TEST_LIST",
    "TRAIN_VAL_LIST",
    "is_synthetic_complete",
    "make_synthetic",
]
