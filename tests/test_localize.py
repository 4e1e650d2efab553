"""Tests of cral_lib.localize: frames, bilinear upsampling, pointing game, IoU, whole test sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cral_lib import CLASSES, localize
from cral_lib.errors import ConfigError, DataError


def _hot(cell=(2, 3), shape=(7, 7)):
    m = np.zeros(shape)
    m[cell] = 1.0
    return m


def test_scale_boxes_and_center_crop_window():
    boxes = np.array([[100.0, 200.0, 300.0, 400.0], [0, 0, 1024, 1024]])
    np.testing.assert_allclose(localize.scale_boxes(boxes, (1024, 1024), (256, 256)), boxes / 4)
    np.testing.assert_allclose(localize.scale_boxes(boxes[0], (1000, 500), (100, 100)), [10, 40, 30, 80])
    assert localize.center_crop_window((1024, 1024)) == (64.0, 64.0, 896.0, 896.0)
    assert localize.center_crop_window((1024, 1024), resize=224, crop=224) == (0.0, 0.0, 1024.0, 1024.0)
    with pytest.raises(DataError, match=r"\(x, y, w, h\)"):
        localize.scale_boxes(np.zeros((2, 3)), (1, 1), (1, 1))
    with pytest.raises(ConfigError, match="larger"):
        localize.center_crop_window((1024, 1024), resize=200, crop=224)


@pytest.mark.parametrize("size", [(224, 224), (200, 150), (7, 7), (5, 9)])
def test_upsample_map_matches_torch_bilinear(size):
    torch = pytest.importorskip("torch")
    m = np.random.default_rng(0).random((2, 3, 7, 7))
    got = localize.upsample_map(m, size)
    want = torch.nn.functional.interpolate(
        torch.tensor(m), size=(size[1], size[0]), mode="bilinear", align_corners=False
    ).numpy()
    assert got.shape == (2, 3, size[1], size[0])
    np.testing.assert_allclose(got, want, atol=1e-12)
    # a torch tensor works as input too
    np.testing.assert_allclose(localize.upsample_map(torch.tensor(m[0, 0]), size), want[0, 0], atol=1e-6)


def test_box_mask_counts_pixel_centres():
    mask = localize.box_mask((2, 3, 4, 2), (10, 8))
    assert mask.shape == (8, 10)
    assert mask.sum() == 8 and mask[3:5, 2:6].all()
    assert localize.box_mask((2.6, 0, 1, 1), (10, 8)).sum() == 1  # the centre 3.5 is in [2.6, 3.6)


def test_pointing_game_hit_miss_and_tolerance():
    m = _hot((2, 5))  # the peak is cell (row 2, col 5): pixels x 160..192, y 64..96 of 224
    assert localize.pointing_game(m, (160, 64, 32, 32), size=(224, 224))
    assert not localize.pointing_game(m, (0, 0, 32, 32), size=(224, 224))
    # the cell's centre, x = 176, is the centroid of the two equal pixels 175 and 176 that
    # upsampling by 32 makes; a box ending 10 px left of it
    assert localize.map_peak(localize.upsample_map(m, (224, 224))) == (176.0, 80.0)
    box = (100, 64, 176 - 10 - 100, 32)
    assert not localize.pointing_game(m, box, size=(224, 224))
    assert localize.pointing_game(m, box, size=(224, 224), tolerance=10)
    assert not localize.pointing_game(m, box, size=(224, 224), tolerance=9.9)
    # without size, the map is taken as already in the box's frame
    assert localize.pointing_game(localize.upsample_map(m, (224, 224)), (160, 64, 32, 32))
    # a flat map points nowhere
    assert not localize.pointing_game(np.ones((7, 7)), (0, 0, 224, 224), size=(224, 224))


def test_iou_at_threshold_mask_and_bbox():
    big = np.zeros((20, 20))
    big[5:10, 4:12] = 1.0  # a block: the binary map is exactly this rectangle
    box = (4, 5, 8, 5)
    assert localize.iou_at_threshold(big, box) == pytest.approx(1.0)
    assert localize.iou_at_threshold(big, box, mode="bbox") == pytest.approx(1.0)
    assert localize.iou_at_threshold(big, (4, 5, 16, 5)) == pytest.approx(0.5)
    assert localize.iou_at_threshold(np.ones((7, 7)), box) == 0.0  # a flat map selects nothing
    # bbox mode uses only the largest connected component
    two = big.copy()
    two[15:17, 15:17] = 1.0
    assert localize.iou_at_threshold(two, box, mode="bbox") == pytest.approx(1.0)
    assert localize.iou_at_threshold(two, box, mode="mask") == pytest.approx(40 / 44)
    # an upsampled single hot cell overlaps its own cell well
    assert localize.iou_at_threshold(_hot(), (96, 64, 32, 32), size=(224, 224)) > 0.3
    with pytest.raises(ConfigError, match="mode"):
        localize.iou_at_threshold(big, box, mode="circle")
    with pytest.raises(ConfigError, match="threshold"):
        localize.iou_at_threshold(big, box, threshold=0)


def test_box_helpers():
    assert localize.box_iou((0, 0, 2, 2), (1, 1, 2, 2)) == pytest.approx(1 / 7)
    assert localize.iobb((0, 0, 2, 2), (1, 1, 2, 2)) == pytest.approx(1 / 4)
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:3, 1:3] = True
    mask[5:9, 4:7] = True
    assert localize.box_from_map(mask) == (4.0, 5.0, 3.0, 4.0)
    assert localize.box_from_map(np.zeros((4, 4), dtype=bool)) is None


def _boxes(rows):
    return pd.DataFrame(rows, columns=["row", "label", "x", "y", "w", "h"])


def test_localization_scores_in_the_crop_window():
    maps = np.zeros((2, len(CLASSES), 7, 7))
    mass, infi = CLASSES.index("Mass"), CLASSES.index("Infiltration")
    # peak in the top-left cell of what the network saw: upsampling clamps at the border, so
    # the plateau of maxima spans crop pixels 0..15 (of 224) and its centre, 8, is original
    # x = y = 64 + 8 * 4 = 96
    maps[0, mass, 0, 0] = 1.0
    maps[1, infi, 3, 3] = 1.0
    boxes = _boxes(
        [(0, "Mass", 80, 80, 40, 40), (1, "Infiltrate", 448, 448, 128, 128), (0, "Infiltrate", 0, 0, 128, 128)]
    )
    crop = localize.center_crop_window((1024, 1024))
    df = localize.localization_scores(maps, boxes, (1024, 1024), crop=crop)
    assert list(df.columns) == ["row", "label", "x", "y", "w", "h", "hit", "iou", "iou_bbox", "iobb", "visible"]
    assert df["label"].tolist() == ["Mass", "Infiltration", "Infiltration"]
    assert df["hit"].tolist() == [True, True, False]  # the third map is flat: no peak, a miss
    assert df.loc[1, "iou"] > 0.3 and df.loc[1, "iou_bbox"] > 0.3
    assert df["visible"].tolist() == [1.0, 1.0, pytest.approx(0.25)]
    # without the crop the map covers the whole image: the plateau's centre is near x = 37 < 80
    full = localize.localization_scores(maps, boxes, (1024, 1024))
    assert not full.loc[0, "hit"]
    assert df.attrs["crop"] == crop and df.attrs["threshold"] == 0.5


def test_localization_scores_shared_map_and_torch_input():
    torch = pytest.importorskip("torch")
    shared = np.zeros((1, 1, 7, 7))
    shared[0, 0, 3, 3] = 1.0
    boxes = _boxes([(0, "Mass", 448, 448, 128, 128), (0, "Effusion", 448, 448, 128, 128)])
    df = localize.localization_scores(torch.tensor(shared), boxes, (1024, 1024))
    assert df["hit"].all() and df.attrs["shared_map"]
    np.testing.assert_allclose(df.loc[0, ["iou", "iobb"]].to_numpy(float), df.loc[1, ["iou", "iobb"]].to_numpy(float))


def test_localization_scores_errors():
    maps = np.zeros((2, 14, 7, 7))
    good = _boxes([(0, "Mass", 1, 1, 5, 5)])
    with pytest.raises(DataError, match="channels"):
        localize.localization_scores(np.zeros((2, 3, 7, 7)), good, (1024, 1024))
    with pytest.raises(DataError, match="not one of the classes"):
        localize.localization_scores(maps, _boxes([(0, "Lung cancer", 1, 1, 5, 5)]), (1024, 1024))
    with pytest.raises(DataError, match="outside the 2 maps"):
        localize.localization_scores(maps, _boxes([(5, "Mass", 1, 1, 5, 5)]), (1024, 1024))
    with pytest.raises(DataError, match="lacks the columns"):
        localize.localization_scores(maps, good.drop(columns="row"), (1024, 1024))
    with pytest.raises(DataError, match=r"\(N images"):
        localize.localization_scores(np.zeros((14, 7, 7)), good, (1024, 1024))


def test_summarize_localization():
    df = pd.DataFrame(
        {
            "label": ["Mass", "Mass", "Atelectasis", "Mass"],
            "hit": [True, False, True, True],
            "iou": [0.05, 0.25, 0.6, 0.45],
            "iobb": [0.2, 0.3, 0.9, 0.5],
        }
    )
    s = localize.summarize_localization(df)
    assert list(s.index) == ["Atelectasis", "Mass", "All boxes"]  # the order of CLASSES
    accuracies = ["acc@0.1", "acc@0.2", "acc@0.3", "acc@0.4", "acc@0.5"]
    assert list(s.columns) == ["n_boxes", "pointing_acc", "mean_iou", *accuracies]
    assert s.loc["Mass", "n_boxes"] == 3
    assert s.loc["Mass", "pointing_acc"] == pytest.approx(2 / 3)
    assert s.loc["Mass", "mean_iou"] == pytest.approx(0.25)
    assert s.loc["Mass", "acc@0.1"] == pytest.approx(2 / 3) and s.loc["Mass", "acc@0.5"] == 0.0
    assert s.loc["All boxes", "n_boxes"] == 4
    t = localize.summarize_localization(df, iou_column="iobb")
    assert t.loc["Mass", "acc@0.5"] == pytest.approx(1 / 3) and t.attrs["iou_column"] == "iobb"


def test_localize_does_not_import_matplotlib_or_torch():
    import subprocess
    import sys

    code = "import sys, cral_lib.localize, cral_lib.metrics; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_pointing_ceiling_is_the_best_any_map_of_that_size_can_do():
    """A box is reachable exactly when a map that is 1 in one cell hits it (scored by localization_scores)."""
    rng = np.random.default_rng(0)
    n = 60
    wh = rng.uniform(5, 200, size=(n, 2))
    xy = rng.uniform(0, 1024 - wh)
    boxes = pd.DataFrame({"row": 0, "label": "Mass", "x": xy[:, 0], "y": xy[:, 1], "w": wh[:, 0], "h": wh[:, 1]})
    crop = localize.center_crop_window((1024, 1024), resize=256, crop=224)
    for size in ((2, 2), (3, 4), (7, 7)):
        ceiling = localize.pointing_ceiling(size, boxes, crop=crop, tolerance=8.0)
        best = np.zeros(n, dtype=bool)
        for i in range(size[0]):
            for j in range(size[1]):
                one = np.zeros((1, 14) + size)
                one[:, :, i, j] = 1
                best |= localize.localization_scores(one, boxes, crop=crop, tolerance=8.0)["hit"].to_numpy()
        np.testing.assert_array_equal(ceiling, best)
    # finer maps reach more boxes; a 2 x 2 map reaches few of these
    assert localize.pointing_ceiling((2, 2), boxes, crop=crop).mean() < localize.pointing_ceiling((7, 7), boxes, crop=crop).mean()
    with pytest.raises(ConfigError):
        localize.pointing_ceiling((0, 7), boxes)
