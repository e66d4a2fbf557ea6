"""Exported model folders (seq2seq/export.py): safetensors round trips, loading like the run, the Hub offline, and
greedy decoding through ONNX Runtime giving PyTorch's translations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from seq2seq import checkpoint
from seq2seq.config import recipe_from_dict
from seq2seq.export import export, load_exported, main, split_tied
from seq2seq.models.seq2seq import Seq2Seq, Seq2SeqShape
from seq2seq.translator import Translator

LINES = ["sa sb sc sd .", "st sk .", "", "sq sr ss sa sb sc sd se sf ."]


@pytest.fixture(scope="module")
def folder(toy_run, tmp_path_factory) -> Path:
    """toy_run exported once, with its ONNX graphs."""
    return export(toy_run, tmp_path_factory.mktemp("exported") / "en-fr", onnx=True)


@pytest.fixture(scope="module")
def val_lines(toy_run) -> list[str]:
    return (toy_run.parent / "data" / "multi30k" / "val.en").read_text(encoding="utf-8").splitlines()[:40] + LINES


def test_the_folder_holds_no_pickles_and_names_what_loading_needs(folder, toy_run):
    names = {p.name for p in folder.iterdir()}
    assert names == {"model.safetensors", "config.json", "recipe.yaml", "spm.model", "README.md", "encoder.onnx",
                     "decoder_step.onnx"}  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "translation" and config["tokenizers"] == {"src": "spm.model", "tgt": "spm.model"}
    step = checkpoint.load(toy_run / "best.pt")["trainer"]["step"]
    assert config["target_pieces"] and config["trained"]["step"] == step
    card = (folder / "README.md").read_text()
    assert f"validation at step {step}" in card
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in card  # the validation BLEU's signature


def test_the_exported_model_translates_as_the_run_does(folder, toy_run, val_lines):
    payload, original = load_exported(folder), checkpoint.load(toy_run / "best.pt")
    assert payload["model"].keys() == original["model"].keys()
    assert all(torch.equal(payload["model"][k], v) for k, v in original["model"].items())
    assert payload["tokenizers"] == original["tokenizers"]
    assert recipe_from_dict(payload["recipe"]) == recipe_from_dict(original["recipe"])
    ours = Translator.from_pretrained(folder, device="cpu")
    theirs = Translator.from_run(toy_run, device="cpu")
    assert ours.translate(val_lines, beam=5) == theirs.translate(val_lines, beam=5)
    assert ours.shortlist is not None  # the training shortlist came along


def test_the_translate_command_reads_an_exported_folder(folder, toy_run, tmp_path):
    from seq2seq.translate import main as translate

    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert translate([str(folder), "--greedy", "--device", "cpu", "-i", str(tmp_path / "in.txt"),
                      "-o", str(tmp_path / "out.txt")]) == 0  # fmt: skip
    expected = Translator.from_run(toy_run, device="cpu").translate(LINES)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == expected


def test_tied_weights_are_stored_once_and_tied_again():
    shape = Seq2SeqShape(40, 40, 16, 8, 1, decoder_hidden=16, decoder_layers=1, tie_embeddings=True)
    model = Seq2Seq(shape, dropout=0.0)
    tensors, aliases = split_tied(model.state_dict())
    assert aliases == {"generator.weight": "tgt_embed.weight"}
    state = load(save(tensors))
    for name, target in aliases.items():
        state[name] = state[target]
    fresh = Seq2Seq(shape, dropout=0.0)
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_export_refuses_a_folder_that_holds_something_else(toy_run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert main([str(toy_run), str(tmp_path)]) == 2
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_config_cannot_send_loading_outside_the_folder(folder, tmp_path):
    import shutil

    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    config = json.loads((copy / "config.json").read_text())
    config["tokenizers"]["src"] = "../../etc/passwd"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.CheckpointError, match="inside the folder"):
        load_exported(copy)


def test_the_hub_is_reached_only_through_huggingface_hub_offline_here(folder, monkeypatch, toy_run, tmp_path):
    import huggingface_hub as hub
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns))
        return str(folder)

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    translator = Translator.from_pretrained("hf://someone/en-fr@v1", device="cpu")
    assert translator.translate(LINES) == Translator.from_run(toy_run, device="cpu").translate(LINES)
    Translator.from_pretrained("someone/en-fr", device="cpu")  # a bare repository id where no such folder exists
    assert [c[:2] for c in calls] == [("someone/en-fr", "v1"), ("someone/en-fr", None)]
    from seq2seq.translate import main as translate_main

    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n")
    assert translate_main(["hf://someone/en-fr", "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt")]) == 0
    assert (tmp_path / "out.txt").read_text().splitlines() == translator.translate(LINES)
    assert not any(p.endswith((".pt", ".bin", ".pkl")) for p in calls[0][2])  # never a pickle


def test_push_to_hub_creates_the_repository_and_uploads_the_folder(folder, toy_run, tmp_path, monkeypatch):
    import huggingface_hub as hub
    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
            uploads.append(("create", repo_id, private))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type=None, allow_patterns=None, commit_message=None):
            uploads.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    assert main([str(toy_run), str(tmp_path / "out"), "--push-to-hub", "someone/en-fr", "--private"]) == 0
    assert uploads[0] == ("create", "someone/en-fr", True)
    assert uploads[1][0] == "upload" and "model.safetensors" in uploads[1][2]


def test_onnx_greedy_translates_as_pytorch_greedy(folder, toy_run, val_lines):
    import onnxruntime  # noqa: F401 - the onnx extra, in dev

    from seq2seq.onnx_greedy import OnnxTranslator

    reference = Translator.from_run(toy_run, device="cpu", precision="fp32")
    assert OnnxTranslator(folder).translate(val_lines, batch_size=16) == reference.translate(val_lines)


@pytest.mark.parametrize("options", [
    {},  # input feeding, Bahdanau, bridge, bidirectional encoder of 2 layers
    {"attention": "luong", "input_feeding": False, "bridge": False, "bidirectional": False},
    {"attention": "luong", "input_feeding": False, "context_feeding": True, "decoder_layers": 3, "target_ids": list(range(30))},
])  # fmt: skip
def test_onnx_graphs_compute_encode_and_decode_step(options, tmp_path):
    import onnxruntime as ort

    from seq2seq.models.onnx_graphs import export_onnx

    torch.manual_seed(0)
    shape = Seq2SeqShape(50, 60, 16, 12, decoder_hidden=20, **{k: v for k, v in options.items() if k != "target_ids"})
    model = Seq2Seq(shape, dropout=0.0, target_ids=options.get("target_ids")).eval()
    graphs = export_onnx(model, tmp_path)
    encoder = ort.InferenceSession(str(tmp_path / graphs["encoder"]), providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(str(tmp_path / graphs["decoder_step"]), providers=["CPUExecutionProvider"])
    src = torch.randint(4, 50, (3, 9))  # another batch and length than the export traced
    lengths = torch.tensor([9, 4, 1])
    src[torch.arange(9) >= lengths.unsqueeze(1)] = 0
    outputs = dict(zip(graphs["encoder_outputs"], encoder.run(None, {"src": src.numpy(), "src_lengths": lengths.numpy()})))
    with torch.no_grad():
        state = model.encode(src, lengths)
        assert torch.allclose(torch.from_numpy(outputs["memory"]), state.memory, atol=1e-5)
        tokens = torch.tensor([2, 2, 2])
        for _ in range(3):
            log_probs, state, weights, _ = model.decode_step(tokens, state)
            feeds = {"tokens": tokens.numpy(), **outputs}
            result = dict(zip(graphs["step_outputs"], step.run(None, {n: feeds[n] for n in graphs["step_inputs"]})))
            assert torch.allclose(torch.from_numpy(result["log_probs"]), log_probs, atol=1e-4)
            assert torch.allclose(torch.from_numpy(result["attention"]), weights, atol=1e-5)
            outputs.update({name: result[f"{name}_out"] for name in ("h", "c", "feed") if f"{name}_out" in result})
            tokens = log_probs.argmax(-1)


def test_export_needs_no_hub_package(toy_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    out = export(toy_run, tmp_path / "m")
    assert Translator.from_pretrained(out, device="cpu").translate(["sa sb ."])


def test_a_missing_local_folder_is_not_sent_to_the_hub_without_huggingface_hub(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(checkpoint.CheckpointError, match="no folder"):
        Translator.from_pretrained("no-such/folder", device="cpu")
