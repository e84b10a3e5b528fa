"""EASE and the two SASRec variants on a small synthetic split."""

import numpy as np
import pytest
import torch

from genre_serve.data import build_dataset, synthetic
from genre_serve.data.split import leave_last_out
from genre_serve.evaluation import baselines as B
from genre_serve.evaluation.evaluate import _baseline_ranks
from genre_serve.evaluation.metrics import ndcg_at


@pytest.fixture(scope="module")
def split():
    raw, items = synthetic.generate(num_users=120, num_items=80, seed=3)
    return leave_last_out(build_dataset(raw, items, name="synthetic"), 0.0, 0)


def test_ease_is_the_closed_form_of_steck_2019(split):
    ease = B.EASE(l2_grid=(5.0, 50.0)).fit(split)
    X = B.interaction_matrix(split).toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + ease.l2 * np.eye(X.shape[1]))
    want = -P / np.diag(P)
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(ease.B, want, rtol=1e-3, atol=1e-4)
    assert set(ease.valid_ndcg) == {5.0, 50.0} and ease.valid_ndcg[ease.l2] == max(ease.valid_ndcg.values())
    hist = [split.train_items[0], split.train_items[1]]
    np.testing.assert_allclose(ease.score(None, hist, None), X[:2] @ ease.B, rtol=1e-3, atol=1e-4)


def test_ease_refuses_a_catalog_it_cannot_hold(split, monkeypatch):
    monkeypatch.setattr(B.EASE, "MAX_ITEMS", 10)
    with pytest.raises(ValueError, match="EASE"):
        B.EASE().fit(split)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_sasrec_learns_the_synthetic_sequences_with_either_loss(split, loss):
    model = B.SASRec(loss, dim=16, max_len=20, epochs=6, eval_every=2, batch_size=32, seed=0).fit(split)
    test = split.stage("test")
    ranks, _ = _baseline_ranks(model, test.users, test.histories, test.scenarios, test.targets)
    popular, _ = _baseline_ranks(B.MostPopular().fit(split), test.users, test.histories, test.scenarios, test.targets)
    assert model.best_valid_ndcg > 0 and len(model.history) == 3
    assert ndcg_at(ranks, 10) > 0
    assert model.name == ("SASRec+ (full softmax)" if loss == "ce" else "SASRec (BCE, 1 negative)")
    assert popular.shape == ranks.shape


def test_sasrec_rejects_an_unknown_loss():
    with pytest.raises(ValueError, match="loss"):
        B.SASRec("mse")
    with pytest.raises(ValueError, match="lr_schedule"):
        B.SASRec("ce", lr_schedule="linear")


def test_sasrec_with_the_cosine_schedule_ends_at_a_tenth_of_its_rate(split, monkeypatch):
    """The peer can train with GENRE's schedule (models/sequence.py): the
    rate decays over all epochs' steps (patience set so that none stop early)."""
    seen = []
    step = torch.optim.Adam.step

    def recording_step(opt, *args, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return step(opt, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    B.SASRec("ce", dim=8, max_len=10, epochs=4, eval_every=2, batch_size=32, lr=1e-2, patience=99,
             lr_schedule="cosine", seed=0).fit(split)
    steps_per_epoch = -(-sum(len(t) >= 2 for t in split.train_items) // 32)
    assert len(seen) == 4 * steps_per_epoch
    assert seen[0] == pytest.approx(1e-2) and seen[-1] == pytest.approx(1e-3, rel=0.1)
    assert all(a >= b for a, b in zip(seen, seen[1:]))


def test_als_warm_started_from_its_own_factors_stays_in_their_basis(split):
    """An update refines the CF rows with ALS started from them (train/update.py):
    a few iterations from a fit land near it, where a fresh fit of another seed
    is an unrelated rotation of the same quality."""
    fitted = B.ImplicitMF("als", factors=8, iterations=30, seed=0).fit(split).item_factors
    kept = fitted.copy()
    warm = B.ImplicitMF("als", factors=8, iterations=3, seed=1).fit(split, item_init=fitted).item_factors
    np.testing.assert_array_equal(fitted, kept)  # the start is read, not refined in place
    fresh = B.ImplicitMF("als", factors=8, iterations=30, seed=1).fit(split).item_factors

    def distance(a):
        return np.linalg.norm(a - fitted) / np.linalg.norm(fitted)

    assert 0 < distance(warm) < 0.2 < 1.0 < distance(fresh)
    with pytest.raises(ValueError, match="shape"):
        B.ImplicitMF("als", factors=8).fit(split, item_init=fitted[:, :4])
    with pytest.raises(ValueError, match="ALS only"):
        B.ImplicitMF("bpr", factors=8).fit(split, item_init=fitted)
