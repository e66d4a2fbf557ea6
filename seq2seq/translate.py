"""python -m seq2seq.translate RUN_DIR [RUN_DIR ...] [--input FILE] [--output FILE] [--beam N] ...

On a terminal: an interactive prompt (line editing and history), a sentence in, its translation out.
From a pipe or --input: one translation per input line, to stdout or --output; an empty line gives an empty line.
Several run directories decode together as an ensemble. Raw text in, raw text out: no pre-tokenization.

On an error: a line of input that is not valid UTF-8 stops the translation with an error naming the line (exit 1),
after the translations of every line before it are written, to stdout or to --output, which then holds exactly
those lines. Any other failure (Ctrl-C, a full disk, a model error) leaves --output as it was: the translations go
to a temporary file in the same folder that replaces --output only at the end. --output may not be the input.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from pathlib import Path

from seq2seq.allocator import reuse_freed_memory
from seq2seq.cli import (
    ArgumentParser,
    InputError,
    UsageError,
    atomic_output,
    check_runs,
    existing_file,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    refuse_overwriting,
    run_cli,
)
from seq2seq.config import DECODE_PRECISIONS
from seq2seq.prompt import prompt_loop

INT8_HELP = ("CPU: the decoder's matrix products in 8-bit integers, the rest in bf16 (seq2seq/models/int8.py; "
             "faster, translations nearly the same: docs/speed.md, Int8 decoding on the CPU); the same as --precision int8")
PRECISION_HELP = ("fp32 | bf16 | fp16 (CUDA) | int8 (CPU); default: on a CPU the training precision (bf16 for the "
                  "recipes), on a GPU fp32 (faster there for these models: docs/speed.md, Precision when decoding)")
BATCH_HELP = "sentences per batch (default: on a CPU 256 greedy, 512 / beam size; on a GPU 1,024 and 1,280 / beam size)"
THREADS_HELP = ("CPU: batches decoded at once, each on an equal share of the threads (default: 2 for beam search with "
                "2 or more threads, else 1)")


def chosen_precision(args: argparse.Namespace) -> str | None:
    """--precision, with --int8 as its shorthand; UsageError when the two disagree."""
    if args.int8 and args.precision not in (None, "int8"):
        raise UsageError(f"--int8 and --precision {args.precision} disagree: give one of them")
    return "int8" if args.int8 else args.precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m seq2seq.translate", description=__doc__)
    p.add_argument("run_dirs", nargs="+", help="run directories or exported model folders, or hf://owner/name (several = an ensemble)")
    p.add_argument("--input", "-i", type=existing_file, help="file of source sentences (default: stdin)")
    p.add_argument("--output", "-o", type=output_file, help="file for translations (default: stdout)")
    p.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    p.add_argument("--beam", type=positive_int, default=5, help="beam size (1 = greedy)")
    p.add_argument("--greedy", action="store_true", help="greedy search (same as --beam 1)")
    p.add_argument("--n-best", type=positive_int, default=1, help="print the N best, tab-separated with scores")
    p.add_argument("--alpha", type=non_negative_float, default=0.6,
                   help="GNMT length penalty for beam search (0 = none)")  # fmt: skip
    p.add_argument("--max-len-ratio", type=positive_float, help="longest output, in target pieces per source piece")
    p.add_argument("--min-length", type=non_negative_int, default=0, help="no end of sentence before this many pieces")
    p.add_argument("--no-repeat-ngram", type=non_negative_int, default=0,
                   help="forbid repeating n-grams of this size (0 = allow)")  # fmt: skip
    p.add_argument("--ban-unk", action="store_true", help="never output the unknown token")
    p.add_argument("--batch-size", type=positive_int, help=BATCH_HELP)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--inter-threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument("--full-vocabulary", action="store_true", help="greedy search with a model trained with "
                   "model.target_vocabulary: all: take the argmax over every target piece, not only over those seen in "
                   "training (the default shortlist, which is faster)")
    p.add_argument("--precision", choices=DECODE_PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--int8", action="store_true", help=INT8_HELP)
    p.add_argument("--attention", action="store_true", help="interactive: show what each output piece attended to")
    p.add_argument("--plot-attention", metavar="FILE.png", type=output_file,
                   help="interactive: write the attention heatmap here")  # fmt: skip
    return p.parse_args(argv)


def read_lines(stream, first_line: int = 1):
    """Yield decoded lines of a binary stream; invalid UTF-8 raises InputError naming the line."""
    for number, raw in enumerate(stream, start=first_line):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise InputError(f"input line {number} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def format_n_best(translations) -> str:
    if len(translations) == 1:
        return translations[0].text
    return "\t".join(f"{t.text}\t{t.score:.4f}" for t in translations)


def translate_stream(translator, stream, out, args, options) -> int:
    """Translate the lines of a binary stream to `out`, one line each, in chunks so that a large file streams
    through with bounded memory; returns the number of lines. A line that is not UTF-8 raises InputError naming it,
    once the lines before it are translated and written."""
    from seq2seq.translator import default_batch_size

    lines = read_lines(stream)
    size, done = (args.batch_size or default_batch_size(args.beam, translator.device)) * 16, 0
    while True:
        chunk, error = [], None
        try:
            chunk.extend(itertools.islice(lines, size))
        except InputError as e:  # extend() keeps the lines read before the bad one
            error = e
        if chunk:
            if args.n_best == 1:  # text only: translate() keeps no attention weights, and no scores in greedy search
                texts = translator.translate(chunk, args.beam, args.batch_size, first_line=done + 1, **options)
            else:
                texts = map(format_n_best, translator.translate_n_best(chunk, args.beam, args.n_best, args.batch_size,
                            first_line=done + 1, attention=False, **options))  # fmt: skip
            for text in texts:  # a newline inside a translation would shift every line after it
                out.write(text.replace("\r", " ").replace("\n", " ") + "\n")
            out.flush()
            done += len(chunk)
        if error is not None:
            raise error
        if len(chunk) < size:
            return done


def interactive(translator, args, options) -> None:
    options = {**options, "attention": bool(args.attention or args.plot_attention)}  # kept only when shown: faster

    def respond(line: str) -> None:
        result = translator.translate_n_best([line], args.beam, args.n_best, 1, **options)[0]
        print(format_n_best(result).replace("\t", "\n") if len(result) > 1 else result[0].text, flush=True)
        if args.attention and result[0].tgt_pieces:
            show_attention(result[0])
        if args.plot_attention and result[0].tgt_pieces:
            from seq2seq.plots import plot_attention

            print(f"attention heatmap: {plot_attention(result[0], Path(args.plot_attention))}", file=sys.stderr)

    prompt_loop(respond, "Type a sentence and press Enter")


def show_attention(t) -> None:
    """For each output piece, the source piece it attended to most, with the weight."""
    for piece, row in zip(t.tgt_pieces, t.attention):
        best = max(range(len(row)), key=row.__getitem__)
        print(f"  {piece:>16}  <- {t.src_pieces[best]:<16} {row[best]:.2f}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    reuse_freed_memory()
    args = parse_args(argv)
    if args.greedy:
        args.beam = 1
    if args.n_best > args.beam:
        raise UsageError(f"--n-best {args.n_best} needs --beam of at least {args.n_best}")
    precision = chosen_precision(args)
    at_prompt = not args.input and sys.stdin.isatty()
    if args.output and at_prompt:
        raise UsageError("--output takes the translations of --input or of a pipe; at the prompt they are printed")
    if args.output:
        refuse_overwriting(args.output, args.input or sys.stdin)
    if any(r.startswith("hf://") for r in args.run_dirs):  # a model folder on the Hugging Face Hub (the hub extra)
        from seq2seq.hub import resolve

        args.run_dirs = [str(resolve(r)) if r.startswith("hf://") else r for r in args.run_dirs]
    check_runs(args.run_dirs, args.checkpoint)
    options = {"alpha": args.alpha, "no_repeat_ngram": args.no_repeat_ngram} if args.beam > 1 else {}
    options.update(min_length=args.min_length, ban_unk=args.ban_unk)
    from seq2seq.translator import Translator

    extra = {"max_len_ratio": args.max_len_ratio} if args.max_len_ratio else {}
    extra.update(inter_threads=args.inter_threads, shortlist=not args.full_vocabulary)
    extra["precision"] = precision
    translator = Translator.from_run(args.run_dirs, args.checkpoint, args.device, **extra)
    if at_prompt:
        interactive(translator, args, options)
        return 0
    with open(args.input, "rb") if args.input else contextlib.nullcontext(sys.stdin.buffer) as stream:
        if not args.output:
            translate_stream(translator, stream, sys.stdout, args, options)
            return 0
        with atomic_output(args.output, keep_on=(InputError,)) as out:  # the contract in the docstring above
            translate_stream(translator, stream, out, args, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
