"""The interactive prompt, driven through a pseudo-terminal: every input is answered and the process survives."""

from __future__ import annotations

import os
import signal
import sys

import pexpect

from .conftest import ROOT


def ignore_sigint():
    """Start the prompt as a shell's background job would (CI's runner does): with SIGINT ignored. Ctrl-C must still
    interrupt, as the prompt promises."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_interactive_prompt_answers_every_input_and_survives(toy_run, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "seq2seq.translate", str(toy_run), "--attention",
                                           "--plot-attention", str(tmp_path / "att.png")],
                          cwd=str(ROOT), env=env, timeout=120, encoding="utf-8", codec_errors="replace",
                          preexec_fn=ignore_sigint)  # fmt: skip
    prompt = "\r\n> |^> "
    child.expect("Ctrl-D quits")
    child.expect("> ")

    child.sendline("sa sb sc .")  # a normal sentence, with its attention shown and plotted
    child.expect("TR TK TD \\.")
    child.expect("<- ")
    child.expect("attention heatmap")
    child.expect(prompt)
    assert (tmp_path / "att.png").stat().st_size > 0

    child.sendline("")  # empty line -> empty answer, same prompt
    child.expect(prompt)
    child.sendline("    ")  # whitespace only
    child.expect(prompt)

    child.sendline(" ".join(["sa sb"] * 400) + " .")  # far longer than the model's maximum
    child.expect("translating only its first 250")
    child.expect(prompt)

    child.sendline("sd\x16\x01se .")  # Ctrl-V then a literal control character inside the sentence
    child.expect(prompt)

    os.write(child.child_fd, b"sa \xff\xfe .\r")  # invalid UTF-8 bytes
    child.expect("not valid UTF-8")
    child.expect(prompt)

    child.sendintr()  # Ctrl-C at the prompt
    child.expect(prompt)

    child.sendline(" ".join(["sa"] * 240) + " .")  # Ctrl-C during a long translation
    child.sendintr()
    if child.expect([prompt, pexpect.TIMEOUT], timeout=15) == 1:
        # Seen once in CI: when ^C lands while the line is still in the terminal's input queue, the tty discards
        # it and the program sits at its prompt without redrawing it. It must still answer the next line.
        child.sendline("")
        child.expect(prompt)

    child.sendline("sb sa .")  # still alive and still right
    child.expect("TD TK \\.")
    child.expect(prompt)

    child.sendeof()  # Ctrl-D ends cleanly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_bytes_that_are_not_utf8_get_an_error_and_the_prompt_goes_on(toy_run, tmp_path):
    """Under a C.UTF-8 locale Python reads the terminal with errors="surrogateescape": bad bytes arrive as lone
    surrogates, not as a UnicodeDecodeError, and must not reach the tokenizer (which raised a TypeError)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    env.update(HOME=str(tmp_path), LC_ALL="C.UTF-8", LANG="C.UTF-8", OMP_NUM_THREADS="1")
    child = pexpect.spawn(sys.executable, ["-m", "seq2seq.translate", str(toy_run), "--greedy"], cwd=str(ROOT),
                          env=env, timeout=120, encoding="utf-8", codec_errors="replace")  # fmt: skip
    child.expect("Ctrl-D quits")
    child.expect("> ")
    os.write(child.child_fd, b"\xff\xfe bad bytes \xc3\x28\r")
    child.expect("error: that line is not valid UTF-8 \\(invalid start byte at byte 0\\); try again")
    child.expect("> ")
    os.write(child.child_fd, b"sa \xe9 sb .\r")  # a Latin-1 byte inside a sentence
    child.expect("not valid UTF-8 \\(invalid continuation byte at byte 3\\)")
    child.expect("> ")
    child.sendline("sb sa .")  # still alive and still right
    child.expect("TD TK \\.")
    child.expect("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
