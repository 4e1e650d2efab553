"""Using a trained model: predictions on new images, the maps behind them, a model file to share.

One module per job:

- ``inputs.py``: files found in folders, decoded (PNG, JPEG, DICOM) and resized as the run's
  cache did, and checked (lateral films, images far from the training intensities);
- ``predictor.py``: :class:`Predictor` (``from_run``, ``from_file``, ``predict``, ``explain``);
- ``export.py``: :func:`export_model` (``cral export``), the ``weights_only``-safe model file;
- ``figures.py``: the heatmap PNGs of ``cral predict --heatmaps``.

``cral_lib.Predictor`` is :class:`Predictor`. The names below are imported on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Predictor": ".predictor",
    "Explanation": ".predictor",
    "export_model": ".export",
    "read_model_file": ".export",
    "find_images": ".inputs",
    "read_image": ".inputs",
    "check_image": ".inputs",
    "InputImage": ".inputs",
    "save_heatmap": ".figures",
    "write_heatmaps": ".figures",
})
