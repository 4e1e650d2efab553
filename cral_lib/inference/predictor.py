"""A trained model applied to new images: :class:`Predictor`.

``Predictor.from_run(run_dir)`` (a run folder of ``cral train``) or ``Predictor.from_file(path)``
(a model file of ``cral export``) gives an object whose :meth:`Predictor.predict` turns image
files, folders, arrays or PIL images into a DataFrame (one row per image, one column per class,
the findings called at the run's thresholds), and whose :meth:`Predictor.explain` gives the
maps behind one finding of one image. ``cral predict`` is this class on the command line.

The preprocessing is the run's own, by the same functions (:mod:`cral_lib.inference.inputs`):
the cache's grey conversion and resize to ``cache_size``, then the run's test transform
(:meth:`cral_lib.data.TestTransform.for_crop` of ``image_size``). So a test image of the run's
dataset gets the probabilities ``cral evaluate`` stored for it (tests/test_inference.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import CLASSES
from ..data import TestTransform, test_time_resize
from ..data.cache import ImageCache, default_cache_dir, is_complete_cache
from ..device import autocast, eval_precision, resolve_device
from ..errors import ConfigError, DataError
from ..localize import center_crop_window
from ..metrics.operating import called
from ..train.evaluate import load_run_model, read_thresholds
from ..train.predict import bars_disabled
from ..train.splits import load_split
from .inputs import InputImage, check_image, find_images, intensity_reference, read_image

#: Training images sampled for the intensity check (:func:`~cral_lib.inference.inputs.intensity_reference`).
REFERENCE_SAMPLE = 512


@dataclass
class Explanation:
    """The maps behind one finding of one image (what :meth:`Predictor.explain` returns).

    Attributes:
        name: the image's name.
        finding: the class explained.
        probability: its predicted probability; threshold: the run's threshold (NaN: none).
        called: whether the finding is called positive.
        attention: ``(h, w)`` attention map ``a^c`` of Eq. 3 in [0, 1] (the shared map for
            ``no_category``; None for the baseline without attention).
        cam: ``(h, w)`` class activation map of the finding (its spatial mean plus the bias is the logit).
        image: the decoded grey image (uint8 ``H x W``), the maps cover ``window`` of it.
        window: ``(x0, y0, width, height)`` of the image that the network's input shows.
        probabilities: all classes' probabilities (a Series).
    """

    name: str
    finding: str
    probability: float
    threshold: float
    called: bool
    attention: np.ndarray | None
    cam: np.ndarray
    image: np.ndarray
    window: tuple[float, float, float, float]
    probabilities: pd.Series


class Predictor:
    """A trained CRAL network with its preprocessing, class list and thresholds.

    Build one with :meth:`from_run` or :meth:`from_file`; the constructor takes the parts.

    Args:
        model: the network (a :class:`~cral_lib.models.CRALNet`), any device.
        classes: the class names of its outputs.
        image_size: the side of the network's input (the run's ``image_size``).
        cache_size: the side the run's cache resized images to (its ``cache_size``).
        thresholds: one threshold per class (NaN: never called), or None for none.
        device: where the model runs.
        amp: the run's ``amp`` setting (the evaluation precision follows it, as in ``cral evaluate``).
        reference: the training images' intensity range, for the input checks (None: no such check).
        info: plain facts on where the model comes from (run, checkpoint, epoch, threshold rule).
        batch_size: images per forward pass.
    """

    def __init__(self, model: torch.nn.Module, classes: Sequence[str], image_size: int, cache_size: int,
                 thresholds: Any = None, *, device: Any = "cpu", amp: str = "auto",
                 reference: dict[str, float] | None = None, info: dict[str, Any] | None = None,
                 batch_size: int = 64) -> None:
        self.classes = [str(c) for c in classes]
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.image_size, self.cache_size = int(image_size), int(cache_size)
        t = np.full(len(self.classes), np.nan) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if t.shape != (len(self.classes),):
            raise ConfigError(f"{t.shape} thresholds for {len(self.classes)} classes")
        self.thresholds = t
        self.amp = amp
        self.amp_dtype = eval_precision(amp, self.device)
        self.reference = reference
        self.info = dict(info or {})
        self.batch_size = int(batch_size)
        self.transform = TestTransform.for_crop(self.image_size)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_run(cls, run_dir: str | Path, which: str = "best", device: Any = "auto",
                 batch_size: int | None = None) -> "Predictor":
        """The model of a training run, with the thresholds ``cral evaluate`` stored in it.

        Args:
            run_dir: the run folder.
            which: ``best``, ``last`` or a checkpoint file.
            device: ``auto``, ``cpu``, ``cuda``, ...
            batch_size: images per forward pass (default: the run's evaluation batch size).

        Raises:
            CheckpointError: not a run folder, or no such checkpoint.
        """
        dev = resolve_device(device) if isinstance(device, str) else device
        model, config, state = load_run_model(run_dir, which, dev)
        classes = list(CLASSES)[: config.num_classes]
        chosen = read_thresholds(run_dir)
        thresholds, info = None, {"run": str(run_dir), "checkpoint": which, "epoch": int(state.get("epoch", 0))}
        if chosen is None:
            warnings.warn(f"{run_dir} has no thresholds yet: no finding will be called; run `cral evaluate --run "
                          f"{run_dir}` to choose them on the validation split", stacklevel=2)
        else:
            thresholds = [np.nan if chosen["classes"].get(c, {}).get("threshold") is None
                          else float(chosen["classes"][c]["threshold"]) for c in classes]
            info["threshold_rule"] = chosen.get("rule")
            if int(chosen.get("epoch", -1)) != info["epoch"]:
                warnings.warn(f"the thresholds of {run_dir} were chosen for the checkpoint of epoch "
                              f"{chosen.get('epoch')}, this is epoch {info['epoch']}: run `cral evaluate --run "
                              f"{run_dir} --checkpoint {which}` to choose them for it", stacklevel=2)
        return cls(model, classes, config.image_size, config.cache_size, thresholds, device=dev, amp=config.amp,
                   reference=training_reference(config), info=info,
                   batch_size=batch_size or config.eval_batch_size)

    @classmethod
    def from_file(cls, path: str | Path, device: Any = "auto", batch_size: int | None = None) -> "Predictor":
        """The model of a file written by ``cral export`` (:func:`~cral_lib.inference.export_model`).

        Args:
            path: the model file.
            device: ``auto``, ``cpu``, ``cuda``, ...
            batch_size: images per forward pass (default: the run's evaluation batch size).

        Raises:
            CheckpointError: the file is missing or is not a model file of ``cral export``.
        """
        from .export import read_model_file  # export.py builds on this module

        return read_model_file(path, cls, device=device, batch_size=batch_size)

    # ------------------------------------------------------------------ inputs
    @property
    def resize(self) -> int:
        """The side the test transform resizes to before its center crop."""
        return test_time_resize(self.image_size)

    def window(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The window ``(x0, y0, w, h)`` of an image of ``size = (W, H)`` that the network's input shows."""
        return center_crop_window(size, resize=self.resize, crop=self.image_size)

    def read(self, item: Any, name: str | None = None, keep_grey: bool = False) -> InputImage:
        """One image decoded and resized as the run's cache did (:func:`~cral_lib.inference.read_image`)."""
        return read_image(item, self.cache_size, name=name, keep_grey=keep_grey)

    def check(self, image: InputImage) -> str | None:
        """Why the model should not judge an image, or None (:func:`~cral_lib.inference.check_image`)."""
        return check_image(image, self.reference)

    def inputs(self, images: Sequence[InputImage]) -> torch.Tensor:
        """The network's input for read images: the run's test transform on the device."""
        batch = torch.from_numpy(np.stack([im.cached for im in images]))
        return self.transform(batch.to(self.device))

    # ------------------------------------------------------------------ predicting
    @torch.inference_mode()
    def probabilities(self, images: Sequence[InputImage]) -> np.ndarray:
        """``(n, C)`` probabilities of read images, in batches of :attr:`batch_size`."""
        out = []
        for start in range(0, len(images), self.batch_size):
            with autocast(self.device, self.amp_dtype):
                logits = self.model(self.inputs(images[start : start + self.batch_size]))
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def findings(self, probs: np.ndarray) -> list[str]:
        """The findings called in each row of ``probs``, joined by ``;`` (empty when none)."""
        hits = called(np.atleast_2d(probs), self.thresholds)
        return [";".join(c for c, h in zip(self.classes, row) if h) for row in hits]

    def predict(self, images: Any, *, checks: bool = True, progress: bool = False) -> pd.DataFrame:
        """Probabilities and called findings of images.

        Args:
            images: a path (file or folder), an array, a PIL image, or a list of them; folders
                are searched for PNG, JPEG and DICOM files (:func:`~cral_lib.inference.find_images`).
            checks: refuse lateral films and images far from the training intensities
                (:meth:`check`); False predicts them anyway.
            progress: show a progress bar over the images.

        Returns:
            One row per image: ``image`` (its name), one column per class (the probability),
            ``findings`` (the classes called at the thresholds, ``;``-separated) and ``error``
            (empty, or why the image got no prediction: its probabilities are then NaN).
        """
        items = [images] if isinstance(images, (str, Path, np.ndarray)) or hasattr(images, "mode") else list(images)
        items, _ = find_images(items)
        names = [str(it) if isinstance(it, (str, Path)) else f"image_{k}" for k, it in enumerate(items)]
        probs = np.full((len(items), len(self.classes)), np.nan)
        errors = [""] * len(items)
        ready: list[tuple[int, InputImage]] = []
        bar = tqdm(total=len(items), desc="predict", unit="img", disable=not progress or bars_disabled())

        def flush() -> None:
            if ready:
                probs[[k for k, _ in ready]] = self.probabilities([im for _, im in ready])
                bar.update(len(ready))
                ready.clear()

        for k, item in enumerate(items):
            try:
                image = self.read(item, names[k])
                reason = self.check(image) if checks else None
            except DataError as exc:
                reason = str(exc)
            if reason:
                errors[k] = reason
                bar.update(1)
                continue
            ready.append((k, image))
            if len(ready) == self.batch_size:
                flush()
        flush()
        bar.close()
        frame = pd.DataFrame(probs, columns=self.classes)
        frame.insert(0, "image", names)
        ok = np.array([not e for e in errors], dtype=bool)
        found = self.findings(np.where(ok[:, None], probs, np.nan)) if len(items) else []
        frame["findings"] = found
        frame["error"] = errors
        return frame

    @torch.inference_mode()
    def explain(self, image: Any, finding: str | None = None, *, checks: bool = False) -> Explanation:
        """The maps behind one finding of one image.

        Args:
            image: a path, an array or a PIL image (or an :class:`InputImage`).
            finding: the class to explain (default: the most probable one).
            checks: apply :meth:`check` first (raise its reason as a DataError).

        Returns:
            An :class:`Explanation`: probability, threshold, attention map and CAM, and the
            window of the image they cover.
        """
        im = image if isinstance(image, InputImage) else self.read(image, keep_grey=True)
        if im.grey is None:
            raise DataError(f"{im.name}: read it with keep_grey=True to draw maps over it")
        reason = self.check(im) if checks else None
        if reason:
            raise DataError(f"{im.name}: {reason}")
        with autocast(self.device, self.amp_dtype):
            out = self.model(self.inputs([im]), return_maps=True)
            cams = self.model.class_activation_maps(out["conv5"])
        probs = torch.sigmoid(out["logits"].float())[0].cpu().numpy()
        k = int(np.argmax(probs)) if finding is None else self._class_index(finding)
        attention = out["attention"]
        att = None
        if attention is not None:
            att = attention[0, k if attention.shape[1] > 1 else 0].float().cpu().numpy()
        t = float(self.thresholds[k])
        return Explanation(im.name, self.classes[k], float(probs[k]), t, bool(not np.isnan(t) and probs[k] >= t),
                           att, cams[0, k].float().cpu().numpy(), np.asarray(im.grey), self.window(im.size),
                           pd.Series(probs, index=self.classes, name=im.name))

    def _class_index(self, finding: str) -> int:
        names = {c.lower(): i for i, c in enumerate(self.classes)}
        key = str(finding).strip().lower().replace(" ", "_")
        if key not in names:
            raise ConfigError(f"unknown finding {finding!r}; choose one of {', '.join(self.classes)}")
        return names[key]

    def __repr__(self) -> str:
        cfg = getattr(self.model, "config", {})
        return (f"Predictor({cfg.get('backbone')}+{cfg.get('attention')} {cfg.get('variant')}, {len(self.classes)} "
                f"classes, input {self.image_size} px from {self.cache_size} px, device={self.device})")


def training_reference(config: Any, n: int = REFERENCE_SAMPLE) -> dict[str, float] | None:
    """The intensity range of a sample of a run's training images, from its cache (None when it is not there)."""
    path = Path(config.cache_dir) if config.cache_dir else default_cache_dir(config.data_dir, config.cache_size)
    if not config.data_dir or not is_complete_cache(path):
        return None
    try:
        cache = ImageCache(path)
        rows = load_split(config, "train", cache).rows
    except (DataError, ConfigError, OSError):
        return None
    pick = np.sort(np.random.default_rng(0).choice(len(rows), size=min(n, len(rows)), replace=False))
    return intensity_reference(cache.images[rows[pick]])


__all__ = ["Explanation", "Predictor", "training_reference"]
