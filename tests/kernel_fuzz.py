"""Fuzzing the public kernel entry points: random shapes, dtypes, strides,
index values (in and out of range), k and alpha, including invalid ones.

The contract checked on every case: the kernel either raises TypeError or
ValueError (as the NumPy reference does, for the same reason), or returns
what the reference returns. Under AddressSanitizer (scripts/asan_fuzz.sh)
the same cases also prove that no call reads or writes out of bounds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from genre_serve.kernels import cross_features, cross_features_reference, fused_topk, fused_topk_reference
from tests_support import assert_same_topk

INT_DTYPES = [np.int64, np.int32, np.uint16, np.int8]
BAD_DTYPES = [np.float64, np.float16, np.int32]


def _matrix(rng, rows: int, cols: int, layout: str, dtype=np.float32):
    """A rows x cols array of `dtype`: C-contiguous, strided or transposed."""
    if layout == "strided":
        a = rng.standard_normal((rows, 2 * cols + 1))[:, ::2][:, :cols]
    elif layout == "transposed":
        a = np.ascontiguousarray(rng.standard_normal((cols, rows))).T
    else:
        a = rng.standard_normal((rows, cols))
    return (np.round(a * 4) / 4).astype(dtype)


FUSED_MISTAKES = ["none"] * 6 + [
    "dtype", "k<=0", "k not an int", "ct rows", "alpha NaN", "alpha range", "alpha length",
    "exclude range", "exclude dtype", "exclude rows", "csr indptr", "dims differ",
]


@st.composite
def fused_cases(draw):
    """Valid calls of every shape and layout, and calls with exactly one mistake."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mistake = draw(st.sampled_from(FUSED_MISTAKES))
    batch, num_items = draw(st.integers(0, 6)), draw(st.integers(1, 300))
    dim_cf, dim_ct = draw(st.integers(1, 40)), draw(st.sampled_from([0, 1, 7, 33]))
    layout = lambda: draw(st.sampled_from(["c", "c", "strided", "transposed"]))  # noqa: E731
    if mistake in ("ct rows", "alpha NaN", "alpha range", "alpha length"):
        dim_ct = max(dim_ct, 3)
    args = {
        "user_cf": _matrix(rng, batch, dim_cf, layout()),
        "item_cf": _matrix(rng, num_items, dim_cf + (mistake == "dims differ"), layout(),
                           draw(st.sampled_from(BAD_DTYPES)) if mistake == "dtype" else np.float32),
        "k": draw(st.one_of(st.integers(1, num_items + 40), st.sampled_from([10**9, 2**31]))),
    }
    if mistake == "k<=0":
        args["k"] = draw(st.integers(-3, 0))
    elif mistake == "k not an int":
        args["k"] = draw(st.sampled_from([2.5, True, "3", None]))
    if dim_ct:
        args["user_ct"] = _matrix(rng, batch, dim_ct, layout())
        args["item_ct"] = _matrix(rng, num_items + (mistake == "ct rows"), dim_ct, layout())
        args["alpha"] = draw(st.one_of(st.floats(0, 1), st.just(rng.random(batch).astype(np.float32))))
        if mistake == "alpha NaN":
            args["alpha"] = float("nan")
        elif mistake == "alpha range":
            args["alpha"] = draw(st.sampled_from([-0.25, 1.5]))
        elif mistake == "alpha length":
            args["alpha"] = rng.random(batch + 1).astype(np.float32)
    how = draw(st.sampled_from(["none", "lists", "csr"]))
    if mistake in ("exclude range", "exclude dtype", "exclude rows", "csr indptr"):
        how = "csr" if mistake == "csr indptr" else "lists"
    if how != "none":
        lo, hi = (-3, num_items + 3) if mistake == "exclude range" else (0, num_items)
        dtype = np.float32 if mistake == "exclude dtype" else draw(st.sampled_from(INT_DTYPES))
        if np.iinfo(np.int8).max < hi and dtype in (np.int8,):
            dtype = np.int64
        rows = [rng.integers(lo, hi, rng.integers(0, 2 * num_items + 2)).astype(dtype)
                for _ in range(batch + (mistake == "exclude rows"))]
        if mistake == "exclude range" and rows:
            rows[0] = np.append(rows[0], draw(st.sampled_from([-1, num_items]))).astype(np.int64)
        if how == "lists":
            args["exclude"] = rows
        else:
            indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
            if mistake == "csr indptr":
                indptr[-1] += 1  # an indptr that lies about the indices
            flat = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
            args["exclude_csr"] = (indptr, flat)
    args["num_threads"] = draw(st.sampled_from([None, 1, 2]))
    return args


def _same_verdict(kernel, reference, args: dict, device: str = "auto"):
    """Runs the reference, then the kernel on `device`: both raise the same
    TypeError or ValueError (returns None), or both return ((kernel result,
    reference result))."""
    reference_args = {k: v for k, v in args.items() if k != "num_threads"}
    args = args | {"device": device}
    try:
        want = reference(**reference_args)
    except (TypeError, ValueError) as expected:
        try:
            kernel(**args)
        except type(expected):
            return None
        raise AssertionError(f"the reference raised {expected!r}; the kernel did not raise the same") from None
    return kernel(**args), want


def check_fused(args: dict, device: str = "auto") -> str:
    """'raised' or 'returned'; fails when the kernel and the reference disagree."""
    both = _same_verdict(fused_topk, fused_topk_reference, args, device)
    if both is None:
        return "raised"
    got, want = both
    problem = {k: np.ascontiguousarray(v, np.float32) for k, v in args.items()
               if k in ("user_cf", "item_cf", "user_ct", "item_ct")}
    problem |= {k: args[k] for k in ("k", "alpha", "exclude", "exclude_csr") if k in args}
    assert_same_topk(problem, False, got, want)
    return "returned"


CROSS_MISTAKES = ["none"] * 5 + ["candidate range", "candidate dtype", "user rows", "dims differ", "user dtype",
                                  "scores shape", "scores dtype"]


@st.composite
def cross_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mistake = draw(st.sampled_from(CROSS_MISTAKES))
    batch, num_items = draw(st.integers(0, 5)), draw(st.integers(1, 200))
    dim, k = draw(st.integers(1, 48)), draw(st.integers(0, 30))
    layout = lambda: draw(st.sampled_from(["c", "c", "strided", "transposed"]))  # noqa: E731
    candidates = rng.integers(-1, num_items, (batch, 2 * k))  # -1: padding, skipped
    if mistake == "candidate range" and candidates.size:
        candidates.flat[rng.integers(candidates.size)] = draw(st.sampled_from([-2, num_items, 2**40]))
    candidates = candidates.astype(np.float32 if mistake == "candidate dtype" else np.int64)
    if draw(st.booleans()):
        candidates = candidates[:, ::2]  # strided
    args = {
        "user": _matrix(rng, batch + (mistake == "user rows"), dim, layout(),
                        np.float64 if mistake == "user dtype" else np.float32),
        "items": _matrix(rng, num_items, dim + (mistake == "dims differ"), layout()),
        "candidates": candidates,
    }
    if draw(st.booleans()) or mistake.startswith("scores"):
        shape = candidates.shape if mistake != "scores shape" else (candidates.shape[0], candidates.shape[1] + 1)
        args["scores"] = rng.standard_normal(shape).astype(np.float64 if mistake == "scores dtype" else np.float32)
    args["num_threads"] = draw(st.sampled_from([None, 1, 2]))
    return args


def check_cross(args: dict, device: str = "auto") -> str:
    both = _same_verdict(cross_features, cross_features_reference, args, device)
    if both is None:
        return "raised"
    got, want = both
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    return "returned"
