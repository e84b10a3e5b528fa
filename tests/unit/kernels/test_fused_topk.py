"""fused_topk against the NumPy reference on random inputs."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genre_serve.kernels import fused_topk, fused_topk_reference
from tests_support import DEVICES, assert_same_topk, random_problem


@st.composite
def problems(draw):
    batch = draw(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 17]))
    num_items = draw(st.integers(1, 700))
    return random_problem(
        seed=draw(st.integers(0, 2**31 - 1)),
        batch=batch,
        num_items=num_items,
        dim_cf=draw(st.integers(1, 40)),
        dim_ct=draw(st.sampled_from([0, 1, 5, 16, 33])),
        k=draw(st.integers(1, num_items + 20)),
        alpha=draw(st.sampled_from(["scalar", "array", 0.0, 1.0])),
        exclude=draw(st.sampled_from([None, "few", "many", "all", "csr"])),
        integer_valued=draw(st.booleans()),
    )


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), threads=st.sampled_from([1, 2, 3]))
def test_fused_topk_matches_reference_on_random_problems(device, problem, threads):
    kwargs, exact = problem
    got = fused_topk(**kwargs, device=device, num_threads=threads)
    want = fused_topk_reference(**kwargs)
    assert_same_topk(kwargs, exact, got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_topk_excludes_seen_items(device):
    rng = np.random.default_rng(1)
    users = rng.standard_normal((3, 8)).astype(np.float32)
    items = rng.standard_normal((50, 8)).astype(np.float32)
    best, _ = fused_topk(users, items, 5, device=device)
    seen = [best[0, :3], [], best[2]]
    idx, _ = fused_topk(users, items, 5, exclude=seen, device=device)
    assert not set(idx[0]) & set(best[0, :3])
    np.testing.assert_array_equal(idx[1], best[1])
    assert not set(idx[2]) & set(best[2])


@pytest.mark.parametrize("device", DEVICES)
def test_fused_topk_pads_with_minus_one_when_k_exceeds_eligible_items(device):
    users = np.ones((2, 4), np.float32)
    items = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx, scores = fused_topk(users, items, 3, exclude=[[0], [0, 1, 2]], device=device)
    np.testing.assert_array_equal(idx, [[2, 1, -1], [-1] * 3])
    assert np.isneginf(scores[0, 2:]).all() and np.isneginf(scores[1]).all()
    np.testing.assert_allclose(scores[0, :2], [38.0, 22.0])


@pytest.mark.parametrize("device", DEVICES)
def test_a_k_beyond_the_catalog_is_read_as_the_catalog_size(device):
    users = np.ones((2, 4), np.float32)
    items = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx, scores = fused_topk(users, items, 10**12, device=device)  # no B x 10^12 allocation
    assert idx.shape == scores.shape == (2, 3)
    np.testing.assert_array_equal(idx, [[2, 1, 0], [2, 1, 0]])


@pytest.mark.parametrize("device", DEVICES)
def test_fused_topk_breaks_ties_by_lower_index(device):
    users = np.ones((9, 2), np.float32)  # 9 users: the packed (multi-user) path too
    items = np.ones((1000, 2), np.float32)
    idx, scores = fused_topk(users, items, 7, device=device)
    np.testing.assert_array_equal(idx, np.tile(np.arange(7), (9, 1)))
    assert (scores == 2.0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_fused_topk_with_zero_users_returns_empty_arrays(device):
    idx, scores = fused_topk(
        np.zeros((0, 4), np.float32), np.ones((10, 4), np.float32), 3, device=device
    )
    assert idx.shape == (0, 3) and idx.dtype == np.int64
    assert scores.shape == (0, 3) and scores.dtype == np.float32


@pytest.mark.parametrize("device", DEVICES)
def test_fused_topk_fusion_weight_blends_the_two_spaces(device):
    # CF prefers item 0, content prefers item 1: alpha decides per user.
    user_cf = np.array([[1.0], [1.0]], np.float32)
    user_ct = np.array([[1.0], [1.0]], np.float32)
    item_cf = np.array([[1.0], [0.0]], np.float32)
    item_ct = np.array([[0.0], [1.0]], np.float32)
    idx, scores = fused_topk(
        user_cf, item_cf, 1, user_ct=user_ct, item_ct=item_ct,
        alpha=np.array([0.9, 0.1], np.float32), device=device,
    )
    np.testing.assert_array_equal(idx[:, 0], [0, 1])
    np.testing.assert_allclose(scores[:, 0], [0.9, 0.9], rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_items_with_nan_scores_are_never_returned(device):
    users = np.ones((1, 2), np.float32)
    items = np.array([[np.nan, 0], [1, 1], [5, 5], [np.inf, -np.inf]], np.float32)
    idx, scores = fused_topk(users, items, 4, device=device)
    np.testing.assert_array_equal(idx[0], [2, 1, -1, -1])
    np.testing.assert_allclose(scores[0, :2], [10.0, 2.0])


def test_non_contiguous_inputs_are_copied_and_give_the_same_answer():
    rng = np.random.default_rng(3)
    users = rng.standard_normal((6, 32)).astype(np.float32)
    items = rng.standard_normal((300, 32)).astype(np.float32)
    strided_users = np.asfortranarray(users)
    strided_items = np.repeat(items, 2, axis=1)[:, ::2]
    assert not strided_items.flags.c_contiguous
    a = fused_topk(users, items, 10)
    b = fused_topk(strided_users, strided_items, 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_fused_topk_is_deterministic_across_thread_counts():
    rng = np.random.default_rng(4)
    users = rng.standard_normal((20, 24)).astype(np.float32)
    items = rng.standard_normal((5000, 24)).astype(np.float32)
    runs = [fused_topk(users, items, 50, num_threads=t) for t in (1, 2, 5)]
    for idx, scores in runs[1:]:
        np.testing.assert_array_equal(idx, runs[0][0])
        np.testing.assert_array_equal(scores, runs[0][1])
