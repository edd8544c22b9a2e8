"""``i2pmae <command>``: the command-line entry point, one module per group of commands.

Every command reports failures as one readable line on stderr and a non-zero exit code;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import evaluation, explore, novelty, tools, training, view

EXIT_USER_ERROR = 2

COMMAND_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    explore.add_parsers, training.add_parsers, evaluation.add_parsers, novelty.add_parsers,
    tools.add_parsers, view.add_parsers,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2pmae", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides written after options that follow other positionals
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("i2pmae: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one readable line for users; --debug for developers
        if args.debug:
            raise
        print(f"i2pmae {args.command}: error: {_describe(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _describe(err: BaseException) -> str:
    """First line of the message; the exception type too when it is not a user-input error."""
    lines = str(err).strip().splitlines()
    message = lines[0] if lines else type(err).__name__
    return message if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {message}"

