"""`hwsim report`: the HTML page from a results folder."""
from __future__ import annotations

from cli import main


def test_report_embeds_totals_and_plots(tmp_path, capsys):
    assert main(["simulate", "--arch", "sat", "--model", "resnet9", "--dataset", "cifar10",
                 "--out", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in page and "2:8" in page and "layer1.conv" in page


def test_report_without_summary_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err
