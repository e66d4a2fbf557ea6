"""Write docs/cli.md from the commands' own --help, so the page and the options cannot disagree.

    python scripts/cli_docs.py > docs/cli.md      # regenerate
    python scripts/cli_docs.py --check            # exit 1 when docs/cli.md is out of date (a test runs this)
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (module, console script, what it is for)
COMMANDS = [
    ("seq2seq.train", "seq2seq-train", "train any recipe; resume a run"),
    ("seq2seq.translate", "seq2seq-translate", "translate files, pipes, or text typed at a prompt"),
    ("seq2seq.evaluate", "seq2seq-evaluate", "score a translation run (BLEU, chrF, TER) or a language model (perplexity)"),
    ("seq2seq.generate", "seq2seq-generate", "continue text with a language model"),
    ("seq2seq.forecast", "seq2seq-forecast", "the S&P 500 lab's forecasts and baselines on the test span"),
    ("seq2seq.serve", "seq2seq-serve", "serve a translation model over HTTP: a JSON API and a web page"),
    ("seq2seq.export", "seq2seq-export", "export a run as a portable model folder (safetensors), ONNX, or to the Hub"),
    ("seq2seq.score", "seq2seq-score", "score any hypothesis file against references with sacreBLEU"),
    ("seq2seq.average", "seq2seq-average", "average the weights of checkpoints"),
]

HEADER = """# Command-line tools

Each tool runs as `python -m MODULE` or as its console script (installed by `pip install -e .`). Every tool
prints one line `error: ...` for bad input, with exit code 2 for a usage error and 1 for a runtime error;
`--debug` (or `SEQ2SEQ_DEBUG=1`) shows the traceback instead. Corpora are found through `SEQ2SEQ_DATA`
(see the README's Data section).

This page is generated from the tools' `--help` by `python scripts/cli_docs.py > docs/cli.md`.

| module | console script | for |
|---|---|---|
"""


def help_text(module: str) -> str:
    main = importlib.import_module(module).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["--help"])
    return out.getvalue().rstrip() + "\n"


def render() -> str:
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: fix the width so the page is reproducible
    parts = [HEADER]
    parts += [f"| `python -m {m}` | `{script}` | {what} |\n" for m, script, what in COMMANDS]
    for module, script, _ in COMMANDS:
        parts.append(f"\n## `{script}`\n\n```text\n{help_text(module)}```\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") != text:
            print("docs/cli.md is out of date: python scripts/cli_docs.py > docs/cli.md", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
