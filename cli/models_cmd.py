"""`hwsim models`: the zoo, and the lowered GEMMs of any model."""
from __future__ import annotations

import json
import sys

from models.errors import UserError


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "models", formatter_class=formatter_class,
        help="list the model zoo; show a model's lowered GEMMs",
        description="List the built-in model zoo with parameters and forward MACs "
                    "(batch 1, default input size), or show one model's lowered GEMM workloads.",
        epilog="examples:\n"
               "  hwsim models\n"
               "  hwsim models --format json\n"
               "  hwsim models show resnet50 --sparsity 2:8 --mode train\n"
               "  hwsim models show resnet18 --dataset cifar10 --mode train --format json\n"
               "  hwsim models show my_topology.csv\n")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=list_zoo)
    actions = parser.add_subparsers(dest="action", metavar="ACTION",
                                    parser_class=type(parser))
    show = actions.add_parser(
        "show", formatter_class=formatter_class,
        help="per-layer table of the lowered GEMMs",
        description="Lower a model (zoo name, IR .json, SCALE-Sim .csv or .onnx) to the GEMMs "
                    "of one inference pass or one training step (FF, BP, WU per layer).",
        epilog="examples:\n"
               "  hwsim models show resnet18 --sparsity 2:8 --mode train\n"
               "  hwsim models show resnet50 --sparsity 2:8 --mode train --format json\n"
               "  hwsim models show bert_base --sparsity nm:2:4\n"
               "sparsity: dense | N:M (BDWP: FF and BP pruned, WU dense) | nm:N:M | "
               "block:RxC:DENSITY | group:G:DENSITY | unstructured:DENSITY")
    show.add_argument("model", help="zoo name, or a .json / .csv / .onnx file")
    show.add_argument("--sparsity", default="dense", help="pattern applied to every weight layer")
    show.add_argument("--mode", choices=("infer", "train"), default="infer")
    show.add_argument("--batch", type=int, default=1)
    show.add_argument("--dataset", default=None,
                      help="input size and classes by data set: cifar10, cifar100, tinyimagenet, imagenet")
    show.add_argument("--input-size", type=int, default=None,
                      help="input height = width (zoo models; an .onnx file's symbolic H, W or "
                           "sequence length)")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(handler=show_model)


def list_zoo(args) -> int:
    from models import zoo

    rows = []
    for name in zoo.names():
        model = zoo.build(name)
        rows.append({"name": name, "params": model.params(), "macs": model.macs(),
                     "description": zoo.describe(name)})
    if args.format == "json":
        print(json.dumps([{key: row[key] for key in ("name", "params", "macs")} for row in rows],
                         indent=1))
        return 0
    print(f"{'model':<14} {'params (M)':>11} {'MACs (G)':>9}  description")
    for row in rows:
        print(f"{row['name']:<14} {row['params'] / 1e6:>11.2f} {row['macs'] / 1e9:>9.3f}  "
              f"{row['description']}")
    return 0


def show_model(args) -> int:
    from models.loading import load
    from models.lowering import lower, phase_totals
    from models.patterns import parse_pattern

    if args.batch < 1:
        raise UserError(f"batch {args.batch} must be >= 1", field="--batch", fix="use e.g. --batch 1")
    pattern = parse_pattern(args.sparsity, field="--sparsity")
    model = load(args.model, dataset=args.dataset,
                 input_size=args.input_size).with_sparsity(pattern)
    workloads = lower(model, mode=args.mode, batch=args.batch)
    totals = phase_totals(workloads)
    dense_layers = sorted({w.layer for w in workloads if pattern is not None and not w.sparse
                           and w.phase != "WU" and w.op_kind in ("conv2d", "dense", "depthwise")})
    pruning = _pruning(args, model, pattern, workloads)
    if args.format == "json":
        document = {"model": model.name, "mode": args.mode, "batch": args.batch,
                    "sparsity": args.sparsity,
                    "workloads": [w.as_dict() for w in workloads],
                    "totals": totals, "dense_layers": dense_layers}
        if pruning is not None:
            costs, (change, agree, inputs) = pruning
            document["pruning"] = {"layers": [cost.as_dict() for cost in costs],
                                   "whole_model": {"max_output_change": change,
                                                   "top1_agreement": agree, "inputs": inputs}}
        print(json.dumps(document, indent=1))
        return 0
    print(f"{model.name}: {args.mode}, batch {args.batch}, sparsity {args.sparsity}, "
          f"{len(workloads)} GEMMs")
    header = f"{'layer':<28} {'phase':<5} {'M':>8} {'N':>6} {'K':>7} {'groups':>6} " \
             f"{'MACs (M)':>10} {'sparse':<6} pattern"
    print(header)
    print("-" * len(header))
    for w in workloads:
        print(f"{w.layer:<28} {w.phase:<5} {w.M:>8} {w.N:>6} {w.K:>7} {w.groups:>6} "
              f"{w.macs / 1e6:>10.2f} {'yes' if w.sparse else 'no':<6} {w.pattern or '-'}")
    print()
    print(f"{'phase':<6} {'MACs performed (G)':>19} {'dense (G)':>10} {'ratio':>7}")
    for phase, total in totals.items():
        if total["dense_macs"]:
            print(f"{phase:<6} {total['macs'] / 1e9:>19.4f} {total['dense_macs'] / 1e9:>10.4f} "
                  f"{total['macs'] / total['dense_macs']:>7.3f}")
    performed = sum(t["macs"] for t in totals.values())
    dense = sum(t["dense_macs"] for t in totals.values())
    print(f"{'total':<6} {performed / 1e9:>19.4f} {dense / 1e9:>10.4f} {performed / dense:>7.3f}")
    if dense_layers:
        print(f"kept dense (channels not a multiple of the group size, or depthwise): "
              f"{', '.join(dense_layers)}")
    if pruning is not None:
        _print_pruning(args.sparsity, *pruning)
    sys.stdout.flush()
    return 0


def _pruning(args, model, pattern, workloads):
    """Returns (per-layer costs, whole-model change) of masking a file's own weights, or
    None (dense, or a model without weights of its own: zoo, .json, .csv)."""
    if pattern is None or not str(args.model).lower().endswith(".onnx"):
        return None
    from models.weights import pruning_costs, whole_model_change

    order = [op.name for op in model.ops()]
    layers = sorted({w.layer for w in workloads if w.phase == "FF" and w.sparse
                     and w.layer in model.weights}, key=order.index)
    if not layers:
        return None
    return (pruning_costs(args.model, model, pattern, layers),
            whole_model_change(args.model, model, pattern, layers))


def _print_pruning(spec: str, costs, whole) -> None:
    change, agree, inputs = whole
    print()
    print(f"what {spec} costs the file's own weights (batch norm folded; output error on "
          f"one N(0,1) sample input, ONNX Runtime's activations)")
    width = max(28, *(len(cost.layer) for cost in costs))
    header = f"{'layer':<{width}} {'L1 kept':>8} {'L2 kept':>8} {'output err':>11}"
    print(header)
    print("-" * len(header))
    for cost in costs:
        print(f"{cost.layer:<{width}} {cost.l1_kept:>8.3f} {cost.l2_kept:>8.3f} "
              f"{cost.output_error:>11.3e}")
    print(f"whole model, every layer above masked (ONNX Runtime, {inputs} N(0,1) inputs): max "
          f"output change {change:.3e} of the output's range, top-1 agreement {agree}/{inputs}")
