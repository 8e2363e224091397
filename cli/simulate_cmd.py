"""`hwsim simulate`: one training step (or inference pass) of a model on a machine description.

Accelerator files (kind: accelerator) run on hwsim.engine; CPU files (kind: cpu)
are handed to hwsim.cpu's simulator when it provides one.
"""
from __future__ import annotations

import dataclasses
import sys

from models.errors import UserError

DEFAULT_COMPARE = "dense,2:8"


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "simulate", formatter_class=formatter_class,
        help="cycles, traffic and energy of a model on an accelerator or a CPU",
        description="Simulate one training step (FF, BP, WU of every layer) or one inference "
                    "pass of a model on an accelerator description, fold by fold: compute "
                    "cycles (SCALE-Sim closed forms, N:M sparse mode where the hardware has "
                    "it), DRAM stalls with double buffering, energy. Without --sparsity or "
                    "--compare it compares dense training with 2:8 BDWP.",
        epilog="examples:\n"
               "  hwsim simulate --arch targets/accelerators/sat.yaml\n"
               "  hwsim simulate --arch sat --model resnet50 --dataset cifar10 --batch 32\n"
               "  hwsim simulate --arch sat --compare dense,2:8,1:8 --out reports/sat-r18\n"
               "  hwsim simulate --arch sat --sparsity 2:8 --format json\n"
               "  hwsim simulate --arch sat --no-overlap --on-the-fly-weights\n"
               "  hwsim simulate --arch sat --map edp --sparsity 2:8   # the mapper picks each GEMM's mapping\n"
               "  hwsim simulate --arch systolic-32x32-ws --model my_topology.csv --mode infer\n"
               "  hwsim simulate --arch snapdragon855 --model mobilenet_v1 --mode infer --compare dense,2:4,2:8,1:8\n"
               "  hwsim simulate --arch wasm32-simd128 --model mobilenet_v1 --mode infer --sparsity 2:8 --out r/wasm\n"
               "json: one run prints its summary document; --compare prints\n"
               "  {\"runs\": {SPARSITY: summary, ...}, \"speedup\": {SPARSITY: x, ...}, \"baseline\": ...}\n"
               "  (speedup = the first run's cycles / that run's cycles)")
    parser.add_argument("--arch", required=True,
                        help="accelerator or CPU YAML file, or a bundled name (sat, "
                             "systolic-32x32-os|ws|is, host, snapdragon855, snapdragon835, "
                             "cortex-a55, wasm32-simd128)")
    parser.add_argument("--model", default="resnet18",
                        help="zoo name, or an IR .json / SCALE-Sim .csv / .onnx file")
    parser.add_argument("--dataset", default=None,
                        help="input size and classes by data set: cifar10, cifar100, tinyimagenet, imagenet")
    parser.add_argument("--input-size", type=int, default=None, help="input height = width in pixels")
    parser.add_argument("--batch", type=int, default=1, help="samples per step")
    parser.add_argument("--mode", choices=("train", "infer"), default=None,
                        help="one training step or one inference pass (default: train on an "
                             "accelerator, infer on a CPU)")
    parser.add_argument("--sparsity", default=None,
                        help="one pattern: dense or N:M (BDWP: FF and BP sparse, WU dense)")
    parser.add_argument("--compare", default=None,
                        help=f"comma-separated patterns to run side by side (default {DEFAULT_COMPARE} "
                             "when --sparsity is not given)")
    parser.add_argument("--map", choices=("fixed", "cycles", "energy", "edp"), default=None,
                        help="accelerators: choose each GEMM's orientation, dataflow (among the "
                             "YAML's dataflow list) and loop order to minimise this (hwsim.mapper); "
                             "fixed: the engine's own plan. Default: the YAML's mapping, else fixed")
    parser.add_argument("--tuning-log", default=None, metavar="FILE",
                        help="CPU targets: take each layer's schedule from this tuning log")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write DIR/summary.json, DIR/report.md and PNG plots")
    switches = parser.add_argument_group("dataflow switches (override the YAML's dataflow_options)")
    from dataclasses import fields

    from hwsim.arch import DataflowOptions
    for option in fields(DataflowOptions):     # one flag per option, from the dataclass
        switches.add_argument(option.metadata["flag"], dest=f"switch_off_{option.name}",
                              action="store_true", help=option.metadata["help"])
    switches.add_argument("--dram-gbps", type=float, default=None, help="override memory.dram_gbps")
    parser.set_defaults(handler=simulate_command)


def _sparsities(args) -> list[str]:
    """Returns the pattern specs to run, in order (the first is the speedup baseline)."""
    if args.sparsity and args.compare:
        raise UserError("give --sparsity or --compare, not both", field="--compare",
                        fix="list every pattern in --compare, e.g. --compare dense,2:8")
    text = args.compare or args.sparsity or DEFAULT_COMPARE
    specs = [part.strip() for part in text.split(",")]
    if not any(specs):
        raise UserError(f"no pattern in '{text}'", field="--compare", fix="e.g. --compare dense,2:8")
    if not all(specs):
        raise UserError(f"an empty pattern in '{text}'", field="--compare",
                        fix="list patterns between commas, e.g. --compare dense,2:8")
    return list(dict.fromkeys(specs))


def _check_patterns(arch, specs: list[str]) -> list:
    """Returns the parsed patterns; raises UserError for any the array cannot run."""
    from models.patterns import nm_of, parse_pattern

    patterns = []
    modes = arch.sparse_mode_names()
    runs = f"it runs {', '.join(modes)} and dense" if modes else "it runs dense only"
    for spec in specs:
        pattern = parse_pattern(spec, field="--sparsity")
        if pattern is not None:
            nm = nm_of(pattern)
            if nm is None:
                raise UserError(f"'{arch.name}' supports only N:M sparsity, not '{spec}' ({runs})",
                                source=arch.source, field="--sparsity",
                                fix=f"use {', '.join(modes) if modes else 'dense'}")
            if not arch.runs_nm(*nm):
                raise UserError(f"'{arch.name}' cannot run {spec} sparsity ({runs})",
                                source=arch.source, field="--sparsity",
                                fix=f"use {', '.join(modes) if modes else 'dense'}, or add the "
                                    f"mode to sparsity.modes of the YAML")
        patterns.append(pattern)
    return patterns


def _apply_switches(arch, args):
    """Returns the accelerator with the command-line overrides applied."""
    options = arch.options
    options = dataclasses.replace(options, **{
        option.name: getattr(options, option.name) and not getattr(args, f"switch_off_{option.name}")
        for option in dataclasses.fields(options)})
    arch = dataclasses.replace(arch, options=options)
    if args.dram_gbps is not None:
        if not args.dram_gbps > 0:
            raise UserError(f"{args.dram_gbps} must be positive", field="--dram-gbps",
                            fix="e.g. --dram-gbps 19.2")
        arch = dataclasses.replace(arch, memory=dataclasses.replace(arch.memory,
                                                                    dram_gbps=args.dram_gbps))
    return arch


def _simulate_cpu(args, source: str) -> int:
    """Hands a kind: cpu target to the CPU model (codegen's kernels costed by hwsim.cpu)."""
    from cli.cpu_simulate import simulate_cpu_command
    return simulate_cpu_command(args, source, _sparsities(args))


def simulate_command(args) -> int:
    from hwsim.arch import parse_accelerator, read_target, target_kind

    if args.out:
        from models.fileio import check_output_dir
        check_output_dir(args.out)        # refused before any work, not after it
    source, document = read_target(args.arch)
    if target_kind(document) == "cpu":
        if getattr(args, "map", None) is not None:
            raise UserError("--map chooses accelerator mappings; this target is a CPU",
                            source=source, field="--map",
                            fix="leave --map out for CPU targets (their schedules come from "
                                "--tuning-log)")
        args.mode = args.mode or "infer"
        return _simulate_cpu(args, source)
    args.mode = args.mode or "train"
    arch = _apply_switches(parse_accelerator(document, source), args)
    if args.batch < 1:
        raise UserError(f"batch {args.batch} must be >= 1", field="--batch", fix="use e.g. --batch 1")
    specs = _sparsities(args)
    patterns = _check_patterns(arch, specs)
    if args.map is not None:      # the command line wins over the YAML's mapping
        from hwsim.arch import parse_mapping
        arch = dataclasses.replace(arch, mapping=parse_mapping(args.map, None, "--map"))
    results = run_all(arch, args, specs, patterns)
    _emit(results, args)
    return 0


def run_all(arch, args, specs, patterns) -> list:
    """Returns one SimResult per pattern (a progress bar on stderr when it is a terminal)."""
    from tqdm import tqdm

    from hwsim.evaluate import lower_workload, simulate_workload
    from models.loading import load

    base = load(args.model, dataset=args.dataset, input_size=args.input_size, batch=1)
    results = []
    progress = tqdm(list(zip(specs, patterns)), desc="simulate", unit="run", file=sys.stderr,
                    disable=not sys.stderr.isatty() or len(specs) < 2, leave=False)
    for spec, _pattern in progress:
        workload = lower_workload(args.model, spec, mode=args.mode, batch=args.batch, base=base)
        results.append(simulate_workload(arch, workload, objective=arch.mapping))
    return results


def _emit(results, args) -> None:
    from hwsim import report

    if args.out:
        written = report.write_outputs(results, args.out)
    if args.format == "json":
        from models.fileio import json_text
        print(json_text(report.document_of(results)))     # strict: NaN/Infinity become null
    else:
        print(report.text_report(results))
        if args.out:
            print(f"wrote {', '.join(written)}")
    sys.stdout.flush()
