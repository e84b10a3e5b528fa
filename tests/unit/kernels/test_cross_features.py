"""cross_features against the NumPy reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genre_serve.kernels import cross_features, cross_features_reference
from tests_support import DEVICES


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(0, 9),
    num_items=st.integers(1, 60),
    dim=st.integers(1, 40),
    num_candidates=st.integers(0, 30),
    with_scores=st.booleans(),
)
def test_cross_features_match_reference(device, seed, batch, num_items, dim, num_candidates, with_scores):
    rng = np.random.default_rng(seed)
    user = rng.standard_normal((batch, dim)).astype(np.float32)
    items = rng.standard_normal((num_items, dim)).astype(np.float32)
    cand = rng.integers(-1, num_items, size=(batch, num_candidates))
    scores = rng.standard_normal(cand.shape).astype(np.float32) if with_scores else None
    got = cross_features(user, items, cand, scores=scores, device=device)
    want = cross_features_reference(user, items, cand, scores=scores)
    assert got.shape == (batch, num_candidates, 4 * dim + with_scores)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_cross_features_layout_is_u_v_product_absdiff_score(device):
    user = np.array([[1.0, -2.0]], np.float32)
    items = np.array([[3.0, 4.0], [9.0, 9.0]], np.float32)
    out = cross_features(user, items, np.array([[0, -1]]), scores=np.array([[0.5, 7.0]], np.float32),
                         device=device)
    np.testing.assert_array_equal(out[0, 0], [1, -2, 3, 4, 3, -8, 2, 6, 0.5])
    np.testing.assert_array_equal(out[0, 1], np.zeros(9))


@pytest.mark.parametrize("device", DEVICES)
def test_cross_features_writes_into_the_given_buffer(device):
    rng = np.random.default_rng(0)
    user = rng.standard_normal((4, 8)).astype(np.float32)
    items = rng.standard_normal((20, 8)).astype(np.float32)
    cand = rng.integers(0, 20, size=(4, 5))
    out = np.full((4, 5, 32), np.nan, np.float32)
    result = cross_features(user, items, cand, out=out, device=device)
    assert result is out
    np.testing.assert_array_equal(out, cross_features_reference(user, items, cand))
