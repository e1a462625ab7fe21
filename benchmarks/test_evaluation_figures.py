"""The evaluation's figures script on a cohort of generated participants: it prints, per evaluated
feature type and device type, the row read as before issue 23 and the rows of now, then the curves.
Its figures are quoted by hand (docs/evaluation.md), never asserted here."""

from benchmarks import evaluation_figures
from keystroke_assets import features
from keystroke_assets.evaluation.declaration import declarations
from keystroke_assets.synthetic import demo_uploads, write_uploads


def test_figures_of_a_small_mixed_cohort(tmp_path, capsys):
    write_uploads(tmp_path / "uploads", demo_uploads(12, seed=3, aalto_share=0.25))
    evaluation_figures.main(["--workdir", str(tmp_path / "work"), "--uploads", str(tmp_path / "uploads")])
    before, curves = capsys.readouterr().out.split("Enrolment curve (web app: EER)")
    evaluated = [d.feature for d in declarations(features) if not d.not_evaluable]
    for feature in evaluated:
        lines = [line for line in before.splitlines() if line.split()[:2] == [feature, "desktop"]]
        assert any("before: every impostor" in line for line in lines), feature
        assert any("same source" in line for line in lines), feature
    assert "TypeNet" in curves and "enrolment curve" in curves
