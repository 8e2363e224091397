"""`hwsim codegen`: tuned sparse kernels, packed weights and a runner harness for a whole model."""
from __future__ import annotations

from pathlib import Path


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "codegen", formatter_class=formatter_class,
        help="generate, tune and build the kernels of a whole model for a CPU target",
        description="Render every layer's kernel (N:M GEMM / KxK convolution, XNNPACK-style "
                    "block-sparse 1x1, depthwise, pooling, elementwise) for the target's SIMD, "
                    "pack the weights, compile with the target's toolchain, and write a sparse "
                    "and a dense build plus manifest.json. Schedules come from the tuning log "
                    "when it has the layer's shape (--tune fills it), else the defaults.",
        epilog="examples:\n"
               "  hwsim codegen --target snapdragon855 --model mobilenet_v1 --sparsity 2:8 --out build/mnv1\n"
               "  hwsim codegen --target wasm32-simd128 --model mobilenet_v1 --sparsity 2:8 --out build/mnv1-wasm\n"
               "  hwsim codegen --target host --model resnet18 --dataset cifar10 --sparsity block:1x4:0.2 --out build/r18\n"
               "  hwsim codegen --target host --model mobilenet_v1 --sparsity 2:8 --tune --budget 4 --out build/mnv1-host\n"
               "then: hwsim run DIR [--runner qemu|wasmtime|node|local|adb]")
    parser.add_argument("--target", required=True,
                        help="CPU target: bundled name (host, snapdragon855, snapdragon835, "
                             "cortex-a55, wasm32-simd128) or a kind: cpu YAML")
    parser.add_argument("--model", required=True, help="zoo name or model file (batch-1 CNN)")
    parser.add_argument("--dataset", default=None, help="input size by data set (cifar10, imagenet, ...)")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--sparsity", default="2:8",
                        help="N:M, nm:N:M, block:RxC:D, group:G:D, unstructured:D or dense")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and input")
    parser.add_argument("--tune", action="store_true",
                        help="tune the N:M layers' schedules first (measured where timing is real)")
    parser.add_argument("--budget", type=int, default=4, help="candidates tried per shape with --tune")
    parser.add_argument("--log", default=None,
                        help="tuning log (JSONL; default DIR/tuning-TARGET.jsonl); resumed after a kill")
    parser.set_defaults(handler=codegen_command)


def _tuned_schedules(args, model, target, pattern, log_path: Path) -> dict:
    """Returns {schedule key: NmGemmParams} from the tuning log (tuning first with --tune);
    picks the cost model the tuner ranks by where timing is not real (codegen imports no hwsim)."""
    from codegen.plan import build_schedules
    from codegen.schedule import timing_is_real

    predictor = None
    if args.tune and args.budget >= 1 and not timing_is_real(target):
        from hwsim.cpu.codegen_source import mca_predictor
        predictor = mca_predictor(target)     # qemu timing is emulated: rank by llvm-mca
    return build_schedules(model, pattern, target, log_path, tune=args.tune, budget=args.budget,
                           predictor=predictor)


def codegen_command(args) -> int:
    from codegen.model_build import build_model
    from models.loading import load
    from models.patterns import parse_pattern
    from targets.cpu import load_cpu_target

    target = load_cpu_target(args.target)
    pattern = parse_pattern(args.sparsity, field="--sparsity")
    model = load(args.model, dataset=args.dataset, input_size=args.input_size)
    out = Path(args.out)
    log_path = Path(args.log) if args.log else out / f"tuning-{target.name}.jsonl"
    schedules = _tuned_schedules(args, model, target, pattern, log_path)
    weights = None
    if str(args.model).lower().endswith(".onnx"):     # the file's own weights, not random
        from models.weights import ModelWeights
        weights = ModelWeights(model)
    manifest = build_model(model, target, pattern, out, seed=args.seed, schedules=schedules,
                           weights=weights)
    if weights is not None:
        from models.weights import write_build_onnx
        index = write_build_onnx(args.model, model, weights, str(out), args.input_size)
        print(f"the file's own weights (batch norm folded); masked model for ONNX Runtime: "
              f"{out / index['files']['masked']} ({index['kept_share']:.1%} of weights kept)")
    sparse = manifest["builds"]["sparse"]
    print(f"{model.name} for {target.name} ({target.simd}), sparsity {args.sparsity}: "
          f"{len(sparse['layers'])} layers, {len(sparse['executables'])} sparse kernel variants, "
          f"{len(manifest['builds']['dense']['executables'])} dense; "
          f"{len(schedules)} tuned schedules; wrote {out}")
    print(f"next: hwsim run {out}" + (f" --runner {target.runner}" if target.runner != "local" else ""))
    return 0
