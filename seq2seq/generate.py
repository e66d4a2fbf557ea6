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

from seq2seq.cli import ArgumentParser, check_runs, positive_int, run_cli, utf8_text
from seq2seq.decoding import LM_FIELDS, DecodeConfig, add_decode_options, decode_config
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args
from seq2seq.tokenizer import EOS


def continue_text(model, vocab, prompt: str, config: DecodeConfig, max_tokens: int,
                  generator: torch.Generator | None = None) -> str:  # fmt: skip
    """The prompt, then its continuation of at most `max_tokens` tokens; the prompt runs after an EOS, as every line
    does in training. generator: for sampling (default: one seeded with config.seed, if any)."""
    from seq2seq import search

    ids = torch.tensor([[EOS, *vocab.prompt(prompt)]])  # (1, T)
    context, start, lengths = ids[:, :-1], ids[:, -1], torch.tensor([ids.shape[1] - 1])
    common = {"max_len": max_tokens, "start_tokens": start, "attention": False, **config.search_options()}
    if config.beam > 1:
        tokens = search.beam_search(model, context, lengths, config.beam, **common)[0][0].tokens
    else:
        generator = config.generator() if generator is None else generator
        tokens = search.sample(model, context, lengths, generator=generator, **common)[0].tokens
    return vocab.decode(ids[0, 1:].tolist() + tokens)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, DecodeConfig]:
    p = ArgumentParser(prog="python -m seq2seq.generate", description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--prompt", type=utf8_text,
                   help="text to continue (default: read prompts interactively / from stdin)")  # fmt: skip
    p.add_argument("--max-tokens", type=positive_int, default=50, help="the most tokens generated")
    add_decode_options(p, LM_FIELDS, beam=1)
    p.add_argument("--checkpoint", default="best",
                   help="best | last | averaged (train.keep_checkpoints) | path to a .pt file")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    add_runtime_options(p)
    args = p.parse_args(argv)
    return args, decode_config(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    args, config = parse_args(argv)
    apply(runtime_from_args(args))  # threads, malloc, kernels: before the first model is built
    check_runs([args.run_dir], args.checkpoint)
    from seq2seq import tasks

    _, model, vocab = tasks.get("lm").load(args.run_dir, args.checkpoint, args.device)
    generator = config.generator()  # one for every prompt: sampling goes on from prompt to prompt

    def answer(prompt: str) -> None:
        print(continue_text(model, vocab, prompt, config, args.max_tokens, generator), flush=True)

    if args.prompt is not None:
        answer(args.prompt)
        return 0
    if sys.stdin.isatty():
        from seq2seq.prompt import prompt_loop

        prompt_loop(lambda line: answer(line.strip()), "Type the start of a text and press Enter")
        return 0
    from seq2seq.cli import decode_lines

    binary = getattr(sys.stdin, "buffer", None)
    for line in decode_lines(binary) if binary is not None else sys.stdin:  # InputError: what came before is out
        answer(line.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
