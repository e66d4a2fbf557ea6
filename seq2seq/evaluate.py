"""python -m seq2seq.evaluate RUN_DIR [RUN_DIR ...] [--split NAME | --src FILE --ref FILE | --sacrebleu NAME -l SRC-TGT]

Translates a test set and prints sacreBLEU BLEU, chrF and TER with their signatures. The test set is a split of the
run's corpus (--split, by default test_2016_flickr), any pair of aligned files, one sentence a line (--src and its
references --ref), or one of sacreBLEU's own test sets by name (--sacrebleu multi30k/2018 -l en-fr), which sacreBLEU
downloads once into $SACREBLEU (default ~/.sacrebleu). Several run directories decode as an ensemble. The
translations are written to RUN_DIR/hyps.<test set>.<tgt_lang> (or --output), which is replaced only once every
sentence is translated.
For a language model (task lm) it prints the exact perplexity of the split (train | valid | test); for a regression
run, the next-day errors on its test span beside persistence and drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.cli import (
    ArgumentParser,
    UsageError,
    check_runs,
    existing_file,
    output_file,
    run_cli,
)
from seq2seq.decoding import EVALUATE_FIELDS, DecodeConfig, add_decode_options, decode_config
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, DecodeConfig]:
    parser = ArgumentParser(prog="python -m seq2seq.evaluate", description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="run directories (several = an ensemble)")
    parser.add_argument("--split", help="a split of the run's corpus (default: test_2016_flickr for a translation "
                        "run, test for the other tasks)")  # fmt: skip
    parser.add_argument("--src", type=existing_file, help="a file of source sentences, one a line (with --ref)")
    parser.add_argument("--ref", type=existing_file, help="their reference translations, line by line (with --src)")
    parser.add_argument("--sacrebleu", metavar="NAME", help="a sacreBLEU test set (wmt14, multi30k/2018, ...)")
    parser.add_argument("-l", "--langpair", metavar="SRC-TGT",
                        help="--sacrebleu: its language pair (default: the run's, e.g. en-fr)")  # fmt: skip
    parser.add_argument("--checkpoint", default="best",
                        help="best | last | averaged (train.keep_checkpoints) | path to a .pt file")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_decode_options(parser, EVALUATE_FIELDS)
    parser.add_argument("--lowercase-tokenized", action="store_true",
                        help="also print the lowercased, tokenized BLEU that much of the Multi30k literature uses")
    parser.add_argument("--output", type=output_file, help="where to write the translations")
    add_runtime_options(parser)
    args = parser.parse_args(argv)
    config = decode_config(args)
    given = [name for name, value in [("--split", args.split), ("--src/--ref", args.src or args.ref),
                                      ("--sacrebleu", args.sacrebleu)] if value]  # fmt: skip
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: give one test set")
    if bool(args.src) != bool(args.ref):
        raise UsageError("--src and --ref go together: the source sentences and their references, line by line")
    if args.langpair and not args.sacrebleu:
        raise UsageError("-l/--langpair names the language pair of a --sacrebleu test set")
    if args.sacrebleu:
        from seq2seq.data.testsets import sacrebleu_dataset

        sacrebleu_dataset(args.sacrebleu, args.langpair)  # a name sacreBLEU does not know fails before any loading
    return args, config


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    args, config = parse_args(argv)
    apply(runtime_from_args(args))  # threads, malloc, kernels: before the first model is built
    check_runs(args.run_dirs, args.checkpoint)
    if args.output is None and not args.run_dirs[0].is_dir():  # --checkpoint FILE needs no run directory
        raise UsageError(f"run directory {args.run_dirs[0]} does not exist to hold the translations: give --output")
    from seq2seq import tasks
    from seq2seq.data.testsets import file_pair

    lines = file_pair(args.src, args.ref) if args.src else None  # misaligned files fail before anything loads
    test = tasks.TestSet(args.split, args.src, args.ref, args.sacrebleu, args.langpair, lines)
    task, _ = tasks.of_run(args.run_dirs[0], args.checkpoint)
    evaluation = task.evaluate(args.run_dirs, test, args.checkpoint, args.device, config, args.output,
                               args.lowercase_tokenized)  # fmt: skip
    print(evaluation.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
