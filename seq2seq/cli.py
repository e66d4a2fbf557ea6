"""What every entry point does with an error: one line on stderr and an exit code, never a traceback by default.

    exit 2  a usage error: a bad recipe key or value, a bad option, a file or run directory that is not there
    exit 1  a runtime error: a corrupt checkpoint or corpus, input that is not UTF-8, a failed write, anything else
    exit 130  interrupted (Ctrl-C)

`--debug` on the command line (any entry point) or SEQ2SEQ_DEBUG=1 in the environment re-raises the error, so the
traceback shows.

    def main(argv=None) -> int:
        return run_cli(_main, argv)

Also here, for the entry points: `ArgumentParser` (bad options become a UsageError; --debug in every --help),
argparse `type=` checks, so a bad value fails before anything loads, and `atomic_output`, which replaces an output
file only once its content is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from seq2seq.config import ConfigError


class UsageError(ConfigError):
    """An option or an argument is wrong; the message names it and what would be right (exit 2)."""


class InputError(RuntimeError):
    """The input cannot be read past some point (a line that is not UTF-8); the message names the line (exit 1)."""


def debug_requested(argv: Sequence[str] | None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("SEQ2SEQ_DEBUG", "") not in ("", "0")


def run_cli(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)` (argv without --debug) and turn every exception into one line and an exit code."""
    debug = debug_requested(argv)
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--debug"]
    try:
        return main(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as e:  # UsageError too
        if debug:
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): stop quietly, as cat does
        if debug:
            raise
        with contextlib.suppress(OSError, ValueError):  # and keep Python's final flush of stdout from failing too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # noqa: BLE001 - the one place where every error becomes a line
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1


def one_line(e: BaseException) -> str:
    """The message of `e` on one line; an exception the toolkit did not raise on purpose keeps its type name."""
    from seq2seq.checkpoint import CheckpointError
    from seq2seq.data.corpora import DataError
    from seq2seq.trainer import TrainingDiverged

    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (CheckpointError, DataError, InputError, TrainingDiverged, OSError)):
        return text
    return f"{type(e).__name__}: {text} (run with --debug or SEQ2SEQ_DEBUG=1 for the traceback)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors raised as UsageError (one line through run_cli, not usage + message) and --debug
    listed in --help (run_cli reads it; parse_args never sees it)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help="on an error, show the traceback instead of one line (also SEQ2SEQ_DEBUG=1)")  # fmt: skip

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------------------------------- argparse types


def _number(kind: type, text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _number_type(kind: type, ok: Callable[[float], bool], requirement: str, doc: str) -> Callable[[str], float]:
    """An argparse `type=` that reads a finite `kind` and checks it: the error says what it `must be`."""

    def parse(text: str):
        value = _number(kind, text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    parse.__doc__ = doc
    parse.kind, parse.accepts, parse.requirement = kind, ok, requirement  # for checks of values, not text
    return parse


positive_int = _number_type(int, lambda v: v >= 1, "at least 1", "An integer of 1 or more.")
non_negative_int = _number_type(int, lambda v: v >= 0, "0 or more", "An integer of 0 or more.")
positive_float = _number_type(float, lambda v: v > 0, "above 0", "A finite number above 0.")
non_negative_float = _number_type(float, lambda v: v >= 0, "0 or more", "A finite number of 0 or more.")
probability = _number_type(float, lambda v: 0 < v <= 1, "above 0 and at most 1", "A number in (0, 1].")


def utf8_text(text: str) -> str:
    """Text from the command line; bytes that are not UTF-8 arrive as surrogate escapes, which no tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8") from None
    return text


def existing_file(text: str) -> Path:
    """A file to read: it must be there (a pipe or a device such as /dev/stdin will do), and not be a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def output_file(text: str) -> Path:
    """A file to write, checked before any work: its folder must exist and be writable, and it must not be a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if path.exists() and not path.is_file():  # /dev/null, a pipe: written in place
        return path
    folder = Path(os.path.realpath(path)).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {path.parent} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in folder {path.parent}")
    if path.exists() and not os.access(path, os.W_OK):  # atomic_output's rename would replace it all the same
        raise argparse.ArgumentTypeError(f"{text} is read-only")
    return path


# ---------------------------------------------------------------------------------------- files


def check_runs(run_dirs: Sequence[str | Path], which: str) -> None:
    """UsageError unless every run directory holds the checkpoint `which` (best | last | a .pt file), before any
    loading. Only finds the files: a corrupt checkpoint is the loader's CheckpointError (a runtime error)."""
    from seq2seq import checkpoint

    if which not in ("best", "last") and not Path(which).is_file() and (which.endswith(".pt") or os.sep in which):
        raise UsageError(f"--checkpoint {which}: no such file (give best, last or the path of a .pt file)")
    for run_dir in run_dirs:
        try:
            checkpoint.find(run_dir, which)
        except checkpoint.CheckpointError as e:
            raise UsageError(str(e)) from None


def refuse_overwriting(output: str | Path, *inputs: str | Path | TextIO) -> None:
    """UsageError when `output` is one of `inputs` (paths, or open files such as sys.stdin): writing it would destroy
    what is still to be read."""
    try:
        out = os.stat(output)
    except OSError:
        return  # not there yet: nothing to destroy
    if not stat.S_ISREG(out.st_mode):
        return  # /dev/null, a terminal, a pipe
    for source in inputs:
        is_path = isinstance(source, (str, Path))
        try:
            same = os.path.samestat(out, os.stat(source) if is_path else os.fstat(source.fileno()))
        except (OSError, ValueError):  # a stream without a file (a test's StringIO) cannot be `output`
            continue
        if same:
            name = f"the input file {source}" if is_path else "standard input"
            raise UsageError(f"--output {output} is {name}: writing it would destroy the input; write elsewhere")


@contextlib.contextmanager
def atomic_output(path: str | Path, keep_on: tuple[type[BaseException], ...] = ()) -> Iterator[TextIO]:
    """A UTF-8 text file that replaces `path` only when complete: the writes go to a temporary file in the same
    folder, which is flushed, fsync'ed and renamed over `path` when the block ends. An exception leaves `path` as it
    was, except one of `keep_on`: then what was written so far replaces `path`, and the exception goes on.
    `path` that is not a regular file (/dev/null, a pipe) is written in place."""
    target = Path(os.path.realpath(path))  # through a symlink: replace the file it points to, keep the link
    if target.exists() and not target.is_file():
        with open(target, "w", encoding="utf-8", newline="\n") as f:
            yield f
        return
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to open(path, "w")
    f = open(fd, "w", encoding="utf-8", newline="\n")
    try:
        if target.is_file():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        try:
            yield f
        except keep_on:
            _commit(f, tmp, target)
            raise
        _commit(f, tmp, target)
    finally:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _commit(f: TextIO, tmp: Path, target: Path) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, target)
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once the folder is synced
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def decode_lines(stream, first_line: int = 1):
    """Yield decoded lines of a binary stream; invalid UTF-8 raises InputError naming the line."""
    for number, raw in enumerate(stream, start=first_line):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise InputError(f"input line {number} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
