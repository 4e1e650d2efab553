"""The public names of ../shared/API.md and the README, and the old import paths of moved modules, keep working."""

from __future__ import annotations

import importlib

import pytest

#: dotted names that users, notebooks and outside checks rely on (API.md, README.md)
PUBLIC = [
    "cral_lib.CLASSES", "cral_lib.NO_FINDING", "cral_lib.print_config", "cral_lib.__version__",
    "cral_lib.data.ChestXray14", "cral_lib.data.make_synthetic", "cral_lib.data.build_cache",
    "cral_lib.data.ImageCache", "cral_lib.data.TrainTransform", "cral_lib.data.TestTransform",
    "cral_lib.data.BatchLoader", "cral_lib.data.resolve_data_dir", "cral_lib.data.nih_metadata",
    "cral_lib.models.build_model", "cral_lib.models.cral_loss", "cral_lib.metrics.auc_table",
    "cral_lib.metrics.bootstrap_auc", "cral_lib.metrics.paired_bootstrap", "cral_lib.train.TrainConfig",
    "cral_lib.train.paper_recipe", "cral_lib.train.fast_recipe", "cral_lib.train.train",
    "cral_lib.train.evaluate_run", "cral_lib.train.load_run_model", "cral_lib.viz.overlay_heatmap",
    "cral_lib.cli.main", "cral_lib.cli.build_parser",
    # using a trained model (issue 15)
    "cral_lib.Predictor", "cral_lib.inference.Predictor", "cral_lib.inference.export_model",
    "cral_lib.train.read_thresholds", "cral_lib.metrics.choose_thresholds", "cral_lib.metrics.operating_points",
    "cral_lib.data.dicom.open_dicom_grey", "cral_lib.data.dicom.write_dicom",
]

#: names of modules that moved or were split, at their old paths
OLD_PATHS = [
    "cral_lib.data.synth.make_synthetic", "cral_lib.data.synth.MARKER", "cral_lib.data.synth.resolve_data_dir",
    "cral_lib.data.synth.looks_like_release", "cral_lib.data.synth.synthetic_metadata",
    "cral_lib.data.phantom.make_phantom", "cral_lib.data.phantom.SIGNATURES", "cral_lib.data.phantom.BOXED",
    "cral_lib.data.download.download", "cral_lib.data.download.NIH_ARCHIVES", "cral_lib.data.download.Archive",
    "cral_lib.data.cache.build_cache", "cral_lib.data.cache.ImageCache", "cral_lib.data.cache.CacheWriter",
    "cral_lib.data.cache.release_fingerprint", "cral_lib.data.nih.read_boxes", "cral_lib.data.nih.CSV_COLUMNS",
    "cral_lib.data.metadata.DATA_ENTRY_COLUMNS", "cral_lib.data.metadata.lung_masks",
    "cral_lib.data.metadata.torchxrayvision_data_dir", "cral_lib.train.loop.amp_settings",
    "cral_lib.train.loop.native_bf16", "cral_lib.train.loop.autocast", "cral_lib.train.loop.make_optimizer",
    "cral_lib.train.loop.open_cache", "cral_lib.train.loop.load_split", "cral_lib.train.loop.predict",
    "cral_lib.train.distributed.resolve_device", "cral_lib.train.evaluate.eval_precision",
    "cral_lib.train.config.BACKBONES", "cral_lib.metrics.ABBREVIATIONS", "cral_lib.metrics.PAPER_TABLE1",
    "cral_lib.viz.draw_architecture", "cral_lib.viz.TRUE_COLOR",
]


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("dotted", PUBLIC + OLD_PATHS)
def test_name_resolves(dotted):
    assert _resolve(dotted) is not None


@pytest.mark.parametrize("old, new", [
    ("cral_lib.data.synth.make_synthetic", "cral_lib.synthetic.writer.make_synthetic"),
    ("cral_lib.data.make_synthetic", "cral_lib.synthetic.make_synthetic"),
    ("cral_lib.data.phantom.make_phantom", "cral_lib.synthetic.phantom.make_phantom"),
    ("cral_lib.data.download.download", "cral_lib.fetch.run.download"),
    ("cral_lib.data.resolve_data_dir", "cral_lib.synthetic.default.resolve_data_dir"),
    ("cral_lib.train.distributed.resolve_device", "cral_lib.device.resolve_device"),
    ("cral_lib.Predictor", "cral_lib.inference.predictor.Predictor"),
])
def test_old_paths_are_the_new_objects(old, new):
    assert _resolve(old) is _resolve(new)
