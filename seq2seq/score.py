"""seq2seq-score HYP REF [REF ...]: score a hypothesis file against reference files with sacreBLEU (BLEU, chrF, TER,
with their signatures).

    seq2seq-score runs/en-fr/hyps.test_2016_flickr.fr $SEQ2SEQ_DATA/multi30k/test_2016_flickr.fr
    python -m seq2seq.score HYP REF1 REF2 --lowercase-tokenized
"""

from __future__ import annotations

import sys

from seq2seq.cli import ArgumentParser, UsageError, existing_file, run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="seq2seq-score", description=__doc__)
    parser.add_argument("hypotheses", type=existing_file, help="one detokenized hypothesis per line")
    parser.add_argument("references", type=existing_file, nargs="+",
                        help="reference files, each aligned with the hypotheses")  # fmt: skip
    parser.add_argument("--lowercase-tokenized", action="store_true", help="also report lowercased BLEU")
    args = parser.parse_args(argv)
    from seq2seq.data.corpora import read_lines  # invalid UTF-8: a DataError naming the file and line
    from seq2seq.metrics import all_scores

    hyps = read_lines(args.hypotheses)
    refs = [read_lines(r) for r in args.references]
    for path, ref in zip(args.references, refs):
        if len(ref) != len(hyps):
            raise UsageError(f"{path} has {len(ref)} lines but {args.hypotheses} has {len(hyps)}: line i of each "
                             "reference must translate line i of the hypotheses")  # fmt: skip
    for score in all_scores(hyps, refs, args.lowercase_tokenized):
        print(score)
    return 0


if __name__ == "__main__":
    sys.exit(main())
