"""Model shapes, masking and the torch/kernel agreement on cross features."""

import numpy as np
import torch

from genre_serve.kernels import cross_features
from genre_serve.models.genre import (
    GenreModel,
    ModelConfig,
    candidate_cf,
    cf_scores,
    cross_features_torch,
    right_align,
)

CFG = ModelConfig(dim=16, hidden=32, max_history=12, short_len=4, ranker_hidden=(32,))


def model(num_items=40, scenarios=3):
    torch.manual_seed(0)
    return GenreModel(num_items, scenarios, torch.randn(num_items, 24), CFG).eval()


def test_user_encoder_gives_one_vector_per_space_and_user():
    m = model()
    hist = right_align([[1, 2, 3], [], list(range(30))], CFG.max_history)
    assert hist.shape == (3, CFG.max_history) and hist[1].sum() == 0
    u_cf, u_ct = m.encode_users(hist, torch.tensor([0, 1, 2]))
    assert u_cf.shape == (3, CFG.cf_dim) and u_ct.shape == (3, 16)
    assert torch.isfinite(u_cf).all() and torch.isfinite(u_ct).all()  # empty history too


def test_padding_does_not_change_the_user_vector():
    m = model()
    short = right_align([[5, 6, 7]], 5)
    long = right_align([[5, 6, 7]], CFG.max_history)
    a = m.encode_users(short, torch.tensor([1]))
    b = m.encode_users(long, torch.tensor([1]))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_scenario_conditions_the_user_vector_and_alpha():
    m = model()
    with torch.no_grad():
        m.alpha_logit.copy_(torch.tensor([0.0, 2.0, -2.0]))
    hist = right_align([[1, 2, 3]] * 2, CFG.max_history)
    u0, _ = m.encode_users(hist, torch.tensor([0, 1]))
    assert not torch.allclose(u0[0], u0[1])
    alpha = m.alpha(torch.tensor([0, 1, 2]))
    assert alpha[1] > alpha[0] > alpha[2]


def test_item_tables_cover_the_catalog():
    item_cf, item_ct = model().items.tables()
    assert item_cf.shape == (40, CFG.cf_dim) and item_ct.shape == (40, 16)


def test_torch_cross_features_equal_the_kernel():
    rng = np.random.default_rng(0)
    user = rng.standard_normal((3, 8)).astype(np.float32)
    items = rng.standard_normal((20, 8)).astype(np.float32)
    cand = rng.integers(0, 20, size=(3, 5))
    scores = rng.standard_normal((3, 5)).astype(np.float32)
    kernel = cross_features(user, items, cand, scores=scores)
    torch_version = cross_features_torch(
        torch.from_numpy(user), torch.from_numpy(items)[torch.from_numpy(cand)], torch.from_numpy(scores)
    )
    np.testing.assert_allclose(torch_version.numpy(), kernel, rtol=1e-6, atol=1e-6)


def test_item_bias_is_one_more_cf_column_against_a_constant_one():
    m = model()
    with torch.no_grad():
        m.items.bias.weight[5] = 3.0
    item_cf, _ = m.items.tables()
    u_cf, _ = m.encode_users(right_align([[1, 2]], CFG.max_history), torch.tensor([0]))
    # Columns: [dim..., bias, recent popularity]
    assert u_cf[0, -2] == 1.0 and item_cf[4, -2] == 3.0  # item index 4 is shifted row 5


def test_recent_popularity_is_the_last_cf_column_against_the_scenario_weight():
    m = model()
    with torch.no_grad():
        m.user.recent_popularity_weight.weight.copy_(torch.tensor([[0.5], [1.5], [-1.0]]))
        m.items.recent_popularity[1:] = torch.arange(40.0)
    item_cf, _ = m.items.tables()
    hist = right_align([[1, 2]] * 3, CFG.max_history)
    u_cf, _ = m.encode_users(hist, torch.tensor([0, 1, 2]))
    assert item_cf.shape[1] == CFG.cf_dim == CFG.dim + 2
    np.testing.assert_array_equal(u_cf[:, -1].detach().numpy(), [0.5, 1.5, -1.0])
    np.testing.assert_array_equal(item_cf[:, -1].detach().numpy(), np.arange(40.0))
    # The user encoder never reads the snapshot: changing it leaves u unchanged
    # (apart from the table it is scored against).
    with torch.no_grad():
        m.items.recent_popularity.zero_()
    u_again, _ = m.encode_users(hist, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(u_cf, u_again)


def test_per_request_recent_popularity_replaces_the_snapshot_column():
    m = model()
    with torch.no_grad():
        m.user.recent_popularity_weight.weight.fill_(0.7)
        m.items.recent_popularity[1:] = torch.rand(40)
    item_cf, _ = m.items.tables()
    u_cf, _ = m.encode_users(right_align([[1, 2], [3]], CFG.max_history), torch.tensor([0, 1]))
    u_cf, item_cf = u_cf.detach(), item_cf.detach()
    # The snapshot itself, given per request: the same scores as the tables.
    snapshot = item_cf[:, -1].expand(2, -1)
    torch.testing.assert_close(cf_scores(u_cf, item_cf, snapshot), cf_scores(u_cf, item_cf), rtol=1e-5, atol=1e-5)
    recent_popularity = torch.rand(2, 40)
    expected = u_cf[:, :-1] @ item_cf[:, :-1].T + 0.7 * recent_popularity
    torch.testing.assert_close(cf_scores(u_cf, item_cf, recent_popularity), expected)
    cand = torch.tensor([[3, 7], [0, 39]])
    vectors = candidate_cf(item_cf, cand, recent_popularity)
    assert vectors[1, 1, -1] == recent_popularity[1, 39] and torch.equal(vectors[1, 1, :-1], item_cf[39, :-1])
    torch.testing.assert_close((u_cf.unsqueeze(1) * vectors).sum(-1), expected.gather(1, cand))


def test_untrained_ranker_keeps_the_retrieval_order():
    m = model()
    feats = torch.randn(2, 6, 4 * (CFG.cf_dim + CFG.dim) + 1)
    np.testing.assert_allclose(m.ranker(feats).detach().numpy(), feats[..., -1].numpy(), rtol=1e-6)


def test_the_sasrec_encoder_starts_as_sasrec_plus_on_the_cf_table():
    """Untrained, GENRE's additions (content input, scenario, short term) are
    zero: the CF vector is the bare transformer's state over the history's CF
    rows, the table it is scored against (SASRec+'s tied embeddings)."""
    cfg = ModelConfig(dim=16, max_history=12, short_len=4, content_window=3, encoder="sasrec", dropout=0.0)
    torch.manual_seed(0)
    m = GenreModel(40, 3, torch.randn(40, 24), cfg).eval()
    hist = right_align([[1, 2, 3], list(range(30)), [7]], cfg.max_history)
    u_cf, u_ct = m.encode_users(hist, torch.tensor([0, 1, 2]))
    cf, ct = m.items.padded_tables()
    state = m.user.transformer(cf[hist][..., :16], hist > 0)[:, -1]
    torch.testing.assert_close(u_cf[:, :16], state)
    assert u_cf.shape == (3, cfg.cf_dim)
    # The content channel: the head plus the mean content vector of the last 3 items.
    recent = torch.stack([ct[h[h > 0][-3:]].mean(0) for h in hist])
    torch.testing.assert_close(u_ct, m.user.out_ct(state) + recent)
    # Every position at once (training) equals one request at a time (serving).
    seq_cf, seq_ct = m.user.sequence(cf[hist], ct[hist], hist > 0, torch.tensor([0, 1, 2]).unsqueeze(1).expand(3, 12))
    torch.testing.assert_close(seq_cf[:, -1], u_cf)
    torch.testing.assert_close(seq_ct[:, -1], u_ct)


def test_the_sasrec_encoder_reads_content_and_scenario_once_trained():
    cfg = ModelConfig(dim=16, max_history=12, short_len=4, encoder="sasrec", dropout=0.0)
    torch.manual_seed(0)
    m = GenreModel(40, 3, torch.randn(40, 24), cfg).eval()
    with torch.no_grad():
        for p in (m.user.content_in.weight, m.user.short_value.weight, m.user.scenario.weight):
            p.normal_()
    hist = right_align([[1, 2, 3]] * 2, cfg.max_history)
    base, _ = m.encode_users(hist, torch.tensor([0, 1]))
    assert not torch.allclose(base[0], base[1])  # the scenario conditions it
    with torch.no_grad():
        m.items.text[2] += 1.0  # item 1's text (shifted index 2) changes its content row
    moved, _ = m.encode_users(hist, torch.tensor([0, 1]))
    assert not torch.allclose(base, moved)


def test_a_detached_content_head_sends_no_gradient_into_the_transformer():
    for detach in (False, True):
        cfg = ModelConfig(dim=16, max_history=12, short_len=4, encoder="sasrec", dropout=0.0, detach_content=detach)
        torch.manual_seed(0)
        m = GenreModel(40, 3, torch.randn(40, 24), cfg)
        _, u_ct = m.encode_users(right_align([[1, 2, 3]], cfg.max_history), torch.tensor([0]))
        u_ct.sum().backward()
        grads = [p.grad for p in m.user.transformer.parameters()]
        assert all(g is None or not g.any() for g in grads) == detach
        assert m.user.out_ct.weight.grad.any()
