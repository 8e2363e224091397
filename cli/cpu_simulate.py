"""`hwsim simulate --arch <cpu>`: argument checks and printing; the work is in the libraries.

codegen.plan chooses each layer's kernel (the tuning log's schedule when it has the shape:
codegen.plan.schedules_from_log), hwsim.cpu costs it (codegen_source.kernel_source_for,
model_sim.simulate_runs) and renders the report (hwsim.cpu.report).
"""
from __future__ import annotations

import json
import sys

from models.errors import UserError


def simulate_cpu_command(args, source: str, specs: list[str]) -> int:
    from codegen.plan import schedules_from_log
    from hwsim.cpu.codegen_source import cache_dir, kernel_source_for
    from hwsim.cpu.model_sim import simulate_runs
    from hwsim.cpu.report import text_report, write_cpu_outputs
    from models.loading import load
    from models.patterns import parse_pattern
    from targets.cpu import load_cpu_target

    target = load_cpu_target(source)
    if args.batch < 1:
        raise UserError(f"batch {args.batch} must be >= 1", field="--batch", fix="use e.g. --batch 1")
    patterns = [parse_pattern(spec, field="--sparsity") for spec in specs]
    base = load(args.model, dataset=args.dataset, input_size=args.input_size, batch=1)
    schedules = schedules_from_log(getattr(args, "tuning_log", None), base, patterns)
    kernel_source = kernel_source_for(target, schedules, base if args.batch == 1 else None)
    documents, speedups, output = simulate_runs(
        target, base, specs, patterns, mode=args.mode, batch=args.batch, kernel_source=kernel_source,
        cache_dir=cache_dir(), tuned_layers=len(schedules), progress=sys.stderr.isatty())
    if args.out:
        written = write_cpu_outputs(documents, speedups, args.out, output)
    if args.format == "json":
        print(json.dumps(output, indent=1))
    else:
        print(text_report(documents, speedups, target))
        if args.out:
            print(f"wrote {', '.join(written)}")
    return 0
