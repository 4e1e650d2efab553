"""The synthetic ChestX-ray14: release layout, determinism, split, labels, boxes, safety; phantoms."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cral_lib import CLASSES
from cral_lib.data import is_synthetic_complete, make_synthetic, resolve_data_dir
from cral_lib.data import metadata as md
from cral_lib import synthetic as synth
from cral_lib.synthetic import painters, phantom, visibility, workers
from cral_lib.synthetic.render import render_scene
from cral_lib.synthetic.scene import MAX_ATTEMPT, MOVES, TEXTURE, draw_scene
from cral_lib.errors import ConfigError, DataError

N, SIZE, SEED = 120, 64, 3
BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "release", N, SIZE, SEED, workers=1, progress=False)


@pytest.fixture(scope="module")
def entry(dataset) -> pd.DataFrame:
    return md.read_data_entry(dataset / synth.DATA_ENTRY)


@pytest.fixture(scope="module")
def boxes(dataset) -> pd.DataFrame:
    return md.read_bbox_list(dataset / synth.BBOX_LIST)


# ---------------------------------------------------------------- layout


def test_release_layout(dataset):
    names = sorted(p.name for p in dataset.iterdir())
    assert names == sorted([
        "BBox_List_2017.csv", "Data_Entry_2017_v2020.csv", "SYNTHETIC.json", "images_001",
        "test_list.txt", "train_val_list.txt",
    ])
    pngs = sorted((dataset / "images_001" / "images").iterdir())
    assert len(pngs) == N
    assert all(re.fullmatch(r"\d{8}_\d{3}\.png", p.name) for p in pngs)
    with Image.open(pngs[0]) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (SIZE, SIZE)


def test_data_entry_csv_is_the_release_format(dataset, entry):
    lines = (dataset / synth.DATA_ENTRY).read_text().splitlines()
    assert lines[0] == ENTRY_HEADER
    rows = list(csv.reader(lines[1:]))
    assert len(rows) == N and {len(r) for r in rows} == {11}
    assert entry["Image Index"].tolist() == sorted(entry["Image Index"])
    assert set(entry["View Position"]) <= {"PA", "AP"}
    assert set(entry["Patient Gender"]) <= {"M", "F"}
    md.label_matrix(entry)  # every label is a class or No Finding
    # names encode patient and follow-up; patients are renumbered above the real ones
    pid = entry["Image Index"].str[:8].astype(int)
    fu = entry["Image Index"].str[9:12].astype(int)
    assert (pid == entry["Patient ID"]).all() and (fu == entry["Follow-up #"]).all()
    assert (entry["Patient ID"] > synth.PATIENT_OFFSET).all()
    assert not set(entry["Image Index"]) & set(md.nih_metadata()["Image Index"])


def test_bbox_csv_is_the_release_format(dataset):
    lines = (dataset / synth.BBOX_LIST).read_text().splitlines()
    assert lines[0] == BOX_HEADER
    rows = list(csv.reader(lines[1:]))
    assert rows, "the fixture dataset should have boxes"
    assert {len(r) for r in rows} == {9}
    assert all(r[6:] == ["", "", ""] for r in rows)
    labels = {r[1] for r in rows}
    assert "Infiltration" not in labels and labels <= (set(phantom.BOXED) - {"Infiltration"}) | {"Infiltrate"}
    for r in rows:
        [float(v) for v in r[2:6]]


def test_marker_records_how_every_label_shows(dataset, entry):
    shows = json.loads((dataset / synth.MARKER).read_text())["visibility"]
    assert shows["rule"] == {"min_contrast": visibility.MIN_CONTRAST, "min_pixels": visibility.MIN_PIXELS,
                             "reference_size": visibility.REFERENCE_SIZE, "moves": MOVES,
                             "raises": MAX_ATTEMPT - MOVES}
    counts = pd.Series(md.label_matrix(entry).sum(axis=0), index=list(CLASSES))
    assert {c: v["labelled"] for c, v in shows["classes"].items()} == {c: int(n) for c, n in counts.items() if n}
    for c, v in shows["classes"].items():
        assert v["as drawn"] + v["moved"] + v["raised"] + v["hidden"] == v["labelled"], c
        assert (v["min contrast"] >= visibility.MIN_CONTRAST) == (v["hidden"] == 0), c
    labels = dict(zip(entry["Image Index"], entry["Finding Labels"]))
    assert all(c in labels[name].split("|") for name, c in shows["hidden"])


def test_split_lists(dataset, entry):
    train_val = (dataset / synth.TRAIN_VAL_LIST).read_text().split()
    test = (dataset / synth.TEST_LIST).read_text().split()
    assert sorted(train_val + test) == sorted(entry["Image Index"])
    assert (len(train_val), len(test)) == synth.split_counts(N)
    patient = dict(zip(entry["Image Index"], entry["Patient ID"]))
    assert not {patient[x] for x in train_val} & {patient[x] for x in test}


def test_marker(dataset):
    marker = json.loads((dataset / synth.MARKER).read_text())
    assert marker["complete"] is True
    assert (marker["n_images"], marker["image_size"], marker["seed"]) == (N, SIZE, SEED)
    assert is_synthetic_complete(dataset, N, SIZE, SEED)
    assert not is_synthetic_complete(dataset, N, SIZE, SEED + 1)
    assert not is_synthetic_complete(dataset, N + 1, SIZE, SEED)


def test_image_folders_follow_nih_archives():
    assert synth.image_folder(0) == "images_001"
    assert synth.image_folder(4998) == "images_001"
    assert synth.image_folder(4999) == "images_002"
    assert synth.image_folder(14998) == "images_002"
    assert synth.image_folder(14999) == "images_003"
    frame = synth.synthetic_metadata(6000, seed=1)
    assert frame["folder"].value_counts().to_dict() == {"images_001": 4999, "images_002": 1001}


# ---------------------------------------------------------------- boxes


def test_every_localized_positive_that_shows_has_a_box_inside_the_image(dataset, entry, boxes):
    y = md.label_matrix(entry)
    have = set(zip(boxes["Image Index"], boxes["label"]))
    hidden = {tuple(h) for h in json.loads((dataset / synth.MARKER).read_text())["visibility"]["hidden"]}
    expected = {
        (name, c) for name, row in zip(entry["Image Index"], y)
        for c, v in zip(CLASSES, row) if v and c in phantom.BOXED
    } - hidden
    assert have == expected
    assert not boxes.duplicated(["Image Index", "label"]).any()
    assert (boxes[["x", "y"]] >= 0).all().all()
    assert ((boxes["w"] > 0) & (boxes["h"] > 0)).all()
    assert (boxes["x"] + boxes["w"] <= SIZE).all() and (boxes["y"] + boxes["h"] <= SIZE).all()


# ---------------------------------------------------------------- determinism


def test_same_bytes_whatever_the_number_of_workers(dataset, tmp_path):
    other = make_synthetic(tmp_path / "again", N, SIZE, SEED, workers=2, progress=False)
    assert _hashes(other) == _hashes(dataset)


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_script_without_main_guard_can_use_workers(tmp_path):
    script = tmp_path / "make.py"
    script.write_text(
        "from cral_lib.data import make_synthetic\n"
        f"make_synthetic({str(tmp_path / 'out')!r}, 60, 32, 0, workers=2, progress=False)\n"
        "print('done')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.count("done") == 1, done.stderr[-2000:]
    assert is_synthetic_complete(tmp_path / "out", 60, 32, 0)


def test_another_seed_gives_other_images(tmp_path):
    a = make_synthetic(tmp_path / "a", 8, 32, 0, workers=1, progress=False)
    b = make_synthetic(tmp_path / "b", 8, 32, 1, workers=1, progress=False)
    assert _hashes(a) != _hashes(b)


# ---------------------------------------------------------------- split and labels


def test_split_is_patient_disjoint_in_official_proportions():
    frame = synth.synthetic_metadata(20000, seed=5)
    counts = frame["split"].value_counts()
    assert counts["test"] == round(20000 * 25596 / 112120)
    assert abs(counts["test"] / 20000 - 25596 / 112120) < 1e-3
    per_patient = frame.groupby("Patient ID")["split"].nunique()
    assert (per_patient == 1).all()


def test_follow_ups_are_whole_real_patients():
    frame = synth.synthetic_metadata(3000, seed=2)
    # each synthetic patient has follow-ups 0..k-1 (a real patient, maybe cut at the end)
    for _, fu in frame.groupby("Patient ID")["Follow-up #"]:
        assert sorted(fu) == list(range(len(fu)))
    assert frame["Patient ID"].nunique() < 3000  # patients with several images exist


def test_prevalence_close_to_the_real_one():
    real = md.label_stats(md.nih_metadata()).prevalence
    frame = synth.synthetic_metadata(30000, seed=0)
    syn = md.label_stats(frame).prevalence
    # whole patients are sampled, so the spread is wider than binomial: allow 3 standard
    # errors of a cluster sample (design effect about 6 for the busiest labels) or 10 %
    se = np.sqrt(real * (1 - real) / 30000 * 6)
    assert (np.abs(syn - real) <= np.maximum(3 * se, 0.1 * real)).all(), pd.DataFrame({"real": real, "syn": syn})
    nf_real = 60361 / 112120
    assert abs(md.label_stats(frame).no_finding / 30000 - nf_real) < 0.03


def test_views_ages_sexes_come_from_real_rows():
    frame = synth.synthetic_metadata(5000, seed=4)
    assert abs((frame["View Position"] == "PA").mean() - 67310 / 112120) < 0.05
    assert frame["Patient Age"].between(0, 120).mean() > 0.99


# ---------------------------------------------------------------- safety


def test_reuses_a_complete_dataset_at_once(dataset, capsys):
    png = next((dataset / "images_001" / "images").iterdir())
    before = png.stat().st_mtime_ns
    assert make_synthetic(dataset, N, SIZE, SEED, progress=True) == dataset
    assert png.stat().st_mtime_ns == before
    assert "Using the synthetic dataset" in capsys.readouterr().out


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"not empty.*overwrite"):
        make_synthetic(folder, 5, 32, 0, workers=1, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    make_synthetic(folder, 5, 32, 0, workers=1, progress=False, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert is_synthetic_complete(folder, 5, 32, 0)


def test_refuses_a_synthetic_dataset_with_other_parameters(tmp_path):
    folder = make_synthetic(tmp_path / "d", 6, 32, 0, workers=1, progress=False)
    with pytest.raises(DataError, match="other parameters"):
        make_synthetic(folder, 7, 32, 0, workers=1, progress=False)
    make_synthetic(folder, 7, 32, 0, workers=1, progress=False, overwrite=True)
    assert is_synthetic_complete(folder, 7, 32, 0) and not is_synthetic_complete(folder, 6, 32, 0)
    assert len(list((folder / "images_001" / "images").iterdir())) == 7


def test_never_overwrites_a_real_looking_release(tmp_path):
    folder = tmp_path / "nih"
    (folder / "images_001" / "images").mkdir(parents=True)
    (folder / "Data_Entry_2017.csv").write_text(ENTRY_HEADER + "\n")
    with pytest.raises(DataError, match="looks like a ChestX-ray14 release"):
        make_synthetic(folder, 5, 32, 0, workers=1, progress=False, overwrite=True)
    assert (folder / "Data_Entry_2017.csv").exists()


def test_a_file_is_not_a_folder(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        make_synthetic(path, 5, 32, 0, progress=False)


def test_resumes_an_interrupted_generation(tmp_path, monkeypatch):
    n = 60  # three chunks of 25, 25, 10
    clean = make_synthetic(tmp_path / "clean", n, 32, 9, workers=1, progress=False)
    real_chunk = workers.render_chunk
    calls = []

    def flaky(tasks):
        calls.append(len(tasks))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_chunk(tasks)

    monkeypatch.setattr(workers, "render_chunk", flaky)
    folder = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(folder, n, 32, 9, workers=1, progress=False)
    assert not is_synthetic_complete(folder, n, 32, 9)
    assert json.loads((folder / synth.MARKER).read_text())["complete"] is False
    monkeypatch.setattr(workers, "render_chunk", real_chunk)
    rendered = []
    monkeypatch.setattr(workers, "render_chunk", lambda t: rendered.append(len(t)) or real_chunk(t))
    make_synthetic(folder, n, 32, 9, workers=1, progress=False)
    assert rendered == [25, 10]  # the first chunk was not drawn again
    assert _hashes(folder) == _hashes(clean)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_images": 0}, "n_images"),
        ({"n_images": 200000}, "n_images"),
        ({"n_images": 2.5}, "n_images"),
        ({"image_size": 8}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    args = {"n_images": 5, "image_size": 32, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        make_synthetic(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- resolve_data_dir


def test_resolve_data_dir_argument(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CRAL_DATA_DIR", raising=False)
    assert resolve_data_dir(dataset) == dataset
    assert "from data_dir" in capsys.readouterr().out
    with pytest.raises(DataError, match="nowhere"):
        resolve_data_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a ChestX-ray14 release folder"):
        resolve_data_dir(tmp_path / "empty")


def test_a_folder_with_the_csv_and_a_finished_cache_is_a_data_folder(dataset, tmp_path):
    """What `cral download --cache-only` leaves (CSV, lists, cache; no PNGs) counts; a cache still building does not."""
    import json
    import shutil

    from cral_lib.data import build_cache
    from cral_lib.data.synth import looks_like_release

    folder = tmp_path / "cache_only"
    folder.mkdir()
    for f in dataset.glob("*.csv"):
        shutil.copy(f, folder / f.name)
    assert not looks_like_release(folder)
    cache = build_cache(dataset, folder / "cache" / "64", size=64, progress=False)
    assert looks_like_release(folder)
    meta = json.loads((cache / "cache.json").read_text())
    (cache / "cache.json").write_text(json.dumps({**meta, "complete": False}))
    assert not looks_like_release(folder)


def test_resolve_data_dir_environment(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRAL_DATA_DIR", str(dataset))
    assert resolve_data_dir() == dataset
    assert "CRAL_DATA_DIR" in capsys.readouterr().out
    monkeypatch.setenv("CRAL_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="CRAL_DATA_DIR"):
        resolve_data_dir()


def test_resolve_data_dir_default_is_made_once(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CRAL_DATA_DIR", raising=False)
    monkeypatch.setenv("CRAL_HOME", str(tmp_path / "home"))
    first = resolve_data_dir(n_images=12, image_size=32, seed=1)
    assert first == synth.default_synthetic_dir(12, 32, 1)
    assert first.is_relative_to(tmp_path / "home") and "n12-s32-seed1" in first.name
    assert is_synthetic_complete(first, 12, 32, 1)
    assert "made now" in capsys.readouterr().out
    assert resolve_data_dir(n_images=12, image_size=32, seed=1) == first
    assert "made now" not in capsys.readouterr().out


# ---------------------------------------------------------------- phantoms


@pytest.mark.parametrize("name", CLASSES)
def test_each_finding_is_drawn_with_its_box(name):
    ph = phantom.make_phantom([name], size=96, seed=0, image_id=CLASSES.index(name))
    normal = phantom.make_phantom([], size=96, seed=0, image_id=CLASSES.index(name))
    assert ph.image.shape == (96, 96) and ph.image.dtype == np.uint8
    assert np.abs(ph.image.astype(int) - normal.image.astype(int)).max() > 10, "the finding changes pixels"
    if name in phantom.BOXED:
        x, y, w, h = ph.boxes[name]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 96 and y + h <= 96
    else:
        assert name not in ph.boxes
    assert name in phantom.SIGNATURES


# ---------------------------------------------------------------- every label shows

#: Patients per finding in the visibility test, and the least share of a finding's change
#: (the sum of its grey-level differences from the normal film) that its box must hold.
PATIENTS = 50
MIN_BOX_SHARE = 0.8


def _alone_and_normal(name: str, k: int, templates):
    """Finding ``name`` alone on patient ``k``'s film at the reference size, and that normal film."""
    iid = 1000 + 37 * k + CLASSES.index(name)
    kw = dict(view="AP" if k % 3 == 0 else "PA", sex="F" if k % 2 else "M", seed=0, image_id=iid,
              patient_id=iid, templates=templates)
    ph = phantom.make_phantom([name], size=visibility.REFERENCE_SIZE, **kw)
    # the normal film drawn on its own, not the one the generator compared with
    normal = render_scene(draw_scene([], **kw), visibility.REFERENCE_SIZE, templates=templates,
                          texture_seed=(0, TEXTURE, iid)).image
    return ph, normal, kw


@pytest.fixture(scope="module")
def templates():
    return phantom.lung_templates()


@pytest.mark.parametrize("name", CLASSES)
def test_every_finding_shows_and_its_box_holds_its_change(name, templates):
    kinds = []
    for k in range(PATIENTS):
        ph, normal, _ = _alone_and_normal(name, k, templates)
        diff = np.abs(ph.image.astype(int) - normal.astype(int))
        # at least MIN_PIXELS pixels changed by MIN_CONTRAST grey levels or more
        assert np.sort(diff.ravel())[-visibility.MIN_PIXELS] >= visibility.MIN_CONTRAST, (name, k)
        kinds.append(ph.checks[name].kind)
        if name not in phantom.BOXED:
            assert name not in ph.boxes
            continue
        x, y, w, h = (int(v) for v in ph.boxes[name])
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= diff.shape[1] and y + h <= diff.shape[0]
        inside = diff[y:y + h, x:x + w]
        assert inside.sum() >= MIN_BOX_SHARE * diff.sum(), (name, k, inside.sum() / diff.sum())
        assert (inside >= visibility.MIN_CONTRAST).sum() == (diff >= visibility.MIN_CONTRAST).sum()
    assert "hidden" not in kinds
    # most findings show as first drawn: the rule redraws the few that would not, no more
    assert kinds.count("as drawn") >= 0.85 * PATIENTS, kinds


def test_a_finding_that_would_not_show_is_moved_and_keeps_its_severity(templates):
    moved = 0
    for k in range(PATIENTS):
        ph, normal, kw = _alone_and_normal("Nodule", k, templates)
        check = ph.checks["Nodule"]
        if check.attempt == 0:
            continue
        moved += 1
        first = draw_scene(["Nodule"], **kw)  # attempt 0: as first drawn
        image = render_scene(first, visibility.REFERENCE_SIZE, templates=templates,
                             texture_seed=(0, TEXTURE, kw["image_id"])).image
        assert visibility.measure(visibility.change(image, normal)).contrast < visibility.MIN_CONTRAST
        if check.kind == "moved":
            assert ph.scene.findings["Nodule"]["severity"] == first.findings["Nodule"]["severity"]
            assert ph.scene.findings["Nodule"]["point"] != first.findings["Nodule"]["point"]
    assert moved, "the sample should hold a nodule that had to be moved (behind the heart, or faint)"


def test_a_finding_that_never_shows_is_label_noise_without_a_box(monkeypatch):
    monkeypatch.setattr(visibility, "MIN_CONTRAST", 256)  # no change can reach it
    ph = phantom.make_phantom(["Mass", "Edema"], size=64, seed=0, image_id=5)
    assert {c.kind for c in ph.checks.values()} == {"hidden"} and ph.boxes == {}
    first = draw_scene(["Mass", "Edema"], seed=0, image_id=5)
    # the first drawing is kept
    assert all("attempt" not in p for p in ph.scene.findings.values())
    assert ph.scene.findings["Mass"]["point"] == first.findings["Mass"]["point"]
    assert ph.scene.findings["Mass"]["severity"] == first.findings["Mass"]["severity"]
    shows = visibility.summarize([(0, n, c.attempt, c.contrast, c.pixels) for n, c in ph.checks.items()], ["a.png"])
    assert shows["hidden"] == [["a.png", "Edema"], ["a.png", "Mass"]]
    assert shows["classes"]["Mass"]["hidden"] == 1


def test_the_image_of_one_finding_is_that_finding_drawn_alone(templates):
    for name in ("Atelectasis", "Emphysema", "Nodule"):
        ph = phantom.make_phantom([name], size=visibility.REFERENCE_SIZE, seed=2, image_id=9, templates=templates)
        again = render_scene(ph.scene, visibility.REFERENCE_SIZE, templates=templates, texture_seed=(2, TEXTURE, 9))
        assert np.array_equal(ph.image, again.image)


def test_phantom_is_deterministic_and_depends_on_the_seed():
    a = phantom.make_phantom(["Mass", "Effusion"], size=64, seed=1, image_id=4)
    b = phantom.make_phantom(["Mass", "Effusion"], size=64, seed=1, image_id=4)
    c = phantom.make_phantom(["Mass", "Effusion"], size=64, seed=2, image_id=4)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    assert not np.array_equal(a.image, c.image)


def test_phantom_looks_the_same_at_every_size():
    small = phantom.make_phantom(["Mass", "Cardiomegaly"], size=64, seed=3, image_id=1)
    large = phantom.make_phantom(["Mass", "Cardiomegaly"], size=256, seed=3, image_id=1)
    shrunk = np.asarray(Image.fromarray(large.image).resize((64, 64), Image.BILINEAR), dtype=float)
    assert np.corrcoef(shrunk.ravel(), small.image.ravel().astype(float))[0, 1] > 0.9
    for name in ("Mass", "Cardiomegaly"):
        s = np.asarray(small.boxes[name]) / 64
        big = np.asarray(large.boxes[name]) / 256
        assert np.abs(s - big).max() < 0.04


def test_follow_ups_share_the_anatomy_and_the_place_of_a_finding():
    a = phantom.make_phantom(["Nodule"], size=128, seed=0, image_id=10, patient_id=7)
    b = phantom.make_phantom(["Nodule"], size=128, seed=0, image_id=11, patient_id=7)
    assert a.scene.anatomy["template"] == b.scene.anatomy["template"]
    assert a.scene.findings["Nodule"]["point"] == b.scene.findings["Nodule"]["point"]
    ca = np.add(a.boxes["Nodule"][:2], np.divide(a.boxes["Nodule"][2:], 2))
    cb = np.add(b.boxes["Nodule"][:2], np.divide(b.boxes["Nodule"][2:], 2))
    assert np.abs(ca - cb).max() < 12  # same place, up to the image's pose


def test_phantom_bad_arguments():
    with pytest.raises(ConfigError, match="Covid"):
        phantom.make_phantom(["Covid"], size=64)
    with pytest.raises(ConfigError, match="size"):
        phantom.make_phantom([], size=16)
    with pytest.raises(ConfigError, match="view"):
        phantom.make_phantom([], size=64, view="LL")


def test_lung_templates_are_real_shapes():
    t = phantom.lung_templates()
    assert len(t) == phantom.TEMPLATE_COUNT
    assert t.right.shape == t.left.shape == (len(t), phantom.TEMPLATE_RESOLUTION, phantom.TEMPLATE_RESOLUTION)
    # the patient's right lung is on the image's left
    cols = np.arange(phantom.TEMPLATE_RESOLUTION)
    right_x = (t.right.sum(axis=1) * cols).sum(axis=1) / t.right.sum(axis=(1, 2))
    left_x = (t.left.sum(axis=1) * cols).sum(axis=1) / t.left.sum(axis=(1, 2))
    assert (right_x < left_x).all()
    assert ((t.aspect > 0.5) & (t.aspect < 1.1)).all()


def test_no_work_at_import():
    code = (
        "import sys, time; t = time.perf_counter(); import cral_lib.data.synth, cral_lib.data.phantom; "
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    # what an image worker imports (spawned on macOS and Windows): the phantoms, without pandas
    code = (
        "import sys; import cral_lib.synthetic.workers, cral_lib.synthetic.phantom; "
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_one_painter_per_finding_keyed_by_the_signatures():
    assert set(painters.PAINTERS) == set(phantom.SIGNATURES) == set(CLASSES)
    assert {p.stage for p in painters.PAINTERS.values()} == set(painters.STAGES)
    from cral_lib.synthetic.scene import FINDING_PARAMETERS

    assert list(FINDING_PARAMETERS) == list(CLASSES)


def test_old_import_paths_name_the_same_objects():
    import cral_lib.data as data
    from cral_lib.data import phantom as old_phantom
    from cral_lib.data import synth as old_synth

    assert data.make_synthetic is synth.make_synthetic is old_synth.make_synthetic
    assert data.resolve_data_dir is old_synth.resolve_data_dir is synth.resolve_data_dir
    assert old_phantom.make_phantom is phantom.make_phantom is data.make_phantom
    assert old_synth.MARKER == synth.MARKER and old_synth.looks_like_release is data.looks_like_release
