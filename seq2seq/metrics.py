"""Scores with signatures: sacreBLEU BLEU, chrF and TER (cased, detokenized, as the field reports them); regression
errors and direction accuracy for forecasts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sacrebleu


@dataclass(frozen=True)
class Score:
    name: str
    value: float
    signature: str

    def __str__(self) -> str:
        return f"{self.name} = {self.value:.2f}   ({self.signature})"


def bleu(hypotheses: list[str], references: list[list[str]], lowercase: bool = False) -> Score:
    """references: one list per reference set, each aligned with `hypotheses`."""
    metric = sacrebleu.metrics.BLEU(lowercase=lowercase)
    result = metric.corpus_score(hypotheses, references)
    return Score("BLEU" if not lowercase else "BLEU (lowercased)", result.score, str(metric.get_signature()))


def chrf(hypotheses: list[str], references: list[list[str]]) -> Score:
    metric = sacrebleu.metrics.CHRF()
    result = metric.corpus_score(hypotheses, references)
    return Score("chrF", result.score, str(metric.get_signature()))


def ter(hypotheses: list[str], references: list[list[str]]) -> Score:
    metric = sacrebleu.metrics.TER()
    result = metric.corpus_score(hypotheses, references)
    return Score("TER", result.score, str(metric.get_signature()))


def all_scores(hypotheses: list[str], references: list[list[str]], lowercase_tokenized: bool = False) -> list[Score]:
    """BLEU, chrF, TER; with `lowercase_tokenized` also the lowercased BLEU over 13a tokens that much of the
    Multi30k literature reports (close to multi-bleu.perl on lowercased, tokenized text; not comparable to the
    standard cased, detokenized score)."""
    scores = [bleu(hypotheses, references), chrf(hypotheses, references), ter(hypotheses, references)]
    if lowercase_tokenized:
        scores.append(bleu(hypotheses, references, lowercase=True))
    return scores


def perplexity(nll_sum: float, count: int) -> float:
    return math.exp(min(nll_sum / max(count, 1), 50.0))


def regression_errors(predicted, actual) -> dict[str, float]:
    """RMSE, MAE and MAPE (in %) of predictions against actual values (any matching shapes)."""
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    err = p - a
    return {
        "mse": float(np.mean(err**2)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(100 * np.mean(np.abs(err) / np.maximum(np.abs(a), 1e-12))),
    }


def direction_accuracy(predicted_change, actual_change) -> float:
    """% of steps whose predicted move (sign of predicted - today) is the actual move; a flat prediction is wrong."""
    p, a = np.sign(np.asarray(predicted_change)), np.sign(np.asarray(actual_change))
    return float(100 * np.mean((p == a) & (p != 0)))
