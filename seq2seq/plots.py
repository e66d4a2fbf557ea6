"""PNG figures of training runs (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path

from seq2seq import runlog


def plot_curves(metrics_path: Path, out_path: Path) -> Path | None:
    """Training loss and validation loss / main score against the step, from metrics.jsonl."""
    if not metrics_path.is_file():
        return None
    plt = _pyplot()
    records = runlog.read(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    scores = [k for k in ("bleu", "ppl", "rmse") if valid and k in valid[0]]
    fig, axes = plt.subplots(1, 1 + len(scores), figsize=(6 + 5 * len(scores), 4), squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if valid and "loss" in valid[0]:
        ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    for ax, key in zip(axes[0][1:], scores):
        ax.plot([r["step"] for r in valid], [r[key] for r in valid], "o-", color="C2")
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation {key}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    from seq2seq.checkpoint import write_atomic  # torch; only once there is a figure to write

    write_atomic(out_path, png.getvalue())  # a full disk keeps the previous figure whole
    return out_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish_series(plt, fig, ax, title: str, out_path: Path) -> Path:
    ax.set_title(title)
    ax.set_ylabel("close (index points)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_forecast(dates, actual, predicted: dict, title: str, out_path: Path) -> Path:
    """A series (dates (M,), actual (M,)) with one or more predicted lines over it, like the lab's figures."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(dates, actual, color="0.3", lw=1.2, label="actual")
    for i, (label, values) in enumerate(predicted.items()):
        ax.plot(dates, values, color=f"C{i + 1}", lw=1, label=label)
    return _finish_series(plt, fig, ax, title, out_path)


def plot_fans(dates, actual, fans: list, title: str, out_path: Path) -> Path:
    """The actual series and each fan [(offset into dates, predicted values)] drawn from where it starts."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(dates, actual, color="0.3", lw=1.2, label="actual")
    for k, (start, values) in enumerate(fans):
        label = "fed-back forecasts" if k == 0 else None
        ax.plot(dates[start : start + len(values)], values, color="C3", lw=1, label=label)
    return _finish_series(plt, fig, ax, title, out_path)


def plot_attention(translation, out_path: Path) -> Path:
    """Heatmap of a translation's attention: output pieces down, source pieces across."""
    plt = _pyplot()

    weights = translation.attention
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(translation.src_pieces), 1 + 0.4 * len(weights)))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(translation.src_pieces)), translation.src_pieces, rotation=60, ha="right")
    ax.set_yticks(range(len(translation.tgt_pieces)), translation.tgt_pieces)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
