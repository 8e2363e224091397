"""`hwsim targets`: the bundled CPU targets (and accelerators), and one target in full."""
from __future__ import annotations

import dataclasses
import json


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "targets", formatter_class=formatter_class,
        help="list CPU targets and accelerators; show one target",
        description="List the bundled CPU targets (ISA, llvm core, SIMD, runner, and whether "
                    "their toolchain and runner work on this machine) and the accelerator "
                    "descriptions, or show one CPU target fully resolved (host: detected features).",
        epilog="examples:\n"
               "  hwsim targets\n"
               "  hwsim targets --format json\n"
               "  hwsim targets show host\n"
               "  hwsim targets show snapdragon855 --format json\n"
               "  hwsim targets show my_phone.yaml\n")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=list_targets)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    show = actions.add_parser(
        "show", formatter_class=formatter_class, help="one target, resolved",
        description="Print a CPU target as loaded: every field after validation, with the host's "
                    "detected features, toolchain flags, TVM target and availability here; or an "
                    "accelerator as validated (every field, defaults filled in).",
        epilog="examples:\n"
               "  hwsim targets show host\n"
               "  hwsim targets show wasm32-simd128 --format json\n"
               "  hwsim targets show targets/cpus/cortex-a55.yaml\n"
               "  hwsim targets show targets/accelerators/sat.yaml\n")
    show.add_argument("target", help="bundled name (see `hwsim targets`) or a CPU or accelerator YAML file")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(handler=show_target)


def _availability(target) -> dict:
    from targets.runners import runner_problems
    from targets.toolchains import toolchain_problems

    toolchain = toolchain_problems(target)
    runner = runner_problems(target.runner, target)
    return {"toolchain_ok": not toolchain, "runner_ok": not runner,
            "problems": toolchain + runner}


def _accelerators() -> list[dict]:
    """Returns name and kind of every bundled accelerator file (read by the shared reader)."""
    from models.errors import UserError
    from models.inputs import read_yaml
    from targets.descriptions import bundled_paths

    rows = []
    for path in bundled_paths("accelerator"):
        try:
            raw = read_yaml(path, what="accelerator description") or {}
        except UserError as error:
            rows.append({"name": path.stem, "kind": "unreadable", "source": str(path),
                         "error": error.one_line()})
            continue
        raw = raw if isinstance(raw, dict) else {}
        rows.append({"name": path.stem, "described_as": raw.get("name", path.stem),
                     "kind": raw.get("kind", "?"), "source": str(path)})
    return rows


def _runners() -> list[dict]:
    """Returns every runner's own description (targets/runners/*.py SPEC records)."""
    from targets.runners import RUNNER_SPECS

    return [{"name": spec.spelling, "isas": list(spec.isas), "timing_real": spec.timing_real,
             "driven_here": spec.make is not None, "in_target_files": spec.in_target_files,
             "needs": list(spec.needs), "summary": spec.summary} for spec in RUNNER_SPECS]


def list_targets(args) -> int:
    from targets.cpu import bundled_cpu_targets, load_cpu_target

    rows = []
    for name in bundled_cpu_targets():
        target = load_cpu_target(name)
        rows.append({"name": name, "isa": target.isa, "core": target.core, "simd": target.simd,
                     "runner": target.runner, **_availability(target)})
    accelerators = _accelerators()
    runners = _runners()
    if args.format == "json":
        print(json.dumps({"cpus": rows, "accelerators": accelerators, "runners": runners},
                         indent=1))
        return 0
    print(f"{'cpu target':<16} {'isa':<8} {'core':<11} {'simd':<13} {'runner':<9} "
          f"{'toolchain':<10} {'runner here'}")
    for row in rows:
        print(f"{row['name']:<16} {row['isa']:<8} {row['core']:<11} {row['simd']:<13} "
              f"{row['runner']:<9} {'yes' if row['toolchain_ok'] else 'no':<10} "
              f"{'yes' if row['runner_ok'] else 'no'}")
    for row in rows:
        for problem in row["problems"]:
            print(f"  {row['name']}: {problem}")
    if accelerators:
        print(f"\n{'accelerator (--arch)':<22} {'kind':<12} name in the file")
        for row in accelerators:
            print(f"{row['name']:<22} {row['kind']:<12} {row.get('described_as', '-')}")
    print(f"\n{'runner':<16} {'isas':<15} {'timing':<9} needs")
    for row in runners:
        timing = "real" if row["timing_real"] else "emulated"
        needs = "; ".join(row["needs"]) if row["driven_here"] else "(not driven from here)"
        print(f"{row['name']:<16} "
              f"{','.join(row['isas']):<15} {timing:<9} {needs or '-'}")
    return 0


def target_as_dict(target) -> dict:
    """Returns the resolved target as JSON-ready data (host features as sorted lists)."""
    document = dataclasses.asdict(target)
    document["caches_kb"] = target.caches_kb.as_dict()
    document["llvm_triple"] = target.llvm_triple
    document["mca_triple"] = target.mca_triple
    document["peak_gflops_f32"] = round(target.peak_gflops_f32, 1)
    features = target.host_features
    if features is None:
        document.pop("host_features")
    else:
        document["host_features"] = {
            "vendor": features.vendor, "model_name": features.model_name,
            "family": features.family, "model": features.model,
            "simd_flags": sorted(flag for flag in features.flags
                                 if flag.startswith(("avx", "fma", "f16c", "sse", "amx"))),
            "logical_cpus": features.logical_cpus, "mhz": features.mhz,
            "caches_kb": dict(features.caches_kb)}
    return document


def _is_accelerator(name_or_path: str) -> bool:
    """True when the name or file is an accelerator description (it is then shown as one)."""
    from targets.descriptions import bundled_names, read_target, target_kind

    if name_or_path in bundled_names("accelerator"):
        return True
    if not name_or_path.endswith((".yaml", ".yml")):
        return False
    _, document = read_target(name_or_path)
    return isinstance(document, dict) and target_kind(document) == "accelerator"


def show_target(args) -> int:
    from targets.cpu import load_cpu_target

    if _is_accelerator(args.target):
        from hwsim.arch import accelerator_document, load_arch

        document = accelerator_document(load_arch(args.target))
    else:
        target = load_cpu_target(args.target)
        document = target_as_dict(target)
        document["available_here"] = _availability(target)
    if args.format == "json":
        print(json.dumps(document, indent=1))
        return 0
    width = max(len(key) for key in document)
    for key, value in document.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for inner_key, inner_value in value.items():
                print(f"  {inner_key}: {_plain(inner_value)}")
        else:
            print(f"{key:<{width}} {_plain(value)}")
    return 0


def _plain(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value) if value else "-"
    return "-" if value is None else str(value)
