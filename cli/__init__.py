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

from models.errors import UserError, printable_text

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


class _EscapingStream:
    """A text stream that escapes control characters before they reach the terminal.

    Tables and reports echo names from input files (layer names, fields, paths); an
    escape sequence there must not clear the screen or rewrite lines. Newlines and tabs
    pass; everything else of ``models.errors.printable_text`` is shown as ``\\x1b``."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(printable_text(text))

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _bad_input(error: UserError) -> int:
    # one line, always: one_line() escapes control characters and cuts the length
    print(f"hwsim: error: {error.one_line()}".replace("\n", " "), file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = _EscapingStream(stdout)
    try:
        parser = build_parser()
        arguments = parser.parse_args(argv)
        if not getattr(arguments, "handler", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        return int(arguments.handler(arguments) or EXIT_OK)
    except UserError as error:
        return _bad_input(error)
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    finally:
        sys.stdout = stdout


def run() -> None:
    sys.exit(main())
