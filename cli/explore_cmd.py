"""`hwsim explore`: co-design search over hardware x sparsity pattern, with Pareto fronts."""
from __future__ import annotations

import os

from models.errors import UserError


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "explore", formatter_class=formatter_class,
        help="search accelerator parameters and sparsity patterns for Pareto-optimal designs",
        description="Cost every point of a design space (space.yaml: axes as dotted paths into "
                    "the accelerator YAML, the model's sparsity pattern, constraints) with the "
                    "same engine as `hwsim simulate`; small spaces are enumerated, large ones "
                    "searched with Optuna's NSGA-II. Each point is stored in DIR/results.jsonl "
                    "as it finishes: rerunning with the same --out resumes. Writes front.json, "
                    "front.csv, all.csv, plots, index.html and DIR/front/<design>.yaml. "
                    "Besides the simulator's metrics every point carries magnitude_kept, an "
                    "accuracy proxy of its sparsity patterns (the share of weight L2 magnitude "
                    "the masks keep, weighted over layers by weight count: 1 when dense; the "
                    "model's own weights for an .onnx file, seeded He-normal ones for a zoo "
                    "model; the lowest over the workload's models), usable as a floor "
                    "(constraints: {magnitude_kept: {min: 0.7}}) or as an objective, maximised.",
        epilog="examples:\n"
               "  hwsim explore --arch sat --space explore/spaces/sat_small.yaml --model resnet18 "
               "--out reports/explore\n"
               "  hwsim explore --arch sat --space my_space.yaml --model resnet50 --dataset imagenet "
               "--batch 32 \\\n      --objectives cycles,energy,area --budget 2000 --ray local "
               "--workers 2 --out reports/explore-r50\n"
               "  hwsim explore --arch sat --space explore/spaces/sat_small.yaml --map edp --out reports/explore-mapped\n"
               "  hwsim explore --arch sat --space explore/spaces/sat_pruning.yaml "
               "--objectives cycles,area,magnitude_kept --out reports/explore-pruning\n"
               "  hwsim simulate --arch reports/explore/front/p00-1a2b3c4d.yaml --model resnet18 "
               "--sparsity 2:8   # one front design\n"
               "bundled spaces: explore/spaces/*.yaml")
    parser.add_argument("--arch", required=True, help="base accelerator YAML or bundled name")
    parser.add_argument("--space", required=True, help="space YAML (a path or a bundled name)")
    parser.add_argument("--model", default=None,
                        help="zoo name(s), comma-separated (default: the space's workload)")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--mode", choices=("train", "infer"), default=None)
    parser.add_argument("--objectives", default="cycles,energy,area",
                        help="comma-separated: cycles, energy, area, edp, seconds (minimised), "
                             "magnitude_kept (the accuracy proxy, maximised)")
    parser.add_argument("--budget", type=int, default=2000,
                        help="design points to cost; a space this small or smaller is enumerated")
    parser.add_argument("--search", choices=("auto", "exhaustive", "nsga2"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="NSGA-II seed")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--ray", choices=("auto", "local"), default=None,
                        help="run points as Ray tasks: join a cluster (auto) or start one here")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes / Ray actors (default 1; --ray local 2; "
                             "--ray auto: the cluster's CPUs)")
    parser.add_argument("--map", choices=("fixed", "cycles", "energy", "edp"), default=None,
                        help="cost every point with the mapper minimising this (sets 'mapping' in "
                             "the base YAML, so each front YAML carries it); or make it an axis: "
                             "'mapping: [fixed, edp]' in the space")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=explore_command)


def _space_path(text: str) -> str:
    if os.path.isfile(text):
        return text
    import explore
    bundled = os.path.join(os.path.dirname(explore.__file__), "spaces", f"{text}.yaml")
    if os.path.isfile(bundled):
        return bundled
    raise UserError(f"no such file or bundled space '{text}'", field="--space",
                    fix="give a space YAML, e.g. explore/spaces/sat_small.yaml")


def explore_command(args) -> int:
    from explore.backends import make_backend
    from explore.explorer import ExploreSettings, parse_objectives, run_explore, summary_lines
    from explore.space import read_space
    from hwsim.arch import read_target, target_kind

    from models.fileio import check_output_dir

    check_output_dir(args.out)        # a file, /proc, no permission: one line before any work
    if args.budget < 1:
        raise UserError(f"budget {args.budget} must be >= 1", field="--budget", fix="e.g. --budget 2000")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"workers {args.workers} must be >= 1", field="--workers", fix="e.g. --workers 2")
    if args.batch is not None and args.batch < 1:
        raise UserError(f"batch {args.batch} must be >= 1", field="--batch", fix="e.g. --batch 32")
    source, document = read_target(args.arch)
    if target_kind(document) != "accelerator":
        raise UserError("explore searches accelerator descriptions", source=source, field="kind",
                        fix="give an accelerator YAML, e.g. --arch sat")
    if args.map is not None:
        document = {**document, "mapping": args.map}
    models = [name.strip() for name in args.model.split(",") if name.strip()] if args.model else None
    space = read_space(_space_path(args.space), document, source,
                       {"models": models, "dataset": args.dataset, "batch": args.batch,
                        "mode": args.mode})
    settings = ExploreSettings(parse_objectives(args.objectives), args.budget, args.out, args.seed,
                               args.search, progress=not args.no_progress)
    workers = args.workers or (2 if args.ray == "local" else 0 if args.ray else 1)
    backend = make_backend(space, args.ray, workers)
    try:
        outcome, front, paths = run_explore(space, settings, backend)
    finally:
        backend.close()
    print("\n".join(summary_lines(space, outcome, front)))
    print(f"wrote {len(paths)} files under {args.out} (index.html, front.json, front/*.yaml)")
    return 0
