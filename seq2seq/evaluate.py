"""python -m seq2seq.evaluate RUN_DIR [RUN_DIR ...] [--split NAME | --src FILE --ref FILE | --sacrebleu NAME -l SRC-TGT]

Translates a test set and prints sacreBLEU BLEU, chrF and TER with their signatures. The test set is a split of the
run's corpus (--split, by default test_2016_flickr), any pair of aligned files, one sentence a line (--src and its
references --ref), or one of sacreBLEU's own test sets by name (--sacrebleu multi30k/2018 -l en-fr), which sacreBLEU
downloads once into $SACREBLEU (default ~/.sacrebleu). Several run directories decode as an ensemble. The
translations are written to RUN_DIR/hyps.<test set>.<tgt_lang> (or --output), which is replaced only once every
sentence is translated.
For a language model (task lm) it prints the exact perplexity of the split (train | valid | test).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import math
import sys
import tarfile
import time
from pathlib import Path

from seq2seq.cli import (
    ArgumentParser,
    InputError,
    UsageError,
    atomic_output,
    check_runs,
    existing_file,
    output_file,
    run_cli,
)
from seq2seq.decoding import EVALUATE_FIELDS, DecodeConfig, add_decode_options, decode_config
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args

DEFAULT_SPLIT = "test_2016_flickr"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, DecodeConfig]:
    parser = ArgumentParser(prog="python -m seq2seq.evaluate", description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="run directories (several = an ensemble)")
    parser.add_argument("--split", help=f"a split of the run's corpus (default: {DEFAULT_SPLIT})")
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
        sacrebleu_dataset(args.sacrebleu, args.langpair)
    return args, config


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 file, without their line ends; InputError names the line that is not UTF-8."""
    from seq2seq.translate import read_lines

    with open(path, "rb") as f:
        try:
            return list(read_lines(f))
        except InputError as e:
            raise InputError(f"{what} {path}: {e}") from None


def file_pair(src: Path, ref: Path) -> tuple[list[str], list[list[str]]]:
    """The source lines and the one reference set of --src and --ref, which must have as many lines."""
    sources, references = read_text_lines(src, "--src"), read_text_lines(ref, "--ref")
    if len(sources) != len(references):
        raise UsageError(f"--src {src} has {len(sources)} lines and --ref {ref} has {len(references)}: they must "
                         "align, one reference line per source line")  # fmt: skip
    return sources, [references]


def sacrebleu_dataset(name: str, langpair: str | None):
    """sacreBLEU's test set `name` (a sacrebleu.dataset Dataset); UsageError for a name it does not know, or a
    language pair the test set does not have."""
    from sacrebleu.dataset import DATASETS

    if name not in DATASETS:
        near = difflib.get_close_matches(name, list(DATASETS), n=3)
        raise UsageError(f"--sacrebleu {name}: no such sacreBLEU test set" + (
            f"; did you mean {', '.join(near)}?" if near else " (sacrebleu --list names them)"))  # fmt: skip
    dataset = DATASETS[name]
    if langpair is not None and langpair not in dataset.langpairs:
        raise UsageError(f"sacreBLEU test set {name} has no pair {langpair}; it has {', '.join(dataset.langpairs)}")
    return dataset


def sacrebleu_test_set(name: str, langpair: str) -> tuple[list[str], list[list[str]]]:
    """The source lines and the reference sets of sacreBLEU's test set `name` in `langpair`, through sacreBLEU's
    dataset API: files under $SACREBLEU (default ~/.sacrebleu), downloaded there first where they are missing."""
    from sacrebleu.utils import SACREBLEU_DIR, smart_open

    from seq2seq.data.corpora import DataError

    dataset = sacrebleu_dataset(name, langpair)
    quiet = logging.getLogger("sacrebleu")
    level, quiet.level = quiet.level, logging.CRITICAL  # a failed download is this one line, not sacreBLEU's log
    try:
        source_file, reference_files = dataset.get_source_file(langpair), dataset.get_reference_files(langpair)
    except (OSError, SystemExit, EOFError, tarfile.TarError) as e:  # sacreBLEU exits on a bad checksum
        reason = "a file failed its checksum" if isinstance(e, SystemExit) else " ".join(str(e).split())
        raise DataError(f"sacreBLEU test set {name} ({langpair}) is not in {SACREBLEU_DIR} and could not be "
                        f"downloaded ({reason}): it needs the network once, or give its files with --src FILE "
                        "--ref FILE") from None  # fmt: skip
    finally:
        quiet.level = level
    with contextlib.ExitStack() as stack:
        sources = [line.strip() for line in stack.enter_context(smart_open(source_file))]
        references = [[line.strip() for line in stack.enter_context(smart_open(f))] for f in reference_files]
    return sources, references


def load_test_set(args: argparse.Namespace, recipe, files: tuple | None) -> tuple[str, list[str], list[list[str]]]:
    """(name, source lines, reference sets) of the test set that the options give; the name labels the output.
    files: what `file_pair` read of --src and --ref."""
    d = recipe.data
    if files is not None:
        return args.src.name, *files
    if args.sacrebleu:
        pair = args.langpair or f"{d.src_lang}-{d.tgt_lang}"
        if pair != f"{d.src_lang}-{d.tgt_lang}":
            raise UsageError(f"-l {pair}: the run translates {d.src_lang}-{d.tgt_lang}")
        sources, references = sacrebleu_test_set(args.sacrebleu, pair)
        return args.sacrebleu, sources, references
    from seq2seq.data.parallel import load_parallel

    split = args.split or DEFAULT_SPLIT
    table = load_parallel(d.corpus, split, d.src_lang, d.tgt_lang, d.hub_config)
    return split, table["src"], [table["tgt"]]


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    args, config = parse_args(argv)
    apply(runtime_from_args(args))  # threads, malloc, kernels: before the first model is built
    check_runs(args.run_dirs, args.checkpoint)
    if args.output is None and not args.run_dirs[0].is_dir():  # --checkpoint FILE needs no run directory
        raise UsageError(f"run directory {args.run_dirs[0]} does not exist to hold the translations: give --output")
    files = file_pair(args.src, args.ref) if args.src else None  # misaligned files fail before the model loads
    from seq2seq.tasks import run_task

    if run_task(args.run_dirs[0], args.checkpoint) == "lm":
        return language_model(args)
    from seq2seq.translator import Translator

    translator = Translator.from_run(args.run_dirs, args.checkpoint, args.device, decode=config)
    name, sources, references = load_test_set(args, translator.recipe, files)
    start = time.time()
    hyps = translator.translate(sources, config.beam, config.batch_size, **config.settings())
    seconds = max(time.time() - start, 1e-9)
    label = name.replace("/", "_")
    out = args.output or args.run_dirs[0] / f"hyps.{label}.{translator.recipe.data.tgt_lang}"
    with atomic_output(out) as f:
        f.writelines(h + "\n" for h in hyps)
    models = f"ensemble of {len(args.run_dirs)}" if len(args.run_dirs) > 1 else "1 model"
    print(f"{name}: {len(hyps)} sentences, {search_name(config)}, {models}, {translator.precision} on "
          f"{translator.device}, {seconds:.1f} s ({len(hyps) / seconds:.1f} sentences/s); translations in {out}")
    from seq2seq.metrics import all_scores

    for score in all_scores(hyps, references, args.lowercase_tokenized):
        print(score)
    return 0


def search_name(config: DecodeConfig) -> str:
    if config.beam > 1:
        return f"beam {config.beam}, alpha {config.alpha}"
    return "greedy" if config.temperature is None else f"sampling at temperature {config.temperature:g}"


def language_model(args: argparse.Namespace) -> int:
    """The exact perplexity of a language model's split."""
    if args.src or args.sacrebleu:
        raise UsageError("a language model is scored on a split of its corpus: give --split (train | valid | test)")
    from seq2seq.tasks import lm_split_perplexity

    split = args.split or DEFAULT_SPLIT
    r = lm_split_perplexity(args.run_dirs[0], split, args.checkpoint, args.device)
    print(f"{split} perplexity = {r['ppl']:.2f} ({r['tokens']} {r['level']} tokens)")
    if r["level"] == "char":
        print(f"{split} bits per character = {math.log2(r['ppl']):.3f}")
    if r["level"] != "word":  # comparable with word-level models: the same total NLL spread over the words
        print(f"{split} word-level perplexity = {r['word_ppl']:.2f} ({r['words']} words incl. <eos>)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
