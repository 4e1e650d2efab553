"""The figures of the CRAL Book: heatmaps, attention maps, ROC curves, top-k panels, widgets.

Counterparts of the paper's figures (Guan & Huang, Pattern Recognit. Lett. 2020):

- Fig. 1/2, the architecture: :func:`draw_architecture`;
- Fig. 3, examples with labels: :func:`plot_examples`;
- Fig. 4, ROC curves of the 14 classes: :func:`plot_roc_curves`, :func:`plot_roc_grid`;
- Fig. 5, heatmaps of conv5 features with ground-truth boxes: :func:`feature_heatmap` and
  :func:`overlay_heatmap`;
- Fig. 6, top-8 predictions with the true labels highlighted: :func:`plot_topk`.

And what the book adds: per-class attention maps (:func:`plot_attention_grid`), AUCs with
bootstrap intervals (:func:`plot_auc_ci`), training curves, label co-occurrence, and an
interactive explorer (:func:`attention_explorer`) with a static twin for the printed book
(:func:`static_explorer_figure`).

Conventions: every plotting function takes an optional ``ax`` (or makes its own figure),
returns the :class:`matplotlib.figure.Figure`, never calls ``plt.show()`` and never changes
global styles. matplotlib (and seaborn, where used) are imported inside the functions, so
``import cral_lib.viz`` is cheap and picks no backend. Images may be ``(H, W)``, ``(1, H, W)``, ``(3, H, W)`` or
``(H, W, 3)``, uint8 or float (ImageNet-normalised tensors included: each image is rescaled
to its own range for display). Boxes are ``(x, y, w, h)`` in pixels of the image *as shown*;
pass ``boxes_frame=(W, H)`` when they are in another frame (NIH boxes are in the 1024 x 1024
original), and they are rescaled.

One module per figure family: ``heatmaps.py``, ``curves.py`` (ROC, AUC intervals, training),
``topk.py``, ``dataset.py`` (examples, co-occurrence), ``architecture.py``, ``explorer.py``;
``common.py`` holds what they share.
"""

from __future__ import annotations

from .architecture import draw_architecture
from .common import MISS_COLOR, TRUE_COLOR
from .curves import plot_auc_ci, plot_roc_curves, plot_roc_grid, plot_training_curves
from .dataset import plot_cooccurrence, plot_examples
from .explorer import attention_explorer, static_explorer_figure
from .heatmaps import feature_heatmap, overlay_heatmap, plot_attention_grid
from .topk import plot_topk

__all__ = [
    "MISS_COLOR",
    "TRUE_COLOR",
    "attention_explorer",
    "draw_architecture",
    "feature_heatmap",
    "overlay_heatmap",
    "plot_attention_grid",
    "plot_auc_ci",
    "plot_cooccurrence",
    "plot_examples",
    "plot_roc_curves",
    "plot_roc_grid",
    "plot_topk",
    "plot_training_curves",
    "static_explorer_figure",
]
