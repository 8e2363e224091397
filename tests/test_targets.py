"""CPU target descriptions, host feature detection, toolchains and the `hwsim targets` CLI."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from cli import main as hwsim_main
from models.errors import UserError
from targets.cpu import (BUNDLED_DIR, CacheSizes, CpuTarget, bundled_cpu_targets,
                         cpu_target_from_dict, load_cpu_target)
from targets.features import (choose_llvm_core, detect_host_features, parse_cache_size_kb,
                              parse_host_features, vector_fma_units)
from targets.toolchains import (build_cache_key, build_executable, compile_to_assembly,
                                export_tvm_module, find_wasi_sysroot, require_tool)
from tests.conftest import require_tools

EXPECTED_BUNDLED = {"host", "snapdragon855", "snapdragon835", "cortex-a55", "wasm32-simd128"}

SD855 = yaml.safe_load((BUNDLED_DIR / "snapdragon855.yaml").read_text())

AMD_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
cpu MHz\t\t: 2600.000
flags\t\t: fpu sse sse2 avx avx2 fma f16c avx512f avx512vl avx512bw avx512dq avx512cd

processor\t: 1
vendor_id\t: SomethingElse
"""
INTEL_AVX2 = """vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 158
model name\t: Intel(R) Core(TM) i7-8700
cpu MHz\t\t: 3200.0
flags\t\t: fpu sse avx avx2 fma f16c
"""
AMD_ZEN3 = AMD_ZEN4.replace("avx512f avx512vl avx512bw avx512dq avx512cd", "").replace(
    "model\t\t: 17", "model\t\t: 1")


# ---------------------------------------------------------------- bundled files

def test_bundled_names():
    assert EXPECTED_BUNDLED <= set(bundled_cpu_targets())


@pytest.mark.parametrize("name", sorted(EXPECTED_BUNDLED))
def test_every_bundled_target_loads_consistently(name):
    target = load_cpu_target(name)
    assert isinstance(target, CpuTarget) and target.name == name
    assert target.source.endswith(f"{name}.yaml")
    assert target.vector_bits == {"neon": 128, "wasm_simd128": 128, "avx2": 256,
                                  "avx512": 512, "scalar": target.vector_bits}[target.simd]
    assert target.caches_kb.l1d_kb < target.caches_kb.l2_kb
    assert target.tvm_target["kind"] == "llvm"
    assert target.peak_gflops_f32 > 0
    hash(target)                                     # frozen and hashable despite the dict
    if target.isa == "aarch64":
        assert target.runner == "qemu" and "-static" in target.toolchain.ldflags
        assert f"-mcpu={target.core}" in target.toolchain.cflags
        assert target.tvm_target["mcpu"] == target.core
    if target.isa == "wasm32":
        assert target.runner == "wasmtime" and "-msimd128" in target.toolchain.cflags
        assert target.mca_triple == "aarch64-linux-gnu"


def test_published_phone_figures():
    sd855, sd835 = load_cpu_target("snapdragon855"), load_cpu_target("snapdragon835")
    assert (sd855.core, sd855.clock_mhz, sd855.caches_kb["l2"]) == ("cortex-a76", 2840, 512)
    assert (sd835.core, sd835.clock_mhz, sd835.caches_kb["l3"]) == ("cortex-a73", 2450, None)


def test_load_by_path_equals_load_by_name():
    by_name = load_cpu_target("cortex-a55")
    assert load_cpu_target(str(BUNDLED_DIR / "cortex-a55.yaml")) == by_name


def test_unknown_bundled_name_suggests():
    with pytest.raises(UserError, match="did you mean 'snapdragon855'"):
        load_cpu_target("snapdragon856")


# ---------------------------------------------------------------- bad files

def _mutated(change) -> dict:
    raw = copy.deepcopy(SD855)
    change(raw)
    return raw


BAD_CASES = [
    ("unknown top key", lambda r: r.update(clock_mzh=1), "clock_mzh", "did you mean 'clock_mhz'"),
    ("unknown cache key", lambda r: r["caches_kb"].update(l1i=64), "caches_kb.l1i", "known"),
    ("unknown toolchain key", lambda r: r["toolchain"].update(cflag=["-O2"]), "toolchain.cflag",
     "did you mean 'cflags'"),
    ("unknown tvm key", lambda r: r["tvm_target"].update(mcpuu="x"), "tvm_target.mcpuu", "mcpu"),
    ("negative size", lambda r: r["caches_kb"].update(l2=-512), "caches_kb.l2", "positive"),
    ("zero clock", lambda r: r.update(clock_mhz=0), "clock_mhz", "positive"),
    ("float core count", lambda r: r.update(cores=1.5), "cores", "positive integer"),
    ("bool is not a number", lambda r: r.update(fma_units=True), "fma_units", "positive integer"),
    ("string number", lambda r: r.update(dram_gbps="34"), "dram_gbps", "positive number"),
    ("isa enum", lambda r: r.update(isa="arm64"), "isa", "aarch64"),
    ("simd enum", lambda r: r.update(simd="sve"), "simd", "neon"),
    ("runner enum", lambda r: r.update(runner="qemu-user"), "runner", "did you mean 'qemu'"),
    ("runner for isa", lambda r: r.update(runner="wasmtime"), "runner", "cannot run aarch64"),
    ("vector width", lambda r: r.update(vector_bits=256), "vector_bits", "128"),
    ("missing key", lambda r: r.pop("toolchain"), "toolchain", "missing"),
    ("flags not a list", lambda r: r["toolchain"].update(cflags="-O3"), "toolchain.cflags",
     "list of strings"),
    ("detect off the host", lambda r: r.update(simd="detect"), "simd", "x86_64"),
    ("wrong kind", lambda r: r.update(kind="accelerator"), "kind", "expected 'cpu'"),
]


@pytest.mark.parametrize("label,change,field,text", BAD_CASES, ids=[case[0] for case in BAD_CASES])
def test_bad_yaml_is_a_user_error_naming_file_and_field(tmp_path, label, change, field, text):
    path = tmp_path / "phone.yaml"
    path.write_text(yaml.safe_dump(_mutated(change)))
    with pytest.raises(UserError) as caught:
        load_cpu_target(str(path))
    error = caught.value
    assert error.source == str(path) and error.field == field
    assert text in error.one_line()


def test_not_a_mapping_and_bad_syntax(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_cpu_target(str(listing))
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: cpu\nname: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML") as caught:
        load_cpu_target(str(broken))
    assert caught.value.source == str(broken)
    with pytest.raises(UserError, match="cannot read"):
        load_cpu_target(str(tmp_path / "missing.yaml"))


@settings(max_examples=25, deadline=None)
@given(l1d=st.integers(1, 1 << 12), l2=st.integers(1, 1 << 14), clock=st.floats(1, 10_000),
       cores=st.integers(1, 256))
def test_any_positive_sizes_round_trip(l1d, l2, clock, cores):
    raw = _mutated(lambda r: r.update(caches_kb={"l1d": l1d, "l2": l2}, clock_mhz=clock,
                                      cores=cores))
    target = cpu_target_from_dict(raw, "generated.yaml")
    assert target.caches_kb == CacheSizes(l1d, l2, None)
    assert (target.clock_mhz, target.cores) == (clock, cores)


# ---------------------------------------------------------------- host detection

def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_host_simd_matches_proc_cpuinfo():
    flags = _cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags line (not an x86 Linux machine)")
    host = load_cpu_target("host")
    expected = "avx512" if "avx512f" in flags else "avx2" if {"avx2", "fma"} <= flags else "scalar"
    assert host.simd == expected
    assert host.vector_bits == {"avx512": 512, "avx2": 256, "scalar": 128}[expected]
    for flag in ("avx2", "fma", "avx512f", "avx512bw"):
        assert (f"-m{flag}" in host.toolchain.cflags) == (flag in flags)
        assert (f"+{flag}" in host.tvm_target["mattr"]) == (flag in flags)
    assert host.host_features.flags == frozenset(flags)
    assert host.cores == len(__import__("os").sched_getaffinity(0))


def test_host_clock_is_the_measured_one():
    """The model's cycles -> ms uses the clock the core runs at, not cpuinfo's nominal MHz."""
    from targets.features import measure_clock_mhz
    require_tools("cc")
    measured = measure_clock_mhz()
    assert measured is not None and 300 < measured < 8000
    host = load_cpu_target("host")
    assert host.clock_mhz == measured
    # Synthetic features are never measured: their clock is the cpuinfo text's.
    features = parse_host_features(INTEL_AVX2, logical_cpus=2, caches_kb=(("l1d", 32), ("l2", 512)))
    assert features.measured_mhz is None and features.mhz == 3200.0
    # sampled again on demand (a bench whose rows run minutes apart): the same clock, within
    # the turbo's moves
    from targets.features import sample_clock_mhz
    again = sample_clock_mhz(runs=3)
    assert again is not None and 0.5 < again / measured < 2


def test_host_core_is_one_llvm_mca_knows():
    require_tools("llvm-mca")
    from targets.features import llvm_mca_cpus
    host = load_cpu_target("host")
    assert host.core in llvm_mca_cpus("x86_64")


INTEL_SPR = INTEL_AVX2.replace("model\t\t: 158", "model\t\t: 143").replace(
    "fma f16c", "fma f16c avx512f avx512vl avx512bw avx512dq avx512cd")
INTEL_UNKNOWN_AVX512 = INTEL_SPR.replace("model\t\t: 143", "model\t\t: 250")
# A KVM guest of this workplace: a Xeon with AMX reported as model 167 (Rocket Lake's number).
INTEL_AMX_MASKED = INTEL_SPR.replace("model\t\t: 143", "model\t\t: 167").replace(
    "avx512cd", "avx512cd avx512_fp16 amx_tile amx_bf16")


@pytest.mark.parametrize("text,known,simd,core,tvm_mcpu,fma_units", [
    # llvm-mca 14 has no znver4: llvm-mca gets znver3, TVM (LLVM 22) the exact znver4.
    (AMD_ZEN4, {"znver3", "znver2"}, "avx512", "znver3", "znver4", 1),
    (AMD_ZEN4, {"znver4", "znver3"}, "avx512", "znver4", "znver4", 1),
    (AMD_ZEN3, {"znver3"}, "avx2", "znver3", "znver3", 2),
    (INTEL_AVX2, {"skylake", "haswell"}, "avx2", "skylake", "skylake", 2),
    (INTEL_SPR, {"icelake-server", "skylake-avx512"}, "avx512", "icelake-server",
     "sapphirerapids", 2),
    # An unlisted model never gets a name implying more than the CPU has.
    (INTEL_UNKNOWN_AVX512, {"sapphirerapids", "skylake-avx512"}, "avx512", "skylake-avx512",
     "skylake-avx512", 2),
    # AMX means Sapphire Rapids or later, whatever model number the hypervisor shows.
    (INTEL_AMX_MASKED, {"sapphirerapids", "rocketlake", "skylake-avx512"}, "avx512",
     "sapphirerapids", "sapphirerapids", 2),
])
def test_synthetic_cpuinfo(text, known, simd, core, tvm_mcpu, fma_units):
    features = parse_host_features(text, logical_cpus=4, caches_kb=(("l1d", 32), ("l2", 512)))
    assert features.simd == simd
    assert choose_llvm_core(features, frozenset(known)) == core
    assert vector_fma_units(features) == fma_units
    raw = yaml.safe_load((BUNDLED_DIR / "host.yaml").read_text())
    raw["caches_kb"] = {"l1d": 32, "l2": 512}
    target = cpu_target_from_dict(raw, "host.yaml", host_features=features,
                                  llvm_cpus=frozenset(known))
    assert (target.simd, target.core, target.cores, target.fma_units) == (simd, core, 4, fma_units)
    assert target.tvm_target["mcpu"] == tvm_mcpu
    assert ("-mavx512f" in target.toolchain.cflags) == (simd == "avx512")


def test_first_cpuinfo_block_only_and_cache_sizes():
    assert parse_host_features(AMD_ZEN4, logical_cpus=1).vendor == "AuthenticAMD"
    assert [parse_cache_size_kb(text) for text in ("32K", "1M", "2048K\n")] == [32, 1024, 2048]
    features = detect_host_features()
    if features.caches_kb:
        assert dict(features.caches_kb)["l1d"] > 0


# ---------------------------------------------------------------- toolchains

def test_missing_tool_names_the_debian_package(tmp_path, monkeypatch):
    with pytest.raises(UserError) as caught:
        require_tool("clang", "clang", path=str(tmp_path))
    assert "'clang' not found" in str(caught.value)
    assert "install the Debian package clang (apt-get install clang)" in str(caught.value)
    monkeypatch.setenv("PATH", str(tmp_path))                   # a PATH with no compilers
    source = tmp_path / "empty.c"
    source.write_text("int main(void) { return 0; }\n")
    for name, package in (("snapdragon855", "gcc-aarch64-linux-gnu"), ("wasm32-simd128", "clang"),
                          ("host", "gcc")):
        with pytest.raises(UserError, match=f"apt-get install {package}"):
            build_executable(load_cpu_target(name), [source], tmp_path / "out")


def test_missing_wasi_sysroot_names_wasi_libc(tmp_path, monkeypatch):
    monkeypatch.delenv("WASI_SYSROOT", raising=False)
    with pytest.raises(UserError, match="wasi-libc"):
        find_wasi_sysroot([str(tmp_path)])
    monkeypatch.setenv("WASI_SYSROOT", str(tmp_path))
    with pytest.raises(UserError, match="WASI_SYSROOT"):
        find_wasi_sysroot()


SAXPY = """
void saxpy(int n, float a, const float *x, float *restrict y) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}
"""
# What the vectorized loop must contain on each target: evidence the SIMD flags were applied.
ASSEMBLY_MARKERS = {"host": ("vfmadd",), "snapdragon855": ("fmla",), "wasm32-simd128": ("f32x4",)}
TOOLS = {"host": ("gcc",), "snapdragon855": ("aarch64-linux-gnu-gcc",),
         "wasm32-simd128": ("clang", "wasm-ld")}


@pytest.mark.toolchain
@pytest.mark.parametrize("name", sorted(ASSEMBLY_MARKERS))
def test_compile_to_assembly_uses_the_targets_simd(tmp_path, name):
    require_tools(*TOOLS[name])
    source = tmp_path / "saxpy.c"
    source.write_text(SAXPY)
    assembly = compile_to_assembly(load_cpu_target(name), source, tmp_path / "saxpy.s")
    text = assembly.read_text()
    assert any(marker in text for marker in ASSEMBLY_MARKERS[name]), text[:2000]


@pytest.mark.toolchain
def test_build_cache_reuses_identical_builds_only(tmp_path):
    require_tools("gcc")
    host = load_cpu_target("host")
    source = tmp_path / "main.c"
    source.write_text("#include <stdio.h>\nint main(void) { printf(\"%d\\n\", VALUE); return 0; }\n")
    cache = tmp_path / "cache"
    first = build_executable(host, [source], tmp_path / "a", defines={"VALUE": 1}, cache_dir=cache)
    second = build_executable(host, [source], tmp_path / "b", defines={"VALUE": 1}, cache_dir=cache)
    assert first.read_bytes() == second.read_bytes() and len(list(cache.iterdir())) == 1
    build_executable(host, [source], tmp_path / "c", defines={"VALUE": 2}, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    key = build_cache_key([source], ["-O3"], "gcc 12")
    source.write_text(source.read_text() + "\n")
    assert build_cache_key([source], ["-O3"], "gcc 12") != key
    assert build_cache_key([source], ["-O2"], "gcc 12") != build_cache_key([source], ["-O3"], "gcc 12")


@pytest.mark.toolchain
def test_compile_error_is_a_user_error_with_diagnostics(tmp_path):
    require_tools("gcc")
    source = tmp_path / "broken.c"
    source.write_text("int main(void) { return undefined_name; }\n")
    with pytest.raises(UserError, match="undefined_name") as caught:
        build_executable(load_cpu_target("host"), [source], tmp_path / "broken")
    assert not (tmp_path / "broken").exists()
    assert caught.value.field == "toolchain"


# What TVM must emit for a vectorized multiply-add on each target's tvm_target.
TVM_SIMD_MARKERS = {"aarch64": "fmla", "x86_64": "vfmadd", "wasm32": "f32x4.mul"}


@pytest.mark.parametrize("name", sorted(EXPECTED_BUNDLED))
def test_every_tvm_target_builds_simd_code(name):
    import tvm
    import tvm.s_tir as s_tir
    from tvm import te

    target = load_cpu_target(name)
    a = te.placeholder((256,), name="A")
    b = te.placeholder((256,), name="B")
    c = te.compute((256,), lambda i: a[i] * b[i] + a[i], name="C")
    schedule = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([a, b, c])}))
    (loop,) = schedule.get_loops(schedule.get_sblock("C"))
    _, inner = schedule.split(loop, [None, target.vector_lanes_f32])
    schedule.vectorize(inner)
    library = tvm.tirx.build(schedule.mod, target=tvm.target.Target(target.tvm_target))
    assert TVM_SIMD_MARKERS[target.isa] in library.inspect_source("asm")


@pytest.mark.toolchain
def test_export_tvm_module_links_for_the_targets_isa(tmp_path):
    import tvm
    from tvm import te

    from targets.runners.qemu import elf_machine

    a = te.placeholder((64,), name="A")
    module = tvm.IRModule({"main": te.create_prim_func([a, te.compute((64,), lambda i: a[i] * 2)])})
    for name, machine, tools in (("host", 62, ("gcc",)),
                                 ("snapdragon855", 183, ("aarch64-linux-gnu-gcc",))):
        require_tools(*tools)
        target = load_cpu_target(name)
        library = tvm.tirx.build(module, target=tvm.target.Target(target.tvm_target))
        shared = export_tvm_module(library, target, tmp_path / f"{name}.so")
        assert elf_machine(shared) == machine and shared.read_bytes()[16] == 3   # ET_DYN
    assert sorted(path.name for path in tmp_path.iterdir()) == ["host.so", "snapdragon855.so"]


# ---------------------------------------------------------------- CLI

def test_cli_lists_targets(capsys):
    assert hwsim_main(["targets", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert EXPECTED_BUNDLED <= {row["name"] for row in listing["cpus"]}
    host_row = next(row for row in listing["cpus"] if row["name"] == "host")
    assert host_row["toolchain_ok"] == (shutil.which("gcc") is not None)
    assert hwsim_main(["targets"]) == 0
    assert "snapdragon855" in capsys.readouterr().out


def test_cli_show_host_and_errors(capsys):
    assert hwsim_main(["targets", "show", "host", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["simd"] == load_cpu_target("host").simd
    assert "vendor" in shown["host_features"]
    assert hwsim_main(["targets", "show", "snapdragon835"]) == 0
    assert "cortex-a73" in capsys.readouterr().out
    assert hwsim_main(["targets", "show", "snapdragon8555"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_cli_lists_accelerators_and_runners(capsys):
    """The listing reads the bundled accelerator files and every runner's own record."""
    from targets.descriptions import bundled_names
    from targets.runners import RUNNER_SPECS
    assert hwsim_main(["targets", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {row["source"].rsplit("/", 1)[1][:-5] for row in listing["accelerators"]} == \
        set(bundled_names("accelerator")) and "sat" in bundled_names("accelerator")
    assert all(row["kind"] == "accelerator" for row in listing["accelerators"])
    assert [row["name"] for row in listing["runners"]] == [spec.spelling for spec in RUNNER_SPECS]
    qemu = next(row for row in listing["runners"] if row["name"] == "qemu")
    assert qemu["timing_real"] is False and qemu["isas"] == ["aarch64"]


def test_show_takes_accelerators_by_the_name_arch_takes(capsys, tmp_path):
    """`hwsim targets` lists accelerators by the name --arch accepts, and `targets show` of that
    name or of an accelerator file prints the validated accelerator (not a CPU-schema error)."""
    assert hwsim_main(["targets", "--format", "json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)["accelerators"]]
    assert "sat" in names
    for name in names:
        assert hwsim_main(["targets", "show", name, "--format", "json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["kind"] == "accelerator" and shown["array"]["rows"] >= 1
    assert hwsim_main(["targets", "show", "targets/accelerators/sat.yaml"]) == 0
    assert "sat-vcu1525" in capsys.readouterr().out
    bad = tmp_path / "acc.yaml"
    bad.write_text("kind: accelerator\nbogus: 1\n")
    assert hwsim_main(["targets", "show", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "bogus" in error and "array" in error and "vector_bits" not in error


def test_one_reader_for_both_kinds(tmp_path):
    """Accelerator and CPU files go through the same reader: the same bounded YAML errors,
    the same unknown-key suggestion, the same range check, each naming file and field."""
    from hwsim.arch import load_arch
    from targets.descriptions import read_target
    duplicate = "kind: cpu\nname: a\nname: b\n"
    for kind, load in (("cpu", load_cpu_target), ("accelerator", load_arch)):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(duplicate.replace("cpu", kind))
        with pytest.raises(UserError, match="duplicate key 'name'") as error:
            load(str(path))
        assert error.value.source == str(path)
    source, document = read_target(str(BUNDLED_DIR / "snapdragon855.yaml"))
    assert document["kind"] == "cpu" and source.endswith("snapdragon855.yaml")
    with pytest.raises(UserError, match="unknown key 'clock_mhzz'") as error:
        cpu_target_from_dict({**SD855, "clock_mhzz": 1}, "x.yaml")
    assert "did you mean 'clock_mhz'" in error.value.fix
