"""Using a trained model: thresholds chosen by evaluate, `cral predict`, `cral export`, Predictor.

One tiny run is trained once for the module (a few seconds on 2 cores), evaluated (which stores
its thresholds), then predicted on its own test PNGs: the probabilities must be the ones
`cral evaluate` stored, to within 1e-3, through `Predictor.from_run`, through `cral predict`
and through an exported model file. Bad inputs are made on the fly.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cral_lib import CLASSES, Predictor
from cral_lib.cli import main
from cral_lib.data import ChestXray14
from cral_lib.data.dicom import open_dicom_grey, write_dicom
from cral_lib.data.images import open_grey
from cral_lib.errors import DataError
from cral_lib.inference import check_image, export_model, read_image
from cral_lib.metrics import choose_thresholds, normal_false_positives, operating_points
from cral_lib.train import evaluate_run, read_thresholds, train

from conftest import train_config

TOLERANCE = 1e-3


# ----------------------------------------------------------------------------- thresholds (no model)


def test_youden_threshold_maximizes_j_on_the_given_split():
    y = np.array([[0], [0], [0], [1], [0], [1], [1]])
    p = np.array([[0.1], [0.2], [0.3], [0.35], [0.4], [0.8], [0.9]])
    t = choose_thresholds(y, p, classes=["a"])
    # p >= 0.35 catches all three positives and one negative of four: J = 1 + 0.75 - 1, the best
    assert t.loc["a", "threshold"] == pytest.approx(0.35)
    assert t.loc["a", "sensitivity"] == 1.0 and t.loc["a", "specificity"] == 0.75


def test_sensitivity_rule_and_classes_that_cannot_be_called():
    y = np.array([[0, 0], [1, 0], [1, 0], [1, 0], [0, 0]])
    p = np.array([[0.5, 0.1], [0.9, 0.2], [0.6, 0.3], [0.2, 0.4], [0.1, 0.5]])
    t = choose_thresholds(y, p, classes=["a", "b"], rule="sensitivity:0.6")
    assert t.loc["a", "threshold"] == pytest.approx(0.6)  # 2 of 3 positives: the highest reaching 0.6
    assert np.isnan(t.loc["b", "threshold"]) and "no positive" in t.loc["b", "note"]
    op = operating_points(y, p, t["threshold"].to_numpy(), classes=["a", "b"])
    assert op.loc["b", "tp"] + op.loc["b", "fp"] == 0  # never called
    assert 0 <= op.loc["a", "sens_lo"] <= op.loc["a", "sensitivity"] <= op.loc["a", "sens_hi"] <= 1
    normal = normal_false_positives(y, p, t["threshold"].to_numpy())
    assert normal["normal_images"] == 2 and normal["flagged"] == 0


def test_wilson_intervals_hold_the_estimate():
    from cral_lib.metrics.operating import wilson_interval

    k = np.array([0, 1, 5, 7, 7, 0])
    n = np.array([7, 7, 7, 7, 30, 0])
    lo, hi = wilson_interval(k, n)
    p = np.divide(k, n, out=np.full(len(k), np.nan), where=n > 0)
    assert (lo[:-1] <= p[:-1]).all() and (p[:-1] <= hi[:-1]).all() and np.isnan(lo[-1]) and np.isnan(hi[-1])
    assert lo[0] == 0 and hi[3] == 1
    assert lo[4] == pytest.approx(0.1179, abs=1e-3) and hi[4] == pytest.approx(0.4093, abs=1e-3)  # 7 of 30


@pytest.mark.parametrize("rule", ["youden ", "sensitivity:0", "sensitivity:1.5", "sens:0.9", "0.5"])
def test_bad_rules_are_refused(rule):
    from cral_lib.errors import ConfigError

    if rule.strip() == "youden":
        choose_thresholds(np.array([[0], [1]]), np.array([[0.1], [0.9]]), classes=["a"], rule=rule)
        return
    with pytest.raises(ConfigError, match="youden"):
        choose_thresholds(np.array([[0], [1]]), np.array([[0.1], [0.9]]), classes=["a"], rule=rule)


# ----------------------------------------------------------------------------- DICOM


def _grey(seed=0, size=48):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (60 + 120 * xx + 40 * np.sin(6 * yy) + rng.normal(0, 4, (size, size))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("kwargs", [{}, {"bits": 16}, {"bits": 8}, {"photometric": "MONOCHROME1"},
                                    {"photometric": "MONOCHROME1", "bits": 16}])
def test_dicom_reads_back_as_the_grey_image(tmp_path, kwargs):
    g = _grey()
    image, tags = open_dicom_grey(write_dicom(tmp_path / "x.dcm", g, **kwargs))
    np.testing.assert_array_equal(np.asarray(image), g)  # 16-bit scaled back, MONOCHROME1 inverted back
    assert tags["ViewPosition"] == "PA" and tags["voi"] == "bit depth"


def test_dicom_window_is_applied(tmp_path):
    g = _grey()
    # a window covering the lower half of the 12-bit range: values above it saturate to white
    image, tags = open_dicom_grey(write_dicom(tmp_path / "w.dcm", g, window=(1024, 2048)))
    a = np.asarray(image).astype(int)
    stored = np.rint(g.astype(np.float64) * 4095 / 255)
    expected = np.rint(np.clip((stored - 1023.5) / 2047 + 0.5, 0, 1) * 255)
    np.testing.assert_array_equal(a, expected)
    assert tags["voi"].startswith("window") and (a == 255).mean() > 0.3


def test_dicom_voi_lut_is_applied(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    g = _grey()
    path = write_dicom(tmp_path / "lut.dcm", g, bits=12)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = np.minimum(np.arange(4096) * 32, 65535)  # saturates the upper half of the 12-bit range
    item.LUTData = lut.astype("<u2").tobytes()
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    image, tags = open_dicom_grey(path)
    stored = np.rint(g.astype(np.float64) * 4095 / 255).astype(int)
    np.testing.assert_array_equal(np.asarray(image), np.rint(lut[stored] / 65535 * 255))
    assert tags["voi"] == "VOI LUT"


def test_missing_pydicom_says_how_to_install(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "x.dcm", _grey())
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(DataError, match=r"pip install \"cral-lib\[dicom\]\""):
        open_dicom_grey(path)


# ----------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def evaluated_run(train_release, tmp_path_factory):
    out = tmp_path_factory.mktemp("inference") / "run"
    train(train_config(train_release, out, epochs=1, lr_milestones=(), max_train_images=64), progress=False)
    evaluate_run(out, "test", n_boot=0, progress=False, device="cpu")
    return out


def _test_pngs(release: Path, n: int | None = None) -> tuple[list[Path], pd.DataFrame]:
    test = ChestXray14(release, split="test")
    paths = [Path(p) for p in test.frame["path"]][:n]
    return paths, test.frame


def _stored(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "predictions_test.csv").set_index("Image Index")


def test_evaluate_stores_thresholds_chosen_on_validation(evaluated_run):
    chosen = read_thresholds(evaluated_run)
    assert chosen["rule"] == "youden" and chosen["split"] == "val"
    assert list(chosen["classes"]) == list(CLASSES)
    summary = json.loads((evaluated_run / "auc_test.json").read_text())
    assert summary["at_thresholds"]["rule"] == "youden"
    op = pd.read_csv(evaluated_run / "operating_test.csv", index_col=0)
    assert {"sensitivity", "sens_lo", "sens_hi", "specificity", "spec_lo", "spec_hi"} <= set(op.columns)


def test_predictor_reproduces_evaluate(evaluated_run, train_release):
    predictor = Predictor.from_run(evaluated_run, device="cpu")
    paths, _ = _test_pngs(train_release)
    frame = predictor.predict(paths)
    assert (frame["error"] == "").all()
    stored = _stored(evaluated_run)
    got = frame[list(CLASSES)].to_numpy()
    want = stored.loc[[p.name for p in paths], [f"prob_{c}" for c in CLASSES]].to_numpy()
    assert np.abs(got - want).max() <= TOLERANCE
    chosen = read_thresholds(evaluated_run)["classes"]
    for row in frame.itertuples(index=False):
        expect = [c for c in CLASSES if chosen[c]["threshold"] is not None and getattr(row, c) >= chosen[c]["threshold"]]
        assert row.findings == ";".join(expect)


def test_preprocessing_is_the_cache_path(evaluated_run, train_release):
    """The image the predictor feeds the transform is the cache's row, byte for byte."""
    from cral_lib.data import ImageCache
    from cral_lib.data.cache import default_cache_dir

    predictor = Predictor.from_run(evaluated_run, device="cpu")
    cache = ImageCache(default_cache_dir(train_release, predictor.cache_size))
    path = _test_pngs(train_release, 1)[0][0]
    row = cache.rows([path.name])[0]
    np.testing.assert_array_equal(predictor.read(path).cached, cache.images[row])


def test_explain_gives_maps_over_the_window(evaluated_run, train_release):
    predictor = Predictor.from_run(evaluated_run, device="cpu")
    path = _test_pngs(train_release, 1)[0][0]
    e = predictor.explain(path, "Effusion")
    assert e.finding == "Effusion" and e.attention.shape == e.cam.shape and e.attention.ndim == 2
    assert 0 <= e.attention.min() <= e.attention.max() <= 1
    assert e.image.shape == np.asarray(open_grey(path)).shape and len(e.window) == 4
    assert e.probability == pytest.approx(float(predictor.predict([path])["Effusion"][0]), abs=1e-5)


def _bad_and_good_folder(tmp_path: Path, release: Path) -> tuple[Path, list[Path]]:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = _test_pngs(release, 3)[0]
    for p in good:
        shutil.copy(p, folder / p.name)
    (folder / "notes.png").write_text("this is not an image\n")
    (folder / "cut.png").write_bytes(good[0].read_bytes()[:60])  # a truncated PNG
    (folder / "README.txt").write_text("ignored: not an image suffix\n")
    grey = np.asarray(open_grey(good[0]))
    write_dicom(folder / "frontal.dcm", grey, bits=12, photometric="MONOCHROME1")
    write_dicom(folder / "lateral.dcm", grey, view="LL")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    Image.fromarray(np.full(grey.shape, 255, np.uint8)).save(folder / "white.png")
    Image.fromarray(grey).convert("RGB").save(folder / "photo.jpg", quality=95)  # a JPEG, in colour
    return folder, good


def test_cli_predict_reports_bad_files_and_predicts_the_others(evaluated_run, train_release, tmp_path, capsys):
    folder, good = _bad_and_good_folder(tmp_path, train_release)
    out = tmp_path / "out"
    rc = main(["predict", "--run", str(evaluated_run), str(folder), "--out", str(out), "--device", "cpu",
               "--heatmaps", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1  # some files were reported
    errors = [line for line in captured.err.splitlines() if line.startswith("cral predict: ") and "note:" not in line]
    reasons = {Path(line.split(": ")[1]).name: line for line in errors}
    assert set(reasons) == {"notes.png", "cut.png", "lateral.dcm", "broken.dcm", "white.png"}, captured.err
    assert "not an image" in reasons["notes.png"] and "damaged or truncated" in reasons["cut.png"]
    assert "lateral" in reasons["lateral.dcm"] and "DICOM" in reasons["broken.dcm"]
    assert "constant" in reasons["white.png"] or "intensity" in reasons["white.png"]
    frame = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(frame.columns) == ["image"] + list(CLASSES) + ["findings", "error"]
    assert len(frame) == 10  # README.txt is not an image file: left out of the folder's images
    ok = frame[frame["error"] == ""]
    assert sorted(Path(n).name for n in ok["image"]) == sorted([p.name for p in good] + ["frontal.dcm", "photo.jpg"])
    stored = _stored(evaluated_run)
    for p in good:
        row = ok[ok["image"].map(lambda n: Path(n).name) == p.name].iloc[0]
        want = stored.loc[p.name, [f"prob_{c}" for c in CLASSES]].to_numpy(float)
        assert np.abs(row[list(CLASSES)].to_numpy(float) - want).max() <= TOLERANCE
    # the MONOCHROME1 12-bit DICOM of the first image reads back as its PNG: the same prediction
    dcm = ok[ok["image"].str.endswith("frontal.dcm")].iloc[0][list(CLASSES)].to_numpy(float)
    png = ok[ok["image"].str.endswith(good[0].name)].iloc[0][list(CLASSES)].to_numpy(float)
    assert np.abs(dcm - png).max() <= TOLERANCE
    heatmaps = sorted((out / "heatmaps").glob("*.png"))
    n_called = sum(len([f for f in s.split(";") if f]) for s in ok["findings"])
    assert len(heatmaps) == n_called
    # the JPEG is lossy: close to its PNG, not equal
    jpg = ok[ok["image"].str.endswith("photo.jpg")].iloc[0][list(CLASSES)].to_numpy(float)
    assert np.abs(jpg - png).max() < 0.05
    assert "predicted 5 of 10 images" in captured.out


def test_export_round_trip(evaluated_run, train_release, tmp_path, capsys):
    model_file = tmp_path / "model.pt"
    assert main(["export", "--run", str(evaluated_run), "--out", str(model_file)]) == 0
    data = torch.load(model_file, weights_only=True)  # plain data only
    assert data["format"] == "cral-model" and data["classes"] == list(CLASSES)
    assert data["preprocessing"]["crop"] == data["train_config"]["image_size"]
    predictor = Predictor.from_file(model_file, device="cpu")
    paths, _ = _test_pngs(train_release)
    frame = predictor.predict(paths)
    stored = _stored(evaluated_run)
    want = stored.loc[[p.name for p in paths], [f"prob_{c}" for c in CLASSES]].to_numpy()
    assert np.abs(frame[list(CLASSES)].to_numpy() - want).max() <= TOLERANCE
    chosen = read_thresholds(evaluated_run)["classes"]
    np.testing.assert_allclose(predictor.thresholds, [np.nan if chosen[c]["threshold"] is None
                                                      else chosen[c]["threshold"] for c in CLASSES])
    # the command line reads the file too
    capsys.readouterr()
    assert main(["predict", "--model", str(model_file), str(paths[0]), "--out", str(tmp_path / "p"),
                 "--device", "cpu", "--no-progress"]) == 0
    assert paths[0].name in capsys.readouterr().out


def test_export_without_thresholds_and_bad_model_files(evaluated_run, tmp_path):
    from cral_lib.errors import CheckpointError

    bare = tmp_path / "bare"
    shutil.copytree(evaluated_run, bare)
    (bare / "thresholds.json").unlink()
    with pytest.raises(CheckpointError, match="cral evaluate"):
        export_model(bare, tmp_path / "m.pt")
    with pytest.warns(UserWarning, match="no thresholds"):
        assert Predictor.from_run(bare, device="cpu").thresholds.size == len(CLASSES)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a model file"):
        Predictor.from_file(junk)
    ckpt = evaluated_run / "checkpoints" / "best.pt"
    with pytest.raises(CheckpointError, match="from_run"):
        Predictor.from_file(ckpt)


@pytest.mark.parametrize("argv", [
    ["predict", "--run", "RUN", "X", "--batch-size", "0"],
    ["predict", "--run", "NOWHERE", "X"],
    ["predict", "--run", "RUN", "--model", "m.pt", "X"],
    ["predict", "X"],
    ["export", "--run", "RUN", "--out", "OUTDIR"],
    ["evaluate", "--run", "RUN", "--thresholds", "median"],
])
def test_bad_options_give_one_line_and_status_2(evaluated_run, tmp_path, capsys, argv):
    (tmp_path / "OUTDIR").mkdir()
    argv = [str(evaluated_run) if a == "RUN" else str(tmp_path / a) if a in ("NOWHERE", "OUTDIR") else a
            for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err and "error" in err[-1]


def test_checks_on_images_in_memory(evaluated_run):
    predictor = Predictor.from_run(evaluated_run, device="cpu")
    ref = predictor.reference
    assert ref and ref["n"] > 0
    dark = read_image(np.full((64, 64), 3, np.uint8) + np.eye(64, dtype=np.uint8) * 40, predictor.cache_size)
    assert "intensity" in check_image(dark, ref)
    frame = predictor.predict([np.full((40, 40), 9, np.uint8), Image.new("L", (40, 40), 200)], checks=True)
    assert (frame["error"] != "").all() and frame[list(CLASSES)].isna().all().all()
    with pytest.raises(DataError, match="not a grey image"):
        read_image(np.zeros((2, 3, 4, 5)), predictor.cache_size)
