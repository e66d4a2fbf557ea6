"""token_nll: the CPU's blocked loss equals F.cross_entropy, value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.losses import token_nll
from seq2seq.tokenizer import PAD


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("vocab", [50, 200_000])  # 200,000: 2 rows per block, so the batch spans 8 blocks
def test_blocked_loss_and_gradient_equal_cross_entropy(dtype, smoothing, vocab):
    torch.manual_seed(0)
    logits = (3 * torch.randn(3, 5, vocab)).to(dtype).requires_grad_()
    targets = torch.randint(1, vocab, (3, 5))
    targets[0, 3:] = PAD
    targets[2, 1] = PAD
    weight = torch.rand(())  # a scale on the loss, as a gradient arriving from above
    loss, count = token_nll(logits, targets, smoothing)
    (weight * loss).backward()
    grad, logits.grad = logits.grad, None
    expected = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1), ignore_index=PAD,
                               reduction="sum", label_smoothing=smoothing)  # fmt: skip
    (weight * expected).backward()
    assert count == 12 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)
    # softmax as exp(x - logsumexp) rather than exp(x - max) / sum: float32 rounding of about 1e-6 on each element
    torch.testing.assert_close(grad, logits.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-4, atol=1e-5)
    assert torch.all(grad[0, 3:] == 0)  # PAD positions get no gradient


def test_blocked_loss_backward_twice_is_an_error_not_a_doubly_scaled_gradient():
    logits = torch.randn(4, 30, requires_grad=True)
    loss, _ = token_nll(logits, torch.tensor([3, 4, PAD, 5]), 0.1)
    (2 * loss).backward(retain_graph=True)  # the kept gradient is scaled in place by this first backward
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weight", [1.0, 0.37])  # 1: the loss divided by its count, as the trainer does; else not
def test_blocked_loss_forms_the_gradient_of_the_loss_per_token(dtype, weight):
    """Given the count, the gradient is formed for loss / count in the forward pass; any other scale still comes out
    right (backward multiplies by the ratio)."""
    torch.manual_seed(1)
    logits = (3 * torch.randn(4, 6, 300)).to(dtype).requires_grad_()
    targets = torch.randint(1, 300, (4, 6))
    targets[1, 4:] = PAD
    count = int((targets != PAD).sum())
    loss, n = token_nll(logits, targets, 0.1, count)
    (weight * loss / n).backward()
    grad, logits.grad = logits.grad, None
    expected = F.cross_entropy(logits.float().reshape(-1, 300), targets.reshape(-1), ignore_index=PAD,
                               reduction="sum", label_smoothing=0.1)  # fmt: skip
    (weight * expected / count).backward()
    torch.testing.assert_close(grad, logits.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-4, atol=1e-7)
    assert torch.all(grad[1, 4:] == 0)
