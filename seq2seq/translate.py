"""python -m seq2seq.translate RUN_DIR [RUN_DIR ...] [--input FILE] [--output FILE] [--beam N] ...

On a terminal: an interactive prompt (line editing and history), a sentence in, its translation out.
From a pipe or --input: one translation per input line, to stdout or --output; an empty line gives an empty line.
Several run directories decode together as an ensemble. Raw text in, raw text out: no pre-tokenization.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from seq2seq.allocator import reuse_freed_memory
from seq2seq.checkpoint import CheckpointError
from seq2seq.config import DECODE_PRECISIONS
from seq2seq.prompt import prompt_loop


def at_least_one(text: str) -> int:
    """argparse type: an integer of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


INT8_HELP = ("CPU: the decoder's matrix products in 8-bit integers, the rest in bf16 (seq2seq/models/int8.py; "
             "faster, translations nearly the same: README, Speed); the same as --precision int8")
PRECISION_HELP = ("fp32 | bf16 | fp16 (CUDA) | int8 (CPU); default: on a CPU the training precision (bf16 for the "
                  "recipes), on a GPU fp32 (faster there for these models: README, Speed)")
BATCH_HELP = "sentences per batch (default: on a CPU 256 greedy, 512 / beam size; on a GPU 1,024 and 1,280 / beam size)"


def chosen_precision(args: argparse.Namespace) -> str | None:
    """--precision, with --int8 as its shorthand; ValueError when the two disagree."""
    if args.int8 and args.precision not in (None, "int8"):
        raise ValueError(f"--int8 and --precision {args.precision} disagree: give one of them")
    return "int8" if args.int8 else args.precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m seq2seq.translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("run_dirs", nargs="+", help="training run directories (several = an ensemble)")
    p.add_argument("--input", "-i", help="file of source sentences (default: stdin)")
    p.add_argument("--output", "-o", help="file for translations (default: stdout)")
    p.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    p.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    p.add_argument("--greedy", action="store_true", help="greedy search (same as --beam 1)")
    p.add_argument("--n-best", type=int, default=1, help="print the N best, tab-separated with scores")
    p.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty for beam search (0 = none)")
    p.add_argument("--max-len-ratio", type=float, help="longest output, in target pieces per source piece")
    p.add_argument("--min-length", type=int, default=0, help="no end of sentence before this many pieces")
    p.add_argument("--no-repeat-ngram", type=int, default=0, help="forbid repeating n-grams of this size")
    p.add_argument("--ban-unk", action="store_true", help="never output the unknown token")
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--inter-threads", type=at_least_one, default=None,
                   help="CPU: batches decoded at once, each on an equal share of the threads "
                   "(default: 2 for beam search with 2 or more threads, else 1)")
    p.add_argument("--full-vocabulary", action="store_true", help="greedy search with a model trained with "
                   "model.target_vocabulary: all: take the argmax over every target piece, not only over those seen in "
                   "training (the default shortlist, which is faster)")
    p.add_argument("--precision", choices=DECODE_PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--int8", action="store_true", help=INT8_HELP)
    p.add_argument("--attention", action="store_true", help="interactive: show what each output piece attended to")
    p.add_argument("--plot-attention", metavar="FILE.png", help="interactive: write the attention heatmap here")
    return p.parse_args(argv)


def read_lines(stream, first_line: int = 1):
    """Yield decoded lines of a binary stream; invalid UTF-8 raises ValueError naming the line."""
    for number, raw in enumerate(stream, start=first_line):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise ValueError(f"input line {number} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def format_n_best(translations) -> str:
    if len(translations) == 1:
        return translations[0].text
    return "\t".join(f"{t.text}\t{t.score:.4f}" for t in translations)


def translate_stream(translator, stream, out, args, options) -> None:
    """Translate in chunks, so a large file streams through with bounded memory."""
    from seq2seq.translator import default_batch_size

    lines, batch_size = read_lines(stream), args.batch_size or default_batch_size(args.beam, translator.device)
    while chunk := list(itertools.islice(lines, batch_size * 16)):
        if args.n_best == 1:  # text only: translate() keeps no attention weights, and no scores in greedy search
            texts = translator.translate(chunk, args.beam, args.batch_size, **options)
        else:
            texts = map(format_n_best, translator.translate_n_best(chunk, args.beam, args.n_best, args.batch_size,
                                                                   attention=False, **options))  # fmt: skip
        for text in texts:
            out.write(text + "\n")
        out.flush()


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
    reuse_freed_memory()
    args = parse_args(argv)
    if args.greedy:
        args.beam = 1
    if args.n_best > max(args.beam, 1):
        print(f"error: --n-best {args.n_best} needs --beam of at least {args.n_best}", file=sys.stderr)
        return 2
    options = {}
    if args.beam > 1:
        options = {"alpha": args.alpha, "no_repeat_ngram": args.no_repeat_ngram}
    options.update(min_length=args.min_length, ban_unk=args.ban_unk)
    try:
        from seq2seq.translator import Translator

        extra = {"max_len_ratio": args.max_len_ratio} if args.max_len_ratio else {}
        extra.update(inter_threads=args.inter_threads, shortlist=not args.full_vocabulary)
        extra["precision"] = chosen_precision(args)
        translator = Translator.from_run(args.run_dirs, args.checkpoint, args.device, **extra)
        if not args.input and sys.stdin.isatty():
            interactive(translator, args, options)
            return 0
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
        try:
            if args.input:
                with open(args.input, "rb") as f:
                    translate_stream(translator, f, out, args, options)
            else:
                translate_stream(translator, sys.stdin.buffer, out, args, options)
        finally:
            if args.output:
                out.close()
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
