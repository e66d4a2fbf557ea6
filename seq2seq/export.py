"""python -m seq2seq.export RUN_DIR OUT_DIR [--checkpoint best] [--onnx] [--push-to-hub OWNER/NAME [--private]]

Writes a self-contained model folder to share a trained translation model, with no pickles in it:

    model.safetensors          the weights (tensors only: loading one runs no code)
    config.json                what loading needs beyond the weights: format, task, tokenizer files, the output
                               shortlist, tied tensors, target_ids; with --onnx the graphs' names and tensors
    recipe.yaml                the recipe the model was trained with
    spm.model                  the SentencePiece model (spm.src.model and spm.tgt.model for separate vocabularies)
    README.md                  a model card: architecture, training, the evaluations found in RUN_DIR with their
                               sacreBLEU signatures
    encoder.onnx, decoder_step.onnx     with --onnx: for ONNX Runtime and other runtimes (seq2seq/onnx_greedy.py)

Translator.from_pretrained(OUT_DIR), python -m seq2seq.translate OUT_DIR and python -m seq2seq.serve OUT_DIR load
it. --push-to-hub uploads the folder to the Hugging Face Hub (the `hub` extra; it uses the network, and the token of
`huggingface-cli login` or HF_TOKEN); Translator.from_pretrained("hf://owner/name") downloads it back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save

from seq2seq import checkpoint
from seq2seq.checkpoint import CheckpointError
from seq2seq.cli import ArgumentParser, UsageError, run_cli

FORMAT = "seq2seq-model"
VERSION = 1
WEIGHTS, CONFIG, RECIPE, CARD = "model.safetensors", "config.json", "recipe.yaml", "README.md"


def is_exported(path: str | Path) -> bool:
    """True for a folder written by `export` (it holds model.safetensors)."""
    return (Path(path) / WEIGHTS).is_file()


def split_tied(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to save, {name: name of the saved tensor it shares memory with}): safetensors stores each tensor once,
    so tied weights (tie_embeddings: generator.weight is tgt_embed.weight) are recorded as aliases."""
    tensors, aliases, seen = {}, {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            tensors[name] = t.detach().contiguous()
    return tensors, aliases


def tokenizer_files(protos: dict[str, bytes]) -> dict[str, str]:
    """{"src": file, "tgt": file}: one spm.model for a joint vocabulary, as run directories name them."""
    if protos["src"] == protos["tgt"]:
        return {"src": "spm.model", "tgt": "spm.model"}
    return {"src": "spm.src.model", "tgt": "spm.tgt.model"}


def export(run_dir: str | Path, out_dir: str | Path, which: str = "best", onnx: bool = False) -> Path:
    """Write the model folder of RUN_DIR's checkpoint `which` (best | last | a .pt file) to OUT_DIR."""
    from seq2seq.model_card import model_card

    source = checkpoint.find(run_dir, which)
    if source.is_dir():
        raise UsageError(f"{run_dir} is already an exported model folder; copy it, or export its run directory")
    from seq2seq.tasks import TranslationPayload

    payload = checkpoint.load(source)
    extra = TranslationPayload.read(payload, source)  # a usage error for another task's run: export is translation's
    if onnx and extra.recipe.model.cell != "lstm":  # before anything is written
        raise UsageError(f"--onnx handles LSTM models; {source} has {extra.recipe.model.cell} cells")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_exported(out))):
        raise UsageError(f"{out} exists and is not an exported model folder: choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    tensors, aliases = split_tied(payload["model"])
    files = tokenizer_files(extra.tokenizers)
    target_ids = payload["model"].get("target_ids")
    config: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "task": "translation", "weights": WEIGHTS, "recipe": RECIPE,
        "tokenizers": files, "tied": aliases,
        "target_ids": None if target_ids is None else target_ids.tolist(),  # decoder column j = piece target_ids[j]
        "target_pieces": extra.target_pieces,  # greedy search's shortlist (models without target_ids)
        "trained": {"run": Path(run_dir).name, "checkpoint": source.name, **_progress(payload)},
    }  # fmt: skip
    checkpoint.write_atomic(out / WEIGHTS, lambda f: f.write(_safetensors_bytes(tensors)))
    for side, name in files.items():
        checkpoint.write_atomic(out / name, extra.tokenizers[side])
    checkpoint.write_atomic(out / RECIPE, yaml.safe_dump(extra.recipe.to_dict(), sort_keys=False))
    if onnx:
        from seq2seq.models.onnx_graphs import export_onnx

        config["onnx"] = export_onnx(model_from_payload(payload), out)
    checkpoint.write_atomic(out / CONFIG, json.dumps(config, indent=1) + "\n")
    checkpoint.write_atomic(out / CARD, model_card(extra.recipe, payload["model"], Path(run_dir), source, config))
    return out


def _progress(payload: dict) -> dict:
    trainer = payload.get("trainer") or {}
    return {k: trainer[k] for k in ("step", "epoch", "best") if k in trainer}


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return save(tensors, metadata={"format": "pt", "producer": FORMAT})


def load_exported(folder: str | Path) -> dict[str, Any]:
    """An exported model folder -> a payload like `checkpoint.load` returns for a run's checkpoint:
    {"format", "recipe", "tokenizers": {"src", "tgt"}, "model": state_dict, "target_pieces"}."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        state = load_file(folder / WEIGHTS)
        recipe = yaml.safe_load((folder / RECIPE).read_text(encoding="utf-8"))
        protos = {side: (folder / name).read_bytes() for side, name in config["tokenizers"].items()}
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"{folder} is not a complete exported model: {' '.join(str(e).split())}") from None
    except Exception as e:  # noqa: BLE001 - a damaged weights file: safetensors raises its own SafetensorError
        raise CheckpointError(f"{folder / WEIGHTS} cannot be read: {' '.join(str(e).split())}") from None
    for name, target in config.get("tied", {}).items():
        state[name] = state[target]
    return {"format": checkpoint.FORMAT, "recipe": recipe, "tokenizers": protos, "model": state,
            "target_pieces": config.get("target_pieces")}  # fmt: skip


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG} cannot be read: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG} is not the config of a seq2seq model folder")
    if config.get("version", 0) > VERSION:
        raise CheckpointError(f"{folder} is a model folder of version {config['version']}; this seq2seq reads up to "
                              f"{VERSION}: upgrade seq2seq")  # fmt: skip
    names = config.get("tokenizers", {})
    if set(names) != {"src", "tgt"} or any(not isinstance(n, str) or Path(n).name != n for n in names.values()):
        raise CheckpointError(f"{folder / CONFIG}: tokenizers must name two files inside the folder")
    return config


def model_from_payload(payload: dict) -> torch.nn.Module:
    """The model of a checkpoint payload in float32, for evaluation (eval mode)."""
    from seq2seq.tasks import TranslationPayload, build_model

    extra = TranslationPayload.read(payload, "the checkpoint")
    src, tgt = extra.tokenizer_pair()
    model = build_model(extra.recipe, len(src), len(tgt), payload["model"].get("target_ids"))
    model.load_state_dict(payload["model"])
    return model.float().eval()


def parse_args(argv: list[str] | None):
    p = ArgumentParser(prog="python -m seq2seq.export", description=__doc__)
    p.add_argument("run_dir", type=Path, help="the training run directory")
    p.add_argument("out_dir", type=Path, help="the model folder to write (new, empty, or an earlier export)")
    p.add_argument("--checkpoint", default="best",
                   help="best | last | averaged (train.keep_checkpoints) | path to a .pt file")
    p.add_argument("--onnx", action="store_true", help="also write the encoder and the decoder step as ONNX graphs")
    p.add_argument("--push-to-hub", metavar="OWNER/NAME", help="then upload the folder to this Hugging Face Hub "
                   "repository (created if needed; needs the `hub` extra and a token)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    out = export(args.run_dir, args.out_dir, args.checkpoint, args.onnx)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    if args.push_to_hub:
        from seq2seq.hub import push

        print(f"uploaded to {push(out, args.push_to_hub, private=args.private)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
