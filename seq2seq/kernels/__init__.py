"""Numeric fast paths, each beside the plain reference it must agree with (tests/test_kernels.py).

    module      fast path                                            reference
    activation  float32 tanh as 2 sigmoid(2x) - 1 where that is      torch.tanh; sigmoid and tanh per gate
                faster; the LSTM gates in place, in one pass
    lstm        an LSTM step's cell in float32 (lstm_cell_)          c' = f c + i g, h = o tanh(c')
    int8        Int8Linear: int8 products (torch._int_mm, or         the float64 product of the quantized
                torch's dynamic quantized linear)                    operands; F.linear within the int8 grids
    nll         SmoothedNLL: label-smoothed NLL and its gradient     F.cross_entropy in float32
                in one blocked pass (smoothed_nll: it on the CPU,
                the reference elsewhere)
    linear      the bias inside the matrix product on the CPU        F.linear
    topk        topk_rows: top-k over groups of 8 columns            torch.topk
    padding     pack / unpack without host-device waits,            pack_padded_sequence / pad_packed_sequence,
                reverse_padded, batch_first_masked                   a flip per sequence, h * mask transposed
    dropout     dropout with a 16-bit integer mask                   F.dropout (what is kept, and its scale)

The modules import torch and each other, nothing else of the package. Nothing here reads the environment, times
anything or changes the process when imported. The choices that depend on the machine (how tanh runs, the int8
kernel) are process-wide and made explicitly by `seq2seq.runtime.apply`; where nothing chose, their "auto" rule
applies on first use, a fixed function of the CPU's features (see each module). The choices by the tensors' device
are made here too, inside each kernel or by a function the core asks (`lstm.fused_step_applies`,
`padding.padded_run_applies`): the layers above name no device to pick a fast path.
"""
