"""Issue 16, item by item: what a target file may run, names that become file names,
SCALE-Sim sizes, IR field types, batch and grid sizes, 2-D MatMul lowering, escapes."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from cli import main
from models.errors import UserError, printable_text
from models.ir import BatchMatmul, GraphBuilder, model_from_dict
from models.lowering import lower
from targets.cpu import BUNDLED_DIR, TRUST_ENV, cpu_target_from_dict, load_cpu_target

PHONE = yaml.safe_load((BUNDLED_DIR / "snapdragon855.yaml").read_text())


def _with(section: str | None, key: str, value):
    raw = copy.deepcopy(PHONE)
    (raw[section] if section else raw)[key] = value
    return raw


# ---------------------------------------------------------------- toolchains


@pytest.mark.parametrize("name", sorted(path.stem for path in BUNDLED_DIR.glob("*.yaml")))
def test_bundled_targets_pass_the_toolchain_checks(name):
    load_cpu_target(name)


@pytest.mark.parametrize("cc", ["gcc", "clang", "cc", "clang-15", "gcc-12", "aarch64-linux-gnu-gcc",
                                "x86_64-linux-gnu-gcc-12", "wasm32-wasi-clang", "emcc"])
def test_compiler_names_are_accepted(cc):
    assert cpu_target_from_dict(_with("toolchain", "cc", cc), "t.yaml").toolchain.cc == cc


@pytest.mark.parametrize("cc", ["/bin/sh", "sh", "python3", "./gcc", "/tmp/gcc", "gcc; rm -rf /",
                                "bash -c gcc", "make"])
def test_other_programs_are_refused_as_compilers(cc):
    with pytest.raises(UserError, match="toolchain.cc"):
        cpu_target_from_dict(_with("toolchain", "cc", cc), "t.yaml")


@pytest.mark.parametrize("flags", [["-wrapper", "/bin/sh,-c,touch /tmp/x"], ["-fplugin=/tmp/p.so"],
                                   ["-fplugin-arg-x-y"], ["-B/tmp/tools"], ["-B", "/tmp"],
                                   ["-specs=/tmp/specs"], ["@/tmp/response"], ["--sysroot=/tmp/x"],
                                   ["--config=/tmp/c.cfg"], ["-Xclang", "-load"],
                                   ["-mllvm", "-load=/tmp/p.so"], ["-Wl,-plugin,/tmp/p.so"],
                                   ["-Wp,-MD,/etc/x"], ["-fuse-ld=/tmp/ld"], ["-o", "/etc/x"],
                                   ["-include", "/etc/shadow"], ["-save-temps"]])
def test_flags_that_run_or_load_programs_are_refused(flags):
    with pytest.raises(UserError, match=r"toolchain\.cflags\[\d\]"):
        cpu_target_from_dict(_with("toolchain", "cflags", flags), "t.yaml")


@pytest.mark.parametrize("flags", [["-Wl,-plugin=/x.so"], ["-fuse-ld=/tmp/ld"], ["-Wl,-rpath,/tmp"],
                                   ["-Wl,--dynamic-linker=/tmp/ld.so"], ["/tmp/evil.o"]])
def test_ldflags_that_run_or_load_programs_are_refused(flags):
    with pytest.raises(UserError, match=r"toolchain\.ldflags\[\d\]"):
        cpu_target_from_dict(_with("toolchain", "ldflags", flags), "t.yaml")


def test_code_generation_flags_are_accepted():
    flags = ["-O2", "-ffast-math", "-march=armv8.2-a+fp16", "-mtune=cortex-a76", "-DNDEBUG",
             "-DTILE=4", "-Wall", "-std=c11", "-g", "--sysroot=/usr/aarch64-linux-gnu"]
    assert cpu_target_from_dict(_with("toolchain", "cflags", flags), "t.yaml").toolchain.cflags \
        == tuple(flags)


def test_the_user_can_trust_a_file(monkeypatch):
    monkeypatch.setenv(TRUST_ENV, "1")
    target = cpu_target_from_dict(_with("toolchain", "cflags", ["-B/opt/mytools"]), "t.yaml")
    assert target.toolchain.cflags == ("-B/opt/mytools",)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "a\x1b[2J", "", "x" * 65])
def test_target_names_that_are_not_file_names_are_refused(name):
    with pytest.raises(UserError, match="name"):
        cpu_target_from_dict(_with(None, "name", name), "t.yaml")


# ---------------------------------------------------------------- SCALE-Sim sizes


@pytest.mark.parametrize("cell, match", [("1" + "0" * 30, "31-digit"), (str(2 ** 63), "sane range"),
                                         ("2147483649", "sane range"), ("1e3", "not a whole number"),
                                         ("0", "M is 0"), ("٣", "not a whole number")])
def test_scalesim_sizes_are_bounded(cell, match, tmp_path):
    from models.importers.scalesim import load_topology

    path = tmp_path / "t.csv"
    path.write_text(f"Layer, M, N, K,\ng, {cell}, 4, 4,\n")
    with pytest.raises(UserError, match=match):
        load_topology(str(path))


def test_scalesim_field_over_the_csv_limit(tmp_path):
    from models.importers.scalesim import load_topology

    path = tmp_path / "t.csv"
    path.write_text('Layer, M, N, K,\n"' + "x" * 200_000 + '", 4, 4, 4,\n')
    with pytest.raises(UserError, match="field larger than field limit"):
        load_topology(str(path))


def test_scalesim_gemm_of_a_huge_tensor(tmp_path):
    from models.importers.scalesim import load_topology

    path = tmp_path / "t.csv"
    path.write_text("Layer, M, N, K,\ng, 2147483648, 4, 2147483648,\n")
    with pytest.raises(UserError, match="M x K"):
        load_topology(str(path))


# ---------------------------------------------------------------- IR JSON fields


def _ir(**conv_fields):
    conv = {"name": "c", "kind": "conv2d", "in_channels": 3, "out_channels": 8, "kernel": [3, 3],
            "inputs": ["x"], **conv_fields}
    return {"format": "sparse-ir", "version": 1, "name": "m",
            "nodes": [{"name": "x", "kind": "input", "shape": [1, 3, 8, 8]}, conv]}


@pytest.mark.parametrize("fields, match", [
    ({"in_channels": "3"}, "c.in_channels"), ({"in_channels": True}, "c.in_channels"),
    ({"kernel": [[3], [3]]}, "c.kernel"), ({"kernel": [3, 3, 3]}, "c.kernel"),
    ({"stride": 0}, "c.stride"), ({"groups": 2 ** 62}, "c.groups"), ({"bias": "yes"}, "c.bias"),
    ({"kind": ["conv2d"]}, "kind"), ({"sparsity": 8}, "c.sparsity"), ({"inputs": "x"}, "inputs"),
])
def test_ir_fields_are_typed(fields, match):
    with pytest.raises(UserError, match=match):
        model_from_dict(_ir(**fields), source="m.json")


def test_ir_huge_input_is_refused_up_front():
    document = _ir()
    document["nodes"][0]["shape"] = [1, 3, 2 ** 30, 2 ** 30]
    with pytest.raises(UserError, match="tensor_elements|more than one tensor"):
        model_from_dict(document, source="m.json")


# ---------------------------------------------------------------- batch, grid, GEMMs


def test_batch_beyond_the_sane_range_is_refused():
    from tests.conftest import small_cnn

    with pytest.raises(UserError, match="--batch.*sane range"):
        lower(small_cnn(), "infer", batch=10 ** 9)
    assert lower(small_cnn(), "infer", batch=65536)


def test_two_d_matmul_lowers_to_one_real_gemm():
    builder = GraphBuilder("mm")
    a = builder.input("a", (4, 8))
    b = builder.input("b", (8, 16))
    builder.add(BatchMatmul("mm"), a, b)
    model = builder.build()
    (gemm,) = lower(model, "infer")
    assert (gemm.groups, gemm.M, gemm.N, gemm.K) == (1, 4, 16, 8) and gemm.macs == 4 * 16 * 8
    (scaled,) = lower(model, "infer", batch=8)
    assert (scaled.groups, scaled.M) == (1, 8)


def test_a_huge_sweep_is_refused_with_an_estimate(capsys):
    rows = ",".join(str(v) for v in range(8, 808, 8))
    assert main(["sweep", "--arch", "sat", "--set", f"array.rows={rows}",
                 "--set", f"array.cols={rows}"]) == 2
    err = capsys.readouterr().err
    assert "20,000 simulations" in err and "s each" in err and "--yes" in err
    assert len(err.strip().splitlines()) == 1


def test_max_points_override_lets_a_grid_run(capsys):
    assert main(["sweep", "--arch", "sat", "--model", "resnet9", "--mode", "infer",
                 "--set", "array.rows=16,32", "--max-points", "2", "--yes",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "warning: the grid is 4 simulations" in captured.err
    assert len(json.loads(captured.out)["rows"]) == 4


def test_printable_text_keeps_lines_and_escapes_controls():
    assert printable_text("a\tb\nc\x1b[2J\r\u202e") == "a\tb\nc\\x1b[2J\\r\\u202e"
