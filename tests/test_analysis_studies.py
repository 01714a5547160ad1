"""What `python -m analysis` prints for a study: the sweep view first, only the tables and claims that apply."""

from __future__ import annotations

from pathlib import Path

from test_analysis_variants import write_run

from analysis.report import build_report


def rho_study(root: Path, *, with_sgd: bool) -> Path:
    """The README's study at one seed: SAM at rho 0.02, 0.05 (the preset's) and 0.1; SGD and GSAM if asked."""
    if with_sgd:
        write_run(root, optimizer="sgd", schedule="constant", seed=0, test_error=9.0, sharpness=0.8)
        write_run(root, optimizer="gsam", schedule="constant", seed=0, test_error=6.8, sharpness=0.25)
    write_run(root, optimizer="sam", schedule="constant", seed=0, test_error=7.0, sharpness=0.2)
    for rho, error in ((0.02, 7.5), (0.1, 6.5)):
        values = {"optimizer.rho": rho}
        write_run(root, optimizer="sam", schedule="constant", seed=0, test_error=error, variant_values=values)
    return root


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("## ")]


def test_a_rho_study_shows_its_sweep_first_and_leaves_out_single_cell_tables(tmp_path: Path) -> None:
    text = build_report(rho_study(tmp_path, with_sgd=True)).markdown()
    shown = headings(text)
    assert "sweep over optimizer.rho" in shown[0]
    assert not any("rho=0.02" in line or "rho=0.1" in line for line in shown)
    assert "2 tables of a single cell (one per value studied) left out" in text
    # SGD, SAM and GSAM at the preset's rho: "SAM and GSAM < SGD, constant" applies, so the claims are checked.
    assert "the paper's claims" in text


def test_a_study_of_one_column_prints_no_claims(tmp_path: Path) -> None:
    report = build_report(rho_study(tmp_path, with_sgd=False))
    text = report.markdown()
    assert "sweep over optimizer.rho" in headings(text)[0]
    assert "the paper's claims" not in text and "n/a" not in text
    assert "claims" not in report.latex().lower()
