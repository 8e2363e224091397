"""`hwsim run`'s dense baselines (issue 15): numpy's BLAS under thread control, the GEMM of
each dense-build layer, the fastest baseline per layer, named in the table and the JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli import main
from codegen.dense_baseline import Spread, best_dense, gemm_shape
from targets.engines import blas


def test_blas_thread_count_is_set_and_restored():
    if blas.problems():
        pytest.skip("; ".join(blas.problems()))
    library = blas.find_library()
    before = library.get_threads()
    with blas.threads(1):
        assert library.get_threads() == 1
        assert "1 threads" in blas.info()
    assert library.get_threads() == before
    call = blas.gemm_call(16, 8, 4)
    assert call().shape == (16, 4)
    assert len(blas.time_calls(call, 3)) == 3


def test_gemm_shape_of_each_layer_kind():
    assert gemm_shape({"kind": "nmgemm", "ints": [64, 32, 49], "output_shape": [64, 7, 7]}) == (64, 32, 49)
    conv = {"kind": "nmconv", "ints": [32, 3, 224, 224, 3, 3, 2, 1], "output_shape": [32, 112, 112]}
    assert gemm_shape(conv) == (32, 27, 112 * 112)
    assert gemm_shape({"kind": "pool", "ints": [8, 49], "output_shape": [8, 1, 1]}) is None


def test_best_dense_is_the_smallest_median():
    dense = {"codegen": Spread((3.0, 1.0, 2.0)), "blas": Spread((1.5, 1.5, 9.0)), "tvm": Spread((4.0,))}
    name, spread = best_dense(dense)
    assert name == "blas" and spread.median_s == 1.5
    assert Spread((1.0, 2.0, 3.0, 4.0)).iqr_s == pytest.approx(1.5)


@pytest.mark.slow
def test_run_names_the_baseline_of_every_speedup(tmp_path, capsys):
    out = tmp_path / "mnv1"
    assert main(["codegen", "--target", "host", "--model", "mobilenet_v1", "--dataset", "cifar10",
                 "--sparsity", "2:8", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--format", "json", "--repeats", "2", "--rounds", "2",
                 "--threads", "1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["threads"] == 1 and document["rounds"] == 2
    by_layer = {row["layer"]: row for row in document["baseline_layers"]}
    assert by_layer["block1.pw.relu"]["sparse"]["n"] == 4          # 2 rounds x 2 repeats
    weighted = [row for row in document["baseline_layers"] if "pw" in row["layer"]]
    want = {"codegen", "blas"} if not blas.problems() else {"codegen"}
    for row in weighted:
        assert set(row["dense"]) == want
        fastest = min(row["dense"], key=lambda name: row["dense"][name]["median_s"])
        assert row["best_dense"] == fastest
        assert row["speedup_vs_best_dense"] == pytest.approx(
            row["dense"][fastest]["median_s"] / row["sparse"]["median_s"])
    totals = document["totals_s"]
    assert totals["best_dense"] <= totals["codegen"] + 1e-12
    if "onnxruntime" in json.dumps(document["engines"]):
        (engine,) = document["engines"].values()
        assert engine["n"] == 4 and engine["median_s"] > 0
    assert main(["run", str(out), "--repeats", "1", "--rounds", "1", "--threads", "1",
                 "--no-engines"]) == 0
    table = capsys.readouterr().out
    assert "speedup" in table and " vs " in table and "fastest dense" in table
    pointwise = [line for line in table.splitlines() if line.startswith("block1.pw")]
    assert pointwise and pointwise[0].split()[-2] in ("codegen", "blas")


def test_unknown_baseline_is_one_line(tmp_path, capsys):
    assert main(["run", str(tmp_path), "--baselines", "codegen,mkl"]) == 2
    assert "mkl" in capsys.readouterr().err


@pytest.mark.parametrize("n,m,shared,mr", [(1, 1, True, 4), (2, 8, False, 4), (2, 8, True, 4), (3, 3, False, 3)])
def test_one_pixel_matrix_vector_path_matches_numpy(n, m, shared, mr, tmp_path):
    """nmgemm's p == 1 path (a dense layer at batch 1) on ragged cout and k, with bias and relu6."""
    from codegen.kernels.nmgemm import NmGemmParams, mask_nm, mask_nm_shared
    from codegen.kernels.nmgemm import run_layer as run_nmgemm_layer
    from tests.conftest import require_tools

    require_tools("cc")
    rng = np.random.default_rng(n * 10 + m)
    cout, k = 13, 40 if m == 8 else 37
    w = rng.standard_normal((cout, k)).astype(np.float32)
    w = w if n == m else (mask_nm_shared(w, n, m, mr) if shared else mask_nm(w, n, m))
    x = rng.standard_normal((k, 1)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    for threads in (1, 2):
        params = NmGemmParams(n, m, "avx2", mr=mr, nr=24, unroll=2, shared=shared, threads=threads,
                              act="relu6")
        result = run_nmgemm_layer(w, x, bias, params, "host", tmp_path, repeats=1)
        assert result.max_abs_error < 1e-4


@pytest.mark.parametrize("pixels", [49, 200, 3136])
def test_threaded_spmm_and_dwconv_match_numpy(pixels, tmp_path):
    """spmm.c.j2 over pixel chunks and dwconv.c.j2 over channels on 2 threads (large enough
    to start the team) agree with numpy, ragged tails included."""
    from codegen.kernels.dwconv import DwconvParams
    from codegen.kernels.dwconv import run_layer as run_dwconv_layer
    from codegen.kernels.spmm import SpmmParams, mask_blocks
    from codegen.kernels.spmm import run_layer as run_spmm_layer
    from tests.conftest import require_tools

    require_tools("cc")
    rng = np.random.default_rng(pixels)
    cout, cin = 1024, 256      # >= 2M kept MACs at every pixel count: the team starts
    w = mask_blocks(rng.standard_normal((cout, cin)).astype(np.float32), 1, 4, 0.3)
    x = rng.standard_normal((cin, pixels)).astype(np.float32)
    result = run_spmm_layer(w, x, None, SpmmParams("avx2", mr=32, nr=1, kb=4, threads=2, act="relu"),
                            "host", tmp_path, repeats=1)
    assert result.kernel.endswith("_t2_relu") and result.max_abs_error < 1e-4
    side = int(round(np.sqrt(pixels)))
    planes = rng.standard_normal((64, side, side + 1)).astype(np.float32)
    taps = rng.standard_normal((64, 3, 3)).astype(np.float32)
    for stride in (1, 2):
        result = run_dwconv_layer(taps, planes, None, DwconvParams("avx2", 3, stride, "relu6", threads=2),
                                  1, "host", tmp_path, repeats=1)
        assert result.max_abs_error < 1e-4
