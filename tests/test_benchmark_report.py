"""The figures of benchmarks/README.md and the book's performance page come from the JSON results.

Both pages carry the tables that ``benchmarks/report.py`` renders from ``benchmarks/results/``,
between two markers; a figure typed in by hand, or a result file added without updating the
pages, fails here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = [ROOT / "benchmarks" / "README.md", ROOT / "book" / "performance.md"]


def load_report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_hold_the_rendered_tables(page):
    report = load_report()
    expected = report.report(RESULTS).strip("\n")
    assert report.tables_in(page.read_text()) == expected, (
        f"{page.relative_to(ROOT)} is out of date: run "
        "python benchmarks/report.py benchmarks/results --update benchmarks/README.md book/performance.md")


def test_every_result_names_its_machine():
    files = sorted(RESULTS.glob("*.json"))
    assert files, "benchmarks/results/ holds no results"
    for f in files:
        text = json.dumps(json.loads(f.read_text()))
        assert any(k in text for k in ('"device"', '"machine"')), f"{f.name} does not say where it ran"


def test_update_rewrites_only_the_block(tmp_path):
    report = load_report()
    page = tmp_path / "page.md"
    page.write_text(f"before\n{report.START}\nold table\n{report.END}\nafter\n")
    report.update(page, "| a |\n|---|\n| 1 |\n")
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n")
    assert report.tables_in(text) == "| a |\n|---|\n| 1 |"


def test_update_refuses_a_page_without_markers(tmp_path):
    report = load_report()
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    with pytest.raises(ValueError, match="no <!-- benchmark tables: start -->"):
        report.update(page, "| a |")
    assert page.read_text() == "no markers here\n"


def test_cli_rejects_a_missing_folder(tmp_path, capsys):
    report = load_report()
    with pytest.raises(SystemExit) as exc:
        report.main([str(tmp_path / "nope")])
    assert exc.value.code == 2
    assert "is not a folder" in capsys.readouterr().err


def readme_results() -> str:
    """The README's "Results and performance" section."""
    text = (ROOT / "README.md").read_text()
    return text.split("## Results and performance", 1)[1].split("\n## ", 1)[0]


def test_readme_results_come_from_stored_json():
    """Each figure the README states about the fast recipe's run is the stored JSON's, rounded as printed."""
    r = json.loads((RESULTS / "synthetic_auc_cpu.json").read_text())
    att = r["attention"]
    section = readme_results()
    assert "benchmarks/results/synthetic_auc_cpu.json" in section
    for figure in (f"{r['mean_auc']:.3f}", f"{r['ci_low']:.3f}-{r['ci_high']:.3f}", f"{r['test_images']:,}",
                   f"{r['seconds']['train']:,.0f} s", f"{att['within_map_range']:.3f}",
                   f"{att['drop']:+.4f}", f"{att['drop_ci'][0]:+.4f} to {att['drop_ci'][1]:+.4f}"):
        assert figure in section, f"README's results do not state {figure!r} from synthetic_auc_cpu.json"
    fb = json.loads((RESULTS / "fast_backbone_cpu.json").read_text())
    best = {(x["candidate"], x["precision"], x["format"]): x["images_per_s"] for x in fb["rows"]}
    ratio = best[("small_resnet@112", "fp32", "default")] / best[("resnet18@64", "fp32", "default")]
    assert f"{ratio:.2f}" in section


def test_per_class_line_flags_the_rare_classes_and_marks_the_paper_mean(tmp_path):
    report = load_report()
    result = json.loads((RESULTS / "synthetic_auc_cpu.json").read_text())
    classes = list(result["per_class"])
    result["per_class"]["Hernia"] = None  # no test positive: no AUC
    result["per_class_positives"] = {c: (1 if c == "Pneumothorax" else 0 if c == "Hernia" else 40) for c in classes}
    result["resample"] = "patients"
    (tmp_path / "synthetic_auc_x.json").write_text(json.dumps(result))
    text = report.report(tmp_path)
    counted = [v for c, v in result["per_class"].items() if c not in ("Pneumothorax", "Hernia")]
    every = [v for v in result["per_class"].values() if v is not None]
    assert f"Pneumothorax {result['per_class']['Pneumothorax']:.2f} (1)*" in text and "Hernia – (0)*" in text
    assert f"Mean (counted classes): **{sum(counted) / len(counted):.3f}** (12 classes)" in text
    assert f"Mean (all classes, as the paper): {sum(every) / len(every):.3f} (marked" in text
    assert "fewer than 10 positive test images" in text and "bootstrap over test patients" in text
    assert "1 training seed" in text
