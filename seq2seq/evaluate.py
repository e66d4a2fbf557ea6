"""python -m seq2seq.evaluate RUN_DIR [RUN_DIR ...] --split NAME [--beam N | --greedy]

Translates a split of the run's corpus and prints sacreBLEU BLEU, chrF and TER with their signatures. Several run
directories decode as an ensemble. The translations are written to RUN_DIR/hyps.<split>.<tgt_lang> (or --output),
which is replaced only once every sentence is translated.
For a language model (task lm) it prints the exact perplexity of the split (train | valid | test).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from seq2seq.allocator import reuse_freed_memory
from seq2seq.cli import (
    ArgumentParser,
    UsageError,
    atomic_output,
    check_runs,
    non_negative_float,
    output_file,
    positive_int,
    run_cli,
)
from seq2seq.config import DECODE_PRECISIONS
from seq2seq.translate import BATCH_HELP, INT8_HELP, PRECISION_HELP, THREADS_HELP, chosen_precision


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(prog="python -m seq2seq.evaluate", description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="run directories (several = an ensemble)")
    parser.add_argument("--split", default="test_2016_flickr", help="a split of the run's corpus")
    parser.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    parser.add_argument("--beam", type=positive_int, default=5, help="beam size (1 = greedy)")
    parser.add_argument("--greedy", action="store_true", help="same as --beam 1")
    parser.add_argument("--alpha", type=non_negative_float, default=0.6, help="GNMT length penalty for beam search")
    parser.add_argument("--batch-size", type=positive_int, help=BATCH_HELP)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--inter-threads", type=positive_int, default=None, help=THREADS_HELP)
    parser.add_argument("--full-vocabulary", action="store_true",
                        help="greedy search with a model trained with model.target_vocabulary: all: argmax over "
                        "every target piece, not only those seen in training")
    parser.add_argument("--precision", choices=DECODE_PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--int8", action="store_true", help=INT8_HELP)
    parser.add_argument("--lowercase-tokenized", action="store_true",
                        help="also print the lowercased, tokenized BLEU that much of the Multi30k literature uses")
    parser.add_argument("--output", type=output_file, help="where to write the translations")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    reuse_freed_memory()
    args = parse_args(argv)
    beam, precision = 1 if args.greedy else args.beam, chosen_precision(args)
    check_runs(args.run_dirs, args.checkpoint)
    if args.output is None and not args.run_dirs[0].is_dir():  # --checkpoint FILE needs no run directory
        raise UsageError(f"run directory {args.run_dirs[0]} does not exist to hold the translations: give --output")
    from seq2seq.build import lm_split_perplexity, load_for_inference, run_task

    if run_task(args.run_dirs[0], args.checkpoint) == "lm":
        r = lm_split_perplexity(args.run_dirs[0], args.split, args.checkpoint, args.device)
        print(f"{args.split} perplexity = {r['ppl']:.2f} ({r['tokens']} {r['level']} tokens)")
        if r["level"] == "char":
            print(f"{args.split} bits per character = {math.log2(r['ppl']):.3f}")
        if r["level"] != "word":  # comparable with word-level models: the same total NLL spread over the words
            print(f"{args.split} word-level perplexity = {r['word_ppl']:.2f} ({r['words']} words incl. <eos>)")
        return 0
    from seq2seq.data.parallel import load_parallel
    from seq2seq.metrics import all_scores

    translator = load_for_inference(args.run_dirs, args.checkpoint, args.device, inter_threads=args.inter_threads,
                                    shortlist=not args.full_vocabulary, precision=precision)  # fmt: skip
    d = translator.recipe.data
    table = load_parallel(d.corpus, args.split, d.src_lang, d.tgt_lang, d.hub_config)
    options = {"alpha": args.alpha} if beam > 1 else {}
    start = time.time()
    hyps = translator.translate(table["src"], beam=beam, batch_size=args.batch_size, **options)
    seconds = max(time.time() - start, 1e-9)
    out = args.output or args.run_dirs[0] / f"hyps.{args.split}.{d.tgt_lang}"
    with atomic_output(out) as f:
        f.writelines(h + "\n" for h in hyps)
    search = "greedy" if beam == 1 else f"beam {beam}, alpha {args.alpha}"
    models = f"ensemble of {len(args.run_dirs)}" if len(args.run_dirs) > 1 else "1 model"
    print(f"{args.split}: {len(hyps)} sentences, {search}, {models}, {translator.precision} on {translator.device}, "
          f"{seconds:.1f} s ({len(hyps) / seconds:.1f} sentences/s); translations in {out}")  # fmt: skip
    for score in all_scores(hyps, [table["tgt"]], args.lowercase_tokenized):
        print(score)
    return 0


if __name__ == "__main__":
    sys.exit(main())
