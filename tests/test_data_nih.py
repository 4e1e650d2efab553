"""Tests of the ChestX-ray14 reader (cral_lib/data/nih.py) and load_grey (cral_lib/data/images.py)."""

from __future__ import annotations

import gzip
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import image_path, save_png

from cral_lib import CLASSES, NO_FINDING
from cral_lib.data import SPLITS, ChestXray14, load_grey
from cral_lib.errors import ConfigError, DataError


def expected_labels(findings: pd.Series) -> np.ndarray:
    """Row-by-row reference of the multi-hot labels (the reader's is vectorized)."""
    out = np.zeros((len(findings), len(CLASSES)), np.float32)
    for i, text in enumerate(findings):
        for part in text.split("|"):
            if part != NO_FINDING:
                out[i, CLASSES.index(part)] = 1
    return out


# --------------------------------------------------------------------------- layouts and files


@pytest.mark.parametrize(
    "layout, csv_name, trailing",
    [
        ("nested", "Data_Entry_2017.csv", False),
        ("flat", "Data_Entry_2017.csv", True),
        ("nested", "Data_Entry_2017_v2020.csv", True),
        ("flat", "Data_Entry_2017_v2020.csv", False),
    ],
)
def test_reads_every_layout_and_csv_variant(make_release, layout, csv_name, trailing):
    root = make_release(n_images=30, size=16, layout=layout, csv_name=csv_name, trailing_column=trailing)
    ds = ChestXray14(root, "all")
    assert len(ds) == 30
    assert ds.pathologies == list(CLASSES)
    assert ds.labels.dtype == np.float32 and ds.labels.shape == (30, 14)
    np.testing.assert_array_equal(ds.labels, expected_labels(ds.frame["Finding Labels"]))
    for col in ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                "Patient Gender", "View Position", "path"):
        assert col in ds.frame.columns
    assert ds.frame["OriginalImageWidth"].tolist() == [16] * 30  # the bracketed pair, split
    assert ds.frame["Patient ID"].dtype == np.int64
    assert all(Path(p).is_file() for p in ds.frame["path"])
    # "No Finding" is all zeros; every class occurs
    no_finding = (ds.frame["Finding Labels"] == NO_FINDING).to_numpy()
    assert no_finding.any() and not ds.labels[no_finding].any()
    assert (ds.labels.sum(0) > 0).all()
    assert ds.csv_path.name == csv_name


def test_v2020_is_preferred_when_both_csvs_exist(make_release):
    root = make_release(n_images=12, size=8, csv_name="Data_Entry_2017.csv")
    text = (root / "Data_Entry_2017.csv").read_text()
    (root / "Data_Entry_2017_v2020.csv").write_text(text)
    assert ChestXray14(root, "all").csv_path.name == "Data_Entry_2017_v2020.csv"


def test_old_style_ages(make_release):
    root = make_release(n_images=6, size=8)
    csv = root / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    lines[1:] = [",".join(f[:4] + [f"{int(f[4]):03d}Y"] + f[5:]) for f in (line.split(",") for line in lines[1:])]
    csv.write_text("\n".join(lines) + "\n")
    ds = ChestXray14(root, "all")
    assert ds.frame["Patient Age"].tolist() == [20, 21, 22, 23, 24, 25]


def test_sample_dicts_and_transform(small_release):
    ds = ChestXray14(small_release, "test")
    sample = ds[1]
    assert set(sample) == {"img", "lab", "idx", "name"}
    assert sample["img"].dtype == np.uint8 and sample["img"].shape == (32, 32)
    np.testing.assert_array_equal(sample["lab"], ds.labels[1])
    assert sample["idx"] == 1 and sample["name"] == ds.frame["Image Index"][1]
    assert ds[-1]["name"] == ds.frame["Image Index"].iloc[-1]
    with pytest.raises(IndexError):
        ds[len(ds)]
    with_tf = ChestXray14(small_release, "test", transform=lambda im: im.shape)
    assert with_tf[0]["img"] == (32, 32)


# --------------------------------------------------------------------------- splits


def test_splits_are_patient_disjoint_and_cover_the_lists(small_release):
    sets = {s: ChestXray14(small_release, s) for s in SPLITS}
    names = {s: set(d.frame["Image Index"]) for s, d in sets.items()}
    patients = {s: set(d.frame["Patient ID"]) for s, d in sets.items()}
    assert names["train"] | names["val"] == names["train_val"]
    assert names["train_val"] | names["test"] == names["all"]
    assert (small_release / "test_list.txt").read_text().split() == sorted(names["test"])
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not names[a] & names[b]
        assert not patients[a] & patients[b]
    assert len(sets["val"]) > 0
    report = ChestXray14.split_report(small_release)
    assert report["patient_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}
    assert report["image_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}
    assert report["images"] == {"train": len(sets["train"]), "val": len(sets["val"]),
                                "test": len(sets["test"]), "unlisted": 0}
    assert report["patients"]["val"] == len(patients["val"])
    # "all" is the CSV in CSV order
    csv_names = pd.read_csv(small_release / "Data_Entry_2017.csv", usecols=[0]).iloc[:, 0].tolist()
    assert sets["all"].frame["Image Index"].tolist() == csv_names


def test_validation_split_is_seeded(make_release):
    root = make_release(n_images=90, size=8, write_images=False)
    val = lambda seed, frac=0.2: set(  # noqa: E731
        ChestXray14(root, "val", seed=seed, val_fraction=frac, require_images=False).frame["Patient ID"]
    )
    assert val(0) == val(0)
    assert val(0) != val(1)
    n_tv_patients = ChestXray14.split_report(root)["patients"]["train"] + ChestXray14.split_report(root)["patients"]["val"]
    assert len(val(3)) == round(0.2 * n_tv_patients)
    assert len(ChestXray14(root, "val", val_fraction=0.0, require_images=False)) == 0
    with pytest.raises(ConfigError, match="val_fraction"):
        ChestXray14(root, "train", val_fraction=1.0, require_images=False)


# --------------------------------------------------------------------------- boxes


@pytest.mark.parametrize("trailing", [False, True])
def test_boxes(make_release, trailing):
    root = make_release(n_images=30, size=20, bbox_trailing=trailing, write_images=False)
    raw = (root / "BBox_List_2017.csv").read_text()
    assert raw.startswith("Image Index,Finding Label,Bbox [x,y,w,h],,,") and "Infiltrate" in raw
    ds = ChestXray14(root, "all", require_images=False)
    boxes = ds.boxes
    assert list(boxes.columns) == ["Image Index", "label", "x", "y", "w", "h", "row"]
    assert set(boxes["label"]) <= set(CLASSES) and "Infiltration" in set(boxes["label"])
    assert len(boxes) == raw.count(".png")
    np.testing.assert_allclose(boxes[["x", "y", "w", "h"]].iloc[0], [5.0, 6.0, 8.0, 7.0])
    assert (ds.frame["Image Index"].to_numpy()[boxes["row"]] == boxes["Image Index"]).all()
    test = ChestXray14(root, "test", require_images=False)
    assert set(test.boxes["Image Index"]) <= set(test.frame["Image Index"])
    assert (test.frame["Image Index"].to_numpy()[test.boxes["row"]] == test.boxes["Image Index"]).all()


# --------------------------------------------------------------------------- image modes


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16", "I;16-12bit"])
def test_load_grey_png_modes(tmp_path, mode):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    grey[0, 0], grey[0, 1] = 0, 255  # full range, so that the 12-bit image uses 12 bits
    save_png(tmp_path / "x.png", grey, mode)
    out = load_grey(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.shape == (12, 10)
    tol = {"P": 8, "I;16-12bit": 1}.get(mode, 0)  # palette quantization; 12 -> 8 bit rounding
    assert np.abs(out.astype(int) - grey).max() <= tol


def test_load_grey_32bit_and_float(tmp_path):
    from PIL import Image

    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey.astype(np.int32) * 257, "I").save(tmp_path / "i.tif")
    Image.fromarray(grey.astype(np.float32) / 255.0, "F").save(tmp_path / "f.tif")
    assert np.abs(load_grey(tmp_path / "i.tif").astype(int) - grey).max() <= 1
    assert np.abs(load_grey(tmp_path / "f.tif").astype(int) - grey).max() <= 1


# --------------------------------------------------------------------------- bad input


def test_missing_csv_and_lists(make_release, tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        ChestXray14(tmp_path / "nope")
    root = make_release(n_images=6, size=8, write_images=False)
    (root / "Data_Entry_2017.csv").unlink()
    with pytest.raises(DataError, match="Data_Entry_2017.csv"):
        ChestXray14(root)
    root = make_release(n_images=6, size=8, write_images=False)
    (root / "test_list.txt").unlink()
    with pytest.raises(DataError, match="test_list.txt"):
        ChestXray14(root, "test", require_images=False)
    # "all" (the cache's split) needs no list
    assert len(ChestXray14(root, "all", require_images=False)) == 6


def _edit_csv(root: Path, row: int, column: int, value: str) -> None:
    csv = root / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    fields = lines[row + 1].split(",")
    fields[column] = value
    lines[row + 1] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "column, value, match",
    [
        (1, "Effusion|Pneumonitis", "unknown label 'Pneumonitis'"),
        (1, "Infiltrate", "unknown label 'Infiltrate'"),
        (1, "No Finding|Mass", "combines 'No Finding'"),
        (3, "x12", "Patient ID 'x12'"),
        (0, "00000001_000.png", "more than once"),
    ],
)
def test_bad_csv_values(make_release, column, value, match):
    root = make_release(n_images=9, size=8, write_images=False)
    _edit_csv(root, 4, column, value)
    with pytest.raises(DataError, match=match) as err:
        ChestXray14(root, "all", require_images=False)
    assert "Data_Entry_2017.csv" in str(err.value)


def test_bad_header_and_lists(make_release):
    root = make_release(n_images=9, size=8, write_images=False)
    csv = root / "Data_Entry_2017.csv"
    csv.write_text("Name,Labels\n" + "\n".join(csv.read_text().splitlines()[1:]))
    with pytest.raises(DataError, match="does not look like Data_Entry_2017.csv"):
        ChestXray14(root, "all", require_images=False)

    root = make_release(n_images=9, size=8, write_images=False)
    with open(root / "test_list.txt", "a") as f:
        f.write("99999999_000.png\n")
    with pytest.raises(DataError, match="99999999_000.png"):
        ChestXray14(root, "train", require_images=False)

    root = make_release(n_images=16, size=8, write_images=False)  # patient 4 is in the test list
    with open(root / "train_val_list.txt", "a") as f:
        f.write("00000004_000.png\n")
    with pytest.raises(DataError, match="both"):
        ChestXray14(root, "train", require_images=False)

    root = make_release(n_images=16, size=8, write_images=False)
    tv = (root / "train_val_list.txt").read_text().split()
    test = (root / "test_list.txt").read_text().split()
    tv.remove("00000004_000.png") if "00000004_000.png" in tv else test.remove("00000004_000.png")
    tv.append("00000004_000.png")
    test = [n for n in test if n != "00000004_000.png"]
    (root / "train_val_list.txt").write_text("\n".join(tv) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    with pytest.raises(DataError, match="patient 4"):
        ChestXray14(root, "train", require_images=False)

    with pytest.raises(ConfigError, match="split='training'"):
        ChestXray14(root, "training")


def test_bad_boxes(make_release):
    root = make_release(n_images=12, size=8, write_images=False)
    (root / "BBox_List_2017.csv").unlink()
    ds = ChestXray14(root, "all", require_images=False)  # boxes are read only when asked for
    with pytest.raises(DataError, match="BBox_List_2017.csv"):
        ds.boxes
    root = make_release(n_images=12, size=8, write_images=False)
    path = root / "BBox_List_2017.csv"
    path.write_text(path.read_text().replace("Infiltrate", "Cancer", 1))
    with pytest.raises(DataError, match="'Cancer'"):
        ChestXray14(root, "all", require_images=False).boxes


def test_missing_image_strict_and_lenient(make_release):
    root = make_release(n_images=20, size=8)
    gone = "00000002_001.png"
    image_path(root, gone).unlink()
    with pytest.raises(DataError, match=gone) as err:
        ChestXray14(root, "all")
    assert "lenient" in str(err.value)
    with pytest.warns(UserWarning, match="skipped 1 of 20"):
        ds = ChestXray14(root, "all", lenient=True)
    assert len(ds) == 19 and gone not in set(ds.frame["Image Index"])
    assert ds.skipped.to_dict("records") == [{"Image Index": gone, "reason": "image file not found"}]
    assert ds.labels.shape == (19, 14)
    # other splits are not affected by an image they do not hold
    split_of_gone = "test" if gone in (root / "test_list.txt").read_text() else "train_val"
    other = "train_val" if split_of_gone == "test" else "test"
    assert len(ChestXray14(root, other).skipped) == 0


def test_corrupt_png(make_release):
    root = make_release(n_images=6, size=8, layout="flat")
    bad = image_path(root, "00000001_002.png")
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    ds = ChestXray14(root, "all")
    with pytest.raises(DataError, match="00000001_002.png") as err:
        ds[2]
    assert "lenient" in str(err.value)
    (root / "images" / "00000002_000.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        load_grey(root / "images" / "00000002_000.png")


# --------------------------------------------------------------------------- real scale


def _real_csv() -> Path | None:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "Data_Entry_2017_v2020.csv.gz"
    return path if path.is_file() else None


@pytest.mark.skipif(_real_csv() is None, reason="torchxrayvision's copy of the NIH metadata is not installed")
def test_real_metadata_scale(tmp_path):
    """112,120 real CSV rows (no images): reading is fast, missing images are reported fast."""
    root = tmp_path / "nih"
    root.mkdir()
    with gzip.open(_real_csv(), "rt") as f:
        text = f.read()
    (root / "Data_Entry_2017_v2020.csv").write_text(text)
    meta = pd.read_csv(root / "Data_Entry_2017_v2020.csv", header=None, skiprows=1, usecols=[0, 3])
    is_test = (meta[3] % 4 == 0).to_numpy()  # a patient-disjoint stand-in for the official lists
    (root / "test_list.txt").write_text("\n".join(meta[0][is_test]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(meta[0][~is_test]) + "\n")

    start = time.perf_counter()
    ds = ChestXray14(root, "all", require_images=False)
    elapsed = time.perf_counter() - start
    assert len(ds) == 112_120
    assert elapsed < 10, f"reading 112,120 rows took {elapsed:.1f} s"
    counts = ds.label_counts()
    assert counts[NO_FINDING] == 60_361 and counts["Infiltration"] == 19_894 and counts["Hernia"] == 227
    assert ds.frame["Patient ID"].nunique() == 30_805
    report = ChestXray14.split_report(root)
    assert sum(report["patient_overlap"].values()) == 0
    assert report["images"]["train"] + report["images"]["val"] + report["images"]["test"] == 112_120

    start = time.perf_counter()
    with pytest.raises(DataError, match="not in"):
        ChestXray14(root, "train")
    assert time.perf_counter() - start < 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(ChestXray14(root, "test", lenient=True)) == 0


def test_load_grey_from_a_file_object(tmp_path):
    """What `cral download --cache-only` does with the members of a tar stream."""
    import io

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    save_png(tmp_path / "x.png", grey, "RGBA")
    np.testing.assert_array_equal(load_grey(io.BytesIO((tmp_path / "x.png").read_bytes())), grey)
    from cral_lib.data.images import open_grey

    with pytest.raises(DataError, match="images_001.tar.gz:images/x.png"):
        open_grey(io.BytesIO(b"garbage"), name="images_001.tar.gz:images/x.png")
