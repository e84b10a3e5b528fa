"""The CUDA kernels at the sizes a server meets, against the NumPy reference.

The device-parametrized tests beside this one run CUDA on small catalogs
(one split per user, no pool overflow). These cover what only large inputs
reach: many splits per user and the merge across them, the pool cut back
to k many times over, ties across split borders, k at the 2048 limit, inputs
that stay on the device (torch tensors, DeviceArray), and repeated calls on
the same input (a race shows as answers that move); each through both ways
fused_topk scores (the scan kernel, and cuBLAS tiles for batches where
cuBLAS loads). Skipped without a GPU.
"""

import os

import numpy as np
import pytest

# A CUDA build of torch loads libcublas: imported at collection, before any
# fused_topk call looks for cuBLAS (it looks once per process).
import torch
from hypothesis import HealthCheck, given, settings

from genre_serve import _C
from genre_serve.kernels import HAS_CUDA, cross_features, cross_features_reference, fused_topk, fused_topk_reference
from kernel_fuzz import check_cross, check_fused, cross_cases, fused_cases
from tests_support import assert_same_topk, random_problem

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA build and a visible GPU")]

# GENRE_SERVE_CUDA_GEMM_MIN_BATCH, read at every call: 1 sends every batch
# through cuBLAS's tiles (where it loads), a huge value through the scan kernel.
PATHS = {"scan": "1000000000", "gemm": "1"}


@pytest.fixture(params=sorted(PATHS))
def scoring_path(request, monkeypatch):
    if request.param == "gemm" and not _C.cuda_gemm_available():
        pytest.skip("cuBLAS could not be loaded here")
    monkeypatch.setenv("GENRE_SERVE_CUDA_GEMM_MIN_BATCH", PATHS[request.param])
    return request.param

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

LARGE = [
    # batch, items, dim_cf, dim_ct, k, exclude, integer-valued (exact, with ties)
    (1, 100_003, 64, 0, 10, None, False),
    (1, 100_003, 16, 8, 100, "few", True),
    (3, 200_000, 32, 16, 100, "many", False),
    (17, 50_000, 8, 8, 2048, "csr", True),
    (5, 30_000, 4, 0, 1000, "few", True),
    (64, 20_000, 48, 0, 100, "few", False),
    (4, 1_000_000, 64, 0, 100, "few", False),
]


@pytest.mark.parametrize("batch,num_items,dim_cf,dim_ct,k,exclude,exact", LARGE)
def test_large_catalogs_match_the_reference(batch, num_items, dim_cf, dim_ct, k, exclude, exact, scoring_path):
    problem, exact = random_problem(
        seed=num_items + k, batch=batch, num_items=num_items, dim_cf=dim_cf, dim_ct=dim_ct, k=k,
        alpha="array", exclude=exclude, integer_valued=exact,
    )
    got = fused_topk(**problem, device="cuda")
    assert_same_topk(problem, exact, got, fused_topk_reference(**problem))


def _torch_cuda():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")


def test_device_tensors_are_read_in_place_and_give_the_host_answer(scoring_path):
    _torch_cuda()
    problem, _ = random_problem(seed=7, batch=9, num_items=70_001, dim_cf=32, dim_ct=16, k=50,
                                alpha="array", exclude="few", integer_valued=False)
    on_device = {name: torch.from_numpy(problem[name]).cuda() for name in ("user_cf", "item_cf", "user_ct", "item_ct")}
    got = fused_topk(**(problem | on_device))  # device="auto" follows the data
    assert_same_topk(problem, False, got, fused_topk_reference(**problem))
    table = _C.DeviceArray(problem["item_cf"])
    got_cf = fused_topk(on_device["user_cf"], table, 20, device="cuda")
    want_cf = fused_topk_reference(problem["user_cf"], problem["item_cf"], 20)
    assert_same_topk({"user_cf": problem["user_cf"], "item_cf": problem["item_cf"], "k": 20}, False, got_cf, want_cf)
    np.testing.assert_array_equal(table.to_numpy(), problem["item_cf"])


def test_repeated_calls_give_identical_answers(scoring_path):
    """Bit-identical every time: shared-memory races would make answers move."""
    problem, _ = random_problem(seed=11, batch=32, num_items=300_000, dim_cf=24, dim_ct=8, k=256,
                                alpha="array", exclude="many", integer_valued=True)
    first = fused_topk(**problem, device="cuda")
    for _ in range(20):
        again = fused_topk(**problem, device="cuda")
        np.testing.assert_array_equal(again[0], first[0])
        np.testing.assert_array_equal(again[1], first[1])
    assert_same_topk(problem, True, first, fused_topk_reference(**problem))


def test_k_beyond_the_cuda_limit_is_a_clear_error():
    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((2, 8), np.float32), rng.standard_normal((5000, 8), np.float32)
    with pytest.raises(ValueError, match="at most 2048"):
        fused_topk(users, items, 2049, device="cuda")


def test_cross_features_on_device_inputs_write_every_element():
    _torch_cuda()
    rng = np.random.default_rng(3)
    user = rng.standard_normal((256, 64), np.float32)
    items = rng.standard_normal((100_000, 64), np.float32)
    candidates = rng.integers(-1, items.shape[0], (256, 200))
    scores = rng.standard_normal(candidates.shape).astype(np.float32)
    want = cross_features_reference(user, items, candidates, scores=scores)
    for score_arg in (scores, torch.from_numpy(scores).cuda()):
        out = np.full(want.shape, np.nan, np.float32)  # poisoned: every element must be written
        got = cross_features(torch.from_numpy(user).cuda(), torch.from_numpy(items).cuda(), candidates,
                             scores=score_arg, out=out)
        assert got is out
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@FUZZ
@given(fused_cases())
def test_fused_topk_fuzz_on_cuda(args):
    check_fused(args, device="cuda")


@FUZZ
@given(fused_cases())
def test_fused_topk_fuzz_on_cuda_through_cublas(args):
    if not _C.cuda_gemm_available():
        pytest.skip("cuBLAS could not be loaded here")
    os.environ["GENRE_SERVE_CUDA_GEMM_MIN_BATCH"] = "1"  # hypothesis runs many examples per fixture
    try:
        check_fused(args, device="cuda")
    finally:
        del os.environ["GENRE_SERVE_CUDA_GEMM_MIN_BATCH"]


def test_cublas_is_found_once_torch_has_loaded_it():
    """torch's CUDA build loads libcublas: with it in the process, batches go
    through the tiles (gpu_check.sh shows whether it is found without torch)."""
    _torch_cuda()
    assert _C.cuda_gemm_available()


@FUZZ
@given(cross_cases())
def test_cross_features_fuzz_on_cuda(args):
    check_cross(args, device="cuda")
