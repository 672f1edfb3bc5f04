"""The `pocketrec` console script: one parser, a subcommand per user task.

Subcommands are registered by the side that implements them (`_COMMAND_MODULES`: training,
federated server, export, and the SDK's own). Registration imports nothing heavy; a handler
imports what it needs when it runs, so `pocketrec --help` works on a base install and a missing
extra gives an install hint.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import Any, NoReturn

from pocketrec._errors import InvalidRequestError, PocketrecError
from pocketrec._files import write_atomic
from pocketrec._version import __version__

__all__ = ["emit_json", "main", "plain_json", "require_extra"]

# Modules whose `register(subparsers)` adds subcommands, in help order.
_COMMAND_MODULES = (
    "pocketrec.distill.cli",
    "pocketrec.distill.federated.cli",
    "pocketrec.export.cli",
    "pocketrec._commands",
)


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" hint for unknown options and subcommands."""

    def error(self, message: str) -> NoReturn:
        hint = ""
        if "unrecognized arguments:" in message:
            known = sorted(_option_strings(self))
            unknown = message.split("unrecognized arguments:", 1)[1].split()
            close = [
                m for u in unknown for m in difflib.get_close_matches(u.split("=")[0], known, 1)
            ]
            if close:
                hint = f" (did you mean {', '.join(close)}?)"
        elif "invalid choice:" in message:
            bad = message.split("invalid choice:", 1)[1].split("'")[1]
            choices = [c for a in self._actions if a.choices for c in a.choices]
            close = difflib.get_close_matches(bad, [str(c) for c in choices], 1)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\nRun '{self.prog} --help' for help.\n")


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of a parser and of its subcommands (unknown ones surface at the top)."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action.choices, dict):
            for child in action.choices.values():
                found |= _option_strings(child)
    return found


def require_extra(module: str, extra: str) -> Any:
    """Import `module` or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise PocketrecError(
            f"this command needs {e.name or module}, which the base install leaves out. "
            f"Install it with: pip install 'pocketrec[{extra}]'"
        ) from e


def emit_json(obj: Any, target: str | None) -> None:
    """`--json`: print `obj` (`target` None or "-") or write it to the file `target`, atomically.

    The one JSON output of every subcommand; `plain_json` turns dataclasses, paths and numpy
    values into plain JSON first.
    """
    text = json.dumps(plain_json(obj), indent=2)
    if target in (None, "-"):
        print(text)
        return
    path = Path(target)
    if path.is_dir() or not path.name:
        raise InvalidRequestError(f"--json {target!r} is a folder; name a file, or - for stdout")
    try:
        write_atomic(path, text + "\n")
    except OSError as e:
        raise InvalidRequestError(f"cannot write --json {target!r}: {e}") from e


def plain_json(value: Any) -> Any:
    """Dataclasses to dicts, paths to strings, numpy values to Python, dict keys to strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy
        return value.tolist()
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pocketrec",
        description="Distilled generative recommenders for the edge: data, semantic IDs, "
        "training, export, on-device SDK.",
    )
    parser.add_argument("--version", action="version", version=f"pocketrec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except PocketrecError as e:
        print(f"pocketrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pocketrec: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
