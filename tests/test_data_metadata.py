"""The real NIH metadata, boxes and lung masks read from the torchxrayvision wheel."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from cral_lib import CLASSES
from cral_lib.data import metadata as md
from cral_lib.data import lung_masks, nih_boxes, nih_metadata
from cral_lib.errors import ConfigError, DataError

# Counts from the v2020 metadata (shared/NIH_FACTS.md).
IMAGES_PER_LABEL = {
    "Infiltration": 19894, "Effusion": 13317, "Atelectasis": 11559, "Nodule": 6331, "Mass": 5782,
    "Pneumothorax": 5302, "Consolidation": 4667, "Pleural_Thickening": 3385, "Cardiomegaly": 2776,
    "Emphysema": 2516, "Edema": 2303, "Fibrosis": 1686, "Pneumonia": 1431, "Hernia": 227,
}
BOXES_PER_LABEL = {
    "Atelectasis": 180, "Effusion": 153, "Cardiomegaly": 146, "Infiltration": 123, "Pneumonia": 120,
    "Pneumothorax": 98, "Mass": 85, "Nodule": 79,
}


def test_nih_metadata_is_the_whole_release():
    meta = nih_metadata()
    assert list(meta.columns) == list(md.DATA_ENTRY_COLUMNS)
    assert len(meta) == 112120
    assert meta["Patient ID"].nunique() == 30805
    assert meta["View Position"].value_counts().to_dict() == {"PA": 67310, "AP": 44810}
    assert meta["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()
    assert meta["OriginalImageWidth"].dtype.kind == "i"
    assert meta["OriginalImagePixelSpacingX"].dtype.kind == "f"


def test_nih_metadata_returns_a_copy():
    a = nih_metadata()
    a.loc[0, "Finding Labels"] = "changed"
    assert nih_metadata().loc[0, "Finding Labels"] != "changed"


def test_label_stats_of_the_real_metadata():
    stats = md.label_stats(nih_metadata())
    assert stats.n_images == 112120 and stats.n_patients == 30805
    assert stats.counts.to_dict() == IMAGES_PER_LABEL
    assert list(stats.counts.index) == list(CLASSES)
    assert stats.no_finding == 60361
    assert abs(stats.multi_label_fraction - 0.185) < 0.001
    assert stats.labels_per_image.sum() == 112120
    co = stats.cooccurrence.to_numpy()
    assert (co == co.T).all()
    assert (np.diag(co) == stats.counts.to_numpy()).all()
    table = stats.table()
    assert list(table.columns) == ["images", "prevalence"]
    assert table.loc["Hernia", "prevalence"] == pytest.approx(227 / 112120)


def test_nih_boxes():
    boxes = nih_boxes()
    assert list(boxes.columns) == ["Image Index", "label", "x", "y", "w", "h"]
    assert len(boxes) == 984 and boxes["Image Index"].nunique() == 880
    assert boxes["label"].value_counts().to_dict() == BOXES_PER_LABEL
    assert (boxes[["x", "y"]] >= 0).all().all()
    assert (boxes["x"] + boxes["w"] <= 1024 + 1e-6).all()
    assert (boxes["y"] + boxes["h"] <= 1024 + 1e-6).all()


def test_label_matrix():
    frame = pd.DataFrame({"Finding Labels": ["No Finding", "Hernia|Atelectasis", "Effusion"]})
    y = md.label_matrix(frame)
    assert y.shape == (3, 14) and y.dtype == np.float32
    assert y[0].sum() == 0
    assert y[1, CLASSES.index("Hernia")] == 1 and y[1, CLASSES.index("Atelectasis")] == 1
    assert y[2].tolist() == [1.0 if c == "Effusion" else 0.0 for c in CLASSES]
    assert md.label_matrix(["Mass", "No Finding"]).sum() == 1


def test_label_matrix_rejects_unknown_labels_and_missing_column():
    with pytest.raises(DataError, match="Covid"):
        md.label_matrix(pd.DataFrame({"Finding Labels": ["Covid|Mass"]}))
    with pytest.raises(DataError, match="Finding Labels"):
        md.label_matrix(pd.DataFrame({"labels": ["Mass"]}))
    with pytest.raises(DataError, match="14"):
        md.label_stats(np.zeros((3, 5)))


def test_label_stats_of_a_matrix():
    y = np.zeros((4, 14), np.float32)
    y[0, 0] = y[0, 1] = y[1, 0] = 1
    stats = md.label_stats(y)
    assert stats.n_patients is None
    assert stats.counts["Atelectasis"] == 2 and stats.no_finding == 2
    assert stats.labels_per_image.tolist() == [2, 1, 1]
    assert stats.cooccurrence.loc["Atelectasis", "Cardiomegaly"] == 1


def test_read_data_entry_of_the_2017_copy_with_a_trailing_column(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(
        md.DATA_ENTRY_HEADER + ",\n"
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
    )
    frame = md.read_data_entry(path)
    assert list(frame.columns) == list(md.DATA_ENTRY_COLUMNS)
    assert frame.loc[0, "OriginalImageHeight"] == 2749


def test_read_data_entry_rejects_other_tables(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="Data_Entry"):
        md.read_data_entry(path)


def test_read_bbox_list_with_trailing_empty_fields(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text(md.BBOX_HEADER + "\n00000001_000.png,Infiltrate,1.5,2.0,30.25,40.0,,,\n")
    boxes = md.read_bbox_list(path)
    assert boxes.iloc[0].tolist() == ["00000001_000.png", "Infiltration", 1.5, 2.0, 30.25, 40.0]


def test_lung_masks_small():
    masks = lung_masks(size=32, n=5)
    assert masks.shape == (5, 32, 32) and masks.dtype == bool
    frac = masks.mean(axis=(1, 2))
    assert ((frac > 0.1) & (frac < 0.8)).all()
    masks[:] = False  # a copy: the cache is not changed
    assert lung_masks(size=32, n=5).any()


def test_lung_masks_all_non_empty():
    masks = lung_masks(size=16)
    assert masks.shape == (435, 16, 16)
    assert masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"size": 32.0}, {"n": 0}, {"n": True}])
def test_lung_masks_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        lung_masks(**kwargs)


def test_missing_torchxrayvision_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchxrayvision" else real(name, *a)
    )
    with pytest.raises(DataError, match="pip install torchxrayvision"):
        md.torchxrayvision_data_dir()


def test_import_does_not_import_torchxrayvision():
    import subprocess
    import sys

    code = (
        "import sys, cral_lib.data.metadata as m; m.torchxrayvision_data_dir(); "
        "assert 'torchxrayvision' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
