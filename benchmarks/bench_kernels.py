"""Kernel benchmark: fused_topk and cross_features next to their baselines.

Everything runs in ONE process, side by side, on the same inputs: medians over
repeats after a warm-up. The machine's roofs (read bandwidth of a large
read-only reduction, sgemm GFLOP/s) are measured in the same run, and every
fused_topk figure is reported as a fraction of the roof that bounds it.

    python benchmarks/bench_kernels.py [--quick] [--repeats 5] [--json PATH]

Baselines (all with the same thread count):
  numpy  matmul + argpartition + sort
  torch  matmul + topk (CPU)
  faiss  IndexFlatIP with BLAS forced (distance_compute_blas_threshold = 0);
         fusion by concatenating alpha-weighted vectors, exclusion by fetching
         k + max excluded and dropping.
"""

from __future__ import annotations

import os

# torch, faiss and genre_serve each bring an OpenMP runtime. By default idle
# OpenMP workers spin for a while after a parallel region, so when contenders
# take turns, one library's spinning threads steal the two cores from the next
# (measured: 0.7 ms became 24 ms). Passive waiting makes the turns fair; it is
# set before any of them is imported, and an explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

K = 100
TOPK_SIZES = [(1, 100_000, 64), (64, 100_000, 64), (256, 1_000_000, 64), (1, 1_000_000, 128)]
CROSS_SIZES = [(64, 100, 64), (256, 200, 128)]
EXCLUDED_PER_USER = 100
ALPHA = 0.7


def timeit(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds per function over `repeats` rounds after `warmup` rounds.

    The functions take turns within each round, so that a drift of the
    machine (this VM's memory bandwidth varies by tens of percent over
    minutes) hits every contender alike instead of whichever ran then.
    """
    times = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def best_of(fn, repeats: int) -> float:
    """Fastest of `repeats` calls after one warm-up: a roof is the best the machine did."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_roofs(threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    big = torch.ones(256 * 1024 * 1024)  # 1 GiB, far beyond the caches
    read_bytes = big.numel() * big.element_size()
    t_read = best_of(big.sum, max(repeats, 10))
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_gemm = best_of(lambda: a @ b, max(repeats, 5))
    del big
    return {"read_gb_s": read_bytes / t_read / 1e9, "sgemm_gflop_s": 2 * n**3 / t_gemm / 1e9}


class TopKCase:
    def __init__(self, batch, items, dim, fused, rng):
        self.batch, self.items, self.dim, self.fused = batch, items, dim, fused
        self.user_cf = rng.standard_normal((batch, dim), dtype=np.float32)
        self.item_cf = rng.standard_normal((items, dim), dtype=np.float32)
        self.user_ct = self.item_ct = None
        self.exclude = None
        if fused:
            self.user_ct = rng.standard_normal((batch, dim), dtype=np.float32)
            self.item_ct = rng.standard_normal((items, dim), dtype=np.float32)
            self.exclude = [rng.choice(items, EXCLUDED_PER_USER, replace=False) for _ in range(batch)]

    @property
    def name(self) -> str:
        base = f"B={self.batch},N={self.items:,},d={self.dim}"
        return base + (f" fused(2x{self.dim},a={ALPHA})+excl{EXCLUDED_PER_USER}" if self.fused else "")

    @property
    def bytes_read(self) -> int:
        return self.items * self.dim * 4 * (2 if self.fused else 1)

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.items * self.dim * (2 if self.fused else 1)

    def read_probe(self):
        import torch

        tables = [torch.from_numpy(self.item_cf)]
        if self.fused:
            tables.append(torch.from_numpy(self.item_ct))
        return lambda: [t.amax() for t in tables]

    def ours(self):
        from genre_serve.kernels import fused_topk

        kw = {}
        if self.fused:
            kw = dict(user_ct=self.user_ct, item_ct=self.item_ct, alpha=ALPHA, exclude=self.exclude)
        return lambda: fused_topk(self.user_cf, self.item_cf, K, **kw)

    def _dense_scores_numpy(self):
        s = self.user_cf @ self.item_cf.T
        if self.fused:
            s *= ALPHA
            s += (1 - ALPHA) * (self.user_ct @ self.item_ct.T)
            for b, ex in enumerate(self.exclude):
                s[b, ex] = -np.inf
        return s

    def numpy(self):
        def run():
            s = self._dense_scores_numpy()
            part = np.argpartition(-s, K - 1, axis=1)[:, :K]
            top = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            return np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)

        return run

    def torch(self):
        import torch

        ucf, icf = torch.from_numpy(self.user_cf), torch.from_numpy(self.item_cf)
        if self.fused:
            uct, ict = torch.from_numpy(self.user_ct), torch.from_numpy(self.item_ct)
            rows = torch.from_numpy(np.repeat(np.arange(self.batch), EXCLUDED_PER_USER))
            cols = torch.from_numpy(np.concatenate(self.exclude))

        def run():
            s = ucf @ icf.T
            if self.fused:
                s.mul_(ALPHA).add_(uct @ ict.T, alpha=1 - ALPHA)
                s[rows, cols] = -float("inf")
            return torch.topk(s, K, dim=1)

        return run

    def faiss(self):
        import faiss

        faiss.cvar.distance_compute_blas_threshold = 0
        if self.fused:
            table = np.ascontiguousarray(np.hstack([self.item_cf, self.item_ct]))
            queries = np.ascontiguousarray(
                np.hstack([ALPHA * self.user_cf, (1 - ALPHA) * self.user_ct]).astype(np.float32)
            )
        else:
            table, queries = self.item_cf, self.user_cf
        index = faiss.IndexFlatIP(table.shape[1])
        index.add(table)
        fetch = K + (EXCLUDED_PER_USER if self.fused else 0)
        banned = [set(ex.tolist()) for ex in self.exclude] if self.fused else None

        def run():
            d, i = index.search(queries, fetch)
            if not self.fused:
                return i, d
            out = np.empty((self.batch, K), np.int64)
            for b in range(self.batch):
                keep = [j for j in i[b] if j not in banned[b]][:K]
                out[b] = keep
            return out, d

        return run


def bench_topk(rng, repeats, roofs, sizes, fused) -> list[dict]:
    rows = []
    for batch, items, dim in sizes:
        case = TopKCase(batch, items, dim, fused, rng)
        reps = max(3, repeats // 2) if batch * items >= 100_000_000 else repeats
        contenders = {name: getattr(case, name)() for name in ("ours", "numpy", "torch", "faiss")}
        # The read roof of this very case, timed in the same rounds: a
        # read-only reduction over exactly the item tables the kernel reads.
        contenders["read_roof"] = case.read_probe()
        times = timeit(contenders, reps)
        t_bw = times.pop("read_roof")
        best_base = min(v for k, v in times.items() if k != "ours")
        t_fl = case.flops / (roofs["sgemm_gflop_s"] * 1e9)
        bound = "bandwidth" if t_bw >= t_fl else "arithmetic"
        rows.append(
            {
                "case": case.name,
                "batch": batch,
                "items": items,
                "dim": dim,
                "fused_excluded": fused,
                "ms": {k: v * 1e3 for k, v in times.items()},
                "speedup_vs_best_baseline": best_base / times["ours"],
                "speedup_vs_faiss": times["faiss"] / times["ours"],
                "achieved_gb_s": case.bytes_read / times["ours"] / 1e9,
                "read_roof_gb_s": case.bytes_read / t_bw / 1e9,
                "achieved_gflop_s": case.flops / times["ours"] / 1e9,
                "bound": bound,
                "fraction_of_roof": max(t_bw, t_fl) / times["ours"],
            }
        )
        print_row_topk(rows[-1])
        del case
    return rows


def print_row_topk(r):
    ms = r["ms"]
    print(
        f"{r['case']:<50} {ms['ours']:>9.2f} {ms['numpy']:>9.2f} {ms['torch']:>9.2f} {ms['faiss']:>9.2f}"
        f" {r['speedup_vs_best_baseline']:>6.2f}x {r['speedup_vs_faiss']:>6.2f}x"
        f" {r['achieved_gb_s']:>7.1f} {r['read_roof_gb_s']:>6.1f} {r['achieved_gflop_s']:>7.1f} {r['bound'][:5]:>6}"
        f" {100 * r['fraction_of_roof']:>5.0f}%",
        flush=True,
    )


def bench_cross(rng, repeats, sizes) -> list[dict]:
    import torch

    from genre_serve.kernels import cross_features

    rows = []
    for batch, cands, dim in sizes:
        n_items = 100_000
        user = rng.standard_normal((batch, dim), dtype=np.float32)
        items = rng.standard_normal((n_items, dim), dtype=np.float32)
        cand = rng.integers(0, n_items, size=(batch, cands))
        scores = rng.standard_normal((batch, cands), dtype=np.float32)
        F = 4 * dim + 1
        out = np.empty((batch, cands, F), np.float32)
        out_t = torch.empty((batch, cands, F))
        tu, ti, tc, ts = map(torch.from_numpy, (user, items, cand, scores))

        def ours_prealloc():
            return cross_features(user, items, cand, scores=scores, out=out)

        def ours_alloc():
            return cross_features(user, items, cand, scores=scores)

        def numpy_concat():
            u = np.broadcast_to(user[:, None, :], (batch, cands, dim))
            v = items[cand]
            return np.concatenate([u, v, u * v, np.abs(u - v), scores[..., None]], axis=-1)

        def torch_prealloc():
            u = tu[:, None, :].expand(batch, cands, dim)
            v = ti[tc]
            out_t[..., :dim] = u
            out_t[..., dim : 2 * dim] = v
            torch.mul(u, v, out=out_t[..., 2 * dim : 3 * dim])
            torch.sub(u, v, out=out_t[..., 3 * dim : 4 * dim]).abs_()
            out_t[..., 4 * dim] = ts
            return out_t

        np.testing.assert_array_equal(ours_prealloc(), numpy_concat())
        np.testing.assert_allclose(torch_prealloc().numpy(), numpy_concat())
        times = timeit(
            {
                "ours": ours_prealloc,
                "ours_fresh_out": ours_alloc,
                "numpy_concat": numpy_concat,
                "torch_prealloc": torch_prealloc,
            },
            repeats,
        )
        written = batch * cands * F * 4
        row = {
            "case": f"B={batch},K={cands},D={dim}",
            "ms": {k: v * 1e3 for k, v in times.items()},
            "speedup_vs_torch_prealloc": times["torch_prealloc"] / times["ours"],
            "speedup_vs_numpy": times["numpy_concat"] / times["ours"],
            "written_gb_s": written / times["ours"] / 1e9,
        }
        rows.append(row)
        ms = row["ms"]
        print(
            f"{row['case']:<24} {ms['ours']:>9.2f} {ms['ours_fresh_out']:>9.2f} {ms['numpy_concat']:>9.2f}"
            f" {ms['torch_prealloc']:>9.2f} {row['speedup_vs_torch_prealloc']:>7.2f}x"
            f" {row['speedup_vs_numpy']:>7.2f}x {row['written_gb_s']:>7.1f}",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_kernels.json"))
    args = ap.parse_args(argv)

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    os.environ["GENRE_SERVE_NUM_THREADS"] = str(args.threads)
    rng = np.random.default_rng(0)
    topk_sizes = [(1, 20_000, 32), (16, 20_000, 32)] if args.quick else TOPK_SIZES
    cross_sizes = [(8, 20, 16)] if args.quick else CROSS_SIZES

    roofs = measure_roofs(args.threads, args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads")
    print(
        f"roofs: read bandwidth {roofs['read_gb_s']:.1f} GB/s (1 GiB torch.sum; each case also"
        f" re-measures it on its own tables), sgemm {roofs['sgemm_gflop_s']:.1f} GFLOP/s\n"
    )
    print(f"fused_topk, k={K} (ms, median of repeats)")
    print(
        f"{'case':<50} {'ours':>9} {'numpy':>9} {'torch':>9} {'faiss':>9} {'vs best':>7} {'vs faiss':>7}"
        f" {'GB/s':>7} {'roofGB':>6} {'GFLOP/s':>7} {'bound':>6} {'roof':>6}"
    )
    topk = bench_topk(rng, args.repeats, roofs, topk_sizes, fused=False)
    topk += bench_topk(rng, args.repeats, roofs, topk_sizes, fused=True)
    print("\ncross_features (ms, median of repeats; ours writes into a preallocated buffer)")
    print(
        f"{'case':<24} {'ours':>9} {'ours+alloc':>9} {'np.concat':>9} {'torch buf':>9}"
        f" {'vs torch':>8} {'vs numpy':>8} {'GB/s out':>7}"
    )
    cross = bench_cross(rng, args.repeats, cross_sizes)

    report = {
        "command": " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "versions": {"numpy": np.__version__, "torch": torch.__version__, "faiss": faiss.__version__},
        "roofs": roofs,
        "k": K,
        "fused_topk": topk,
        "cross_features": cross,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
