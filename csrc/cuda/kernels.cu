// CUDA fused top-K and cross features; same semantics as the CPU kernels.
//
// fused_topk runs in two launches. scan: a grid of (splits, users) blocks; each
// block scores one contiguous split of the catalog for one user and keeps a
// block-wide pool in shared memory (the current best k plus room for one round
// of new candidates); when the pool may overflow it is bitonic-sorted and cut
// back to k, and the k-th best becomes the admission bar. merge: one block per
// user streams the splits' k-lists through the same pool. Memory beyond the
// inputs is B x splits x k candidates, never B x N scores.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/kernels.h"
#include "cuda/cuda_check.h"

namespace genre {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxK = 2048;  // pool of at most 4096 candidates: 32 KiB of shared memory

struct Cand {
  float score;
  int index;  // -1: empty slot
};

__device__ __forceinline__ bool cbetter(const Cand& a, const Cand& b) {
  if (a.index < 0) return false;
  if (b.index < 0) return true;
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

__device__ void bitonic_sort(Cand* pool, int size) {
  for (int width = 2; width <= size; width <<= 1) {
    for (int stride = width >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < size; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const bool best_first = (i & width) == 0;
          const bool i_better = cbetter(pool[i], pool[j]);
          if (best_first ? cbetter(pool[j], pool[i]) : i_better) {
            const Cand t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
          }
        }
      }
      __syncthreads();
    }
  }
}

// Block-wide bounded top-k. Source(i, &c) yields candidate i of [0, count)
// and returns false when there is none.
struct Pool {
  Cand* slots;
  int size;  // power of two, >= k + blockDim
  int k;
};

template <typename Source>
__device__ void pool_select(Pool p, int64_t count, Source src, int* filled, Cand* bar, int* has_bar) {
  for (int i = threadIdx.x; i < p.size; i += blockDim.x) p.slots[i] = Cand{0.f, -1};
  if (threadIdx.x == 0) {
    *filled = 0;
    *has_bar = 0;
  }
  __syncthreads();
  for (int64_t base = 0; base < count; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    Cand c;
    if (i < count && src(i, &c) && c.score == c.score && (!*has_bar || cbetter(c, *bar))) {
      p.slots[atomicAdd(filled, 1)] = c;
    }
    __syncthreads();
    if (*filled > p.size - int(blockDim.x)) {
      bitonic_sort(p.slots, p.size);
      for (int j = p.k + threadIdx.x; j < p.size; j += blockDim.x) p.slots[j] = Cand{0.f, -1};
      __syncthreads();
      if (threadIdx.x == 0) {
        *filled = min(*filled, p.k);
        if (*filled == p.k) {
          *bar = p.slots[p.k - 1];
          *has_bar = 1;
        }
      }
      __syncthreads();
    }
  }
  bitonic_sort(p.slots, p.size);
}

struct ScanParams {
  const float* user_cf;
  const float* item_cf;
  int dc;
  const float* user_ct;
  const float* item_ct;
  int dt;
  const float* w_cf;
  const float* w_ct;
  int batch;
  int num_items;
  int k;
  int pool_size;
  int split_len;
  int splits;
  const int64_t* ex_indptr;
  const int64_t* ex_indices;
};

__device__ bool is_excluded(const ScanParams& p, int b, int n) {
  if (!p.ex_indptr) return false;
  int64_t lo = p.ex_indptr[b], hi = p.ex_indptr[b + 1];
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (p.ex_indices[mid] < n) lo = mid + 1; else hi = mid;
  }
  return lo < p.ex_indptr[b + 1] && p.ex_indices[lo] == n;
}

__global__ void scan_kernel(ScanParams p, Cand* partial) {
  extern __shared__ unsigned char smem[];
  Cand* slots = reinterpret_cast<Cand*>(smem);
  float* u = reinterpret_cast<float*>(slots + p.pool_size);
  __shared__ int filled, has_bar;
  __shared__ Cand bar;
  const int b = blockIdx.y, s = blockIdx.x;
  const int dcu = p.item_cf ? p.dc : 0, dtu = p.item_ct ? p.dt : 0;
  for (int d = threadIdx.x; d < dcu; d += blockDim.x) u[d] = p.w_cf[b] * p.user_cf[int64_t(b) * p.dc + d];
  for (int d = threadIdx.x; d < dtu; d += blockDim.x) u[dcu + d] = p.w_ct[b] * p.user_ct[int64_t(b) * p.dt + d];
  const int begin = s * p.split_len;
  const int end = min(p.num_items, begin + p.split_len);
  auto src = [&](int64_t i, Cand* c) {
    const int n = begin + int(i);
    float sc = 0.f;
    const float* row = p.item_cf + int64_t(n) * dcu;
    for (int d = 0; d < dcu; ++d) sc += u[d] * __ldg(row + d);
    row = p.item_ct + int64_t(n) * dtu;
    for (int d = 0; d < dtu; ++d) sc += u[dcu + d] * __ldg(row + d);
    *c = Cand{sc, n};
    return !is_excluded(p, b, n);
  };
  pool_select(Pool{slots, p.pool_size, p.k}, max(0, end - begin), src, &filled, &bar, &has_bar);
  Cand* out = partial + (int64_t(b) * p.splits + s) * p.k;
  for (int i = threadIdx.x; i < p.k; i += blockDim.x) out[i] = slots[i];
}

__global__ void merge_kernel(ScanParams p, const Cand* partial, int64_t* out_idx, float* out_score) {
  extern __shared__ unsigned char smem[];
  Cand* slots = reinterpret_cast<Cand*>(smem);
  __shared__ int filled, has_bar;
  __shared__ Cand bar;
  const int b = blockIdx.x;
  const Cand* mine = partial + int64_t(b) * p.splits * p.k;
  auto src = [&](int64_t i, Cand* c) {
    *c = mine[i];
    return c->index >= 0;
  };
  pool_select(Pool{slots, p.pool_size, p.k}, int64_t(p.splits) * p.k, src, &filled, &bar, &has_bar);
  for (int i = threadIdx.x; i < p.k; i += blockDim.x) {
    const Cand c = slots[i];
    out_idx[int64_t(b) * p.k + i] = c.index;
    out_score[int64_t(b) * p.k + i] = c.index < 0 ? -INFINITY : c.score;
  }
}

__global__ void cross_kernel(CrossFeaturesArgs a, int64_t F) {
  const int64_t r = blockIdx.x;
  const int64_t c = a.candidates[r];
  float* o = a.out + r * F;
  const int64_t D = a.dim;
  if (c < 0) {
    for (int64_t j = threadIdx.x; j < F; j += blockDim.x) o[j] = 0.f;
    return;
  }
  const float* u = a.user + (r / a.num_candidates) * D;
  const float* v = a.items + c * D;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float ud = u[d], vd = __ldg(v + d);
    o[d] = ud;
    o[D + d] = vd;
    o[2 * D + d] = ud * vd;
    o[3 * D + d] = fabsf(ud - vd);
  }
  if (a.scores && threadIdx.x == 0) o[4 * D] = a.scores[r];
}

int pool_size_for(int64_t k) {
  int size = 1;
  while (size < k + kThreads) size <<= 1;
  return size;
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: report none, leave no sticky error
    return 0;
  }
  return n;
}

void fused_topk_cuda(const FusedTopKArgs& a) {
  const int64_t B = a.batch, N = a.num_items, k = a.k;
  const int64_t k_eff = std::min(k, N);
  fill_no_result(a);
  if (B == 0 || k_eff == 0) return;
  if (k_eff > kMaxK) throw std::invalid_argument("k: at most " + std::to_string(kMaxK) + " on CUDA");
  if (N > std::numeric_limits<int>::max() || B > 65535) {
    throw std::invalid_argument("fused_topk: CUDA supports N < 2^31 items and B <= 65535 users");
  }
  int device = 0, sms = 0;
  GENRE_CUDA_CHECK(cudaGetDevice(&device));
  GENRE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));

  ScanParams p{};
  p.user_cf = a.user_cf;
  p.item_cf = a.item_cf;
  p.dc = int(a.dc);
  p.user_ct = a.user_ct;
  p.item_ct = a.item_ct;
  p.dt = int(a.dt);
  p.w_cf = a.w_cf;
  p.w_ct = a.w_ct;
  p.batch = int(B);
  p.num_items = int(N);
  p.k = int(k_eff);
  p.pool_size = pool_size_for(k_eff);
  p.ex_indptr = a.exclude_indptr;
  p.ex_indices = a.exclude_indices;
  // Enough blocks to fill the GPU a few times over, each scanning >= 4 rounds.
  const int64_t want = std::max<int64_t>(1, (4 * int64_t(sms) + B - 1) / B);
  const int64_t max_splits = std::max<int64_t>(1, N / (4 * kThreads));
  p.splits = int(std::min(want, max_splits));
  p.split_len = int((N + p.splits - 1) / p.splits);

  const int dim = (a.item_cf ? p.dc : 0) + (a.item_ct ? p.dt : 0);
  const size_t pool_bytes = size_t(p.pool_size) * sizeof(Cand);
  const size_t scan_smem = pool_bytes + size_t(dim) * sizeof(float);
  if (scan_smem > 48 * 1024) {
    GENRE_CUDA_CHECK(cudaFuncSetAttribute(scan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(scan_smem)));
  }
  DeviceBuffer partial(size_t(B) * p.splits * k_eff * sizeof(Cand));
  DeviceBuffer idx(size_t(B) * k_eff * sizeof(int64_t)), score(size_t(B) * k_eff * sizeof(float));
  scan_kernel<<<dim3(p.splits, unsigned(B)), kThreads, scan_smem>>>(p, static_cast<Cand*>(partial.get()));
  GENRE_CUDA_CHECK(cudaGetLastError());
  merge_kernel<<<unsigned(B), kThreads, pool_bytes>>>(p, static_cast<const Cand*>(partial.get()),
                                                      static_cast<int64_t*>(idx.get()), static_cast<float*>(score.get()));
  GENRE_CUDA_CHECK(cudaGetLastError());
  // Results are [B, k_eff] on the device; the host arrays are [B, k], already padded.
  GENRE_CUDA_CHECK(cudaMemcpy2D(a.out_indices, k * sizeof(int64_t), idx.get(), k_eff * sizeof(int64_t),
                                k_eff * sizeof(int64_t), B, cudaMemcpyDeviceToHost));
  GENRE_CUDA_CHECK(cudaMemcpy2D(a.out_scores, k * sizeof(float), score.get(), k_eff * sizeof(float),
                                k_eff * sizeof(float), B, cudaMemcpyDeviceToHost));
}

void cross_features_cuda(const CrossFeaturesArgs& a) {
  const int64_t rows = a.batch * a.num_candidates;
  const int64_t F = 4 * a.dim + (a.scores ? 1 : 0);
  if (rows == 0) return;
  if (rows > int64_t(std::numeric_limits<int>::max())) throw std::invalid_argument("cross_features: too many rows for CUDA");
  DeviceBuffer out(size_t(rows) * F * sizeof(float));
  CrossFeaturesArgs d = a;
  d.out = static_cast<float*>(out.get());
  cross_kernel<<<unsigned(rows), 128>>>(d, F);
  GENRE_CUDA_CHECK(cudaGetLastError());
  GENRE_CUDA_CHECK(cudaMemcpy(a.out, out.get(), out.bytes(), cudaMemcpyDeviceToHost));
}

}  // namespace genre
