"""The ``medrecon`` command line: one module per command, and the only place argparse is used.

Each command module has ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
``run`` turns the flags into explicit arguments of library functions. The modules import torch,
astra and sigpy inside ``run`` only, so ``medrecon --help`` is instant.

Exit codes: 0 success, 2 bad usage or bad input, 3 missing resource, 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import sys
import traceback

from medrecon import __version__
from medrecon.errors import MedreconError

COMMANDS = ("reconstruct", "demo", "simulate", "evaluate", "priors", "reproduce", "bench", "data", "train")
"""The subcommands, in the order ``--help`` lists them; each is ``medrecon.commands.<name>``."""


def _module(name: str):
    return importlib.import_module(f"medrecon.commands.{name}")


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, like every other refusal (exit 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="medrecon",
        description="Medical image reconstruction from undersampled CT and MRI data with diffusion priors.",
    )
    parser.add_argument("--version", action="version", version=f"medrecon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = _module(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


NEGATIVE_VALUE_OPTIONS = ("--window",)
"""Options whose value may start with a minus sign (``--window -1000,2000``): argparse would read
the value as an option, so :func:`main` passes it joined (``--window=-1000,2000``)."""


def with_negative_values(argv: list[str]) -> list[str]:
    """``argv`` with each of :data:`NEGATIVE_VALUE_OPTIONS` followed by ``-<digit>...`` joined by ``=``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NEGATIVE_VALUE_OPTIONS and i + 1 < len(argv) and re.match(r"-[0-9.]", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Run ``medrecon ARGV`` (default: the process's arguments); returns the exit code."""
    argv = with_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # argparse prints the usage error (or the help) and exits
    except SystemExit as exc:  # returned, not raised: 2 for bad usage, 0 for --help / --version
        return exc.code if isinstance(exc.code, int) else 2
    args.command_line = shlex.join(["medrecon", *argv])  # what records and tables state
    try:
        return int(_module(args.command).run(args) or 0)
    except MedreconError as exc:
        print(f"medrecon {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"medrecon {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # an internal error: show where, exit 1
        traceback.print_exc()
        print(f"medrecon {args.command}: internal error (a bug: please report it with the trace above)", file=sys.stderr)
        return 1


def reference_markdown() -> str:
    """docs/cli.md: every command's ``--help``, generated from the parser (a test keeps the page in sync)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width: fix it for the page
    try:
        lines = ["# Command-line reference", "", "Generated from the parser (`medrecon.commands.reference_markdown()`); "
                 "exit codes: 0 success, 2 bad usage or input, 3 missing resource, 1 internal error.", ""]

        def section(title: str, p: argparse.ArgumentParser) -> None:
            lines.extend([f"## `{title}`", "", "```text", p.format_help().rstrip(), "```", ""])
            for action in p._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, child in action.choices.items():
                        section(f"{title} {name}", child)

        section("medrecon", build_parser())
        return "\n".join(lines)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


__all__ = ["COMMANDS", "build_parser", "main", "reference_markdown"]
