"""python -m seq2seq.generate RUN_DIR [--prompt TEXT] [--max-tokens N] [--beam N | --temperature T --top-k K --top-p P]

Continues a prompt with a trained language model (task lm), through seq2seq/search.py: greedy by default, beam
search with --beam, sampling with --temperature > 0 (optionally top-k / top-p filtered; --seed makes it
reproducible). Generation stops at the end of the sentence (EOS) or after --max-tokens tokens.
Without --prompt: an interactive prompt on a terminal (line editing and history, as in `translate`), else one
continuation per line of standard input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from seq2seq.allocator import reuse_freed_memory
from seq2seq.checkpoint import CheckpointError
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
        tokens = search.sample(model, context, lengths, temperature=args.temperature, top_k=args.top_k,
                               top_p=args.top_p, generator=generator, start_tokens=start,
                               max_len=args.max_tokens)[0].tokens  # fmt: skip
    return vocab.decode(ids[0, 1:].tolist() + tokens)


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()
    p = argparse.ArgumentParser(prog="python -m seq2seq.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("run_dir", type=Path)
    p.add_argument("--prompt", help="text to continue (default: read prompts interactively / from stdin)")
    p.add_argument("--max-tokens", type=int, default=50, help="the most tokens generated")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy or sampling)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    p.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling: smallest set with this much mass"
    )
    p.add_argument("--seed", type=int, help="seed for sampling")
    p.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.max_tokens < 1 or args.beam < 1:
        p.error("--max-tokens and --beam must be >= 1")
    try:
        from seq2seq.build import load_language_model

        _, model, vocab = load_language_model(args.run_dir, args.checkpoint, args.device)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
    try:
        for line in read_lines(binary) if binary is not None else sys.stdin:
            print(continue_text(model, vocab, line.strip(), args, generator), flush=True)
    except ValueError as e:  # invalid UTF-8: the message names the line; what came before is already out
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
