"""The causal transformer and the catalog cross-entropy it trains with."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genre_serve.models.genre import GenreModel, ModelConfig, right_align
from genre_serve.models.sequence import (
    CausalTransformer,
    attention_mask,
    catalog_cross_entropy,
    prefix_exclusion,
    training_windows,
)


def test_catalog_cross_entropy_equals_the_dense_masked_cross_entropy_in_value_and_gradients():
    g = torch.Generator().manual_seed(0)
    inputs = torch.tensor([[0, 0, 3, 5, 2, 9], [1, 4, 2, 6, 7, 8], [0, 0, 0, 0, 0, 11]])
    rows, cols = torch.nonzero(inputs > 0, as_tuple=True)
    num_items = 12
    exclude = prefix_exclusion(inputs, rows, cols)
    dense = torch.zeros(rows.numel(), num_items, dtype=torch.bool)
    dense[exclude] = True
    # Targets outside each position's history (what training feeds).
    targets = torch.tensor([int(np.flatnonzero(~dense[p].numpy())[p % 3]) for p in range(rows.numel())])
    q = torch.randn(rows.numel(), 5, generator=g, requires_grad=True)
    items = torch.randn(num_items, 5, generator=g, requires_grad=True)
    for chunk in (1, 4, 256):
        got = catalog_cross_entropy(q, items, targets, exclude, chunk=chunk)
        got.backward()
        got_grads = q.grad.clone(), items.grad.clone()
        q.grad, items.grad = None, None
        want = F.cross_entropy((q @ items.T).masked_fill(dense, float("-inf")), targets)
        want.backward()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_grads[0], q.grad)
        torch.testing.assert_close(got_grads[1], items.grad)
        q.grad, items.grad = None, None


def test_prefix_exclusion_is_each_scored_positions_history():
    inputs = torch.tensor([[0, 3, 5, 2], [1, 4, 2, 6]])
    rows, cols = torch.nonzero(inputs > 0, as_tuple=True)
    p, item = prefix_exclusion(inputs, rows, cols)
    assert torch.all(p[1:] >= p[:-1])  # sorted by row
    got = {(int(rows[a]), int(cols[a]), int(b)) for a, b in zip(p, item)}
    want = {(b, t, int(inputs[b, j]) - 1) for b, t in zip(rows.tolist(), cols.tolist())
            for j in range(t + 1) if inputs[b, j] > 0}
    assert got == want


def test_a_valid_position_never_sees_padding_or_the_future():
    valid = torch.tensor([[False, False, True, True, True]])
    allowed = attention_mask(valid)[0]
    assert not allowed[2:, :2].any()  # padding keys
    assert not torch.triu(allowed, 1).any()  # the future
    assert allowed.diagonal().all()  # a padding row sees itself: finite
    window = attention_mask(valid, window=2)[0]
    assert window[4].tolist() == [False, False, False, True, True]


def test_the_transformer_output_does_not_depend_on_how_much_padding_there_is():
    torch.manual_seed(0)
    net = CausalTransformer(8, blocks=2, heads=2, dropout=0.0, max_len=16).eval()
    x = torch.randn(1, 5, 8)
    short = net(x, torch.ones(1, 5, dtype=torch.bool))
    padded = net(torch.cat([torch.randn(1, 7, 8), x], 1), torch.tensor([[False] * 7 + [True] * 5]))
    torch.testing.assert_close(short, padded[:, 7:], atol=1e-5, rtol=1e-5)
    assert torch.all(padded[:, :7] == 0)


def test_the_sequential_encoder_at_the_last_position_is_what_training_scores_there():
    """forward (serving: the last position only) equals sequence()'s last
    position, whatever the history's padding."""
    cfg = ModelConfig(dim=8, hidden=16, max_history=10, short_len=3, ranker_hidden=(8,), dropout=0.0,
                      encoder="transformer")
    torch.manual_seed(0)
    model = GenreModel(30, 2, torch.randn(30, 12), cfg).eval()
    cf, ct = model.items.padded_tables()
    hist = right_align([[1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]], cfg.max_history)
    scen = torch.tensor([1, 0])
    with torch.no_grad():
        u_cf, u_ct = model.encode_users(hist, scen)
        all_cf, all_ct = model.user.sequence(cf[hist], ct[hist], hist > 0, scen.unsqueeze(1).expand(-1, 10))
        torch.testing.assert_close(u_cf, all_cf[:, -1])
        torch.testing.assert_close(u_ct, all_ct[:, -1])
        longer = right_align([[1, 2, 3, 4]], 20)
        again, _ = model.user(cf[longer], ct[longer], longer > 0, scen[:1])
        torch.testing.assert_close(again, u_cf[:1], atol=1e-5, rtol=1e-5)


def test_training_windows_end_at_the_sequence_end_or_a_drawn_position():
    seqs = [np.arange(3), np.arange(10)]
    windows, ends = training_windows(seqs, 4)
    assert windows.tolist() == [[0, 1, 2, 3], [7, 8, 9, 10]] and ends.tolist() == [3, 10]
    rng = np.random.default_rng(0)
    drawn = {int(training_windows(seqs, 4, rng)[1][1]) for _ in range(200)}
    assert drawn == set(range(4, 11))


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="heads"):
        CausalTransformer(10, blocks=1, heads=3, dropout=0.0, max_len=4)


def test_the_bf16_products_give_the_same_loss_and_gradients_to_about_one_percent():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(300, 16, generator=g, requires_grad=True)
    items = torch.randn(500, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 500, (300,), generator=g)
    grads = []
    for bf16 in (False, True):
        loss = catalog_cross_entropy(q, items, targets, chunk=64, bf16=bf16)
        loss.backward()
        grads.append((loss.item(), q.grad.clone(), items.grad.clone()))
        q.grad, items.grad = None, None
    (l32, gq32, gi32), (l16, gq16, gi16) = grads
    assert abs(l16 - l32) < 0.01 * l32
    assert float((gq16 - gq32).norm() / gq32.norm()) < 0.02
    assert float((gi16 - gi32).norm() / gi32.norm()) < 0.02
