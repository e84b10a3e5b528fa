"""Bad input raises TypeError/ValueError naming the argument; nothing crashes."""

import numpy as np
import pytest

from genre_serve import _C
from genre_serve.errors import CudaUnavailableError
from genre_serve.kernels import HAS_CUDA, cross_features, fused_topk

U = np.ones((2, 4), np.float32)
I = np.ones((10, 4), np.float32)  # noqa: E741 - U/I: users and items, as in the kernels' docs
UC = np.ones((2, 3), np.float32)
IC = np.ones((10, 3), np.float32)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(user_cf=U.astype(np.float64)), TypeError, "user_cf"),
        (dict(item_cf=I.astype(np.float16)), TypeError, "item_cf"),
        (dict(user_cf=[[1.0, 2.0]]), TypeError, "user_cf"),
        (dict(user_cf=np.ones(4, np.float32)), ValueError, "user_cf"),
        (dict(item_cf=np.ones((10, 4, 1), np.float32)), ValueError, "item_cf"),
        (dict(item_cf=np.ones((10, 5), np.float32)), ValueError, "item_cf"),
        (dict(k=0), ValueError, "k"),
        (dict(k=-3), ValueError, "k"),
        (dict(k=2.0), TypeError, "k"),
        (dict(k=True), TypeError, "k"),
        (dict(user_ct=UC), ValueError, "item_ct"),
        (dict(user_ct=UC, item_ct=np.ones((9, 3), np.float32)), ValueError, "item_ct"),
        (dict(user_ct=np.ones((3, 3), np.float32), item_ct=IC), ValueError, "user_ct"),
        (dict(user_ct=UC, item_ct=np.ones((10, 2), np.float32)), ValueError, "user_ct"),
        (dict(user_ct=UC, item_ct=IC, alpha=1.5), ValueError, "alpha"),
        (dict(user_ct=UC, item_ct=IC, alpha=-0.1), ValueError, "alpha"),
        (dict(user_ct=UC, item_ct=IC, alpha=float("nan")), ValueError, "alpha"),
        (dict(user_ct=UC, item_ct=IC, alpha=np.ones(3, np.float32)), ValueError, "alpha"),
        (dict(user_ct=UC, item_ct=IC, alpha="0.5"), TypeError, "alpha"),
        (dict(user_ct=UC, item_ct=IC, alpha=np.ones(2, np.int32)), TypeError, "alpha"),
        (dict(exclude=[[1]]), ValueError, "exclude"),
        (dict(exclude=[[1], [10]]), ValueError, "exclude"),
        (dict(exclude=[[1], [-1]]), ValueError, "exclude"),
        (dict(exclude=[[1.5], []]), TypeError, "exclude"),
        (dict(exclude=[[[1]], []]), ValueError, "exclude"),
        (dict(exclude=[[1], []], exclude_csr=([0, 1, 1], [1])), ValueError, "exclude"),
        (dict(exclude_csr=([0, 1], [1])), ValueError, "exclude_csr"),
        (dict(exclude_csr=([0, 2, 1], [1])), ValueError, "exclude_csr"),
        (dict(exclude_csr=([0, 1, 1], [12])), ValueError, "exclude"),
        (dict(exclude_csr=5), TypeError, "exclude_csr"),
        (dict(user_cf=np.array([[np.nan, 0, 0, 0], [0, 0, 0, 0]], np.float32)), ValueError, "user_cf"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(num_threads=-1), ValueError, "num_threads"),
    ],
)
def test_fused_topk_rejects_bad_input_naming_the_argument(kwargs, error, name):
    args = dict(user_cf=U, item_cf=I, k=3) | kwargs
    with pytest.raises(error, match=name):
        fused_topk(**args)


def test_item_tables_are_checked_for_nan_only_on_request():
    items = I.copy()
    items[7, 2] = np.nan
    idx, _ = fused_topk(U, items, 10)
    assert 7 not in idx
    with pytest.raises(ValueError, match="item_cf: row 7"):
        fused_topk(U, items, 3, check_finite=True)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(user=U.astype(np.float64)), TypeError, "user"),
        (dict(items=np.ones((10, 5), np.float32)), ValueError, "items"),
        (dict(candidates=np.zeros((2, 3), np.float32)), TypeError, "candidates"),
        (dict(candidates=np.zeros((3, 3), np.int64)), ValueError, "candidates"),
        (dict(candidates=np.zeros(3, np.int64)), ValueError, "candidates"),
        (dict(candidates=np.full((2, 3), 10)), ValueError, "candidates"),
        (dict(candidates=np.full((2, 3), -2)), ValueError, "candidates"),
        (dict(scores=np.zeros((2, 4), np.float32)), ValueError, "scores"),
        (dict(scores=np.zeros((2, 3), np.float64)), TypeError, "scores"),
        (dict(out=np.zeros((2, 3, 15), np.float32)), ValueError, "out"),
        (dict(out=np.zeros((2, 3, 16), np.float64)), TypeError, "out"),
        (dict(out=np.zeros((2, 3, 32), np.float32)[:, :, ::2]), ValueError, "out"),
    ],
)
def test_cross_features_rejects_bad_input_naming_the_argument(kwargs, error, name):
    args = dict(user=U, items=I, candidates=np.zeros((2, 3), np.int64)) | kwargs
    with pytest.raises(error, match=name):
        cross_features(**args)


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is present")
def test_asking_for_cuda_without_a_gpu_raises_a_clear_error():
    with pytest.raises(CudaUnavailableError, match="device='cuda'"):
        fused_topk(U, I, 3, device="cuda")
    with pytest.raises(CudaUnavailableError):
        cross_features(U, I, np.zeros((2, 3), np.int64), device="cuda")
    # Looking for cuBLAS without a GPU answers no, and leaves nothing broken behind.
    assert _C.cuda_gemm_available() is False
    assert fused_topk(U, I, 3)[0].shape == (2, 3)


def test_the_native_module_also_guards_what_it_relies_on():
    # Called directly (bypassing the wrappers), _C still raises instead of crashing.
    w = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="exclude"):
        _C.fused_topk_cpu(U, I, None, None, w, w * 0, 3, np.array([0, 1, 1]), np.array([99]))
    with pytest.raises(ValueError, match="not sorted"):
        _C.fused_topk_cpu(U, I, None, None, w, w * 0, 3, np.array([0, 2, 2]), np.array([5, 1]))
    with pytest.raises(ValueError, match="candidates"):
        _C.cross_features_cpu(U, I, np.full((2, 3), 99), None, np.zeros((2, 3, 16), np.float32))
    with pytest.raises(TypeError, match="user_cf"):
        _C.fused_topk_cpu(U.astype(np.float64), I, None, None, w, w, 3, None, None)
