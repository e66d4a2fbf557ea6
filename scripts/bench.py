"""Speed benchmarks; each result is one JSON line on stdout. Run them on a quiet machine.

    python scripts/bench.py train  [--steps 30]          # LSTM-medium variants on real Multi30k batches
    python scripts/bench.py decode runs/en-fr            # greedy and beam 5 on test_2016_flickr, fp32 reference first,
                                                         # int8 last (CPU: each kernel; GPU: the training precision
                                                         # instead), then interactive latency
    python scripts/bench.py lm     [--steps 60]          # PTB language models vs pytorch/examples' own model
    python scripts/bench.py all                          # train, then lm, in one process (one machine state)
    python scripts/bench.py all --device cuda            # the same on a GPU, plus a large translation model
    python scripts/bench.py serve  runs/en-fr            # python -m seq2seq.serve under 1, 8 and 64 clients, int8 and
                                                         # bf16, against the offline pipe (docs/serving.md)
    python scripts/bench.py stream [--pairs 2000000]     # data.stream on a generated corpus: tokenizing into shards,
                                                         # the first batch, batching an epoch, peak RSS
                                                         # (docs/large-corpora.md)

`train` measures, in one run, the straightforward reference (input feeding: a Python loop over decoder steps that
calls the fused LSTM layers once per step, fp32) and the fast paths (input feeding on the unrolled loop of
seq2seq/models/unrolled.py, the fused decoder, context feeding), so speed-ups are ratios taken on one machine at
one time. Each variant trains on the timed batches twice and is quoted at the second pass: the first compiles
oneDNN's kernels for its new batch shapes, as a training run does in its first epoch only
(`first_pass_target_tokens_per_s`). FLOPs are counted from the
model's shapes (multiply-adds x 2, backward = 2 x forward) and MFU is taken against a bf16 matmul peak measured
in the same run. `decode` counts the products each search executes the same way (`DecodeWork`) and sets them
against the matrix peaks of float32, bf16 and int8 measured in the run: `roofline_sentences_per_s` is the speed
at which they would all run at the peak with nothing else taking time, an upper bound for the model and search.
`lm` does the same for the language-model recipes against a copy of pytorch/examples'
word_language_model (its RNNModel and training step: fp32, seq-first nn.LSTM, manual SGD), at the same sizes.
On a GPU (`--device cuda`) every timer waits for the device, memory is the peak the caching allocator held, the
translation variants add fp16, and a large configuration (embeddings 512, biLSTM 2x512, decoder 2x1024, 16k
target tokens per batch) follows LSTM-medium.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seq2seq.config import load_recipe
from seq2seq.data.batching import PairBatches
from seq2seq.data.parallel import load_parallel
from seq2seq.data.text import StreamBatches, Vocabulary, split_lines
from seq2seq.kernels.activation import cpu_tanh
from seq2seq.models.int8 import Int8Linear, default_kernel
from seq2seq.models.step import Shortlist
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args
from seq2seq.tasks import (
    build_model,
    build_optimizer,
    target_pieces,
    target_vocabulary,
    tokenize,
    train_tokenizers,
)
from seq2seq.trainer import autocast

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MEDIUM = RECIPES / "en-fr-medium.yaml"
LM_RECIPES = ["lm-ptb.yaml", "lm-ptb-medium.yaml"]
VARIANTS = {
    "reference: input feeding, bahdanau, fp32": ["model.input_feeding=true", "model.attention=bahdanau",
                                                 "train.precision=fp32"],
    "input feeding, bahdanau, bf16 (recipes/en-fr.yaml)": ["model.input_feeding=true", "model.attention=bahdanau",
                                                           "train.precision=bf16"],
    "input feeding, bahdanau, bf16, target vocabulary (seen pieces)": [
        "model.input_feeding=true", "model.attention=bahdanau", "train.precision=bf16", "model.target_vocabulary=seen"],
    "input feeding, luong, bf16": ["model.input_feeding=true", "model.attention=luong", "train.precision=bf16"],
    "fused decoder, bahdanau, bf16": ["model.input_feeding=false", "model.attention=bahdanau", "train.precision=bf16"],
    "fused decoder, luong, bf16 (recipes/en-fr-fused.yaml)": ["model.input_feeding=false", "model.attention=luong",
                                                        "train.precision=bf16"],
    "context feeding (GNMT), luong, bf16": ["model.input_feeding=false", "model.context_feeding=true",
                                            "model.attention=luong", "train.precision=bf16"],
}  # fmt: skip
CUDA_VARIANTS = {"fused decoder, luong, fp16": ["model.input_feeding=false", "model.attention=luong",
                                               "train.precision=fp16"]}  # fmt: skip
LARGE = ["model.embedding_size=512", "model.encoder_hidden=512", "model.decoder_hidden=1024",
         "train.batch_tokens=16384"]  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> dict:
    rss = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        rss["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return rss


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """FLOP/s of the fastest of `repeats` square products, not their mean. On a shared or virtual
    machine the mean dips with the neighbours' load (a 2-core VM once gave 0.25 against 0.37 TFLOP/s minutes
    earlier), which would inflate MFU; the fastest product is what the hardware can do."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def lstm_flops(inp: int, hidden: int) -> int:
    return 2 * 4 * hidden * (inp + hidden)  # per token and direction, multiply-adds x 2


def encoder_lstm_flops(m) -> int:
    """Per source token: the translation encoder's LSTM layers (recipe.model `m`), both directions."""
    D = 2 if m.bidirectional else 1
    return sum(D * lstm_flops(m.embedding_size if i == 0 else D * m.encoder_hidden, m.encoder_hidden)
               for i in range(m.encoder_layers))  # fmt: skip


def decoder_lstm_flops(m) -> int:
    """Per decoder row and step: the decoder's LSTM layers (input feeding and context feeding included)."""
    D = 2 if m.bidirectional else 1
    Ho, Hd = m.embedding_size if m.tie_embeddings else m.decoder_hidden, m.decoder_hidden
    flops = lstm_flops(m.embedding_size + (Ho if m.input_feeding else 0), Hd)  # the first layer
    return flops + sum(lstm_flops(Hd + (D * m.encoder_hidden if m.context_feeding and i == 1 else 0), Hd)
                       for i in range(1, m.decoder_layers))  # fmt: skip


def train_flops(m, vocab: int, src_tokens: int, tgt_tokens: int, mean_src_len: float) -> float:
    """Forward FLOPs of one batch from the model's shapes, times 3 for forward + backward."""
    E, He, Hd = m.embedding_size, m.encoder_hidden, m.decoder_hidden
    D = 2 if m.bidirectional else 1
    Ho = E if m.tie_embeddings else Hd  # attentional output size
    enc, dec = encoder_lstm_flops(m), decoder_lstm_flops(m)
    keys = 2 * D * He * Hd  # key projection, once per source token
    per_step_attention = 2 * mean_src_len * D * He * 2 + (2 * Hd * Hd + 3 * mean_src_len * Hd
                                                        if m.attention == "bahdanau" else 0)  # fmt: skip
    out = 2 * (Hd + D * He) * Ho + 2 * Ho * vocab
    return 3 * (src_tokens * (enc + keys) + tgt_tokens * (dec + per_step_attention + out))


def int8_peak(repeats: int = 10) -> float:
    """Operations/s of the fastest of `repeats` int8 products through the decoder's own layer (`Int8Linear`, this
    CPU's default kernel: quantizing a float32 input, the int8 product, the rescaling), 2,048 rows x 2,048 -> 2,048."""
    n = 2048
    layer, x = Int8Linear(torch.randn(n, n)), torch.randn(n, n)
    layer(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        layer(x)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class DecodeWork:
    """The matrix arithmetic a translator's searches execute, counted from the model's shapes as they run: the
    Seq2Seq's `encode`, `decode_output` and `decode_step` (and the greedy search's `Shortlist`) are wrapped, and each
    call adds its FLOPs (multiply-adds x 2; the gates, softmax, Bahdanau's tanh and the search's bookkeeping count
    nothing) by kind:
        encoder    the encoder's LSTM layers over the padded batch (oneDNN: never int8) and the bridge
        products   the decoder's matrix products: LSTM steps, key and query projections, the combination and the
                   output layer (over the shortlist where greedy search takes one); int8 with --int8
        attention  scores and context over the memory, per decoder row and source position.
    Rows are what the search decodes on: finished sentences kept in a row bucket and padding count too.
    `seconds_at_peak` is the time these FLOPs take at the measured matrix peak of the precision each kind runs in
    (attention at the bf16 peak under bf16 and int8, though Bahdanau's scores run in float32: a generous bound), so
    sentences / seconds_at_peak is the speed that this model and search could reach if every product ran at the
    peak and nothing else took time."""

    def __init__(self, translator) -> None:
        model, m = translator.model, translator.recipe.model
        self.flops = {"encoder": 0.0, "products": 0.0, "attention": 0.0}
        D = 2 if m.bidirectional else 1
        E, Hd, K = m.embedding_size, m.decoder_hidden, D * m.encoder_hidden
        Ho = E if m.tie_embeddings else Hd  # the attentional output
        A = Hd if m.attention == "bahdanau" else 0  # Bahdanau's attention size (Luong: the query itself)
        encoder = encoder_lstm_flops(m)
        bridge = 2 * K * Hd if m.bridge else 0  # per sentence: the decoder's initial state from the encoder's summary
        keys = 2 * K * (A or Hd)  # per source token, once per sentence
        step = decoder_lstm_flops(m) + 2 * Hd * A + 2 * (Hd + K) * Ho  # per row: LSTM layers, query projection, combination
        per_position = 2 * (A or Hd) + 2 * K  # per row and source position: the score, the context
        encode, decode_output, decode_step = model.encode, model.decode_output, model.decode_step

        def counted_encode(src, src_lengths):
            self.flops["encoder"] += src.numel() * encoder + src.shape[0] * bridge
            self.flops["products"] += src.numel() * keys
            return encode(src, src_lengths)

        def counted_output(tokens, state):  # every step, up to the output layer
            rows, positions = tokens.shape[0], state.memory.shape[1]
            self.flops["products"] += rows * step
            self.flops["attention"] += rows * positions * per_position
            return decode_output(tokens, state)

        def counted_step(tokens, state, normalize=True):  # the output layer over every piece
            self.flops["products"] += tokens.shape[0] * 2 * Ho * model.generator.out_features
            return decode_step(tokens, state, normalize=normalize)

        model.encode, model.decode_output, model.decode_step = counted_encode, counted_output, counted_step
        short = getattr(translator, "greedy_model", None)
        if isinstance(short, Shortlist):
            short_step = short.decode_step

            def counted_short(tokens, state, normalize=True):  # the output layer over the shortlist
                if not normalize:
                    self.flops["products"] += tokens.shape[0] * 2 * Ho * short.ids.numel()
                return short_step(tokens, state, normalize=normalize)

            short.decode_step = counted_short
        self.precision = translator.precision

    def reset(self) -> None:
        self.flops = dict.fromkeys(self.flops, 0.0)

    def seconds_at_peak(self, peaks: dict[str, float]) -> float:
        """peaks: FLOP/s by precision ("fp32", "bf16", "fp16", "int8")."""
        low = "bf16" if self.precision == "int8" else self.precision  # what the encoder and attention run in
        return sum(flops / peaks[self.precision if kind == "products" else low] for kind, flops in self.flops.items())


def bench_train(args) -> None:
    device = torch.device(args.device)
    base = load_recipe(MEDIUM)
    table = load_parallel("multi30k", "train", "en", "fr")
    src_tok, tgt_tok = train_tokenizers(base, table)
    ids = tokenize(table, src_tok, tgt_tok, None)
    target_ids = target_vocabulary(target_pieces(ids))  # for recipes with model.target_vocabulary: seen
    peak = matmul_peak(torch.bfloat16, device)
    print(json.dumps({"bench": "matmul", "device": device_name(device), "bf16_tflops": peak / 1e12,
                      "fp32_tflops": matmul_peak(torch.float32, device) / 1e12, "threads": torch.get_num_threads(),
                      "tanh": cpu_tanh() if device.type == "cpu" else "tanh"}), flush=True)  # fmt: skip
    configurations = {"LSTM-medium": []} | ({"large": LARGE} if device.type == "cuda" else {})
    variants = VARIANTS | (CUDA_VARIANTS if device.type == "cuda" else {})
    if args.variants:  # the reference (first) always runs: the speed-ups are ratios to it
        variants = {name: o for i, (name, o) in enumerate(variants.items())
                    if i == 0 or any(v in name for v in args.variants)}  # fmt: skip
    for size, extra in configurations.items():
        batch_tokens = load_recipe(MEDIUM, extra).train.batch_tokens
        batches = [b for _, b in PairBatches(ids, batch_tokens, seed=1).epoch(1)][: args.steps + 3]
        results = {}
        for name, overrides in variants.items():
            recipe = load_recipe(MEDIUM, overrides + extra + [f"train.device={device.type}"])
            torch.manual_seed(0)
            seen = recipe.model.target_vocabulary == "seen"
            model = build_model(recipe, len(src_tok), len(tgt_tok), target_ids if seen else None).to(device)
            # The reference steps torch's default Adam (a loop over tensors), as Joey NMT does; the others the
            # trainer's optimizer (the recipe's Adam, fused).
            reference = not results
            model.unrolled = not reference  # the reference steps the fused layers once per step (a plain loop)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3) if reference else build_optimizer(recipe, model)
            scaler = torch.amp.GradScaler(device.type, enabled=recipe.train.precision == "fp16")
            start, tokens, flops = time.perf_counter(), 0.0, 0.0
            # 3 warm-up steps, then the timed batches twice: the first pass compiles oneDNN's kernels for its new
            # shapes; the second is the steady state of training after its first epoch (every epoch has the same
            # batch shapes), and the speed quoted
            timed = batches[3:]
            step = partial(train_step, model, opt, scaler, recipe.train.precision, device,
                           label_smoothing=recipe.train.label_smoothing)  # fmt: skip
            for i, batch in enumerate(batches[:3] + timed + timed):
                if i in (3, 3 + len(timed)):
                    sync(device)
                    if i > 3:
                        first_pass = tokens / (time.perf_counter() - start)
                    start, tokens, flops = time.perf_counter(), 0.0, 0.0
                count = step(batch)
                src_tokens = int(batch.src_lengths.sum())
                tokens += count
                flops += train_flops(recipe.model, model.generator.out_features, src_tokens, count,
                                     src_tokens / len(batch.src_lengths))  # fmt: skip
            sync(device)
            seconds = time.perf_counter() - start
            results[name] = tokens / seconds
            syncs = host_syncs(device, step, timed[0])
            print(json.dumps({
                "bench": "train", "device": device_name(device), "size": size, "variant": name,
                "steps": len(timed), "target_tokens_per_s": round(tokens / seconds),
                "first_pass_target_tokens_per_s": round(first_pass),
                "tflops": flops / seconds / 1e12, "mfu_vs_bf16_peak": flops / seconds / peak,
                "roofline_target_tokens_per_s": round(tokens / flops * peak),  # every FLOP at the bf16 peak
                "speedup_vs_reference": tokens / seconds / next(iter(results.values())), **peak_memory_gib(device),
                **syncs,
            }), flush=True)  # fmt: skip
            del model, opt, step


def train_step(model, opt, scaler, precision: str, device: torch.device, batch, label_smoothing: float = 0.0) -> int:
    """One training step as the trainer takes it (loss over the batch's target tokens, clipping at 1); the count."""
    with autocast(device, precision):
        loss, count = model.loss(batch.to(device), label_smoothing=label_smoothing)
    scaler.scale(loss / count).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return count


def host_syncs(device: torch.device, step, batch) -> dict:
    """On CUDA, step(batch) once more under torch's sync debug mode: {"host_syncs_per_step": how many operations made
    the host wait for the GPU, "host_sync_sites": the Python lines that called them}. A training step should
    have none. Elsewhere {}."""
    if device.type != "cuda":
        return {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    return {"host_syncs_per_step": len(syncs),
            "host_sync_sites": sorted({f"{Path(w.filename).name}:{w.lineno}" for w in syncs})}  # fmt: skip


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with its bf16 matrix instructions and the threads used: CPUs with and
    without AMX differ several-fold in bf16 throughput (2.0-2.5 against 0.4 TFLOP/s on 2 cores), so a figure names
    the processor it came from."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()}, {torch.get_num_threads()} threads"


def cpu_model() -> str:
    """'Intel(R) Xeon(R) Platinum 8488C (AMX)' or 'AMD EPYC (avx512_bf16, no AMX)', from /proc/cpuinfo (Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or "unknown"
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    name, flags = fields.get("model name", "unknown"), set(fields.get("flags", "").split())
    isa = "AMX" if "amx_bf16" in flags else "avx512_bf16, no AMX" if "avx512_bf16" in flags else "no bf16 instructions"
    return f"{name} ({isa})"


class ExampleRNNModel(nn.Module):
    """pytorch/examples word_language_model/model.py RNNModel (LSTM), as its main.py trains it: the reference."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float, tie: bool) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return torch.log_softmax(decoded, dim=1), hidden


def lm_flops(m, vocab: int) -> float:
    """Training FLOPs per token of a word-level LM (recurrence + output projection, x3 for backward)."""
    rnn = sum(lstm_flops(m.embedding_size if i == 0 else m.hidden_size, m.hidden_size) for i in range(m.layers))
    return 3 * (rnn + 2 * m.hidden_size * vocab)


def bench_lm(args) -> None:
    device = torch.device(args.device)
    lines = split_lines("ptb", "train")
    vocab = Vocabulary.from_lines(lines, "word")
    peak = matmul_peak(torch.bfloat16, device)
    for name in args.recipes or LM_RECIPES:
        anchor = None  # the example at its own batch (20): the speed anchor
        for batch_size in args.batch_size or [None]:
            sizes = [f"data.batch_size={batch_size}"] if batch_size else []
            speeds, m, d = bench_lm_recipe(args, name, sizes, vocab, lines, device)
            tokens = args.steps * d.batch_size * d.bptt
            reference = tokens / next(iter(speeds.values()))
            if d.batch_size == 20:
                anchor = reference
            for variant, seconds in speeds.items():
                print(json.dumps({
                    "bench": "lm", "device": device_name(device), "batch_size": d.batch_size,
                    "model": f"{m.layers}x{m.hidden_size}" + (" tied" if m.tie_embeddings else ""),
                    "variant": variant, "steps": args.steps, "tokens_per_s": round(tokens / seconds),
                    "seconds_per_ptb_epoch": round(929_589 / (tokens / seconds)),
                    "tflops": lm_flops(m, len(vocab)) * tokens / seconds / 1e12,
                    "mfu_vs_bf16_peak": lm_flops(m, len(vocab)) * tokens / seconds / peak,
                    "speedup_vs_example": tokens / seconds / reference,
                    "speedup_vs_example_at_batch_20": tokens / seconds / anchor if anchor else None,
                    **peak_memory_gib(device),
                }), flush=True)  # fmt: skip


def bench_lm_recipe(args, name: str, sizes: list[str], vocab, lines, device) -> tuple[dict, object, object]:
    """Seconds for args.steps steps of the example and of ours (fp32 and autocast recurrence) at one size."""
    recipe = load_recipe(RECIPES / name, sizes)
    m, d = recipe.model, recipe.data
    stream = StreamBatches(vocab.stream(lines), d.batch_size, d.bptt)
    batches = [b.to(device) for _, (_, b) in zip(range(args.steps + 3), stream.epoch(1))]
    speeds = {}
    # The reference: pytorch/examples main.py's train() step, fp32, at this recipe's sizes.
    torch.manual_seed(0)
    ref = ExampleRNNModel(len(vocab), m.embedding_size, m.hidden_size, m.layers, m.dropout, m.tie_embeddings)
    ref.to(device)
    hidden = None
    for i, b in enumerate(batches):
        if i == 3:
            sync(device)
            start = time.perf_counter()
        x, y = b.inputs.t().contiguous(), b.targets.t().contiguous()  # seq-first, as the example batchifies
        hidden = tuple(h.detach() for h in hidden) if hidden is not None else None
        ref.zero_grad()
        output, hidden = ref(x, hidden)
        torch.nn.functional.nll_loss(output, y.view(-1)).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.25)
        for p in ref.parameters():
            p.data.add_(p.grad, alpha=-recipe.train.lr)
    sync(device)
    speeds["pytorch/examples word_language_model, fp32"] = time.perf_counter() - start
    # Ours: the recipe's model, optimizer and precision, through model.loss as the trainer calls it; then the
    # same with the recurrence in the autocast dtype too (model.recurrence=autocast).
    for recurrence in ("fp32", "autocast"):
        recipe = load_recipe(RECIPES / name, [*sizes, f"model.recurrence={recurrence}"])
        torch.manual_seed(0)
        model = build_model(recipe, tgt_vocab=len(vocab)).to(device)
        opt = build_optimizer(recipe, model)
        batches[0].carry.state = None  # the streams start from zeros, as in the reference
        for i, b in enumerate(batches):
            if i == 3:
                sync(device)
                start = time.perf_counter()
            with autocast(device, recipe.train.precision):
                loss, count = model.loss(b)
            (loss / count).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.clip_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(device)
        speeds[f"seq2seq recipes/{name}, {recipe.train.precision}, {recurrence} recurrence"] = (
            time.perf_counter() - start
        )
    return speeds, m, d


def bench_decode(args) -> None:
    from seq2seq.translator import Translator, default_batch_size

    translator = Translator.from_run(args.run_dir, device=args.device)
    d = translator.recipe.data
    sources = load_parallel(d.corpus, args.split, d.src_lang, d.tgt_lang)["src"]
    translator.translate(sources[:64])  # warm-up
    # the reference: the same model and search in float32 (no bf16 weights, no autocast), over the whole vocabulary
    reference = Translator.from_run(args.run_dir, device=args.device, precision="fp32", shortlist=False)
    reference.translate(sources[:64])  # warm-up
    full = Translator.from_run(args.run_dir, device=args.device, shortlist=False)  # greedy without the shortlist
    full.translate(sources[:64])
    # int8 products in the decoder (seq2seq/models/int8.py; CPU only), in the default batch: with the kernel this CPU
    # runs by default and, where that is the dynamic quantized linear, with torch._int_mm's too
    kernels = [] if args.device != "cpu" else [default_kernel()] + (["int_mm"] if default_kernel() != "int_mm" else [])
    others = [Translator.from_run(args.run_dir, device=args.device, precision="int8", int8_kernel=k) for k in kernels]
    # where the device decodes in another precision than the model trained in (a GPU: float32), that one too
    trained = translator.recipe.train.precision
    if translator.precision != trained:
        others.insert(0, Translator.from_run(args.run_dir, device=args.device, precision=trained))
    for other in others:
        other.translate(sources[:64])
    device = torch.device(args.device)
    peaks = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}
    if device.type == "cuda":
        peaks["fp16"] = matmul_peak(torch.float16, device)
    elif kernels:
        peaks["int8"] = int8_peak()
    print(json.dumps({"bench": "matmul peaks", "device": device_name(device),
                      **{f"{k}_{'tops' if k == 'int8' else 'tflops'}": v / 1e12 for k, v in peaks.items()}}))
    work = {id(t): DecodeWork(t) for t in [reference, translator, full, *others]}
    threads = torch.get_num_threads()
    for beam in (1, 5):  # the reference, then ours in batches of 64 sentences (as Joey NMT is measured) and
        # in the default batch, one batch at a time with all threads, then (on a CPU with several threads) two batches
        # at a time (--inter-threads 2)
        variants = [(reference, 64, 1)] + [(translator, batch_size, 1) for batch_size in dict.fromkeys(
            [64, args.batch_size or default_batch_size(beam, translator.device)])]  # fmt: skip
        if beam == 1 and translator.shortlist is not None:  # only greedy search uses the shortlist, which
            variants.append((full, variants[-1][1], 1))  # models with a target vocabulary have no use for
        if threads > 1 and translator.device.type == "cpu":
            variants.append((translator, variants[-1][1], 2))
        batch_size = variants[-1][1]
        at_once = [1, min(threads, 2)] if translator.device.type == "cpu" else [1]  # (inter-threads: CPU only)
        variants += [(other, batch_size, n) for other in others for n in dict.fromkeys(at_once)]
        for model, batch_size, inter_threads in variants:
            model.inter_threads = inter_threads
            seconds, counted = [], work[id(model)]  # two passes: the first pays oneDNN's one-time setup of each
            for _ in range(2):  # new matrix shape; both run the same products (counted per pass)
                counted.reset()
                start = time.perf_counter()
                outputs = model.translate(sources, beam=beam, batch_size=batch_size)
                seconds.append(time.perf_counter() - start)
                flops, at_peak = sum(counted.flops.values()), counted.seconds_at_peak(peaks)
            pieces = sum(len(p) for p in model.tgt_tok.encode(outputs))
            print(json.dumps({"bench": "decode", "search": "greedy" if beam == 1 else f"beam {beam}",
                              "weights": "fp32 (reference)" if model is reference else model.precision,
                              **int8_kernel(model), "shortlist": model.shortlist is not None,
                              "output_rows": model.model.generator.out_features,
                              "batch_size": batch_size, "inter_threads": inter_threads, "sentences": len(sources),
                              "sentences_per_s": len(sources) / seconds[0], "target_pieces_per_s": pieces / seconds[0],
                              "second_pass_sentences_per_s": len(sources) / seconds[1],
                              "gflop_per_sentence": flops / len(sources) / 1e9,
                              "second_pass_tflops": flops / seconds[1] / 1e12,
                              "roofline_sentences_per_s": len(sources) / at_peak,
                              "second_pass_of_roofline": at_peak / seconds[1],
                              "device": device_name(torch.device(args.device)),
                              "tanh": cpu_tanh() if args.device == "cpu" else "tanh"}), flush=True)  # fmt: skip
    for model in [translator, *others]:
        model.inter_threads = 1
        latencies = []
        for line in sources[:100]:
            start = time.perf_counter()
            model.translate([line], beam=5)
            latencies.append(time.perf_counter() - start)
        latencies.sort()
        print(json.dumps({"bench": "interactive latency, beam 5", "weights": model.precision, **int8_kernel(model),
                          "p50_ms": 1000 * latencies[50], "p90_ms": 1000 * latencies[90]}), flush=True)  # fmt: skip


def int8_kernel(translator) -> dict:
    """{"int8_kernel": "dynamic" | "int_mm"} for an int8 translator (seq2seq/models/int8.py), else {}."""
    if translator.precision != "int8":
        return {}
    model = translator.model
    return {"int8_kernel": getattr(model, "models", [model])[0].generator.kernel}  # an ensemble: its first model


def bench_serve(args) -> None:
    """Requests/s and p50/p99 latency of `python -m seq2seq.serve` (a subprocess on 127.0.0.1) under each number of
    concurrent clients, each client sending one sentence per request and waiting for its answer, beam `--beam`;
    and the offline pipe's sentences/s (Translator.translate over the same sentences, in this process, before the
    server starts) for the ratio. Bounded: --requests per level, --max-seconds per level, loopback only."""
    from seq2seq.translator import Translator

    cpu = torch.device("cpu")  # the machine's matrix-product peaks, measured in this run, beside every figure
    peaks = {"bf16_tflops": matmul_peak(torch.bfloat16, cpu) / 1e12, "fp32_tflops": matmul_peak(torch.float32, cpu) / 1e12}
    sentences = None
    for precision in args.precisions:
        translator = Translator.from_run(args.run_dir, device="cpu", precision=precision)
        if sentences is None:
            sentences = serve_sentences(args, translator.recipe)
        seconds = []
        for _ in range(2):  # quoted at the second pass: the first pays oneDNN's setup of each new matrix shape
            start = time.perf_counter()
            translator.translate(sentences, beam=args.beam)
            seconds.append(time.perf_counter() - start)
        offline = len(sentences) / seconds[1]
        del translator
        with ServeProcess(args, precision) as port:
            for clients in args.clients:
                before = http_json(port, "GET", "/health")
                r = load_clients(port, sentences, clients, args)
                after = http_json(port, "GET", "/health")
                batches = max(after["batches"] - before["batches"], 1)
                print(json.dumps({"bench": "serve", "weights": precision, "search": f"beam {args.beam}",
                                  "clients": clients, **r, "offline_sentences_per_s": offline,
                                  "of_offline": r["requests_per_s"] / offline,
                                  "requests_per_batch": (after["requests"] - before["requests"]) / batches,
                                  "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                                  "device": device_name(cpu), **peaks}), flush=True)  # fmt: skip


def serve_sentences(args, recipe) -> list[str]:
    """--input's lines, or the run's corpus split; the first --sentences of them, without blank lines."""
    if args.input:
        lines = Path(args.input).read_text(encoding="utf-8").splitlines()
    else:
        d = recipe.data
        lines = load_parallel(d.corpus, args.split, d.src_lang, d.tgt_lang)["src"]
    return [line for line in lines if line.strip()][: args.sentences]


class ServeProcess:
    """`python -m seq2seq.serve RUN_DIR` on a free loopback port, for the duration of a with-block (-> the port)."""

    def __init__(self, args, precision: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.command = [sys.executable, "-m", "seq2seq.serve", str(args.run_dir), "--port", str(self.port),
                        "--precision", precision, "--beam", str(args.beam), "--max-batch", str(args.max_batch),
                        "--max-wait-ms", str(args.max_wait_ms), "--max-connections", str(max(args.clients) + 8)]

    def __enter__(self) -> int:
        import subprocess
        import tempfile

        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                http_json(self.port, "GET", "/health")
                return self.port
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        self.log.seek(0)
        raise RuntimeError(f"the server did not start: {self.log.read().decode(errors='replace')[-2000:]}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except Exception:  # noqa: BLE001 - it did not stop: make it
            self.process.kill()
            self.process.wait()
        self.log.close()


def http_json(port: int, method: str, path: str, body: dict | None = None, conn=None) -> dict:
    import http.client

    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, None if body is None else json.dumps(body).encode(),
                  {"Content-Type": "application/json"})  # fmt: skip
        response = c.getresponse()
        data = response.read()
        if response.status != 200:
            raise OSError(f"{method} {path}: HTTP {response.status} {data[:200]!r}")
        return json.loads(data)
    finally:
        if conn is None:
            c.close()


def load_clients(port: int, sentences: list[str], clients: int, args) -> dict:
    """`clients` threads, each on its own keep-alive connection, sending one sentence per request until
    --requests (at least one per client) were sent or --max-seconds passed -> throughput and latency."""
    import http.client
    import threading

    for line in sentences[:8]:  # warm-up: the server's first batches of each size
        http_json(port, "POST", "/translate", {"sentences": [line], "beam": args.beam})
    total, lock, latencies, errors = max(args.requests, clients), threading.Lock(), [], [0]
    sent = iter(range(total))
    deadline = time.monotonic() + args.max_seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                i = next(sent, None)
            if i is None:
                break
            body = {"sentences": [sentences[i % len(sentences)]], "beam": args.beam}
            start = time.perf_counter()
            try:
                http_json(port, "POST", "/translate", body, conn)
                ok = True
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - start) if ok else errors.__setitem__(0, errors[0] + 1)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    latencies.sort()

    def quantile(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, max(0, math.ceil(q * len(latencies)) - 1))] if latencies else (
            float("nan"))  # fmt: skip

    return {"requests": len(latencies), "errors": errors[0], "seconds": seconds,
            "requests_per_s": len(latencies) / seconds, "p50_ms": quantile(0.5), "p99_ms": quantile(0.99)}  # fmt: skip


def bench_stream(args) -> None:
    """data.stream without a model: a corpus of --pairs generated sentence pairs (or --corpus FOLDER's train.en /
    train.fr) tokenized into shards with a word-level model learned from its first 10,000 pairs, then an epoch of
    batches cut pool by pool. Prints pairs/s of tokenizing, seconds to the first batch, batches/s, the store's size
    and the peak RSS before and after (the corpus is generated a block at a time: it is never in memory)."""
    import tempfile

    from seq2seq.data.parallel import pair_chunks
    from seq2seq.data.stream import ShardBatches, ShardStore, write_shards
    from seq2seq.tokenizer import Tokenizer

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    folder = Path(args.corpus) if args.corpus else generate_pairs(work / "corpus", args.pairs)
    first = next(pair_chunks(str(folder), "train", "en", "fr"))
    tok = Tokenizer.train([*first[0], *first[1]], vocab_size=args.vocab_size, model_type="word")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    store = write_shards(pair_chunks(str(folder), "train", "en", "fr"), tok, tok, 100, work / "store", args.shard_pairs)
    tokenize_s = time.perf_counter() - start
    loads = []
    real_load = ShardStore.load
    ShardStore.load = lambda self, shards: loads.append(len(shards)) or real_load(self, shards)
    start = time.perf_counter()
    batches = ShardBatches(store, args.batch_tokens, seed=1, pool=args.pool_pairs)
    epoch = batches.epoch(1)
    next(epoch)
    first_batch_s = time.perf_counter() - start
    loads_at_first = list(loads)
    n = 1 + sum(1 for _ in epoch)
    epoch_s = time.perf_counter() - start
    print(json.dumps({
        "bench": "stream", "pairs": len(store), "read": store.read, "shards": store.shards,
        "pool_shards": batches.pool_shards, "target_pieces": int(store.tgt_len.sum(dtype="int64")),
        "corpus_bytes": sum(f.stat().st_size for f in folder.glob("train.*")),
        "store_bytes": sum(f.stat().st_size for f in store.folder.iterdir()),
        "tokenize_pairs_per_s": store.read / tokenize_s, "first_batch_s": first_batch_s,
        "shards_read_for_first_batch": loads_at_first, "epoch_batches": n, "epoch_batching_s": epoch_s,
        "peak_rss_gib_before": rss_before, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device": device_name(torch.device("cpu")),
    }), flush=True)  # fmt: skip
    import shutil

    shutil.rmtree(work, ignore_errors=True)


def generate_pairs(folder: Path, n: int, seed: int = 0) -> Path:
    """FOLDER/train.en and train.fr: n pairs of 4-29 words out of 400, the French the English upper-cased, written
    100,000 pairs at a time."""
    words = [f"w{i}" for i in range(400)]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    with open(folder / "train.en", "w") as en, open(folder / "train.fr", "w") as fr:
        for start in range(0, n, 100_000):
            lengths = rng.integers(4, 30, min(100_000, n - start))
            ids = rng.integers(0, len(words), int(lengths.sum()))
            for sentence in np.split(ids, np.cumsum(lengths)[:-1]):
                line = " ".join(words[i] for i in sentence)
                en.write(line + "\n")
                fr.write(line.upper() + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--variants", nargs="+", help="only the variants whose names contain one of these (and the reference)")
    lm = sub.add_parser("lm")
    lm.add_argument("--steps", type=int, default=60)
    both = sub.add_parser("all")
    both.add_argument("--steps", type=int, default=30, help="timed steps per translation variant (x2 for lm)")
    d = sub.add_parser("decode")
    d.add_argument("run_dir")
    d.add_argument("--split", default="test_2016_flickr")
    d.add_argument("--batch-size", type=int, help="sentences per batch (default: the translator's)")
    sv = sub.add_parser("serve")
    sv.add_argument("run_dir")
    sv.add_argument("--input", help="source sentences, one per line (default: the run's corpus split --split)")
    sv.add_argument("--split", default="test_2016_flickr")
    sv.add_argument("--sentences", type=int, default=500, help="how many sentences to send")
    sv.add_argument("--requests", type=int, default=500, help="requests per concurrency level")
    sv.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64], help="concurrent clients, one level each")
    sv.add_argument("--precisions", nargs="+", default=["int8", "bf16"], help="a server for each")
    sv.add_argument("--beam", type=int, default=5)
    sv.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch")
    sv.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms")
    sv.add_argument("--max-seconds", type=float, default=120.0, help="the longest a concurrency level runs")
    st = sub.add_parser("stream")
    st.add_argument("--pairs", type=int, default=2_000_000, help="generated sentence pairs")
    st.add_argument("--corpus", help="a folder with train.en and train.fr instead of the generated pairs")
    st.add_argument("--vocab-size", type=int, default=900)
    st.add_argument("--shard-pairs", type=int, default=100_000, help="data.shard_pairs")
    st.add_argument("--pool-pairs", type=int, default=1_000_000, help="data.pool_pairs")
    st.add_argument("--batch-tokens", type=int, default=4096, help="train.batch_tokens")
    for p in (lm, both):
        p.add_argument("--batch-size", type=int, nargs="+",
                       help="streams per batch, for the example and ours alike; several = one measurement each "
                            "(default: the recipe's)")  # fmt: skip
        p.add_argument("--recipes", nargs="+", help=f"LM recipes to measure (default: {' '.join(LM_RECIPES)})")
    for p in (t, lm, both, d):
        p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    for p in (t, lm, both, d, sv):
        add_runtime_options(p)  # --threads --allocator --tanh ...: what the commands take, for both variants of a run
    args = parser.parse_args()
    apply(runtime_from_args(args))
    if args.what in ("train", "all"):
        bench_train(args)
    if args.what == "all":
        args.steps *= 2
    if args.what in ("lm", "all"):
        bench_lm(args)
    if args.what == "decode":
        bench_decode(args)
    if args.what == "serve":
        bench_serve(args)
    if args.what == "stream":
        bench_stream(args)


if __name__ == "__main__":
    main()
