"""Type stub of genre_serve._C, the private compiled module (csrc/bindings.cpp).

Use the wrappers in :mod:`genre_serve.kernels`: they validate every argument
(shapes, dtypes, contiguity, index ranges) and allocate outputs. The functions
here re-check what they rely on and raise ``ValueError``/``TypeError``.

Shapes: B users, N items, Dc / Dt the CF / content widths, k results per
user, K candidates per user, D = the cross-feature input width.
"""

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

def fused_topk_cpu(
    user_cf: F32,
    item_cf: F32 | None,
    user_ct: F32 | None,
    item_ct: F32 | None,
    w_cf: F32,
    w_ct: F32,
    k: int,
    exclude_indptr: I64 | None,
    exclude_indices: I64 | None,
    num_threads: int = 0,
) -> tuple[I64, F32]:
    """Top-k per user of ``w_cf[b] * <user_cf[b], item_cf[n]> + w_ct[b] * <user_ct[b], item_ct[n]>``.

    user_cf float32 [B, Dc]; item_cf float32 [N, Dc] or None (CF space not
    read); user_ct float32 [B, Dt] and item_ct float32 [N, Dt], or None;
    w_cf, w_ct float32 [B]; exclude as CSR: indptr int64 [B + 1], indices
    int64 [M] sorted within each row. All C-contiguous. Returns indices int64
    [B, k] and scores float32 [B, k], best first, ties by lower index, padded
    with -1 / -inf. The GIL is released; num_threads 0: OpenMP's default.
    """

def cross_features_cpu(
    user: F32,
    items: F32,
    candidates: I64,
    scores: F32 | None,
    out: F32,
    num_threads: int = 0,
) -> None:
    """Writes ``[u, v, u*v, |u-v| (, score)]`` into out float32 [B, K, 4D (+1)].

    user float32 [B, D]; items float32 [N, D]; candidates int64 [B, K] in
    [-1, N) (-1: an all-zero row); scores float32 [B, K] or None.
    """

def num_threads() -> int:
    """OpenMP's maximum thread count in this process."""

def has_cuda() -> bool:
    """Whether the CUDA kernels were compiled in."""

def cuda_device_count() -> int:
    """Visible CUDA devices (0 without a CUDA build)."""

def cuda_gemm_available() -> bool:
    """Whether fused_topk can score batches with cuBLAS (loaded at run time)
    on the current device; False without a CUDA build or a GPU. Batches of 2
    users and more (GENRE_SERVE_CUDA_GEMM_MIN_BATCH) then go through it."""

# Built only with CUDA (has_cuda() is True). Vectors and tables are device
# pointers (integers, 0 for None) the wrapper took from __cuda_array_interface__;
# the small per-call inputs are host numpy arrays, staged to the device by the
# extension; results come back as host numpy arrays.
def fused_topk_cuda(
    *,
    user_cf: int,
    item_cf: int,
    dim_cf: int,
    user_ct: int,
    item_ct: int,
    dim_ct: int,
    w_cf: F32,
    w_ct: F32,
    batch: int,
    num_items: int,
    k: int,
    exclude_indptr: I64 | None,
    exclude_indices: I64 | None,
) -> tuple[I64, F32]:
    """fused_topk_cpu on device tables: float32 user_cf [batch, dim_cf],
    item_cf [num_items, dim_cf], user_ct [batch, dim_ct], item_ct
    [num_items, dim_ct] on the device; host w_cf / w_ct [batch] and exclude
    CSR int64 (checked like fused_topk_cpu's); k <= 2048.
    Returns host int64 / float32 [batch, k]."""

def cross_features_cuda(
    *,
    user: int,
    items: int,
    candidates: I64,
    scores: int | F32 | None,
    batch: int,
    num_items: int,
    dim: int,
    out: F32,
) -> None:
    """cross_features_cpu on device user float32 [batch, dim] and items
    [num_items, dim], with host candidates int64 [batch, num_candidates]
    (range-checked) and scores float32 [batch, num_candidates] as a device
    pointer, a host array or None; written into the host array out."""

class DeviceArray:
    """A numpy array copied to the GPU, freed with the object; exposes
    ``__cuda_array_interface__`` (torch/cupy can view it) so an item table can
    stay on the device across calls."""

    def __init__(self, host: npt.NDArray[np.generic]) -> None: ...
    @property
    def ptr(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def __cuda_array_interface__(self) -> dict[str, object]: ...
    def to_numpy(self) -> npt.NDArray[np.generic]: ...
