"""The only module that imports huggingface_hub (the `hub` extra): model folders to and from the Hugging Face Hub.

    resolve("runs/en-fr-export")   -> that folder (local paths never touch the network)
    resolve("hf://owner/name")     -> a local snapshot of the repository (downloaded, or from the Hub's cache)
    resolve("owner/name@v1")       -> the same at a revision; a bare OWNER/NAME counts as a repository when no such
                                      local folder exists
    push("out/en-fr", "owner/name") -> the repository's URL, after uploading the folder

Only the files of an exported folder are fetched (safetensors, JSON, YAML, SentencePiece models, ONNX graphs and the
card): never pickles. HF_HUB_OFFLINE=1 makes `resolve` use the local cache only.
"""

from __future__ import annotations

import re
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.cli import UsageError

PREFIX = "hf://"
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
FILES = ["*.safetensors", "config.json", "recipe.yaml", "*.model", "*.onnx", "README.md"]
INSTALL = 'the Hugging Face Hub needs huggingface_hub: pip install -e ".[hub]"'


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError(INSTALL) from None
    return huggingface_hub


def parse_repo(name: str) -> tuple[str, str | None]:
    """"hf://owner/name@rev" or "owner/name" -> (repo id, revision or None); UsageError for anything else."""
    bare = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    repo, _, revision = bare.partition("@")
    if not REPO_ID.fullmatch(repo):
        raise UsageError(f"{name!r} is neither a local folder nor a Hub repository (hf://owner/name)")
    return repo, revision or None


def resolve(name: str | Path) -> Path:
    """A local folder as it is; a Hub repository as a local snapshot of its model files."""
    text = str(name)
    if isinstance(name, Path) or (not text.startswith(PREFIX) and Path(text).exists()):
        return Path(name)
    repo, revision = parse_repo(text)
    explicit = text.startswith(PREFIX)
    try:
        hub = _hub()
    except UsageError:
        if explicit:
            raise
        raise CheckpointError(f"no folder {text} here (and huggingface_hub is not installed to look for a Hub "
                              f"repository of that name)") from None  # fmt: skip
    try:
        return Path(hub.snapshot_download(repo_id=repo, revision=revision, allow_patterns=FILES))
    except Exception as e:  # noqa: BLE001 - no network, no such repository, no access: one line naming it
        local = "" if explicit else f"no folder {text} here, and "
        raise CheckpointError(f"{local}could not download {repo} from the Hugging Face Hub: "
                              f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None  # fmt: skip


def push(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload an exported model folder to the Hub repository `repo_id` (created when missing) -> its URL."""
    from seq2seq.export import is_exported

    folder = Path(folder)
    if not is_exported(folder):
        raise UsageError(f"{folder} is not an exported model folder: write one with python -m seq2seq.export")
    repo, _ = parse_repo(repo_id)
    api = _hub().HfApi(token=token)
    url = api.create_repo(repo_id=repo, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", allow_patterns=FILES,
                      commit_message="Upload seq2seq model folder")  # fmt: skip
    return str(url)
