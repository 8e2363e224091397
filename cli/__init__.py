"""The `hwsim` command line: the only module that sees every package.

Each subcommand lives in its own module with ``register(subparsers)``, which adds
a parser whose ``handler`` default takes the parsed arguments and returns an exit
code. Heavy imports (TVM, matplotlib) stay inside the handlers so `hwsim --help`
is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from models.errors import UserError

# Module names under cli, in the order `hwsim --help` lists them.
SUBCOMMAND_MODULES = ("simulate_cmd", "sweep_cmd", "codegen_cmd", "run_cmd", "report_cmd",
                      "models_cmd", "targets_cmd", "explore_cmd")

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples in epilogs as written and shows defaults."""


class ArgumentParser(argparse.ArgumentParser):
    """Bad flags become one line and exit 2, like every other bad input."""

    def error(self, message: str):
        raise UserError(message, field=self.prog, fix=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="hwsim", formatter_class=HelpFormatter,
        description="Co-design sparse neural networks and the hardware that runs them.",
        epilog="examples:\n"
               "  hwsim models\n"
               "  hwsim models show resnet50 --sparsity 2:8 --mode train\n"
               "  hwsim simulate --arch targets/accelerators/sat.yaml\n")
    from hwsim import __version__
    parser.add_argument("--version", action="version", version=f"hwsim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND",
                                       parser_class=ArgumentParser)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"cli.{module_name}":
                continue      # subcommand not built yet
            raise
        module.register(subparsers, HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        arguments = parser.parse_args(argv)
        if not getattr(arguments, "handler", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        return int(arguments.handler(arguments) or EXIT_OK)
    except UserError as error:
        print(f"hwsim: error: {error.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


def run() -> None:
    sys.exit(main())
