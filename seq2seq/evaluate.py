"""python -m seq2seq.evaluate RUN_DIR --split NAME

Translates a split of the run's corpus with the best checkpoint and prints sacreBLEU BLEU and chrF with their
signatures. The translations are written to RUN_DIR/hyps.<split>.<tgt_lang>.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.data.corpora import DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seq2seq.evaluate", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="test_2016_flickr", help="a split of the run's corpus")
    parser.add_argument("--checkpoint", default="best", help="best | last | path to a .pt file")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        from seq2seq.build import load_for_inference
        from seq2seq.data.parallel import load_parallel
        from seq2seq.metrics import bleu, chrf

        translator = load_for_inference(args.run_dir, args.checkpoint, args.device)
        d = translator.recipe.data
        table = load_parallel(d.corpus, args.split, d.src_lang, d.tgt_lang, d.hub_config)
        start = time.time()
        hyps = translator.translate(table["src"], batch_size=args.batch_size)
        seconds = time.time() - start
    except (CheckpointError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.run_dir / f"hyps.{args.split}.{d.tgt_lang}"
    out.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    print(f"{args.split}: {len(hyps)} sentences in {seconds:.1f} s ({len(hyps) / seconds:.1f} sentences/s); {out}")
    print(bleu(hyps, [table["tgt"]]))
    print(chrf(hyps, [table["tgt"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
