"""Lowering: GEMM shapes, phase order, and how sparsity cuts MACs."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from models.errors import UserError
from models.ir import Conv2d, Dense, GraphBuilder
from models.lowering import lower, phase_totals
from models.patterns import BDWP, NM, Unstructured
from tests.conftest import small_cnn


def test_conv_lowers_the_scalesim_way(cnn):
    ff = {w.layer: w for w in lower(cnn, "infer", batch=2)}
    conv2 = ff["conv2"]
    assert (conv2.M, conv2.N, conv2.K) == (2 * 8 * 8, 32, 16 * 9)
    assert [w.phase for w in lower(cnn, "infer")] == ["FF"] * 4


def test_training_order_and_first_layer_has_no_bp(cnn):
    workloads = lower(cnn, "train")
    phases = [(w.layer, w.phase) for w in workloads]
    assert phases[:4] == [("conv1", "FF"), ("conv2", "FF"), ("conv3", "FF"), ("fc", "FF")]
    assert phases[4:] == [("fc", "BP"), ("fc", "WU"), ("conv3", "BP"), ("conv3", "WU"),
                          ("conv2", "BP"), ("conv2", "WU"), ("conv1", "WU")]


def test_backward_gemms_have_forward_macs(cnn):
    by_key = {(w.layer, w.phase): w for w in lower(cnn, "train", batch=3)}
    for layer in ("conv2", "conv3", "fc"):
        ff, bp, wu = (by_key[(layer, phase)] for phase in ("FF", "BP", "WU"))
        assert ff.dense_macs == bp.dense_macs == wu.dense_macs
        assert bp.K == ff.N and wu.K == ff.M        # BP reduces over Cout, WU over pixels


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), m_power=st.integers(1, 4), channels=st.sampled_from([16, 32, 48]),
       batch=st.integers(1, 4))
def test_bdwp_cuts_ff_and_bp_by_n_over_m_and_leaves_wu_dense(n, m_power, channels, batch):
    m = 2 ** m_power
    n = min(n, m)
    model = small_cnn(channels).with_sparsity(BDWP(n, m))
    workloads = lower(model, "train", batch=batch)
    totals = phase_totals(workloads)
    assert sum(t["macs"] for t in totals.values()) == sum(w.macs for w in workloads)
    for w in workloads:
        if w.phase == "WU":
            assert not w.sparse and w.macs == w.dense_macs
        elif w.sparse:
            assert w.macs * m == w.dense_macs * n
    # every layer whose channels divide by m is sparse in FF and BP
    for w in workloads:
        if w.layer in ("conv2", "conv3", "fc") and w.phase == "FF":
            in_channels = {"conv2": channels, "conv3": 2 * channels, "fc": 2 * channels}[w.layer]
            assert w.sparse == (in_channels % m == 0)
    first = [w for w in workloads if w.layer == "conv1" and w.phase == "FF"][0]
    assert first.sparse == (3 % m == 0)


def test_plain_nm_prunes_forward_only(cnn):
    workloads = lower(cnn.with_sparsity(NM(2, 8)), "train")
    assert any(w.sparse for w in workloads if w.phase == "FF")
    assert not any(w.sparse for w in workloads if w.phase in ("BP", "WU"))


def test_unstructured_density_scales_ff_and_bp(cnn):
    workloads = lower(cnn.with_sparsity(Unstructured(0.5)), "train")
    for w in workloads:
        assert w.sparse == (w.phase != "WU")


def test_dense_layer_rows_scale_with_batch():
    builder = GraphBuilder("mlp")
    x = builder.input("tokens", (1, 128, 64))
    builder.add(Dense("fc", 64, 32), x)
    (w,) = lower(builder.build(), "infer", batch=4)
    assert (w.M, w.N, w.K) == (512, 32, 64)


def test_depthwise_lowers_per_group():
    builder = GraphBuilder("dw")
    x = builder.input("image", (1, 8, 10, 10))
    builder.add(Conv2d("dw", 8, 8, 3, padding=1, groups=8), x)
    (w,) = lower(builder.build(), "infer")
    assert (w.groups, w.M, w.N, w.K, w.op_kind) == (8, 100, 1, 9, "depthwise")


def test_bad_mode_and_batch(cnn):
    with pytest.raises(UserError):
        lower(cnn, "training")
    with pytest.raises(UserError):
        lower(cnn, "train", batch=0)
