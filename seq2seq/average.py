"""seq2seq-average OUT.pt A.pt B.pt [...]: average the weights of several checkpoints of one model into a new one.

    seq2seq-average runs/en-fr/averaged.pt runs/en-fr/best.pt runs/en-fr/last.pt
    python -m seq2seq.translate runs/en-fr --checkpoint runs/en-fr/averaged.pt

The recipe and tokenizers are taken from the first checkpoint; all must have the same parameter names and shapes.
Integer tensors (a target vocabulary's ids) are the first checkpoint's.
"""

from __future__ import annotations

import sys

from seq2seq import checkpoint
from seq2seq.checkpoint import average
from seq2seq.cli import ArgumentParser, existing_file, output_file, run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="seq2seq-average", description=__doc__)
    parser.add_argument("output", type=output_file, help="the averaged checkpoint to write (.pt)")
    parser.add_argument("inputs", type=existing_file, nargs="+", help="checkpoints to average")
    args = parser.parse_args(argv)
    checkpoint.save(args.output, average(args.inputs))  # written whole or not at all
    print(f"wrote {args.output}: the mean of {len(args.inputs)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
