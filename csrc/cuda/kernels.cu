// CUDA fused top-K and cross features; same semantics as the CPU kernels.
//
// fused_topk runs in two launches. scan: a grid of (splits, user groups)
// blocks; each block scores one contiguous split of the catalog for a group of
// up to kMaxUsersPerBlock users, so that an item row read from memory serves
// all of them. A warp scores 32 items at a time: its lanes read each row in
// coalesced 128-byte runs and a butterfly of shuffles sums the dot product.
// Each user keeps a block-wide pool in shared memory (the current best k plus
// room for one round of new candidates); when a pool may overflow it is
// bitonic-sorted and cut back to k, and the k-th best becomes that user's
// admission bar. merge: one block per user streams the splits' k-lists
// through the same kind of pool. Memory beyond the inputs is
// B x splits x k candidates, never B x N scores.
//
// Batches of kGemmMinBatch users and more (GENRE_SERVE_CUDA_GEMM_MIN_BATCH
// overrides it) are scored tile by tile instead: cuBLAS's sgemm writes the
// scores of one tile of the catalog for every user (B x tile, at most
// kMaxTileScores floats), and a select kernel streams each user's part of the
// tile through the same pools; the merge is the same. A matrix product reuses
// every row it loads across many users from registers, which the scan kernel
// cannot. Without cuBLAS (gemm.cpp loads it at run time) the scan does it all.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/kernels.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm.h"

namespace genre {
namespace {

constexpr int kThreads = 256;  // 8 warps: a round scores 256 items, one per thread
constexpr int kMaxUsersPerBlock = 8;  // a power of two
constexpr int kItemsPerStep = 4;  // rows a warp reads at once
// From two users up the tiles were faster on an H200 (benchmarks/RESULTS.md);
// for one user the scan kernel was as fast or faster.
constexpr int64_t kGemmMinBatch = 2;
constexpr int64_t kMaxTileScores = int64_t(32) << 20;  // 128 MiB of float32 scores per tile
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

// Sorts a pool that may overflow in the next round, keeps its best k and
// makes the k-th best the admission bar. Called by the whole block.
__device__ void cut_back(Pool p, int* filled, Cand* bar, int* has_bar) {
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
    // Every thread reads the fill level before any thread can add to it in the
    // next round: without the second barrier a fast thread's atomicAdd could
    // make a slow thread take the branch alone and split the block's barriers.
    const bool full = *filled > p.size - int(blockDim.x);
    __syncthreads();
    if (full) cut_back(p, filled, bar, has_bar);
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

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <int kUsers>  // users per block: 1, 2, 4 or 8
__global__ void scan_kernel(ScanParams p, Cand* partial) {
  extern __shared__ unsigned char smem[];
  __shared__ int filled[kUsers], has_bar[kUsers];
  __shared__ Cand bar[kUsers];
  const int s = blockIdx.x, b0 = blockIdx.y * kUsers;
  const int users = min(kUsers, p.batch - b0);  // the same for the whole block
  const int dcu = p.item_cf ? p.dc : 0, dtu = p.item_ct ? p.dt : 0, dim = dcu + dtu;
  Cand* pools = reinterpret_cast<Cand*>(smem);  // [kUsers][pool_size]
  float* u = reinterpret_cast<float*>(pools + kUsers * p.pool_size);  // [kUsers][dim], weighted
  for (int i = threadIdx.x; i < users * dim; i += blockDim.x) {
    const int b = b0 + i / dim, d = i % dim;
    u[i] = d < dcu ? p.w_cf[b] * p.user_cf[int64_t(b) * p.dc + d]
                   : p.w_ct[b] * p.user_ct[int64_t(b) * p.dt + (d - dcu)];
  }
  for (int i = threadIdx.x; i < users * p.pool_size; i += blockDim.x) pools[i] = Cand{0.f, -1};
  if (threadIdx.x < kUsers) {
    filled[threadIdx.x] = 0;
    has_bar[threadIdx.x] = 0;
  }
  __syncthreads();

  const int begin = s * p.split_len, end = min(p.num_items, begin + p.split_len);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int base = begin; base < end; base += blockDim.x) {
    // Each warp scores 32 consecutive items; lane j keeps item j's scores.
    const int first = base + warp * 32, count = min(32, end - first);
    float mine[kUsers];
    for (int j0 = 0; j0 < count; j0 += kItemsPerStep) {
      // kItemsPerStep rows at a time: their loads are in flight together.
      float acc[kItemsPerStep][kUsers];
#pragma unroll
      for (int q = 0; q < kItemsPerStep; ++q) {
#pragma unroll
        for (int t = 0; t < kUsers; ++t) acc[q][t] = 0.f;
      }
      for (int d = lane; d - lane < dim; d += 32) {
        if (d >= dim) continue;
        float x[kItemsPerStep];
#pragma unroll
        for (int q = 0; q < kItemsPerStep; ++q) {
          const int64_t n = first + j0 + q;
          x[q] = j0 + q >= count ? 0.f
                 : d < dcu     ? __ldg(p.item_cf + n * dcu + d)
                               : __ldg(p.item_ct + n * dtu + (d - dcu));
        }
#pragma unroll
        for (int t = 0; t < kUsers; ++t) {
          if (t < users) {
            const float ut = u[t * dim + d];
#pragma unroll
            for (int q = 0; q < kItemsPerStep; ++q) acc[q][t] += x[q] * ut;
          }
        }
      }
#pragma unroll
      for (int q = 0; q < kItemsPerStep; ++q) {
#pragma unroll
        for (int t = 0; t < kUsers; ++t) {
          if (t < users) {
            const float total = warp_sum(acc[q][t]);
            if (lane == j0 + q) mine[t] = total;
          }
        }
      }
    }
    const int n = first + lane;
#pragma unroll
    for (int t = 0; t < kUsers; ++t) {
      if (t < users && lane < count) {
        const Cand c{mine[t], n};
        if (c.score == c.score && !is_excluded(p, b0 + t, n) && (!has_bar[t] || cbetter(c, bar[t]))) {
          pools[t * p.pool_size + atomicAdd(&filled[t], 1)] = c;
        }
      }
    }
    __syncthreads();
    // As in pool_select: every thread reads the fill levels before any can add.
    unsigned full = 0;
    for (int t = 0; t < users; ++t) {
      if (filled[t] > p.pool_size - int(blockDim.x)) full |= 1u << t;
    }
    __syncthreads();
    for (int t = 0; t < users; ++t) {
      if (full >> t & 1u) cut_back(Pool{pools + t * p.pool_size, p.pool_size, p.k}, &filled[t], &bar[t], &has_bar[t]);
    }
  }
  for (int t = 0; t < users; ++t) {
    Cand* pool = pools + t * p.pool_size;
    bitonic_sort(pool, p.pool_size);
    Cand* out = partial + (int64_t(b0 + t) * p.splits + s) * p.k;
    for (int i = threadIdx.x; i < p.k; i += blockDim.x) out[i] = pool[i];
  }
}

// One split of a score tile for one user (grid: splits of the tile x users):
// the tile's scores are [B][len] row-major, item i of it is catalog item i0 + i.
__global__ void select_kernel(ScanParams p, const float* scores, int i0, int len, int split0, int tile_splits,
                              Cand* partial) {
  extern __shared__ unsigned char smem[];
  Cand* slots = reinterpret_cast<Cand*>(smem);
  __shared__ int filled, has_bar;
  __shared__ Cand bar;
  const int b = blockIdx.y, s = blockIdx.x;
  const int chunk = (len + tile_splits - 1) / tile_splits;
  const int begin = min(len, s * chunk), end = min(len, begin + chunk);
  const float* row = scores + int64_t(b) * len;
  auto src = [&](int64_t i, Cand* c) {
    const int j = begin + int(i);
    *c = Cand{row[j], i0 + j};
    return !is_excluded(p, b, i0 + j);
  };
  pool_select(Pool{slots, p.pool_size, p.k}, end - begin, src, &filled, &bar, &has_bar);
  Cand* out = partial + (int64_t(b) * p.splits + split0 + s) * p.k;
  for (int i = threadIdx.x; i < p.k; i += blockDim.x) out[i] = slots[i];
}

// The users' vectors times their fusion weights, per space: [B][dc] then [B][dt].
__global__ void weigh_users_kernel(ScanParams p, int dcu, int dtu, float* weighted) {
  const int b = blockIdx.x;
  for (int d = threadIdx.x; d < dcu; d += blockDim.x) {
    weighted[int64_t(b) * dcu + d] = p.w_cf[b] * p.user_cf[int64_t(b) * p.dc + d];
  }
  float* ct = weighted + int64_t(p.batch) * dcu;
  for (int d = threadIdx.x; d < dtu; d += blockDim.x) {
    ct[int64_t(b) * dtu + d] = p.w_ct[b] * p.user_ct[int64_t(b) * p.dt + d];
  }
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

// The small per-call host inputs (fusion weights, exclusions, candidates),
// copied into one pooled scratch allocation: no cudaMalloc and no
// synchronizing cudaFree per input and call.
class HostStage {
 public:
  template <typename T>
  void add(const T* host, int64_t count, const T** device) {
    if (!host || count <= 0) return;  // *device stays as it is (null: none)
    parts_.push_back(Part{host, size_t(count) * sizeof(T), offset_, reinterpret_cast<const void**>(device)});
    offset_ += (size_t(count) * sizeof(T) + 15) / 16 * 16;
  }
  void upload() {
    if (!offset_) return;
    buffer_ = std::make_unique<ScratchBuffer>(offset_);
    char* base = static_cast<char*>(buffer_->get());
    for (const Part& part : parts_) {
      GENRE_CUDA_CHECK(cudaMemcpyAsync(base + part.offset, part.host, part.bytes, cudaMemcpyHostToDevice, 0));
      *part.device = base + part.offset;
    }
  }

 private:
  struct Part {
    const void* host;
    size_t bytes, offset;
    const void** device;
  };
  std::vector<Part> parts_;
  size_t offset_ = 0;
  std::unique_ptr<ScratchBuffer> buffer_;
};

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
  // Weights and exclusions arrive on the host (see common/kernels.h).
  HostStage stage;
  stage.add(a.w_cf, B, &p.w_cf);
  stage.add(a.w_ct, B, &p.w_ct);
  const int64_t excluded = a.exclude_indptr ? a.exclude_indptr[B] : 0;
  if (a.exclude_indptr) {
    stage.add(a.exclude_indptr, B + 1, &p.ex_indptr);
    // An empty index list still needs a valid pointer next to a real indptr.
    if (excluded > 0) stage.add(a.exclude_indices, excluded, &p.ex_indices);
  }
  stage.upload();
  p.batch = int(B);
  p.num_items = int(N);
  p.k = int(k_eff);
  p.pool_size = pool_size_for(k_eff);
  const int dim = (a.item_cf ? p.dc : 0) + (a.item_ct ? p.dt : 0);
  const size_t pool_bytes = size_t(p.pool_size) * sizeof(Cand);
  const size_t per_user = pool_bytes + size_t(dim) * sizeof(float);
  int max_smem = 0;
  GENRE_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (per_user + 1024 > size_t(max_smem)) {
    throw std::invalid_argument("fused_topk: k and the vector dimensions need more shared memory than this GPU has");
  }
  const char* min_batch_env = std::getenv("GENRE_SERVE_CUDA_GEMM_MIN_BATCH");
  const int64_t gemm_min_batch = min_batch_env ? std::atoll(min_batch_env) : kGemmMinBatch;
  Gemm* gemm = B >= gemm_min_batch ? Gemm::for_current_device() : nullptr;
  std::unique_ptr<ScratchBuffer> partial;
  if (gemm) {
    // Score tiles from cuBLAS, then the select kernel on each (see the top of this file).
    const int dcu = a.item_cf ? p.dc : 0, dtu = a.item_ct ? p.dt : 0;
    ScratchBuffer weighted(size_t(B) * (dcu + dtu) * sizeof(float));
    float* users_cf = static_cast<float*>(weighted.get());
    float* users_ct = users_cf + B * dcu;
    weigh_users_kernel<<<unsigned(B), 128>>>(p, dcu, dtu, users_cf);
    GENRE_CUDA_CHECK(cudaGetLastError());
    const int64_t tile = std::min<int64_t>(N, std::max<int64_t>(4 * kThreads, kMaxTileScores / B));
    const int64_t tiles = (N + tile - 1) / tile;
    const int64_t want = std::max<int64_t>(1, (4 * int64_t(sms) + B - 1) / B);
    const int tile_splits = int(std::min(want, std::max<int64_t>(1, tile / (4 * kThreads))));
    p.splits = int(tiles * tile_splits);
    ScratchBuffer scores(size_t(B) * tile * sizeof(float));
    partial = std::make_unique<ScratchBuffer>(size_t(B) * p.splits * k_eff * sizeof(Cand));
    float* s = static_cast<float*>(scores.get());
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t i0 = t * tile, len = std::min(tile, N - i0);
      if (dcu) gemm->users_times_items(int(len), int(B), dcu, 1.f, a.item_cf + i0 * dcu, users_cf, 0.f, s);
      if (dtu) gemm->users_times_items(int(len), int(B), dtu, 1.f, a.item_ct + i0 * dtu, users_ct, dcu ? 1.f : 0.f, s);
      select_kernel<<<dim3(tile_splits, unsigned(B)), kThreads, pool_bytes>>>(
          p, s, int(i0), int(len), int(t * tile_splits), tile_splits, static_cast<Cand*>(partial->get()));
      GENRE_CUDA_CHECK(cudaGetLastError());
    }
  } else {
    // Users per block: B rounded up to a power of two, at most 8 and no more
    // than fit in 96 KiB of shared memory (two blocks per multiprocessor); an
    // item row read from memory then serves them all.
    int users = 1;
    while (users < kMaxUsersPerBlock && users < B && size_t(2 * users) * per_user <= 96 * 1024) users *= 2;
    const int64_t groups = (B + users - 1) / users;
    // Enough blocks to fill the GPU a few times over, each scanning >= 4 rounds.
    const int64_t want = std::max<int64_t>(1, (4 * int64_t(sms) + groups - 1) / groups);
    const int64_t max_splits = std::max<int64_t>(1, N / (4 * kThreads));
    p.splits = int(std::min(want, max_splits));
    p.split_len = int((N + p.splits - 1) / p.splits);

    const size_t scan_smem = size_t(users) * per_user;
    auto scan = users == 1 ? scan_kernel<1> : users == 2 ? scan_kernel<2> : users == 4 ? scan_kernel<4> : scan_kernel<8>;
    if (scan_smem > 48 * 1024) {
      GENRE_CUDA_CHECK(cudaFuncSetAttribute(scan, cudaFuncAttributeMaxDynamicSharedMemorySize, int(scan_smem)));
    }
    partial = std::make_unique<ScratchBuffer>(size_t(B) * p.splits * k_eff * sizeof(Cand));
    scan<<<dim3(p.splits, unsigned(groups)), kThreads, scan_smem>>>(p, static_cast<Cand*>(partial->get()));
    GENRE_CUDA_CHECK(cudaGetLastError());
  }
  ScratchBuffer idx(size_t(B) * k_eff * sizeof(int64_t)), score(size_t(B) * k_eff * sizeof(float));
  merge_kernel<<<unsigned(B), kThreads, pool_bytes>>>(p, static_cast<const Cand*>(partial->get()),
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
  ScratchBuffer out(size_t(rows) * F * sizeof(float));
  CrossFeaturesArgs d = a;
  d.out = static_cast<float*>(out.get());
  // Candidates (and scores given as a host array) arrive on the host.
  HostStage stage;
  stage.add(a.candidates, rows, &d.candidates);
  if (a.scores_on_host) stage.add(a.scores, rows, &d.scores);
  stage.upload();
  cross_kernel<<<unsigned(rows), 128>>>(d, F);
  GENRE_CUDA_CHECK(cudaGetLastError());
  GENRE_CUDA_CHECK(cudaMemcpy(a.out, out.get(), out.bytes(), cudaMemcpyDeviceToHost));
}

}  // namespace genre
