"""`hwsim sweep`: the grid, speedups against dense at each point, and field errors."""
from __future__ import annotations

import json

from cli import main


def test_sweep_grid_and_outputs(tmp_path, capsys):
    code = main(["sweep", "--arch", "sat", "--model", "resnet9", "--dataset", "cifar10",
                 "--set", "memory.dram_gbps=4.8,76.8", "--sparsity", "2:8", "--format", "json",
                 "--out", str(tmp_path)])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    rows = document["rows"]
    assert len(rows) == 4 and {r["sparsity"] for r in rows} == {"dense", "2:8"}
    by_key = {(r["memory.dram_gbps"], r["sparsity"]): r for r in rows}
    # more bandwidth never makes the same run slower; 2:8 is faster than dense at each point
    assert by_key[(76.8, "2:8")]["total_cycles"] <= by_key[(4.8, "2:8")]["total_cycles"]
    for bandwidth in (4.8, 76.8):
        assert by_key[(bandwidth, "2:8")]["speedup_vs_dense"] > 1
    assert (tmp_path / "sweep.json").is_file() and (tmp_path / "sweep_memory_dram_gbps.png").is_file()


def test_sweep_bad_field_is_one_line(capsys):
    assert main(["sweep", "--arch", "sat", "--set", "memory.dram_gb=1"]) == 2
    err = capsys.readouterr().err
    assert "dram_gbps" in err and err.count("\n") == 1
    assert main(["sweep", "--arch", "sat", "--set", "nonsense"]) == 2
