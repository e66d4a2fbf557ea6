"""python -m seq2seq.generate RUN_DIR [--prompt TEXT] [--max-tokens N] [--beam N | --temperature T --top-k K --top-p P]

Continues a prompt with a trained language model (task lm), through seq2seq/search.py: greedy by default, beam
search with --beam, sampling with --temperature (optionally top-k / top-p filtered; --seed makes it reproducible).
Generation stops at the end of the sentence (EOS) or after --max-tokens tokens.
Without --prompt: an interactive prompt on a terminal (line editing and history, as in `translate`), else one
continuation per line of standard input; a line that is not valid UTF-8 stops there with an error naming it (exit 1),
after the continuations of the lines before it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from seq2seq.allocator import reuse_freed_memory
from seq2seq.cli import (
    ArgumentParser,
    check_runs,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    run_cli,
    utf8_text,
)
from seq2seq.tokenizer import EOS


def continue_text(
    model, vocab, prompt: str, args: argparse.Namespace, generator: torch.Generator | None
) -> str:
    """The prompt, then its continuation; the prompt runs after an EOS, as every line does in training."""
    from seq2seq import search

    ids = torch.tensor([[EOS, *vocab.prompt(prompt)]])  # (1, T)
    context, start, lengths = ids[:, :-1], ids[:, -1], torch.tensor([ids.shape[1] - 1])
    if args.beam > 1:
        tokens = search.beam_search(
            model, context, lengths, args.beam, max_len=args.max_tokens, start_tokens=start
        )[0][0].tokens
    else:
        tokens = search.sample(model, context, lengths, temperature=args.temperature or 0.0, top_k=args.top_k,
                               top_p=args.top_p, generator=generator, start_tokens=start,
                               max_len=args.max_tokens)[0].tokens  # fmt: skip
    return vocab.decode(ids[0, 1:].tolist() + tokens)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m seq2seq.generate", description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--prompt", type=utf8_text,
                   help="text to continue (default: read prompts interactively / from stdin)")  # fmt: skip
    p.add_argument("--max-tokens", type=positive_int, default=50, help="the most tokens generated")
    p.add_argument("--beam", type=positive_int, default=1, help="beam size (1 = greedy or sampling)")
    p.add_argument("--temperature", type=positive_float,
                   help="sample at this temperature (above 0; without it: greedy)")  # fmt: skip
    p.add_argument("--top-k", type=non_negative_int, default=0,
                   help="sample among the k most likely tokens (0 = all)")  # fmt: skip
    p.add_argument("--top-p", type=probability, default=1.0,
                   help="nucleus sampling: the smallest set with this much mass, in (0, 1]")  # fmt: skip
    p.add_argument("--seed", type=int, help="seed for sampling")
    p.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    reuse_freed_memory()
    args = parse_args(argv)
    check_runs([args.run_dir], args.checkpoint)
    from seq2seq.build import load_language_model

    _, model, vocab = load_language_model(args.run_dir, args.checkpoint, args.device)
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    if args.prompt is not None:
        print(continue_text(model, vocab, args.prompt, args, generator))
        return 0
    if sys.stdin.isatty():
        from seq2seq.prompt import prompt_loop

        prompt_loop(lambda line: print(continue_text(model, vocab, line.strip(), args, generator), flush=True),
                    "Type the start of a text and press Enter")  # fmt: skip
        return 0
    from seq2seq.translate import read_lines

    binary = getattr(sys.stdin, "buffer", None)
    for line in read_lines(binary) if binary is not None else sys.stdin:  # InputError: what came before is out
        print(continue_text(model, vocab, line.strip(), args, generator), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
