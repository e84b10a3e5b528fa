"""Argument checks shared by the CPU and CUDA kernels and the NumPy reference.

Python checks, C++ computes: every rule of the public contract is enforced
here with a ``TypeError``/``ValueError`` that names the argument, so the
native code only ever sees well-formed, C-contiguous arrays.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A float32 or integer array: numpy, or an object with __cuda_array_interface__
# (torch/cupy tensors, genre_serve._C.DeviceArray). Checked here, so typed loosely.
Array = Any


def is_device_array(x: Any) -> bool:
    return hasattr(x, "__cuda_array_interface__")


@dataclass(frozen=True)
class ArraySpec:
    """Shape and dtype of an array, host (numpy) or device (CUDA array interface)."""

    shape: tuple[int, ...]
    dtype: np.dtype


def spec_of(name: str, x: Any) -> ArraySpec:
    if isinstance(x, np.ndarray):
        return ArraySpec(tuple(x.shape), x.dtype)
    if is_device_array(x):
        iface = x.__cuda_array_interface__
        strides = iface.get("strides")
        shape = tuple(int(s) for s in iface["shape"])
        dtype = np.dtype(iface["typestr"])
        if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
            raise ValueError(f"{name}: device arrays must be C-contiguous")
        return ArraySpec(shape, dtype)
    raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def float_matrix(name: str, x: Any) -> ArraySpec:
    """A float32 rank-2 array; numpy ones are checked, device ones described."""
    spec = spec_of(name, x)
    if spec.dtype != np.float32:
        raise TypeError(f"{name}: must be float32, got {spec.dtype}")
    if len(spec.shape) != 2:
        raise ValueError(f"{name}: must have rank 2, got shape {spec.shape}")
    return spec


def contiguous(x: Any) -> Any:
    """Non-contiguous numpy inputs are copied (documented); device arrays pass through."""
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k: must be an integer, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k: must be positive, got {k}")
    return int(k)


def check_finite_rows(name: str, x: Any) -> None:
    """Raises naming the first row of a numpy matrix holding NaN or inf."""
    if isinstance(x, np.ndarray) and x.size and not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{name}: row {bad} contains NaN or inf")


def fusion_weights(alpha: Any, batch: int, fused: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-user weights (w_cf, w_ct) as float32 [B]; (1, 0) without content."""
    if isinstance(alpha, bool):
        raise TypeError("alpha: must be a float or a float array, got bool")
    if isinstance(alpha, numbers.Real):
        a = np.full(batch, float(alpha), dtype=np.float32)
    elif isinstance(alpha, np.ndarray):
        if not np.issubdtype(alpha.dtype, np.floating):
            raise TypeError(f"alpha: array must be floating point, got {alpha.dtype}")
        if alpha.shape != (batch,):
            raise ValueError(f"alpha: array must have shape ({batch},), got {alpha.shape}")
        a = alpha.astype(np.float32)
    else:
        raise TypeError(f"alpha: must be a float or a float32 array [B], got {type(alpha).__name__}")
    if np.isnan(a).any():
        raise ValueError("alpha: must not be NaN")
    if ((a < 0) | (a > 1)).any():
        raise ValueError("alpha: must lie in [0, 1]")
    if not fused:
        return np.ones(batch, np.float32), np.zeros(batch, np.float32)
    return a, (np.float32(1) - a).astype(np.float32)


def exclusion_csr(
    exclude: Sequence[Any] | None,
    exclude_csr: Any,  # (indptr, indices) or None; anything else is refused below
    batch: int,
    num_items: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Items each user must not get back, as CSR with every segment sorted."""
    if exclude is not None and exclude_csr is not None:
        raise ValueError("exclude and exclude_csr: give one, not both")
    if exclude is None and exclude_csr is None:
        return None
    if exclude is not None:
        rows = list(exclude)
        if len(rows) != batch:
            raise ValueError(f"exclude: needs one array per user ({batch}), got {len(rows)}")
        arrays = []
        for b, row in enumerate(rows):
            arr = np.asarray(row)
            if arr.size == 0:
                arr = arr.astype(np.int64).reshape(0)
            if arr.ndim != 1:
                raise ValueError(f"exclude[{b}]: must be one-dimensional, got shape {arr.shape}")
            if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"exclude[{b}]: must hold integers, got {arr.dtype}")
            arrays.append(arr.astype(np.int64, copy=False))
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=batch)
        indptr = np.zeros(batch + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    else:
        try:
            indptr_in, indices_in = exclude_csr
        except (TypeError, ValueError):
            raise TypeError("exclude_csr: must be a pair (indptr, indices)") from None
        indptr = np.asarray(indptr_in)
        indices = np.asarray(indices_in)
        for name, arr in (("exclude_csr indptr", indptr), ("exclude_csr indices", indices)):
            if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"{name}: must hold integers, got {arr.dtype}")
            if arr.ndim != 1:
                raise ValueError(f"{name}: must be one-dimensional, got shape {arr.shape}")
        indptr = indptr.astype(np.int64)
        indices = indices.astype(np.int64)
        if indptr.shape != (batch + 1,):
            raise ValueError(f"exclude_csr indptr: must have length B + 1 = {batch + 1}, got {indptr.size}")
        if indptr[0] != 0 or indptr[-1] != indices.size or (np.diff(indptr) < 0).any():
            raise ValueError(
                "exclude_csr indptr: must start at 0, never decrease and end at len(indices)"
            )
        lengths = np.diff(indptr)
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= num_items:
            bad = lo if lo < 0 else hi
            raise ValueError(f"exclude: index {bad} is outside [0, {num_items})")
        # Sort within each segment in one vectorised sort: key = user * N + item.
        owner = np.repeat(np.arange(batch, dtype=np.int64), lengths)
        keys = np.sort(owner * np.int64(num_items) + indices)
        indices = keys - owner * np.int64(num_items)
    return indptr, np.ascontiguousarray(indices)


@dataclass(frozen=True)
class FusedProblem:
    """A validated fused_topk call, ready for any backend."""

    user_cf: Any
    item_cf: Any
    user_ct: Any
    item_ct: Any
    w_cf: np.ndarray
    w_ct: np.ndarray
    k: int
    exclude: tuple[np.ndarray, np.ndarray] | None
    batch: int
    num_items: int
    dim_cf: int
    dim_ct: int

    @property
    def read_cf(self) -> bool:
        # With no user at all nothing is read; keep CF so that N is known.
        return self.item_ct is None or self.batch == 0 or bool((self.w_cf != 0).any())

    @property
    def read_ct(self) -> bool:
        return self.item_ct is not None and bool((self.w_ct != 0).any())


def fused_problem(
    user_cf: Array, item_cf: Array, k: int, user_ct: Array | None, item_ct: Array | None,
    alpha: float | np.ndarray, exclude: Sequence[Any] | None, exclude_csr: Any, check_finite: bool = False,
) -> FusedProblem:
    ucf = float_matrix("user_cf", user_cf)
    icf = float_matrix("item_cf", item_cf)
    if ucf.shape[1] != icf.shape[1]:
        raise ValueError(
            f"user_cf and item_cf: dimensions differ ({ucf.shape[1]} vs {icf.shape[1]})"
        )
    batch, num_items = ucf.shape[0], icf.shape[0]
    if (user_ct is None) != (item_ct is None):
        raise ValueError("user_ct and item_ct: give both content arrays or neither")
    fused = user_ct is not None
    if fused:
        uct = float_matrix("user_ct", user_ct)
        ict = float_matrix("item_ct", item_ct)
        if uct.shape[0] != batch:
            raise ValueError(f"user_ct: has {uct.shape[0]} rows, user_cf has {batch}")
        if ict.shape[0] != num_items:
            raise ValueError(f"item_ct: has {ict.shape[0]} rows, item_cf has {num_items}")
        if uct.shape[1] != ict.shape[1]:
            raise ValueError(
                f"user_ct and item_ct: dimensions differ ({uct.shape[1]} vs {ict.shape[1]})"
            )
    for name, spec in (("user_cf", ucf), ("item_cf", icf)):
        if spec.shape[1] == 0:
            raise ValueError(f"{name}: needs at least one column")
    # No row can hold more than the catalog: a k beyond it (10**9 by mistake)
    # must not allocate B x k outputs.
    k = min(check_k(k), max(num_items, 1))
    w_cf, w_ct = fusion_weights(alpha, batch, fused)
    # User rows are small (B x d): checking them is free, and a NaN there would
    # silently empty that user's answer. Item tables are checked on request
    # only: that is a second full pass over a bandwidth-bound kernel's input.
    checked = [("user_cf", user_cf), ("user_ct", user_ct)]
    if check_finite:
        checked += [("item_cf", item_cf), ("item_ct", item_ct)]
    for name, arr in checked:
        check_finite_rows(name, arr)
    return FusedProblem(
        user_cf=contiguous(user_cf),
        item_cf=contiguous(item_cf),
        user_ct=contiguous(user_ct) if fused else None,
        item_ct=contiguous(item_ct) if fused else None,
        w_cf=w_cf,
        w_ct=w_ct,
        k=k,
        exclude=exclusion_csr(exclude, exclude_csr, batch, num_items),
        batch=batch,
        num_items=num_items,
        dim_cf=ucf.shape[1],
        dim_ct=uct.shape[1] if fused else 0,
    )


@dataclass(frozen=True)
class CrossProblem:
    user: Any
    items: Any
    candidates: np.ndarray
    scores: Any
    out_shape: tuple[int, int, int]
    num_items: int
    dim: int


def cross_problem(user: Array, items: Array, candidates: Array, scores: Array | None) -> CrossProblem:
    u = float_matrix("user", user)
    it = float_matrix("items", items)
    if u.shape[1] != it.shape[1]:
        raise ValueError(f"user and items: dimensions differ ({u.shape[1]} vs {it.shape[1]})")
    cand = candidates
    if is_device_array(cand):
        raise TypeError("candidates: must be a host (numpy) array; it is validated on the host")
    if not isinstance(cand, np.ndarray):
        raise TypeError(f"candidates: expected a numpy array, got {type(cand).__name__}")
    if cand.dtype == bool or not np.issubdtype(cand.dtype, np.integer):
        raise TypeError(f"candidates: must hold integers (int64), got {cand.dtype}")
    if cand.ndim != 2:
        raise ValueError(f"candidates: must have rank 2 [B, K], got shape {cand.shape}")
    if cand.shape[0] != u.shape[0]:
        raise ValueError(f"candidates: has {cand.shape[0]} rows, user has {u.shape[0]}")
    cand = np.ascontiguousarray(cand, dtype=np.int64)
    if cand.size:
        lo, hi = int(cand.min()), int(cand.max())
        if lo < -1 or hi >= it.shape[0]:
            bad = lo if lo < -1 else hi
            raise ValueError(f"candidates: index {bad} is outside [-1, {it.shape[0]})")
    if scores is not None:
        s = spec_of("scores", scores)
        if s.dtype != np.float32:
            raise TypeError(f"scores: must be float32, got {s.dtype}")
        if s.shape != cand.shape:
            raise ValueError(f"scores: must have the candidates' shape {cand.shape}, got {s.shape}")
    features = 4 * u.shape[1] + (1 if scores is not None else 0)
    return CrossProblem(
        user=contiguous(user),
        items=contiguous(items),
        candidates=cand,
        scores=contiguous(scores) if scores is not None else None,
        out_shape=(cand.shape[0], cand.shape[1], features),
        num_items=it.shape[0],
        dim=u.shape[1],
    )


def check_out(out: Any, shape: tuple[int, int, int]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy array, got {type(out).__name__}")
    if out.dtype != np.float32:
        raise TypeError(f"out: must be float32, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out: must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: must be a writeable C-contiguous array")
    return out
