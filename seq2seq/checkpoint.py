"""Checkpoints: plain dicts of state_dicts, the recipe and the tokenizer models; never pickled code.

    {"format": 1, "recipe": {...}, "tokenizers": {"src": bytes, "tgt": bytes}, "model": state_dict,
     "optimizer": state_dict, "trainer": {...}, "rng": {...}}

Writes are atomic and durable (`write_atomic`: a temporary file of its own in the same folder, fsync, rename,
fsync of the folder), so a run killed mid-write, or a full disk, keeps the previous file whole. Loading uses
`weights_only=True`: a checkpoint cannot run code. `lock_run_dir` keeps a second training out of a run directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from seq2seq.config import ConfigError

FORMAT = 1
TEMP_SUFFIX = ".tmp"  # write_atomic's temporary files: ".<name>.<random>.tmp" next to the file they become
# What a training writes in its run directory (the tokenized cache aside): only a trainer, which holds the lock,
# writes these, so their temporary files that are there when it takes the lock were left by a killed one.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "recipe.yaml", "curves.png", "spm.model", "spm.src.model",
             "spm.tgt.model")  # fmt: skip


class CheckpointError(RuntimeError):
    """A checkpoint or another file of a run cannot be read or written; the message names the file and the cause."""


class RunDirBusy(ConfigError):
    """Another process trains into the run directory (a usage error, like a run directory that already holds a run)."""


def save(path: str | Path, payload: dict[str, Any]) -> None:
    write_atomic(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object] | bytes | str) -> None:
    """Replace `path` by what `write(file)` writes (or by bytes / UTF-8 text), all or nothing.

    The data go to a temporary file of this call's own in the same folder (so two writers never share one, and the
    rename stays on one file system), are flushed and fsync'ed, then renamed over `path`, and the folder is fsync'ed
    so the rename itself survives a power cut. On any failure (a full disk, a kill signal) the temporary file is
    removed and `path` keeps its previous content; errors become a CheckpointError naming the path and the cause.
    """
    path = Path(path)
    if isinstance(write, (bytes, str)):
        data = write.encode("utf-8") if isinstance(write, str) else write
        write = lambda f: f.write(data)  # noqa: E731
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    sink = None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make checkpoints private to their writer
        with open(fd, "wb") as f:
            sink = _Sink(f)
            write(sink)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, Exception):  # a KeyboardInterrupt (a second Ctrl-C) stays one
            cause = sink.error if sink is not None and sink.error is not None else e
            text = cause.strerror if isinstance(cause, OSError) and cause.strerror else " ".join(str(cause).split())
            raise CheckpointError(f"could not write {path}: {text or type(cause).__name__}") from e
        raise
    _fsync_dir(path.parent)


class _Sink:
    """A file's write() that remembers the OSError it raised: torch.save reports one as an unhelpful "unexpected
    pos 661952 vs 661840"; the OSError says "File too large" or "No space left on device"."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform or file system where folders cannot be opened: the rename is all we can do
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # file systems that do not sync folders say so
            raise CheckpointError(f"could not sync folder {folder}: {e.strerror}") from e
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock_run_dir(run_dir: str | Path) -> Iterator[Path]:
    """Hold RUN_DIR/.lock (an fcntl lock, released by the kernel however the process ends) while training into it.

    A second process gets RunDirBusy naming the holder's pid. The temporary files of RUN_FILES that a killed
    training left behind (see write_atomic; `last.pt.tmp` of older versions) are removed once the lock is held.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunDirBusy(
            f"{run_dir} is in use by another training process (pid {holder}, lock file {lock}); wait for it to "
            f"finish or stop it, or train into another --run-dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        for name in RUN_FILES:
            for stale in [*run_dir.glob(f".{name}.*{TEMP_SUFFIX}"), run_dir / f"{name}{TEMP_SUFFIX}"]:
                stale.unlink(missing_ok=True)
        yield lock
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race with the next process)


def load(path: str | Path) -> dict[str, Any]:
    """A run's checkpoint (.pt), or a model folder written by `seq2seq.export` (model.safetensors + config.json)."""
    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():
        from seq2seq.export import load_exported  # export imports this module

        return load_exported(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zips, bad pickles, foreign files all land here
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a seq2seq checkpoint ({type(e).__name__}: {e}). "
            f"If it is last.pt of an interrupted run, best.pt in the same folder may still be intact."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise CheckpointError(f"{path} is not a seq2seq checkpoint of format {FORMAT}")
    return payload


def find(run_dir: str | Path, which: str = "best") -> Path:
    """`which` is best | last | a file path."""
    candidate = Path(which)
    if candidate.suffix == ".pt" and candidate.is_file():
        return candidate
    if (Path(run_dir) / "model.safetensors").is_file():  # an exported model folder holds one model
        return Path(run_dir)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; train one with python -m seq2seq.train")
    path = run_dir / f"{which}.pt"
    if not path.is_file():
        have = sorted(p.name for p in run_dir.glob("*.pt"))
        raise CheckpointError(f"{run_dir} has no {which}.pt (it has: {', '.join(have) or 'no checkpoints'})")
    return path


def average(paths: list[str]) -> dict:
    """The checkpoint whose weights are the mean of those of `paths` (one model's), with the first one's recipe
    and tokenizers; integer tensors (a target vocabulary's ids) are the first one's."""
    payloads = [load(p) for p in paths]
    first = payloads[0]["model"]
    for path, payload in zip(paths[1:], payloads[1:]):
        if payload["model"].keys() != first.keys() or any(payload["model"][k].shape != v.shape for k, v in first.items()):
            raise CheckpointError(f"{path} does not hold the same model as {paths[0]}")
    averaged = {
        k: (torch.stack([p["model"][k].double() for p in payloads]).mean(0)).to(v.dtype) if v.is_floating_point() else v
        for k, v in first.items()
    }
    keep = {k: v for k, v in payloads[0].items() if k not in ("model", "optimizer", "format")}
    return {**keep, "model": averaged, "averaged_from": [str(p) for p in paths]}
