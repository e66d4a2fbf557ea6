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

from seq2seq.cli import (
    ArgumentParser,
    InputError,
    UsageError,
    atomic_output,
    check_runs,
    decode_lines,
    existing_file,
    output_file,
    refuse_overwriting,
    run_cli,
)
from seq2seq.decoding import DecodeConfig, add_decode_options, decode_config
from seq2seq.prompt import prompt_loop
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, DecodeConfig]:
    p = ArgumentParser(prog="python -m seq2seq.translate", description=__doc__)
    p.add_argument("run_dirs", nargs="+", help="run directories or exported model folders, or hf://owner/name (several = an ensemble)")
    p.add_argument("--input", "-i", type=existing_file, help="file of source sentences (default: stdin)")
    p.add_argument("--output", "-o", type=output_file, help="file for translations (default: stdout)")
    p.add_argument("--checkpoint", default="best",
                   help="best | last | averaged (train.keep_checkpoints) | path to a .pt file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_decode_options(p)
    p.add_argument("--attention", action="store_true", help="interactive: show what each output piece attended to")
    p.add_argument("--plot-attention", metavar="FILE.png", type=output_file,
                   help="interactive: write the attention heatmap here")  # fmt: skip
    add_runtime_options(p)
    args = p.parse_args(argv)
    return args, decode_config(args)


def format_n_best(translations) -> str:
    if len(translations) == 1:
        return translations[0].text
    return "\t".join(f"{t.text}\t{t.score:.4f}" for t in translations)


def translate_stream(translator, stream, out, config, options) -> int:
    """Translate the lines of a binary stream to `out`, one line each, in chunks so that a large file streams
    through with bounded memory; returns the number of lines. A line that is not UTF-8 raises InputError naming it,
    once the lines before it are translated and written. `config`: a DecodeConfig (its beam, n_best and
    batch_size); `options`: the rest of translate_n_best's keyword arguments (config.settings(), a generator)."""
    from seq2seq.translator import default_batch_size

    lines = decode_lines(stream)
    size, done = (config.batch_size or default_batch_size(config.beam, translator.device)) * 16, 0
    while True:
        chunk, error = [], None
        try:
            chunk.extend(itertools.islice(lines, size))
        except InputError as e:  # extend() keeps the lines read before the bad one
            error = e
        if chunk:
            if config.n_best == 1:  # text only: translate() keeps no attention weights, and no scores in greedy search
                texts = translator.translate(chunk, config.beam, config.batch_size, first_line=done + 1, **options)
            else:
                texts = map(format_n_best, translator.translate_n_best(chunk, config.beam, config.n_best,
                            config.batch_size, first_line=done + 1, attention=False, **options))  # fmt: skip
            for text in texts:  # a newline inside a translation would shift every line after it
                out.write(text.replace("\r", " ").replace("\n", " ") + "\n")
            out.flush()
            done += len(chunk)
        if error is not None:
            raise error
        if len(chunk) < size:
            return done


def interactive(translator, args, config: DecodeConfig, options) -> None:
    options = {**options, "attention": bool(args.attention or args.plot_attention)}  # kept only when shown: faster

    def respond(line: str) -> None:
        result = translator.translate_n_best([line], config.beam, config.n_best, 1, **options)[0]
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
    args, config = parse_args(argv)
    apply(runtime_from_args(args))  # threads, malloc, kernels: before the first model is built
    at_prompt = not args.input and sys.stdin.isatty()
    if args.output and at_prompt:
        raise UsageError("--output takes the translations of --input or of a pipe; at the prompt they are printed")
    if args.output:
        refuse_overwriting(args.output, args.input or sys.stdin)
    if any(r.startswith("hf://") for r in args.run_dirs):  # a model folder on the Hugging Face Hub (the hub extra)
        from seq2seq.hub import resolve

        args.run_dirs = [str(resolve(r)) if r.startswith("hf://") else r for r in args.run_dirs]
    check_runs(args.run_dirs, args.checkpoint)
    from seq2seq.translator import Translator

    translator = Translator.from_run(args.run_dirs, args.checkpoint, args.device, decode=config)
    options = {**config.settings(), "generator": config.generator()}  # one generator: sampling goes on across chunks
    if at_prompt:
        interactive(translator, args, config, options)
        return 0
    with open(args.input, "rb") if args.input else contextlib.nullcontext(sys.stdin.buffer) as stream:
        if not args.output:
            translate_stream(translator, stream, sys.stdout, config, options)
            return 0
        with atomic_output(args.output, keep_on=(InputError,)) as out:  # the contract in the docstring above
            translate_stream(translator, stream, out, config, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
