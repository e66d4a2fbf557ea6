"""README.md of an exported model folder: what the model is, how it was trained, what is known of its quality.

Evaluations come from the run directory, each with what is known and what is not:
  - hyps.<split>.<lang> files (written by `python -m seq2seq.evaluate`), scored again here against the split's
    references when the corpus is at hand (sacreBLEU BLEU, chrF, TER with their signatures); their search settings
    are not recorded, and a file older than the checkpoint may come from an earlier model;
  - metrics.jsonl: the validation record of the exported step (greedy search, sacreBLEU's default BLEU and chrF
    as `seq2seq.metrics` computes them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import sacrebleu

from seq2seq.config import DataConfig, TranslationModelConfig, TranslationRecipe


def model_card(recipe: TranslationRecipe, weights: dict, run_dir: Path, source: Path, config: dict) -> str:
    """recipe: the run's (`TranslationPayload.recipe`); weights: the checkpoint's state dict."""
    data, train = recipe.data, recipe.train
    src, tgt = data.src_lang, data.tgt_lang
    params = sum(t.numel() for n, t in weights.items() if n not in config["tied"] and n != "target_ids")
    trained = config["trained"]
    lines = [
        "---", f"language: [{src}, {tgt}]", "library_name: seq2seq", "pipeline_tag: translation",
        "tags: [translation, lstm, seq2seq]", "---", "",
        f"# {recipe.name}: {src} → {tgt} LSTM encoder-decoder", "",
        f"A recurrent translation model of the seq2seq toolkit: {_architecture(recipe.model)}; {params / 1e6:.2f}M "
        f"parameters.", "",
        "## Use", "", "```python", "from seq2seq.translator import Translator", "",
        'translator = Translator.from_pretrained("THIS_FOLDER")  # or "hf://OWNER/NAME"',
        'print(translator.translate(["A dog runs on the beach."], beam=5))', "```", "",
        "or `python -m seq2seq.translate THIS_FOLDER`, `python -m seq2seq.serve THIS_FOLDER`.", "",
        "## Training", "",
        f"- data: corpus `{data.corpus}`, split `{data.train_split}`, validated on `{data.valid_split}`",
        f"- tokenizer: SentencePiece {recipe.tokenizer.model_type}, "
        f"{'one joint model' if config['tokenizers']['src'] == config['tokenizers']['tgt'] else 'a model per side'}",
        f"- training precision {train.precision}, optimizer {train.optimizer}, lr {train.lr}",
        f"- exported from `{trained['run']}/{source.name}`: step {trained.get('step', '?')}, epoch "
        f"{trained.get('epoch', '?')}; the full recipe is in `recipe.yaml`", "",
        "## Evaluation", "", *evaluations(run_dir, data, source, trained.get("step")), "",
        "## Files", "",
        "`model.safetensors` (weights), `config.json`, `recipe.yaml`, "
        + ", ".join(f"`{n}`" for n in dict.fromkeys(config["tokenizers"].values()))
        + (", `encoder.onnx` and `decoder_step.onnx` (ONNX graphs)" if "onnx" in config else "")
        + ". No pickled files: loading runs no code from the folder.", "",
    ]  # fmt: skip
    return "\n".join(lines)


def _architecture(m: TranslationModelConfig) -> str:
    encoder = f"{'bidirectional ' if m.bidirectional else ''}{m.cell.upper()} encoder {m.encoder_layers}x{m.encoder_hidden}"
    feeding = "input feeding" if m.input_feeding else "context feeding" if m.context_feeding else "no input feeding"
    return (f"{encoder}, decoder {m.decoder_layers}x{m.decoder_hidden} with {m.attention} attention and {feeding}, "
            f"embeddings {m.embedding_size}")  # fmt: skip


def evaluations(run_dir: Path, data: DataConfig, source: Path, step: int | None) -> list[str]:
    found = _scored_hypotheses(run_dir, data, source) + _validation(run_dir, step)
    return found or ["No evaluation was found in the run directory (no hyps.* files, no validation record in "
                     "metrics.jsonl). Score the model with `python -m seq2seq.evaluate THIS_FOLDER --split NAME`."]


def _scored_hypotheses(run_dir: Path, data: DataConfig, source: Path) -> list[str]:
    lines = []
    for hyps in sorted(run_dir.glob(f"hyps.*.{data.tgt_lang}")):
        split = hyps.name[len("hyps.") : -len(f".{data.tgt_lang}")]
        older = " (older than the checkpoint: it may come from an earlier model)" if (
            hyps.stat().st_mtime < source.stat().st_mtime) else ""  # fmt: skip
        head = f"- `{split}`, translations in `{hyps.name}` (search settings not recorded){older}:"
        try:
            from seq2seq.data.parallel import load_parallel
            from seq2seq.metrics import all_scores

            refs = load_parallel(data.corpus, split, data.src_lang, data.tgt_lang, data.hub_config)
            outputs = hyps.read_text(encoding="utf-8").splitlines()
            if len(outputs) != len(refs):
                lines.append(f"{head} {len(outputs)} lines against {len(refs)} references: not scored")
                continue
            lines += [head] + [f"  - {s.name} = {s.value:.2f} (`{s.signature}`)" for s in all_scores(outputs,
                                                                                                     [refs["tgt"]])]
        except Exception as e:  # noqa: BLE001 - the corpus is not here, or the file is not text: say so
            lines.append(f"{head} not scored: the references could not be read ({' '.join(str(e).split())[:200]})")
    return lines


def _validation(run_dir: Path, step: int | None) -> list[str]:
    records = []
    try:
        for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("kind") == "valid":
                records.append(record)
    except (OSError, ValueError):
        return []
    at_step = [r for r in records if r.get("step") == step] or [r for r in records if r.get("best")][-1:]
    if not at_step:
        return []
    r = at_step[-1]
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    bleu.corpus_score(["x"], [["x"]])  # the signature names nrefs once a score was taken: one reference, as here
    chrf.corpus_score(["x"], [["x"]])
    values = [f"BLEU = {r['bleu']:.2f} (`{bleu.get_signature()}`)" if _number(r.get("bleu")) else None,
              f"chrF = {r['chrf']:.2f} (`{chrf.get_signature()}`)" if _number(r.get("chrf")) else None]  # fmt: skip
    return [f"- validation at step {r.get('step')} (`metrics.jsonl`; greedy search, bf16/fp32 as trained, the "
            "split named in Training above): " + "; ".join(v for v in values if v)
            + f". The signatures are sacreBLEU's defaults, which the trainer uses, with the version installed at "
            f"export ({sacrebleu.__version__}); training may have run another version."]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
