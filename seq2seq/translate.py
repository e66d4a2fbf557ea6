"""python -m seq2seq.translate RUN_DIR [--input FILE] [--output FILE]

Reads sentences one per line (stdin or --input) and writes one translation per line (stdout or --output).
An empty line gives an empty line; invalid UTF-8 is reported with its line number.
"""

from __future__ import annotations

import argparse
import sys

from seq2seq.checkpoint import CheckpointError


def read_input(stream) -> list[str]:
    lines = []
    for number, raw in enumerate(stream, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as e:
            raise ValueError(f"input line {number} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seq2seq.translate", description=__doc__)
    parser.add_argument("run_dir", help="a training run directory (holding best.pt)")
    parser.add_argument("--input", "-i", help="file of source sentences (default: stdin)")
    parser.add_argument("--output", "-o", help="file for translations (default: stdout)")
    parser.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    parser.add_argument("--max-len-ratio", type=float, help="longest output, in target pieces per source piece")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    try:
        from seq2seq.translator import Translator

        extra = {"max_len_ratio": args.max_len_ratio} if args.max_len_ratio else {}
        translator = Translator.from_run(args.run_dir, args.checkpoint, args.device, **extra)
        if args.input:
            with open(args.input, "rb") as f:
                lines = read_input(f)
        else:
            lines = read_input(sys.stdin.buffer)
        outputs = translator.translate(lines, batch_size=args.batch_size)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = "".join(o + "\n" for o in outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
