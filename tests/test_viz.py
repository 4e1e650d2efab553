"""Tests of cral_lib.viz: every figure function returns a Figure with the expected contents."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")  # this test module draws off-screen; the project itself sets no backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cral_lib import CLASSES, metrics, viz  # noqa: E402
from cral_lib.errors import DataError  # noqa: E402

RNG = np.random.default_rng(0)
B, C = 4, len(CLASSES)
IMAGES = RNG.random((B, 64, 64))
ATTENTION = RNG.random((B, C, 7, 7))
PROBS = RNG.random((B, C))
LABELS = np.zeros((B, C), dtype=int)
LABELS[0, [CLASSES.index("Mass"), CLASSES.index("Effusion")]] = 1
LABELS[1, CLASSES.index("Infiltration")] = 1
BOXES = pd.DataFrame(
    {
        "row": [0, 1],
        "label": ["Mass", "Infiltrate"],
        "x": [10.0, 20.0],
        "y": [12.0, 30.0],
        "w": [20.0, 10.0],
        "h": [15.0, 10.0],
    }
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_feature_heatmap_equals_a_literal_loop():
    conv5 = RNG.normal(size=(3, 16, 7, 5))
    got = viz.feature_heatmap(conv5)
    want = np.zeros((3, 7, 5))
    for b in range(3):
        for i in range(7):
            for j in range(5):
                best = 0.0
                for n in range(16):
                    best = max(best, abs(conv5[b, n, i, j]))
                want[b, i, j] = best
    assert got.shape == (3, 7, 5)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(viz.feature_heatmap(conv5[1]), want[1], rtol=1e-6)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(viz.feature_heatmap(torch.tensor(conv5)), want, rtol=1e-6)
    with pytest.raises(DataError, match="conv5"):
        viz.feature_heatmap(np.zeros((7, 7)))


def test_overlay_heatmap_cells_shows_the_map_at_its_own_resolution():
    m = RNG.random((7, 7))
    fig = viz.overlay_heatmap(IMAGES[0], m, window=(4, 4, 56, 56), cells=True)
    ax = fig.axes[0]
    drawn = ax.images[1]
    assert drawn.get_array().shape == (7, 7) and drawn.get_interpolation() == "nearest"
    np.testing.assert_allclose(drawn.get_array(), (m - m.min()) / (m.max() - m.min()))
    assert len(ax.collections) == 2  # the 6 + 6 lines between the cells
    plt.close(fig)


def test_overlay_heatmap_draws_image_map_and_boxes():
    fig = viz.overlay_heatmap(IMAGES[0], RNG.random((7, 7)), boxes=BOXES, window=(4, 4, 56, 56), title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.images) == 2
    assert ax.images[1].get_extent() == [4.0, 60.0, 60.0, 4.0]
    assert len(_rectangles(ax)) == 2
    assert {t.get_text() for t in ax.texts} == {"Mass", "Infiltrate"}
    # boxes in another frame are rescaled; labels may be passed apart; an existing ax is used
    fig2, ax2 = plt.subplots()
    out = viz.overlay_heatmap(np.ones((3, 32, 32)), np.ones((1, 7, 7)), boxes=[[512, 512, 256, 256]], labels=["Mass"],
                              ax=ax2, boxes_frame=(1024, 1024))
    assert out is fig2
    rect = _rectangles(ax2)[0]
    assert (rect.get_x(), rect.get_width()) == (16.0, 8.0)


def test_plot_attention_grid_per_class_and_shared_map():
    fig = viz.plot_attention_grid(
        IMAGES[0], ATTENTION[0], probs=PROBS[0], labels=LABELS[0], boxes=BOXES[BOXES.row == 0]
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 1 + C
    titles = {ax.get_title(): ax for ax in fig.axes}
    mass_ax = next(ax for t, ax in titles.items() if t.startswith("Mass"))
    assert mass_ax.title.get_color() == viz.TRUE_COLOR
    assert len(_rectangles(mass_ax)) == 1  # its box is drawn on its panel
    card_ax = next(ax for t, ax in titles.items() if t.startswith("Card"))
    assert card_ax.title.get_color() != viz.TRUE_COLOR and not _rectangles(card_ax)
    shared = viz.plot_attention_grid(IMAGES[0], ATTENTION[0, :1], labels=["Mass"])
    assert len(shared.axes) == 2 and "shared" in shared.axes[1].get_title()
    with pytest.raises(DataError, match="no_category"):
        viz.plot_attention_grid(IMAGES[0], ATTENTION[0, :3])


def test_plot_roc_curves_and_grid():
    y = (RNG.random((300, C)) < 0.3).astype(int)
    y[:, -1] = 0  # Hernia undefined
    s = RNG.normal(size=(300, C)) + y
    roc = metrics.roc_curves(y, s)
    table = metrics.auc_table(y, s)
    fig = viz.plot_roc_curves(roc, table)
    ax = fig.axes[0]
    assert len(ax.lines) == C + 1  # 14 entries (one empty, undefined) and the chance diagonal
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"Atelectasis ({table.loc['Atelectasis', 'auc']:.3f})"
    assert legend[-1] == "Hernia (undefined)"
    # without AUCs they come from the curves
    fig = viz.plot_roc_curves(roc)
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == legend[0]
    grid = viz.plot_roc_grid({"R-50 att1": roc, "R-50 att2": roc, "D-121 att1": roc}, {"R-50 att1": table})
    assert len(grid.axes) == 3 and grid.axes[2].get_title() == "D-121 att1"


def test_plot_topk_highlights_true_labels_and_misses():
    probs = np.tile(np.linspace(0.9, 0.05, C), (B, 1))
    labels = np.zeros((B, C), dtype=int)
    labels[0, 1] = 1  # ranked second: found
    labels[0, 12] = 1  # ranked 13th: missed, appended
    fig = viz.plot_topk(IMAGES, probs, labels, k=8)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * B
    bars = fig.axes[1]
    assert len(bars.patches) == 9
    colors = [matplotlib.colors.to_hex(p.get_facecolor()) for p in bars.patches]
    assert colors[1] == viz.TRUE_COLOR and colors[-1] == viz.MISS_COLOR
    assert [t.get_text() for t in bars.get_yticklabels()][-1] == "PT"
    assert len(fig.axes[3].patches) == 8  # no true label: just the top 8
    assert fig.legends


def test_plot_auc_ci_with_paper_marks():
    y = (RNG.random((300, C)) < 0.3).astype(int)
    table = metrics.bootstrap_auc(y, RNG.normal(size=(300, C)) + y, n_boot=50)
    fig = viz.plot_auc_ci(table, paper=metrics.paper_row("resnet50", "att1"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [*CLASSES, "Mean"]
    assert len(ax.collections) >= 1  # the paper's marks
    offsets = ax.collections[-1].get_offsets()
    assert len(offsets) == C + 1 and 0.814 in np.round(offsets[:, 0], 3)


def test_plot_training_curves_groups_columns():
    m = pd.DataFrame(
        {
            "epoch": np.arange(6),
            "train_loss": np.linspace(1, 0.3, 6),
            "val_loss": [np.nan, 0.8, np.nan, 0.6, np.nan, 0.5],
            "val_auc": np.linspace(0.6, 0.8, 6),
            "lr": [0.01] * 4 + [0.001] * 2,
        }
    )
    fig = viz.plot_training_curves(m)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "AUC", "learning rate"]
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[0].lines[1].get_xdata()) == 3
    assert fig.axes[2].get_yscale() == "log"
    assert len(viz.plot_training_curves(m[["epoch", "val_auc"]]).axes) == 1
    with pytest.raises(DataError, match="no loss, auc or lr"):
        viz.plot_training_curves(m[["epoch"]])


def test_plot_examples_labels_and_boxes():
    fig = viz.plot_examples(IMAGES, LABELS, boxes=BOXES, ncols=3)
    assert len(fig.axes) == B
    assert "Effusion" in fig.axes[0].get_title() and "Mass" in fig.axes[0].get_title()
    assert fig.axes[2].get_title() == "No Finding"
    assert len(_rectangles(fig.axes[0])) == 1 and len(_rectangles(fig.axes[1])) == 1
    names = viz.plot_examples(list(IMAGES[:2]), [["Hernia"], []], titles=["a.png", "b.png"])
    assert names.axes[0].get_title() == "a.png\nHernia"


@pytest.mark.parametrize("hide_seaborn", [False, True])
def test_plot_cooccurrence_counts_and_conditional(monkeypatch, hide_seaborn):
    if hide_seaborn:
        monkeypatch.setitem(sys.modules, "seaborn", None)  # the matplotlib fallback
    y = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1]])
    fig = viz.plot_cooccurrence(y, classes=["Atelectasis", "Cardiomegaly", "Effusion"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["3", "2", "1"]  # first row: Atel with Atel, Card, Effu
    fig = viz.plot_cooccurrence(y, classes=["Atelectasis", "Cardiomegaly", "Effusion"], normalize="conditional")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["1.00", "0.67", "0.33"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["Atel", "Card", "Effu"]


def test_draw_architecture_names_every_equation():
    fig = viz.draw_architecture()
    assert isinstance(fig, Figure)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for eq in ["Eq. 1", "Eq. 2", "Eq. 3", "Eq. 4-5", "Eq. 6", "Eq. 7", "Eq. 8", "Eq. 9", "Eq. 10"]:
        assert eq in text
    for word in ["ResNet-50", "DenseNet-121", "att1", "att2", "GAP", "BCE", "(1 + a^c) \\odot F"]:
        assert word in text
    assert len(fig.axes[0].patches) >= 15
    fig2, ax = plt.subplots()
    assert viz.draw_architecture(ax=ax) is fig2


def test_static_explorer_figure_default_pairs_and_shared_map():
    fig = viz.static_explorer_figure(IMAGES, ATTENTION, PROBS, LABELS, boxes=BOXES)
    # image 0: Effusion, Mass; image 1: Infiltration; images 2-3: their top class
    assert len(fig.axes) == 5
    assert fig.axes[0].get_title().startswith("image 0: Effusion")
    assert len(_rectangles(fig.axes[2])) == 1  # the Infiltrate box on the Infiltration panel
    fig = viz.static_explorer_figure(IMAGES, ATTENTION[:, :1], PROBS, LABELS, pairs=[(0, "Mass"), (3, 0)])
    assert len(fig.axes) == 2 and "shared map" in fig.axes[0].get_title()


def test_attention_explorer_widget_and_fallback(monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    box = viz.attention_explorer(IMAGES, ATTENTION, PROBS, LABELS, boxes=BOXES)
    assert isinstance(box, widgets.VBox)
    slider, dropdown = box.children[0].children
    assert slider.max == B - 1 and len(dropdown.options) == C
    dropdown.value = CLASSES.index("Hernia")  # redraws without error
    slider.value = 2
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.warns(UserWarning, match="ipywidgets"):
        fig = viz.attention_explorer(IMAGES, ATTENTION[:, :1], PROBS, LABELS)
    assert isinstance(fig, Figure)


def test_importing_viz_is_light_and_changes_no_style():
    code = (
        "import sys, cral_lib.viz; print('matplotlib' in sys.modules);"
        "import matplotlib; r = dict(matplotlib.rcParams); import cral_lib.viz as v;"
        "v.draw_architecture(); print(dict(matplotlib.rcParams) == r)"
    )
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    out = run.stdout.split()
    assert out == ["False", "True"]
