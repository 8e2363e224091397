"""The scheduler: each sparse op's loop nest in TVM, candidate schedules, ranking, tuning log.

An N:M GEMM is expressed in TE with the index buffer as an input,

    Y[i, j] = sum_r values[i, r] * X[rows[i // share, r], j]     r over groups * n nonzeros

(``rows`` = absolute row of X, ``share`` = rows sharing one index set, 1 for plain N:M).
A candidate (register tile mr x nr, group unroll, k-block, prefetch, threads) is applied with
``tvm.s_tir.Schedule`` transformations (split / reorder / cache_write / vectorize / unroll /
parallel), checked to build for the target (and, on the host, the TVM-built sparse kernel is
run against numpy), and mapped onto the template's parameters (``NmGemmParams``).

Candidates are ranked by measuring the rendered template kernel on the target's runner where
timing is real (host, wasm32), and by an analytic cycle estimate where it is not (aarch64
under qemu); every log entry says which ("measured" / "predicted"). The TVM dense baseline of
each shape is measured (or predicted) and logged in the same log.

    python -m codegen.schedule --target host --shape 1024x1024x1008 --pattern 2:8 \\
        --log tuning/host.jsonl --budget 12
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codegen import build as kernel_build
from codegen.isa import get_isa
from codegen.kernels.nmgemm import NmGemmParams
from codegen.tuning_log import TuningLog
from models.errors import UserError
from targets.cpu import CpuTarget

LOAD_PORTS = 2          # vector loads per cycle assumed by the analytic model (A76, Zen, Skylake)
LOOP_OVERHEAD_CYCLES = 1.0
L2_BYTES_PER_CYCLE = 64.0   # L2 -> L1 bytes per cycle (Zen 4, Cortex-A76: one line per cycle)
L1_USABLE = 0.75            # share of L1D the activation panel may fill (weights stream through)


@dataclass(frozen=True)
class SparseOp:
    """One N:M GEMM to schedule: Y (cout x p) = W (cout x k, n:m along k) X (k x p);
    ``share`` output rows keep one index set (1: plain N:M)."""
    cout: int
    k: int
    p: int
    n: int
    m: int
    share: int = 1

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}" + (f"/rows{self.share}" if self.share > 1 else "")

    @property
    def key(self) -> str:
        return f"nmgemm:{self.cout}x{self.k}x{self.p}:{self.pattern}"

    @property
    def groups(self) -> int:
        return -(-self.k // self.m)


@dataclass(frozen=True)
class Candidate:
    """Schedule knobs: register tile mr x nr, groups unrolled, k-block (groups), prefetch
    distance (groups), threads."""
    mr: int
    nr: int
    unroll: int = 1
    kc: int = 0
    prefetch: int = 0
    threads: int = 1


# ---------------------------------------------------------------- the loop nest in TVM


def sparse_prim_func(op: SparseOp):
    """Returns the TE PrimFunc of the op (inputs values, rows, X; output Y)."""
    from tvm import te

    nonzeros = op.groups * op.n
    index_rows = -(-op.cout // op.share)
    values = te.placeholder((op.cout, nonzeros), name="values", dtype="float32")
    rows = te.placeholder((index_rows, nonzeros), name="rows", dtype="int32")
    x = te.placeholder((op.k, op.p), name="X", dtype="float32")
    r = te.reduce_axis((0, nonzeros), name="r")
    share = op.share
    y = te.compute((op.cout, op.p),
                   lambda i, j: te.sum(values[i, r] * x[rows[i // share, r], j], axis=r), name="Y")
    return te.create_prim_func([values, rows, x, y])


def tvm_schedule(op: SparseOp, candidate: Candidate, lanes: int):
    """Returns the scheduled IRModule of ``op`` for ``candidate``.

    Before: for i, j, r: Y[i, j] += values[i, r] * X[rows[i, r], j]
    After:  for io (parallel), jo: Y_local = 0
                for ro, [rk (k-block)], ri (unrolled: unroll*n nonzeros), ii (unrolled mr),
                    jv_outer (unrolled), jv (vectorised lanes): Y_local += ...
            Y[tile] = Y_local"""
    import tvm
    import tvm.s_tir as s_tir

    from codegen.dense_baseline import register_tile

    sch = s_tir.Schedule(tvm.IRModule({"main": sparse_prim_func(op)}))
    block = sch.get_sblock("Y")
    i, j, r = sch.get_loops(block)
    io, ii = sch.split(i, [None, candidate.mr])
    jo, ji = sch.split(j, [None, candidate.nr])
    ro, ri = sch.split(r, [None, op.n * candidate.unroll])
    if candidate.kc:
        rb, ro = sch.split(ro, [None, max(1, candidate.kc // candidate.unroll)])
        sch.reorder(io, jo, rb, ro, ri, ii, ji)
    else:
        sch.reorder(io, jo, ro, ri, ii, ji)
    register_tile(sch, block, jo, ii, ji, lanes)
    sch.unroll(ri)
    if candidate.threads > 1:
        sch.parallel(io)
    sch.decompose_reduction(block, sch.get_loops(block)[2])
    return sch.mod


def tvm_inputs(op: SparseOp, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns random (values, rows, X) with a valid n:m structure for the TVM kernel."""
    rng = np.random.default_rng(seed)
    index_rows = -(-op.cout // op.share)
    positions = np.argsort(rng.random((index_rows, op.groups, op.m)), axis=-1)[..., :op.n]
    rows = np.sort(positions, axis=-1) + (np.arange(op.groups) * op.m)[None, :, None]
    rows = np.minimum(rows, op.k - 1).reshape(index_rows, -1).astype(np.int32)
    values = rng.standard_normal((op.cout, op.groups * op.n)).astype(np.float32)
    x = rng.standard_normal((op.k, op.p)).astype(np.float32)
    return values, rows, x


def validate_with_tvm(op: SparseOp, candidate: Candidate, target: CpuTarget,
                      run_on_host: bool) -> dict:
    """Builds the candidate's TVM schedule for the target; on the host also runs it against
    numpy, on a cut-down op with the same pattern and tails (the gathered reference of a full
    layer would not fit in memory). Returns {"builds", "max_abs_error", "error"}."""
    import tvm

    from codegen.dense_baseline import tvm_target

    try:
        lib = tvm.tirx.build(tvm_schedule(op, candidate, target.vector_lanes_f32),
                             target=tvm_target(target))
    except Exception as error:  # TVM raises many types; a failed build is a result here
        return {"builds": False, "max_abs_error": None, "error": str(error).splitlines()[-1][:300]}
    if not run_on_host:
        return {"builds": True, "max_abs_error": None, "error": None}
    small = SparseOp(min(op.cout, 3 * candidate.mr + 1), min(op.k, 5 * op.m + 3),
                     min(op.p, 2 * candidate.nr + 3), op.n, op.m, op.share)
    if small != op:
        lib = tvm.tirx.build(tvm_schedule(small, candidate, target.vector_lanes_f32),
                             target=tvm_target(target))
    op = small
    values, rows, x = tvm_inputs(op)
    device = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((op.cout, op.p), np.float32), device)
    lib(tvm.runtime.tensor(values, device), tvm.runtime.tensor(rows, device),
        tvm.runtime.tensor(x, device), out)
    per_row = np.repeat(rows, op.share, axis=0)[:op.cout]
    reference = np.einsum("ir,irj->ij", values, x[per_row])
    return {"builds": True, "max_abs_error": float(np.abs(out.numpy() - reference).max()),
            "error": None}


# ---------------------------------------------------------------- candidates and the model


def to_params(op: SparseOp, candidate: Candidate, flavour: str) -> NmGemmParams:
    """Maps a TVM-side candidate onto the template's parameters."""
    return NmGemmParams(op.n, op.m, flavour, mr=candidate.mr, nr=candidate.nr,
                        unroll=candidate.unroll, shared=op.share > 1, kc=candidate.kc,
                        prefetch=candidate.prefetch, threads=candidate.threads)


def candidates(op: SparseOp, flavour: str, threads: int = 1) -> list[Candidate]:
    """Returns every candidate whose register tile fits the flavour's vector registers
    (accumulators + activation vectors + one broadcast weight). Shared index sets tie mr to
    the pattern's row block."""
    isa = get_isa(flavour)
    lanes, registers = isa.lanes, isa.vector_registers
    row_options = (op.share,) if op.share > 1 else (1, 2, 3, 4, 6, 8)
    found = []
    for mr in row_options:
        for vectors in (1, 2, 3, 4, 6, 8):
            live = mr * vectors + (vectors if op.share > 1 else 1) + 1
            if live > registers:
                continue
            for unroll in (1, 2):
                for kc in (0, 8, 16, 32):
                    if kc and kc >= op.groups:
                        continue
                    for prefetch in (0, 8):
                        found.append(Candidate(mr, vectors * lanes, unroll, kc, prefetch, threads))
    return found


def predict_cycles(op: SparseOp, params: NmGemmParams, target: CpuTarget) -> float:
    """Returns a first analytic cycle estimate of the rendered kernel on ``target``.

    Per group of m and row tile: FMAs = mr * n * V (V vectors per row); loads = one
    activation vector per FMA plus a broadcast and an index per row nonzero (per-row indices),
    or V activation vectors per nonzero shared by the mr rows plus mr broadcasts (shared).
    A group costs max(FMAs / FMA units, loads / load ports) + loop overhead / unroll; tiles,
    the packing of each column panel and the stores are added; register spills double the
    inner cost; when the activation panel a k-block walks (kc groups x m rows x nr floats) does
    not fit in L1, its rows come from L2 at ``L2_BYTES_PER_CYCLE``; threads divide the column
    tiles."""
    lanes = get_isa(params.isa).lanes
    vectors = params.nr // lanes
    fmas = params.mr * op.n * vectors
    if params.shared:
        loads = op.n * (vectors + 1) + params.mr * op.n
    else:
        loads = params.mr * op.n * (vectors + 2)
    live = params.mr * vectors + (vectors if params.shared else 1) + 1
    spill = 2.0 if live > get_isa(params.isa).vector_registers else 1.0
    panel_bytes = (params.kc or op.groups) * op.m * params.nr * 4
    x_bytes = (1 if params.shared else params.mr) * op.n * params.nr * 4
    l2_cycles = x_bytes / L2_BYTES_PER_CYCLE \
        if panel_bytes > L1_USABLE * (target.caches_kb.l1d_kb or 32) * 1024 else 0.0
    group_cycles = spill * max(fmas / target.fma_units, loads / LOAD_PORTS, l2_cycles) \
        + LOOP_OVERHEAD_CYCLES / params.unroll
    row_tiles = -(-op.cout // params.mr)
    col_tiles = -(-op.p // params.nr)
    k_blocks = -(-op.groups // params.kc) if params.kc else 1
    tile_cycles = op.groups * group_cycles + params.mr * vectors * (1 + 2 * (k_blocks - 1))
    panel_cycles = op.groups * op.m * vectors
    parallel = min(params.threads, col_tiles)
    return col_tiles * (row_tiles * tile_cycles + panel_cycles) / parallel


def predict_dense_cycles(cout: int, k: int, p: int, target: CpuTarget) -> float:
    """Returns the analytic cycles of a dense GEMM at the FMA peak (the TVM baseline's bound)."""
    return cout * k * p / (target.vector_lanes_f32 * target.fma_units)


def timing_is_real(target: CpuTarget) -> bool:
    """Host and wasm timings are real; qemu emulation's are not (they rank nothing): the
    runner's own record says which (targets/runners)."""
    from targets.runners import timing_is_real as runner_timing_is_real

    return runner_timing_is_real(target.runner)


# ---------------------------------------------------------------- measuring


def masked_nm_weights(op: SparseOp, seed: int = 0) -> np.ndarray:
    from codegen.kernels.nmgemm import mask_nm_shared

    w = np.random.default_rng(seed).standard_normal((op.cout, op.k)).astype(np.float32)
    return mask_nm_shared(w, op.n, op.m, op.share)


def measure(op: SparseOp, params: NmGemmParams, target: CpuTarget, workdir: Path,
            repeats: int = 5) -> tuple[float, float]:
    """Returns (best seconds of ``repeats``, max abs error) of the rendered kernel on the
    target's runner."""
    from codegen.kernels import nmgemm

    w = masked_nm_weights(op)
    x = np.random.default_rng(1).standard_normal((op.k, op.p)).astype(np.float32)
    result = nmgemm.run_layer(w, x, None, params, target, workdir, repeats=repeats)
    return result.best_s, result.max_abs_error


def measure_dense(op: SparseOp, target: CpuTarget, workdir: Path, repeats: int = 5) -> float:
    """Returns the best seconds of TVM's dense GEMM for the op's shape on the target."""
    from codegen import dense_baseline

    rng = np.random.default_rng(2)
    w = rng.standard_normal((op.cout, op.k)).astype(np.float32)
    x = rng.standard_normal((op.k, op.p)).astype(np.float32)
    if target.isa == "x86_64" and target.runner == "local":
        lib, _ = dense_baseline.build_dense(op.cout, op.k, op.p, target)
        return dense_baseline.measure_host(lib, w, x, repeats)[0]
    executable, _ = dense_baseline.build_for_target(op.cout, op.k, op.p, target, workdir)
    kernel_build.write_case(workdir, "dense", {"w": w, "x": x}, (op.cout, op.k, op.p))
    return min(kernel_build.run(executable, target, workdir, repeats=repeats, warmup=1).times_s)


# ---------------------------------------------------------------- tuning


def tune(ops: list[SparseOp], target: str | CpuTarget, log_path: str | Path,
         budget: int | None = None, flavour: str | None = None, workdir: Path | None = None,
         repeats: int = 5, check_tvm_numerics: bool = True, progress: bool = True,
         predictor=None) -> TuningLog:
    """Tunes every op for the target and appends one log entry per candidate (resumable).

    ``predictor(op, params, target) -> cycles`` replaces the analytic model for ranking and
    for targets whose timing is not real (the CLI passes hwsim.cpu's llvm-mca model: codegen
    cannot import hwsim); entries record which model predicted them.

    Candidates are ordered by the analytic model (then the first 3 x ``budget`` of them by the
    predictor, when one is given) and the first ``budget`` are tried; each is
    built with TVM (its schedule), then measured (host, wasm) or predicted (qemu). Entries
    already in the log are skipped, so a killed run resumes where it stopped."""
    from tqdm import tqdm

    target = kernel_build.as_target(target)
    flavour = flavour or kernel_build.runnable_flavours(target)[-1]
    threads = target.cores if target.isa == "x86_64" else 1
    workdir = Path(workdir or tempfile.mkdtemp(prefix="hwsim-tune-"))
    log = TuningLog(log_path)
    real = timing_is_real(target)
    predict = predictor or predict_cycles
    cycle_model = "llvm-mca" if predictor else "analytic"
    predictions: dict[tuple[str, str], float] = {}

    def predicted(op: SparseOp, params: NmGemmParams) -> float:
        if (op.key, params.name) not in predictions:
            predictions[op.key, params.name] = predict(op, params, target)
        return predictions[op.key, params.name]

    plan = []
    for op in ops:
        # the analytic model is cheap: it shortlists; the (slower) predictor orders the shortlist
        ranked = sorted(candidates(op, flavour, threads),
                        key=lambda cand: predict_cycles(op, to_params(op, cand, flavour), target))
        if predictor is not None:
            shortlist = ranked[:3 * budget] if budget else ranked
            ranked = sorted(shortlist, key=lambda cand: predicted(op, to_params(op, cand, flavour)))
        plan.append((op, None))  # the dense baseline of the shape
        plan += [(op, cand) for cand in ranked[:budget]]
    bar = tqdm(plan, desc=f"tuning {target.name}", unit="cand", disable=not progress)
    for op, candidate in bar:
        if candidate is None:
            key = f"{target.name}|dense_tvm|{op.cout}x{op.k}x{op.p}"
            if log.has(key):
                continue
            entry = {"key": key, "op_key": f"dense:{op.cout}x{op.k}x{op.p}", "target": target.name,
                     "op": "dense_tvm", "shape": [op.cout, op.k, op.p], "kernel": "tvm_dense"}
            if real:
                entry.update(method="measured", seconds=measure_dense(op, target, workdir / "dense",
                                                                      repeats))
            else:
                entry.update(method="predicted",
                             predicted_cycles=predict_dense_cycles(op.cout, op.k, op.p, target))
            log.append(entry)
            continue
        params = to_params(op, candidate, flavour)
        key = f"{target.name}|{op.key}|{params.name}"
        if log.has(key):
            continue
        bar.set_postfix_str(params.name)
        tvm_check = validate_with_tvm(op, candidate, target,
                                      run_on_host=check_tvm_numerics and target.isa == "x86_64"
                                      and target.runner == "local")
        entry = {"key": key, "op_key": op.key, "target": target.name, "op": "nmgemm",
                 "shape": [op.cout, op.k, op.p], "pattern": op.pattern, "flavour": flavour,
                 "candidate": asdict(candidate), "params": asdict(params), "kernel": params.name,
                 "tvm": tvm_check,
                 "predicted_cycles": predicted(op, params), "cycle_model": cycle_model,
                 "time": time.time()}
        if real:
            try:
                seconds, error = measure(op, params, target, workdir / "kernels", repeats)
                entry.update(method="measured", seconds=seconds, max_abs_error=error,
                             ok=bool(error < 1e-3 * max(1.0, float(np.sqrt(op.k)))))
            except UserError as failure:
                entry.update(method="measured", seconds=None, ok=False, error=str(failure)[:500])
        else:
            entry.update(method="predicted", ok=True)
        log.append(entry)
    return log


def best_params(log: TuningLog, op: SparseOp) -> NmGemmParams | None:
    """Returns the template parameters of the op's best entry in the log (None if untuned)."""
    entry = log.best(op.key)
    return NmGemmParams(**entry["params"]) if entry else None


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        cout, k, p = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"shape {text!r} is not COUTxKxP", field="--shape",
                        fix="write e.g. 1024x1024x1008") from None
    return cout, k, p


def parse_nm_rows(text: str) -> tuple[int, int, int]:
    """Returns (n, m, share) of "N:M" or "N:M/rowsR"."""
    spec, _, rows = text.partition("/rows")
    try:
        n, m = (int(part) for part in spec.split(":"))
        return n, m, int(rows) if rows else 1
    except ValueError:
        raise UserError(f"pattern {text!r} is not N:M or N:M/rowsR", field="--pattern",
                        fix="write e.g. 2:8 or 2:8/rows4") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tune N:M sparse kernels for a target.",
                                     epilog="example: python -m codegen.schedule --target host "
                                            "--shape 256x256x196 --pattern 2:8 --log host.jsonl")
    parser.add_argument("--target", default="host")
    parser.add_argument("--shape", action="append", required=True, help="COUTxKxP (repeatable)")
    parser.add_argument("--pattern", action="append", required=True, help="N:M or N:M/rowsR")
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--budget", type=int, default=8, help="candidates per op")
    parser.add_argument("--flavour", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        ops = [SparseOp(*parse_shape(shape), *parse_nm_rows(pattern))
               for shape in args.shape for pattern in args.pattern]
        log = tune(ops, args.target, args.log, budget=args.budget, flavour=args.flavour,
                   workdir=args.workdir, repeats=args.repeats, progress=not args.no_progress)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for op in ops:
        entry = log.best(op.key)
        if entry:
            print(json.dumps({"op": op.key, "best": entry["kernel"], "method": entry["method"],
                              "seconds": entry.get("seconds"),
                              "predicted_cycles": entry.get("predicted_cycles")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
