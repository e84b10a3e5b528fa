"""CUDA kernel benchmark: fused_topk and cross_features on a GPU, next to torch
on the same GPU and our CPU kernels on the same host.

Everything runs in ONE process on the same inputs; the contenders take turns
within each round and the figure is the median over rounds after a warm-up.
Every call is timed end to end as a caller sees it: item tables already on the
device, the per-call host inputs (user vectors are on the device; exclusions
and candidates come from the host) copied over, and the answer back on the
host. The GPU's roofs (a device-to-device copy's bandwidth counting bytes read
and written, fp32 matmul FLOP/s with TF32 off) are measured in the same run.

    python benchmarks/bench_kernels_cuda.py [--quick] [--repeats 30] [--json PATH]
    python benchmarks/bench_kernels_cuda.py --device cpu --quick   # the harness itself, on any machine

Contenders:
  genre_cuda   genre_serve.kernels.fused_topk / cross_features, device="cuda"
               (batches of 2 users and more: cuBLAS score tiles + our selection)
  genre_scan   the same call held to the scan kernel (GENRE_SERVE_CUDA_GEMM_MIN_BATCH)
  genre_gemm   the same call sent through the cuBLAS tiles at any batch size
  torch        matmul (+ the second space), exclusions set to -inf, torch.topk
  torch_cat    one matmul over alpha-weighted concatenated vectors (the table
               concatenated once, outside the timing), then the same
  genre_cpu    our CPU kernels on this host's cores (fused_topk only)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genre_serve import _C
from genre_serve.kernels import cross_features, fused_topk

K = 100
ALPHA = 0.7
EXCLUDED_PER_USER = 100
QUICKSTART_ITEMS = 9_742  # ml-latest-small's catalog
TOPK_SIZES = [(1, QUICKSTART_ITEMS, 64), (1, 100_000, 64), (64, 100_000, 64), (256, 1_000_000, 64),
              (1, 1_000_000, 128), (1024, 1_000_000, 64)]
QUICK_TOPK_SIZES = [(1, 20_000, 32), (16, 20_000, 32)]
CROSS_SIZES = [(64, 100, 64), (256, 200, 128)]
QUICK_CROSS_SIZES = [(8, 20, 16)]
CROSS_ITEMS = 100_000
GEMM_MIN_BATCH_ENV = "GENRE_SERVE_CUDA_GEMM_MIN_BATCH"
GEMM_MIN_BATCH = 2  # the extension's default (csrc/cuda/kernels.cu)


def gemm_min_batch(fn, value: int):
    """fn with every fused_topk call inside under GENRE_SERVE_CUDA_GEMM_MIN_BATCH=value."""

    def run():
        before = os.environ.get(GEMM_MIN_BATCH_ENV)
        os.environ[GEMM_MIN_BATCH_ENV] = str(value)
        try:
            return fn()
        finally:
            if before is None:
                del os.environ[GEMM_MIN_BATCH_ENV]
            else:
                os.environ[GEMM_MIN_BATCH_ENV] = before

    return run


def cuda_gemm_available() -> bool:
    """False for builds older than the cuBLAS path too (the A/B's baseline)."""
    return bool(getattr(_C, "cuda_gemm_available", lambda: False)())


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fns: dict, repeats: int, device: str, warmup: int = 3) -> dict:
    """Median seconds per function; the functions take turns in every round so
    that a drift of the machine hits every contender alike, and the turn order
    rotates from round to round: on the H200, whoever ran first in every round
    read slow (benchmarks/RESULTS.md, runs made before the rotation)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def roofs(device: str) -> dict:
    """Copy bandwidth (bytes read + written per second) and fp32 matmul FLOP/s."""
    torch.backends.cuda.matmul.allow_tf32 = False
    n_copy = (1 << 29) if device == "cuda" else (1 << 24)  # 2 GiB of float32 on the GPU
    src = torch.rand(n_copy, device=device)
    dst = torch.empty_like(src)
    t_copy = timeit({"copy": lambda: dst.copy_(src)}, 10, device)["copy"]
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t_mm = timeit({"mm": lambda: a @ b}, 10, device)["mm"]
    return {"copy_GBps": 2 * n_copy * 4 / t_copy / 1e9, "fp32_matmul_TFLOPs": 2 * n**3 / t_mm / 1e12}


class TopKCase:
    def __init__(self, batch: int, items: int, dim: int, fused: bool, rng, device: str):
        self.batch, self.items, self.dim, self.fused, self.device = batch, items, dim, fused, device
        host = lambda rows: rng.standard_normal((rows, dim), dtype=np.float32)  # noqa: E731
        self.h_user_cf, self.h_item_cf = host(batch), host(items)
        self.user_cf, self.item_cf = (torch.from_numpy(a).to(device) for a in (self.h_user_cf, self.h_item_cf))
        self.kw: dict = {}
        if fused:
            self.h_user_ct, self.h_item_ct = host(batch), host(items)
            self.user_ct, self.item_ct = (torch.from_numpy(a).to(device) for a in (self.h_user_ct, self.h_item_ct))
            self.exclude = [np.sort(rng.choice(items, EXCLUDED_PER_USER, replace=False)) for _ in range(batch)]
            indptr = np.arange(batch + 1, dtype=np.int64) * EXCLUDED_PER_USER
            self.exclude_csr = (indptr, np.concatenate(self.exclude).astype(np.int64))

    @property
    def name(self) -> str:
        base = f"B={self.batch},N={self.items:,},d={self.dim}"
        return base + (f" fused(2x{self.dim},a={ALPHA})+excl{EXCLUDED_PER_USER}" if self.fused else "")

    @property
    def table_bytes(self) -> int:
        return self.items * self.dim * 4 * (2 if self.fused else 1)

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.items * self.dim * (2 if self.fused else 1)

    def genre_cuda(self):
        if self.device == "cpu":  # the harness check: the same call on host arrays
            return self.genre_cpu()
        kw = {}
        if self.fused:
            kw = dict(user_ct=self.user_ct, item_ct=self.item_ct, alpha=ALPHA, exclude_csr=self.exclude_csr)
        return lambda: fused_topk(self.user_cf, self.item_cf, K, device="cuda", **kw)

    def genre_scan(self):
        return gemm_min_batch(self.genre_cuda(), 2**31)

    def genre_gemm(self):
        return gemm_min_batch(self.genre_cuda(), 1)

    def genre_cpu(self):
        kw = {}
        if self.fused:
            kw = dict(user_ct=self.h_user_ct, item_ct=self.h_item_ct, alpha=ALPHA, exclude_csr=self.exclude_csr)
        return lambda: fused_topk(self.h_user_cf, self.h_item_cf, K, device="cpu", **kw)

    def _torch_topk(self, scores):
        if self.fused:
            indptr, cols = self.exclude_csr
            rows = torch.from_numpy(np.repeat(np.arange(self.batch), np.diff(indptr))).to(self.device)
            scores[rows, torch.from_numpy(cols).to(self.device)] = -float("inf")
        values, indices = torch.topk(scores, K, dim=1)
        return indices.cpu().numpy(), values.cpu().numpy()

    def torch(self):
        def run():
            s = self.user_cf @ self.item_cf.T
            if self.fused:
                s.mul_(ALPHA).add_(self.user_ct @ self.item_ct.T, alpha=1 - ALPHA)
            return self._torch_topk(s)

        return run

    def torch_cat(self):
        if not self.fused:
            return self.torch()
        table = torch.cat([self.item_cf, self.item_ct], dim=1)

        def run():
            query = torch.cat([ALPHA * self.user_cf, (1 - ALPHA) * self.user_ct], dim=1)
            return self._torch_topk(query @ table.T)

        return run


def agreement(got, want) -> float:
    """Share of the reference's top-K items that the contender also returned."""
    gi, wi = got[0], want[0]
    return float(np.mean([len(set(g.tolist()) & set(w.tolist())) / len(w) for g, w in zip(gi, wi)]))


def bench_topk(rng, repeats: int, device: str, roof: dict, sizes, fused: bool) -> list[dict]:
    rows = []
    for batch, items, dim in sizes:
        case = TopKCase(batch, items, dim, fused, rng, device)
        names = ("genre_cuda", "genre_scan", "genre_gemm", "torch", "torch_cat", "genre_cpu")
        contenders = {name: getattr(case, name)() for name in names}
        reference = contenders["torch"]()
        agree = {name: agreement(fn(), reference) for name, fn in contenders.items()}
        reps = max(5, repeats // 3) if batch * items >= 100_000_000 else repeats
        t = timeit(contenders, reps, device)
        min_batch = int(os.environ.get(GEMM_MIN_BATCH_ENV, GEMM_MIN_BATCH))  # as the extension reads it
        gemm = device == "cuda" and batch >= min_batch and cuda_gemm_available()
        row = {"case": case.name, "batch": batch, "items": items, "dim": dim, "fused": fused, "repeats": reps,
               "genre_cuda_path": "cublas tiles + select" if gemm else "scan",
               "ms": {n: 1e3 * s for n, s in t.items()}, "agreement_with_torch": agree,
               "genre_cuda_vs_torch": t["torch"] / t["genre_cuda"],
               "genre_cuda_vs_best_torch": min(t["torch"], t["torch_cat"]) / t["genre_cuda"],
               "genre_cuda_vs_genre_cpu": t["genre_cpu"] / t["genre_cuda"],
               "genre_cuda_tables_once_share_of_copy_roof":
                   case.table_bytes / t["genre_cuda"] / 1e9 / (roof["copy_GBps"] / 2),
               "genre_cuda_share_of_matmul_roof": case.flops / t["genre_cuda"] / 1e12 / roof["fp32_matmul_TFLOPs"]}
        rows.append(row)
        print(f"  {case.name}: " + ", ".join(f"{n} {v:.3f} ms" for n, v in row["ms"].items()), flush=True)
        del case, contenders
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def bench_cross(rng, repeats: int, device: str, sizes) -> list[dict]:
    rows = []
    items_h = rng.standard_normal((CROSS_ITEMS, max(d for _, _, d in sizes)), dtype=np.float32)
    for batch, cands, dim in sizes:
        user_h = rng.standard_normal((batch, dim), dtype=np.float32)
        table_h = np.ascontiguousarray(items_h[:, :dim])
        user, table = torch.from_numpy(user_h).to(device), torch.from_numpy(table_h).to(device)
        candidates = rng.integers(-1, CROSS_ITEMS, (batch, cands))
        scores = rng.standard_normal((batch, cands), dtype=np.float32)
        out = np.empty((batch, cands, 4 * dim + 1), np.float32)

        on_device = (user, table) if device == "cuda" else (user_h, table_h)

        def genre_cuda():
            return cross_features(*on_device, candidates, scores=scores, out=out, device=device)

        def torch_ops():
            c = torch.from_numpy(candidates).to(device)
            s = torch.from_numpy(scores).to(device)
            v = table[c.clamp(min=0)]
            u = user[:, None, :].expand_as(v)
            f = torch.cat([u, v, u * v, (u - v).abs(), s[..., None]], dim=-1)
            f = f * (c >= 0)[..., None]
            return f.cpu().numpy()

        np.testing.assert_allclose(genre_cuda(), torch_ops(), rtol=1e-6, atol=1e-6)
        t = timeit({"genre_cuda": genre_cuda, "torch": torch_ops}, repeats, device)
        name = f"B={batch},K={cands},d={dim}"
        rows.append({"case": name, "ms": {n: 1e3 * s for n, s in t.items()},
                     "genre_cuda_vs_torch": t["torch"] / t["genre_cuda"], "out_MB": out.nbytes / 1e6})
        print(f"  cross {name}: " + ", ".join(f"{n} {v:.3f} ms" for n, v in rows[-1]["ms"].items()), flush=True)
    return rows


def machine(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu_threads": torch.get_num_threads(), "device": device, "cuda_gemm_available": cuda_gemm_available()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "sms": props.multi_processor_count, "gpu_memory_GiB": props.total_memory / 2**30,
                 "cuda": torch.version.cuda}
    return info


def print_tables(result: dict) -> None:
    r = result["roofs"]
    print(f"\nroofs: copy {r['copy_GBps']:.0f} GB/s (read+write), fp32 matmul {r['fp32_matmul_TFLOPs']:.1f} TFLOP/s")
    print("\n| case | genre_cuda ms | path | genre_scan ms | genre_gemm ms | torch ms | torch_cat ms | genre_cpu ms "
          "| vs best torch | vs genre_cpu | tables once, share of read roof | share of matmul roof |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in result["topk"]:
        ms = row["ms"]
        print(f"| {row['case']} | {ms['genre_cuda']:.3f} | {row['genre_cuda_path']} | {ms['genre_scan']:.3f} "
              f"| {ms['genre_gemm']:.3f} "
              f"| {ms['torch']:.3f} | {ms['torch_cat']:.3f} "
              f"| {ms['genre_cpu']:.3f} | {row['genre_cuda_vs_best_torch']:.2f}x "
              f"| {row['genre_cuda_vs_genre_cpu']:.1f}x "
              f"| {row['genre_cuda_tables_once_share_of_copy_roof']:.0%} "
              f"| {row['genre_cuda_share_of_matmul_roof']:.0%} |")
    print("\n| cross features | genre_cuda ms | torch ms | vs torch | output MB |")
    print("|---|---:|---:|---:|---:|")
    for row in result["cross"]:
        print(f"| {row['case']} | {row['ms']['genre_cuda']:.3f} | {row['ms']['torch']:.3f} "
              f"| {row['genre_cuda_vs_torch']:.2f}x | {row['out_MB']:.1f} |")
    worst = min(min(row["agreement_with_torch"].values()) for row in result["topk"])
    print(f"\nlowest top-{K} agreement of any contender with torch: {worst:.4f}")


def sizes_arg(text: str) -> list[tuple[int, int, int]]:
    try:
        sizes = [tuple(int(v) for v in part.split("x")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BxNxD,... got {text!r}") from None
    if any(len(size) != 3 or min(size) < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"expected BxNxD,... with positive numbers, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu runs the harness without a GPU (every 'cuda' contender then runs on the CPU)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_kernels_cuda.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--topk-sizes", type=sizes_arg, help="BxNxD,... instead of the default top-K sizes")
    ap.add_argument("--cross-sizes", type=sizes_arg, help="BxKxD,... instead of the default cross-feature sizes")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no GPU visible to torch: run with --device cpu to check the harness", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    topk_sizes = args.topk_sizes or (QUICK_TOPK_SIZES if args.quick else TOPK_SIZES)
    cross_sizes = args.cross_sizes or (QUICK_CROSS_SIZES if args.quick else CROSS_SIZES)
    result: dict = {"machine": machine(args.device), "k": K, "alpha": ALPHA, "excluded_per_user": EXCLUDED_PER_USER,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    result["roofs"] = roofs(args.device)
    print(f"machine: {result['machine']}\nroofs: {result['roofs']}", flush=True)
    result["topk"] = []
    for fused in (False, True):
        result["topk"] += bench_topk(rng, args.repeats, args.device, result["roofs"], topk_sizes, fused)
    result["cross"] = bench_cross(rng, args.repeats, args.device, cross_sizes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print_tables(result)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
