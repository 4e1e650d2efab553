"""The chapters' one door: the data and runs folders, the device, the recipe, the run folder.

Every chapter of the book opens the same way, after its parameters cell::

    env = book.setup(data_dir, runs_dir=runs_dir, device=device)   # prints what it chose
    config = env.recipe(recipe, backbone=backbone, epochs=epochs)  # None keeps the recipe's value
    run = train(config, resume="auto")                             # in env.run_dir(config)

- :func:`setup` picks the data folder (the parameter, ``CRAL_DATA_DIR``, or the synthetic
  dataset, made once; :func:`cral_lib.synthetic.resolve_data_dir`), the runs folder (the
  parameter, ``CRAL_RUNS_DIR``, or ``runs``) and the device (:func:`cral_lib.device.resolve_device`).
- :func:`recipe` is the book's fast mode (:func:`cral_lib.train.fast_recipe`: minutes on a CPU)
  or the paper's recipe (:func:`cral_lib.train.paper_recipe`), with the chapter's parameters on
  top; the recipes themselves are defined in :mod:`cral_lib.train.config` only.
- :func:`test_images` gives chapters 3 to 5 a few test images through the paper's test transform.
- :func:`run_dir` is the run folder a config trains in, named by
  :func:`cral_lib.train.run_name`: a chapter that builds another chapter's config finds that
  chapter's run (chapters 7, 9 and 10 reuse chapter 6's, at full scale chapter 10 also chapter 8's baseline), and
  ``cral train`` without ``--out`` uses the same name.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .data import ChestXray14, TestTransform, test_time_resize
from .device import resolve_device
from .errors import ConfigError
from .localize import center_crop_window
from .synthetic import resolve_data_dir
from .train.config import TrainConfig, fast_recipe, paper_recipe, run_name

#: The recipes a chapter can run: the book's fast mode and the paper's (Section 4.2).
RECIPES: dict[str, Callable[..., TrainConfig]] = {"fast": fast_recipe, "paper": paper_recipe}

#: What chapter 8's grid of seven models changes in the fast recipe, so that the grid trains over
#: three seeds (21 runs) in a few minutes on a CPU: fewer epochs (the learning rate drops before
#: the last), on a seeded subset of the training images (each seed draws its own subset). The
#: paper's recipe is left as it is.
ABLATION_FAST: dict[str, Any] = {"epochs": 3, "lr_milestones": (2,), "max_train_images": 600}

#: What chapter 10's baseline without attention changes in the fast recipe: chapter 6's epochs
#: and schedule on a seeded subset of 3,000 training images, so that its class activation maps
#: come from a model that has learned (chapter 8's grid baseline is near chance), in about 70 s
#: of training on the 2-core CPU of benchmarks/ (chapter 6's run: about 220 s). The paper's recipe
#: is left as it is (its baseline is then chapter 8's "w/o attention" run).
BASELINE_FAST: dict[str, Any] = {"max_train_images": 3000}

#: Where runs go when neither a parameter nor ``CRAL_RUNS_DIR`` says.
DEFAULT_RUNS_DIR = "runs"


def runs_folder(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs folder: ``runs_dir`` when given, else ``CRAL_RUNS_DIR``, else ``runs``."""
    return Path(runs_dir or os.environ.get("CRAL_RUNS_DIR") or DEFAULT_RUNS_DIR)


def recipe(name: str = "fast", *, ablation: bool = False, baseline: bool = False,
           runs_dir: str | os.PathLike | None = None, **overrides: Any) -> TrainConfig:
    """A chapter's training config: a recipe with the chapter's parameters on top.

    Args:
        name: ``"fast"`` (the book's fast mode, :func:`~cral_lib.train.fast_recipe`) or
            ``"paper"`` (Section 4.2, :func:`~cral_lib.train.paper_recipe`).
        ablation: in fast mode, the smaller recipe of chapter 8's grid (:data:`ABLATION_FAST`).
        baseline: in fast mode, the recipe of chapter 10's baseline (:data:`BASELINE_FAST`).
        runs_dir: the runs folder the run goes into (default: :func:`runs_folder`); ignored when
            ``out_dir`` is given.
        **overrides: :class:`~cral_lib.train.TrainConfig` fields. A value of None keeps the
            recipe's (a parameters cell says None for "the recipe's"; pass ``weights="none"`` for
            random weights in the paper's recipe).

    Returns:
        The config, with ``out_dir`` = :func:`run_dir` unless given; validated when it names a
        data folder.

    Raises:
        ConfigError: an unknown recipe or field, or a bad value.
    """
    if name not in RECIPES:
        raise ConfigError(f"recipe {name!r} is not one of {', '.join(map(repr, RECIPES))}: 'fast' runs in minutes "
                          "on a CPU, 'paper' is the paper's recipe (a GPU and the real data)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown config fields {unknown}; the fields of TrainConfig are {sorted(fields)}")
    if ablation and baseline:
        raise ConfigError("recipe(): pass ablation=True (chapter 8's grid) or baseline=True (chapter 10's "
                          "baseline), not both")
    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items() if v is not None}
    if name == "fast" and (ablation or baseline):
        given = {**(ABLATION_FAST if ablation else BASELINE_FAST), **given}
    config = RECIPES[name](**given)
    if "out_dir" not in given:
        config = config.replace(out_dir=str(run_dir(config, runs_dir)))
    return config.validate() if config.data_dir else config


def run_dir(config: TrainConfig, runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder a config's run lives in: ``runs_dir / run_name(config)``.

    Args:
        config: the run's config.
        runs_dir: the runs folder (default: :func:`runs_folder`).
    """
    return runs_folder(runs_dir) / run_name(config)


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` chose: the data folder, the runs folder and the device.

    Attributes:
        data_dir: the release folder the chapter reads.
        runs_dir: where its training runs live.
        device: where tensors go.
    """

    data_dir: Path
    runs_dir: Path
    device: torch.device

    def recipe(self, name: str = "fast", **overrides: Any) -> TrainConfig:
        """:func:`recipe` on this setup's data, runs folder and device."""
        overrides.setdefault("data_dir", str(self.data_dir))
        overrides.setdefault("device", str(self.device))
        return recipe(name, runs_dir=self.runs_dir, **overrides)

    def run_dir(self, config: TrainConfig) -> Path:
        """:func:`run_dir` in this setup's runs folder."""
        return run_dir(config, self.runs_dir)


def setup(data_dir: str | os.PathLike | None = "", *, runs_dir: str | os.PathLike | None = "",
          device: str = "auto") -> Setup:
    """Choose a chapter's data folder, runs folder and device, and print them.

    Args:
        data_dir: a release folder; ``""`` (a parameters cell's default) means ``CRAL_DATA_DIR``,
            else the book's synthetic dataset, made on first use and reused afterwards.
        runs_dir: the runs folder; ``""`` means ``CRAL_RUNS_DIR``, else ``runs``.
        device: ``"auto"`` (CUDA, then MPS, then the CPU) or a torch device.

    Returns:
        A :class:`Setup`.

    Raises:
        DataError: the data folder given (or ``CRAL_DATA_DIR``) is not a release folder.
    """
    data = resolve_data_dir(data_dir)
    runs = runs_folder(runs_dir)
    dev = resolve_device(device)
    print(f"Runs: {runs.resolve()}; device: {dev}")
    return Setup(data_dir=data, runs_dir=runs, device=dev)


@dataclass
class TestImages:
    """A few test images through the paper's test transform (what chapters 3 to 5 look at).

    Attributes:
        rows: their positions in the test split.
        names: their image names.
        images: the uint8 images, ``(n, H, W)``.
        x: the network's input, ``(n, 3, image_size, image_size)`` on the device.
        labels: their ``(n, 14)`` labels, on the device.
        window: the window of the image the input shows (:func:`cral_lib.localize.center_crop_window`).
        boxes: each image's boxes (rows of the test split's box list).
    """

    rows: list[int]
    names: list[str]
    images: np.ndarray
    x: torch.Tensor
    labels: torch.Tensor
    window: tuple[float, float, float, float]
    boxes: list[pd.DataFrame]


def test_images(data_dir: str | os.PathLike, n: int, image_size: int, device: Any) -> TestImages:
    """The first ``n`` test images, those with ground-truth boxes first, through the test transform.

    The transform is the paper's (resize to :func:`~cral_lib.data.test_time_resize` of the crop,
    center crop of ``image_size``, ImageNet normalization), as :func:`cral_lib.train.evaluate_run`
    applies it.

    Args:
        data_dir: the release folder.
        n: how many images.
        image_size: the side of the crop (the network's input).
        device: where the input and the labels go.
    """
    test = ChestXray14(data_dir, split="test")
    rows = [int(i) for i in test.boxes["row"].drop_duplicates()[:n]]
    rows += [i for i in range(len(test)) if i not in rows][: n - len(rows)]
    images = np.stack([test[i]["img"] for i in rows])
    x = TestTransform.for_crop(image_size)(torch.from_numpy(images)).to(device)
    window = center_crop_window((images.shape[2], images.shape[1]), test_time_resize(image_size), image_size)
    labels = torch.from_numpy(test.labels[rows]).to(device)
    boxes = [test.boxes[test.boxes["row"] == i] for i in rows]
    return TestImages(rows, [str(test.names[i]) for i in rows], images, x, labels, window, boxes)


test_images.__test__ = False  # a library function, not a pytest test, despite its name
TestImages.__test__ = False

__all__ = ["ABLATION_FAST", "BASELINE_FAST", "DEFAULT_RUNS_DIR", "RECIPES", "Setup", "TestImages", "recipe", "run_dir", "runs_folder",
           "setup", "test_images"]
