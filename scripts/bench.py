"""Speed benchmarks; each result is one JSON line on stdout. Run them on a quiet machine.

    python scripts/bench.py train  [--steps 30]          # LSTM-medium variants on real Multi30k batches
    python scripts/bench.py decode runs/en-fr            # greedy and beam 5 on test_2016_flickr

`train` measures, in one run, the straightforward reference (input feeding: a Python loop over decoder steps,
fp32) and the fast paths, so speed-ups are ratios taken on one machine at one time. FLOPs are counted from the
model's shapes (multiply-adds x 2, backward = 2 x forward) and MFU is taken against a bf16 matmul peak measured
in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from seq2seq.build import build_model, tokenize, train_tokenizers
from seq2seq.config import load_recipe
from seq2seq.data.batching import PairBatches
from seq2seq.data.parallel import load_parallel
from seq2seq.trainer import autocast

MEDIUM = Path(__file__).resolve().parents[1] / "recipes" / "en-fr-medium.yaml"
VARIANTS = {
    "reference: input feeding, bahdanau, fp32": ["model.input_feeding=true", "model.attention=bahdanau",
                                                 "train.precision=fp32"],
    "input feeding, bahdanau, bf16": ["model.input_feeding=true", "model.attention=bahdanau", "train.precision=bf16"],
    "fused decoder, bahdanau, bf16": ["model.input_feeding=false", "model.attention=bahdanau", "train.precision=bf16"],
    "fused decoder, luong, bf16 (recipes/en-fr.yaml)": ["model.input_feeding=false", "model.attention=luong",
                                                        "train.precision=bf16"],
}  # fmt: skip


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def lstm_flops(inp: int, hidden: int) -> int:
    return 2 * 4 * hidden * (inp + hidden)  # per token and direction, multiply-adds x 2


def train_flops(m, vocab: int, src_tokens: int, tgt_tokens: int, mean_src_len: float) -> float:
    """Forward FLOPs of one batch from the model's shapes, times 3 for forward + backward."""
    E, He, Hd = m.embedding_size, m.encoder_hidden, m.decoder_hidden
    D = 2 if m.bidirectional else 1
    Ho = E if m.tie_embeddings else Hd  # attentional output size
    enc = sum(D * lstm_flops(E if i == 0 else D * He, He) for i in range(m.encoder_layers))
    dec = sum(lstm_flops((E + (Ho if m.input_feeding else 0)) if i == 0 else Hd, Hd) for i in range(m.decoder_layers))
    keys = 2 * D * He * Hd  # key projection, once per source token
    per_step_attention = 2 * mean_src_len * D * He * 2 + (2 * Hd * Hd + 3 * mean_src_len * Hd
                                                        if m.attention == "bahdanau" else 0)  # fmt: skip
    out = 2 * (Hd + D * He) * Ho + 2 * Ho * vocab
    return 3 * (src_tokens * (enc + keys) + tgt_tokens * (dec + per_step_attention + out))


def bench_train(args) -> None:
    base = load_recipe(MEDIUM)
    table = load_parallel("multi30k", "train", "en", "fr")
    src_tok, tgt_tok = train_tokenizers(base, table)
    ids = tokenize(table, src_tok, tgt_tok, None)
    batches = [b for _, b in PairBatches(ids, base.train.batch_tokens, seed=1).epoch(1)][: args.steps + 3]
    peak = matmul_peak(torch.bfloat16)
    print(json.dumps({"bench": "matmul", "bf16_tflops": peak / 1e12, "fp32_tflops": matmul_peak(torch.float32) / 1e12,
                      "threads": torch.get_num_threads()}), flush=True)  # fmt: skip
    results = {}
    for name, overrides in VARIANTS.items():
        recipe = load_recipe(MEDIUM, overrides)
        torch.manual_seed(0)
        model = build_model(recipe, len(src_tok), len(tgt_tok))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        tokens = flops = 0.0
        for i, batch in enumerate(batches):
            if i == 3:  # 3 warm-up steps
                start, tokens, flops = time.perf_counter(), 0.0, 0.0
            with autocast(torch.device("cpu"), recipe.train.precision):
                loss, count = model.loss(batch)
            (loss / count).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            src_tokens = int(batch.src_lengths.sum())
            tokens += count
            flops += train_flops(recipe.model, len(tgt_tok), src_tokens, count, src_tokens / len(batch.src_lengths))
        seconds = time.perf_counter() - start
        results[name] = tokens / seconds
        print(json.dumps({
            "bench": "train", "variant": name, "steps": len(batches) - 3, "target_tokens_per_s": round(tokens / seconds),
            "tflops": flops / seconds / 1e12, "mfu_vs_bf16_peak": flops / seconds / peak,
            "speedup_vs_reference": tokens / seconds / next(iter(results.values())),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }), flush=True)  # fmt: skip


def bench_decode(args) -> None:
    from seq2seq.translator import Translator

    translator = Translator.from_run(args.run_dir, device="cpu")
    d = translator.recipe.data
    sources = load_parallel(d.corpus, args.split, d.src_lang, d.tgt_lang)["src"]
    translator.translate(sources[:64])  # warm-up
    for beam in (1, 5):
        start = time.perf_counter()
        outputs = translator.translate(sources, beam=beam, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        pieces = sum(len(p) for p in translator.tgt_tok.encode(outputs))
        print(json.dumps({"bench": "decode", "search": "greedy" if beam == 1 else f"beam {beam}",
                          "sentences": len(sources), "sentences_per_s": len(sources) / seconds,
                          "target_pieces_per_s": pieces / seconds, "batch_size": args.batch_size}), flush=True)  # fmt: skip
    latencies = []
    for line in sources[:100]:
        start = time.perf_counter()
        translator.translate([line], beam=5)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    print(json.dumps({"bench": "interactive latency, beam 5", "p50_ms": 1000 * latencies[50],
                      "p90_ms": 1000 * latencies[90]}), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=30)
    d = sub.add_parser("decode")
    d.add_argument("run_dir")
    d.add_argument("--split", default="test_2016_flickr")
    d.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    bench_train(args) if args.what == "train" else bench_decode(args)


if __name__ == "__main__":
    main()
