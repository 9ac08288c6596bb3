"""The ``vpp`` command line: parses, delegates to ``core.commands.*``, and turns errors into one line.

Each sub-command lives in its own module under ``core.commands`` with ``add_parser(subparsers)``;
the list below is explicit (no import-time registry).

Errors and exit codes. The rule: nothing a user can cause or fix prints a traceback.

* 0 — success.
* 2 — bad input or environment, as one line on stderr (after the usage, for options):

  - a bad option value: argparse's usage message (``vpp bench: error: argument --threads: ...``). Option
    types and ranges are checked by argparse with the converters below (:func:`int_range`,
    :func:`float_range`, :func:`pkr_value`); a command that can only check an option after parsing
    raises ``argparse.ArgumentTypeError``, which gets the same usage message;
  - ``error: <message>`` for a :class:`~core.errors.VPPError` (a bad file, config, model or data; the
    message names the file and what to do);
  - ``error: <file>: <reason>`` for an ``OSError`` that escapes a command (missing file, permission
    denied, read-only file system, a folder where a file is expected, disk full, ...);
  - ``error: out of memory ...`` for a ``MemoryError`` or an allocator failure.
* 130 — interrupted (Ctrl-C).
* 1 — anything else is a bug in vpp-studio, never the user's fault: one line saying so and asking for a
  report, then the traceback (which the report needs).

``main`` returns the exit code (also for ``--help`` and usage errors) instead of raising ``SystemExit``.
``vpp --traceback COMMAND ...`` also prints the traceback of the one-line errors (for debugging).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from core import __version__
from core.errors import VPPError
from core.pkr import PKR_RANGE, is_pkr

# (module under core.commands, sub-command name) in the order ``vpp --help`` shows them.
COMMANDS = (
    "bench",
    "train",
    "eval",
    "sweep",
    "make_synthetic",
    "infer",
    "model_card",
    "export_model",
    "export",
    "models",
    "import_checkpoint",
)

EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


# -- option converters (argparse ``type=``): a clear message naming the allowed range -----------------
def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """``type=`` for an integer option in ``lo..hi`` (either end may be open)."""

    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer{_int_bounds(lo, hi)}, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer{_int_bounds(lo, hi)}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


def _int_bounds(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" in {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def float_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """``type=`` for a finite number in the interval from ``lo`` to ``hi`` (ends closed unless ``*_open``)."""
    shown = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {shown}, got {text!r}") from None
        inside = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (
            value < hi if hi_open else value <= hi)
        if not inside:
            raise argparse.ArgumentTypeError(f"must be a number in {shown}, got {text}")
        return value

    convert.__name__ = "number"
    return convert


def pkr_value(text: str) -> float:
    """``type=`` for a patch keep ratio: a number that :func:`core.pkr.is_pkr` accepts (the one PKR rule)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in {PKR_RANGE}, got {text!r}") from None
    if not is_pkr(value):
        raise argparse.ArgumentTypeError(f"must be a number in {PKR_RANGE}, got {text}")
    return value


pkr_value.__name__ = "number"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpp", description="Video Patch Pruning: inference, evaluation, training.")
    parser.add_argument("--version", action="version", version=f"vpp-studio {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="also print the traceback of one-line errors (for debugging and bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"core.commands.{name}").add_parser(sub)
    for p in sub.choices.values():
        p.set_defaults(_parser=p)  # for usage errors a command raises after parsing
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    tb = bool(getattr(args, "traceback", False))
    try:
        return int(args.func(args) or 0)
    except argparse.ArgumentTypeError as exc:  # an option checked after parsing
        _traceback_if_asked(tb)
        sub = getattr(args, "_parser", parser)
        sub.print_usage(sys.stderr)
        print(f"{sub.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except VPPError as exc:
        return _user_error(str(exc), tb)
    except BrokenPipeError:  # stdout closed early (``vpp ... | head``): not an error worth a message
        _silence_stdout()
        return EXIT_USER_ERROR
    except OSError as exc:
        return _user_error(describe_os_error(exc), tb)
    except MemoryError as exc:
        return _user_error(_out_of_memory(exc), tb)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _is_out_of_memory(exc):
            return _user_error(_out_of_memory(exc), tb)
        print(f"error: internal error in vpp-studio {__version__} ({type(exc).__name__}); this is a bug, not a "
              "problem with your input: please report it with the command line and the traceback below",
              file=sys.stderr)
        traceback.print_exc()
        return EXIT_BUG


def describe_os_error(exc: OSError) -> str:
    """``<file>: <reason>`` for an OSError (the file a temporary write was for, not the temporary name)."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return str(exc)
    name = _intended_name(os.fsdecode(exc.filename))
    if exc.filename2 is not None:
        return f"{name} -> {_intended_name(os.fsdecode(exc.filename2))}: {reason}"
    return f"{name}: {reason}"


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # core.atomic's mkstemp(prefix=".NAME.")


def _intended_name(filename: str) -> str:
    path = Path(filename)
    m = _TEMP_NAME.match(path.name)
    return str(path.with_name(m.group("name"))) if m else filename


def _user_error(message: str, show_traceback: bool = False) -> int:
    _traceback_if_asked(show_traceback)
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _traceback_if_asked(show: bool) -> None:
    if show:
        traceback.print_exc()


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def _out_of_memory(exc: BaseException) -> str:
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return f"out of memory ({detail}); try smaller inputs, a smaller model, or fewer threads"


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
