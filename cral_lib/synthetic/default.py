"""The data folder of a chapter: a parameter, ``CRAL_DATA_DIR``, or a synthetic dataset made once."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.nih import looks_like_release
from ..data.files import DATA_ENTRY
from ..errors import DataError
from .rows import check_params
from .writer import SYNTH_VERSION, is_synthetic_complete, make_synthetic

#: The book's synthetic dataset: what a chapter reads when no data folder is given, and what
#: ``tools/book.py`` builds the book on. 10,000 images, so that every class but Hernia (whose
#: prevalence is 0.2%) has at least 10 positives in the test split.
BOOK_SYNTHETIC: dict[str, int] = {"n_images": 10000, "image_size": 256, "seed": 0}


def default_synthetic_dir(n_images: int = BOOK_SYNTHETIC["n_images"], image_size: int = BOOK_SYNTHETIC["image_size"],
                          seed: int = BOOK_SYNTHETIC["seed"]) -> Path:
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
    return home / "synthetic" / synthetic_folder_name(n_images, image_size, seed)


def synthetic_folder_name(n_images: int, image_size: int, seed: int) -> str:
    """``chestxray14-v<version>-n<N>-s<S>-seed<K>``: the name of a synthetic dataset's folder.

    It holds the generator's version, so that a dataset made by an older generator is never
    taken for this one's (:func:`~cral_lib.synthetic.make_synthetic` refuses to mix them).
    """
    return f"chestxray14-v{SYNTH_VERSION}-n{n_images}-s{image_size}-seed{seed}"


def resolve_data_dir(
    data_dir: str | os.PathLike | None = None,
    *,
    n_images: int = BOOK_SYNTHETIC["n_images"],
    image_size: int = BOOK_SYNTHETIC["image_size"],
    seed: int = BOOK_SYNTHETIC["seed"],
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
    n, size, seed = check_params(n_images, image_size, seed)
    folder = default_synthetic_dir(n, size, seed)
    if is_synthetic_complete(folder, n, size, seed):
        print(f"Data: {folder} (synthetic: {n} images, {size} px, seed {seed})")
        return folder
    print(f"Data: {folder} (synthetic: {n} images, {size} px, seed {seed}; made now, reused afterwards)")
    return make_synthetic(folder, n, size, seed, progress=True)


__all__ = ["BOOK_SYNTHETIC", "default_synthetic_dir", "resolve_data_dir", "synthetic_folder_name"]
