"""Greedy translation with ONNX Runtime (the `onnx` extra): the graphs of `python -m seq2seq.export ... --onnx`.

    OnnxTranslator("out/en-fr").translate(["A dog runs."])

The same search as `Translator.translate(lines)` with beam 1 (`search.sample` at temperature 0): BOS first, the
argmax piece fed back in, a sentence done at EOS or at its length limit (max_len_ratio x source pieces + 10; by
default the recipe's train.decode_max_ratio, as for `Translator`: seq2seq/decoding.py), the argmax taken over the
training shortlist where the model has one. This is for a runtime without PyTorch (or a
check of the graphs); beam search stays with PyTorch. Only onnxruntime, numpy and sentencepiece are needed here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from seq2seq.config import TrainConfig
from seq2seq.decoding import DecodeConfig
from seq2seq.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.translator import clean

INSTALL = 'ONNX Runtime is missing: pip install -e ".[onnx]"'


class OnnxTranslator:
    def __init__(self, folder: str | Path, threads: int = 0, max_src_len: int = 250,
                 max_len_ratio: float | None = None) -> None:  # fmt: skip
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(INSTALL) from None
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if "onnx" not in config:
            raise ValueError(f"{folder} has no ONNX graphs: export it with python -m seq2seq.export RUN_DIR "
                             f"{folder} --onnx")  # fmt: skip
        graphs, names = config["onnx"], config["tokenizers"]
        self.src_tok = Tokenizer((folder / names["src"]).read_bytes())
        self.tgt_tok = Tokenizer((folder / names["tgt"]).read_bytes())
        recipe = yaml.safe_load((folder / config["recipe"]).read_text(encoding="utf-8"))
        if max_len_ratio is None:  # the recipe's validation limit, the default of DecodeConfig.max_len_ratio
            max_len_ratio = recipe.get("train", {}).get("decode_max_ratio", TrainConfig.decode_max_ratio)
        self.max_len_ratio = float(DecodeConfig(max_len_ratio=max_len_ratio).max_len_ratio)
        self.max_src_len = max_src_len
        target_ids = config.get("target_ids")
        self.target_ids = None if target_ids is None else np.asarray(target_ids, dtype=np.int64)
        pieces = config.get("target_pieces")  # the shortlist: only for a model over every piece
        self.shortlist = np.asarray(pieces, dtype=np.int64) if pieces and target_ids is None else None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        cpu = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / graphs["encoder"]), options, providers=cpu)
        self.step = ort.InferenceSession(str(folder / graphs["decoder_step"]), options, providers=cpu)
        self.step_inputs, self.step_outputs = graphs["step_inputs"], graphs["step_outputs"]

    def translate(self, lines: Sequence[str], batch_size: int = 64) -> list[str]:
        """One output line per input line; an empty or blank line gives an empty line."""
        ids = [seq[: self.max_src_len] for seq in self.src_tok.encode([clean(line) for line in lines])]
        out = [""] * len(lines)
        todo = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            for i, tokens in zip(rows, self.greedy([ids[i] for i in rows])):
                pieces = tokens if self.target_ids is None else self.target_ids[tokens].tolist()
                out[i] = self.tgt_tok.decode([pieces])[0]
        return out

    def greedy(self, src_ids: list[list[int]]) -> list[list[int]]:
        """Source piece ids per sentence -> the decoder's column ids per sentence, without BOS and EOS."""
        B, S = len(src_ids), max(len(s) for s in src_ids)
        src = np.full((B, S), PAD, dtype=np.int64)
        for b, seq in enumerate(src_ids):
            src[b, : len(seq)] = seq
        lengths = np.array([len(s) for s in src_ids], dtype=np.int64)
        encoded = dict(zip(["memory", "keys", "mask", "h", "c", "feed"], self.encoder.run(None, {
            "src": src, "src_lengths": lengths})))  # fmt: skip
        limits = (lengths.astype(np.float32) * np.float32(self.max_len_ratio)).astype(np.int64) + 10
        state = {name: encoded[name] for name in ("h", "c", "feed") if name in encoded}
        tokens = np.full(B, BOS, dtype=np.int64)
        outputs: list[list[int]] = [[] for _ in range(B)]
        live = np.ones(B, dtype=bool)
        t = 0
        while live.any():
            feeds = {"tokens": tokens, **state, **{k: encoded[k] for k in ("memory", "keys", "mask")}}
            result = dict(zip(self.step_outputs, self.step.run(None, {n: feeds[n] for n in self.step_inputs})))
            scores = result["log_probs"]
            if self.shortlist is not None:
                tokens = self.shortlist[scores[:, self.shortlist].argmax(-1)]
            else:
                tokens = scores.argmax(-1).astype(np.int64)
            state = {name: result[f"{name}_out"] for name in state}
            t += 1
            for b in np.flatnonzero(live):
                if tokens[b] != EOS:
                    outputs[b].append(int(tokens[b]))
            live &= (tokens != EOS) & (limits > t)
        return outputs
