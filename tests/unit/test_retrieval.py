"""Items without CF signal are scored by content alone plus a bias: the
two-pass kernel path against a dense NumPy reference on random inputs."""

import numpy as np
import pytest

from genre_serve.retrieval import NewItems, fused_topk_with_new_items, items_without_cf


def reference(u_cf, u_ct, alpha, item_cf, item_ct, k, exclude, new, bias):
    fused = alpha[:, None] * (u_cf @ item_cf.T) + (1 - alpha[:, None]) * (u_ct @ item_ct.T)
    fused[:, new] = (u_ct @ item_ct.T)[:, new] + np.float32(bias)
    for row, e in enumerate(exclude):
        fused[row, e] = -np.inf
    n = item_cf.shape[0]
    order = np.lexsort((np.broadcast_to(np.arange(n), fused.shape), -fused), axis=1)[:, : min(k, n)]
    scores = np.take_along_axis(fused, order, 1)
    return np.where(np.isfinite(scores), order, -1), scores


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 7, 40, 500])
@pytest.mark.parametrize("new_pass", ["numpy", "kernel"])
def test_two_passes_equal_the_dense_rule(seed, k, new_pass, monkeypatch):
    import genre_serve.retrieval

    if new_pass == "kernel":
        monkeypatch.setattr(genre_serve.retrieval, "SMALL_NEW_ITEMS", 0)
    rng = np.random.default_rng(seed)
    n, b = 60, 5
    item_cf = rng.standard_normal((n, 9)).astype(np.float32)
    item_ct = rng.standard_normal((n, 6)).astype(np.float32)
    new = rng.choice(n, size=rng.integers(0, 15), replace=False)
    item_cf[new, :-1] = 0.0
    item_cf[new, -1] = rng.random(new.size) < 0.5  # some recent interactions: still no CF vector
    u_cf = rng.standard_normal((b, 9)).astype(np.float32)
    u_ct = rng.standard_normal((b, 6)).astype(np.float32)
    alpha = rng.random(b).astype(np.float32)
    exclude = [rng.choice(n, size=rng.integers(0, 50), replace=False) for _ in range(b)]
    bias = [0.0, 1.5, -2.0][seed % 3]
    items = NewItems(item_cf, item_ct, bias)
    assert sorted(items.index) == sorted(new)
    idx, scores = fused_topk_with_new_items(u_cf, u_ct, alpha, item_cf, item_ct, k, exclude, items)
    ref_idx, ref_scores = reference(u_cf, u_ct, alpha, item_cf, item_ct, k, exclude, new, bias)
    assert idx.shape == ref_idx.shape
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    # Indices agree except where two scores tie to float precision.
    differ = idx != ref_idx
    assert np.all(np.abs(ref_scores[differ] - scores[differ]) < 1e-4)


def test_the_last_column_does_not_make_an_item_known():
    table = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], np.float32)
    assert list(items_without_cf(table)) == [0, 1]
