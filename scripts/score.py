"""Score a hypothesis file against one or more reference files with sacreBLEU (BLEU, chrF, TER + signatures).

    python scripts/score.py runs/en-fr/hyps.test_2016_flickr.fr $SEQ2SEQ_DATA/multi30k/test_2016_flickr.fr
    python scripts/score.py HYP REF1 REF2 --lowercase-tokenized
"""

from __future__ import annotations

import argparse
import sys

from seq2seq.data.corpora import DataError, read_lines
from seq2seq.metrics import all_scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hypotheses", help="one detokenized hypothesis per line")
    parser.add_argument("references", nargs="+", help="reference files, each aligned with the hypotheses")
    parser.add_argument("--lowercase-tokenized", action="store_true", help="also report lowercased BLEU")
    args = parser.parse_args(argv)
    try:
        hyps = read_lines(args.hypotheses)
        refs = [read_lines(r) for r in args.references]
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, ref in zip(args.references, refs):
        if len(ref) != len(hyps):
            print(f"error: {path} has {len(ref)} lines but {args.hypotheses} has {len(hyps)}", file=sys.stderr)
            return 2
    for score in all_scores(hyps, refs, args.lowercase_tokenized):
        print(score)
    return 0


if __name__ == "__main__":
    sys.exit(main())
