"""The interactive prompt that `translate` and `generate` share: line editing and history through readline, and a
prompt that survives bad input (bytes that are not UTF-8, Ctrl-C at the prompt or during an answer, an answer that
fails). Ctrl-D ends it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

HISTORY = Path.home() / ".seq2seq_history"


def not_utf8(line: str) -> str | None:
    """Why `line` is not valid UTF-8, or None. Under a C or C.UTF-8 locale (and in UTF-8 mode) Python reads a
    terminal with errors="surrogateescape": bad bytes arrive as lone surrogates, which no tokenizer accepts."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        try:
            line.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeError as e:  # the bytes that were typed, and where they go wrong
            return f"{e.reason} at byte {e.start}" if isinstance(e, UnicodeDecodeError) else str(e)
        return "unpaired surrogate"
    return None


def prompt_loop(respond: Callable[[str], None], hint: str) -> None:
    """Read lines on a terminal and hand each to `respond`, which prints its answer. An answer that fails prints
    one line and the prompt goes on (with --debug or SEQ2SEQ_DEBUG=1 it ends with the traceback)."""
    import readline  # importing it gives input() line editing and history
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started from a shell's background job, or under nohup:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the prompt promises Ctrl-C, so take it back

    from seq2seq.cli import debug_requested, one_line

    try:
        readline.read_history_file(HISTORY)
    except OSError:
        pass
    print(f"{hint}; Ctrl-D quits, Ctrl-C interrupts an answer.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            break
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        except UnicodeDecodeError as e:  # a terminal read with errors="strict" (PYTHONIOENCODING=utf-8)
            print(f"error: that line is not valid UTF-8 ({e.reason}); try again", file=sys.stderr)
            continue
        if (reason := not_utf8(line)) is not None:
            print(f"error: that line is not valid UTF-8 ({reason}); try again", file=sys.stderr)
            continue
        try:
            respond(line)
        except KeyboardInterrupt:
            print("(interrupted)", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - one failed answer (a plot that cannot be written) does not end the prompt
            if debug_requested(None):
                raise
            print(f"error: {one_line(e)}", file=sys.stderr)
    try:
        readline.write_history_file(HISTORY)
    except OSError:
        pass
