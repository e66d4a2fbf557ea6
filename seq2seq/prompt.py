"""The interactive prompt that `translate` and `generate` share: line editing and history through readline, and a
session that survives bad input (invalid UTF-8, Ctrl-C at the prompt or during an answer). Ctrl-D ends it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

HISTORY = Path.home() / ".seq2seq_history"


def prompt_loop(respond: Callable[[str], None], hint: str) -> None:
    """Read lines on a terminal and hand each to `respond`, which prints its answer."""
    import readline  # importing it gives input() line editing and history

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
        except UnicodeDecodeError as e:
            print(f"error: that line is not valid UTF-8 ({e.reason}); try again", file=sys.stderr)
            continue
        try:
            respond(line)
        except KeyboardInterrupt:
            print("(interrupted)", file=sys.stderr)
    try:
        readline.write_history_file(HISTORY)
    except OSError:
        pass
