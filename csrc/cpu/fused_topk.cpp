// Fused two-space top-K over the whole catalog on the CPU.
//
// One pass over the item tables in blocks of kBlock items. Threads split the
// catalog into contiguous ranges (so each thread sees its items in ascending
// index order, which TopKBuffer relies on) and keep a bounded top-k per user;
// the per-thread results are merged at the end. No B x N score matrix exists:
// the only scores held at once are one block's, kMR users at a time.
//
// Two ways to score a block:
//  - few users (B < kSmallBatch): dot products straight from the item rows;
//    the pass is bound by memory bandwidth and packing would only add work.
//  - more users: the block (both spaces) is transposed into a panel
//    [dim][kBlock] so that a register-tiled micro-kernel computes kMR x 32
//    scores with broadcast FMAs, GEMM style; the panel is reused by every user.
// The fusion weights are folded into one scaled user row [w_cf*u_cf, w_ct*u_ct]
// so that fusion costs nothing beyond reading the second table.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <vector>

#include "common/kernels.h"
#include "common/simd.h"
#include "common/topk_buffer.h"

namespace genre {
namespace {

constexpr int64_t kBlock = 256;  // items per block; a packed panel of 128 dims is 128 KiB (L2)
constexpr int kMR = 8;           // users per micro-tile: 16 accumulators of 16 lanes
constexpr int64_t kSmallBatch = 4;

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<float[], AlignedFree>;

AlignedBuffer aligned_floats(int64_t count) {
  const size_t bytes = ((size_t(count) * sizeof(float) + 63) / 64) * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
  if (!p) throw std::bad_alloc();
  return AlignedBuffer(p);
}

// A space taking part in the scores: item rows and the weight-scaled user rows.
struct Space {
  const float* items;
  int64_t dim;
  int64_t offset;  // column offset in the scaled user row
};

inline float dot(const float* a, const float* b, int64_t d) {
  v16 acc0{}, acc1{};
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) {
    acc0 += load16(a + i) * load16(b + i);
    acc1 += load16(a + i + 16) * load16(b + i + 16);
  }
  for (; i + 16 <= d; i += 16) acc0 += load16(a + i) * load16(b + i);
  float s = hsum16(acc0 + acc1);
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

// Scores of `nb` items from n0 for `users` users straight from the rows.
void score_block_rows(const std::vector<Space>& spaces, const float* scaled_users, int64_t ldu,
                      int64_t users, int64_t n0, int64_t nb, float* S) {
  for (int64_t n = 0; n < nb; ++n) {
    for (int64_t b = 0; b < users; ++b) {
      float s = 0.f;
      for (const Space& sp : spaces) {
        s += dot(scaled_users + b * ldu + sp.offset, sp.items + (n0 + n) * sp.dim, sp.dim);
      }
      S[b * kBlock + n] = s;
    }
  }
}

// Packs the block's rows of every space into strips of kStrip items: strip s
// holds P[s][d][lane] for d over all spaces, so the micro-kernel reads each
// strip front to back. (A [dim][kBlock] layout has a 1 KiB row stride that
// maps every fourth row to the same L1 set.) Padding lanes are zero.
constexpr int64_t kStrip = 32;

#if defined(__AVX512F__)
// Transposes 16 rows x 16 columns (rows at `src`, `ld` floats apart) into 16
// vectors of one column each, written `dst_ld` floats apart.
inline void transpose16x16(const float* src, int64_t ld, float* dst, int64_t dst_ld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 2]);
    const __m512d c = _mm512_castps_pd(t[i + 1]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int h = 0; h < 16; h += 8) {
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    _mm512_storeu_ps(dst + i * dst_ld, _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88));
    _mm512_storeu_ps(dst + (i + 8) * dst_ld, _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd));
  }
}
#endif

void pack_panel(const std::vector<Space>& spaces, int64_t dim, int64_t n0, int64_t nb, int64_t nb_pad,
                float* P) {
  for (const Space& sp : spaces) {
    const float* src = sp.items + n0 * sp.dim;
    int64_t n = 0;
#if defined(__AVX512F__)
    // Whole 16 x 16 tiles with register transposes; the ragged edges below.
    const int64_t d16 = sp.dim / 16 * 16;
    for (; n + 16 <= nb; n += 16) {
      float* dst = P + (n / kStrip) * dim * kStrip + sp.offset * kStrip + (n % kStrip);
      for (int64_t d = 0; d < d16; d += 16) transpose16x16(src + n * sp.dim + d, sp.dim, dst + d * kStrip, kStrip);
      for (int64_t i = 0; i < 16; ++i) {
        for (int64_t d = d16; d < sp.dim; ++d) dst[d * kStrip + i] = src[(n + i) * sp.dim + d];
      }
    }
#endif
    for (; n < nb; ++n) {
      const float* row = src + n * sp.dim;
      float* dst = P + (n / kStrip) * dim * kStrip + sp.offset * kStrip + (n % kStrip);
      for (int64_t d = 0; d < sp.dim; ++d) dst[d * kStrip] = row[d];
    }
  }
  for (int64_t n = nb; n < nb_pad; ++n) {
    float* dst = P + (n / kStrip) * dim * kStrip + (n % kStrip);
    for (int64_t d = 0; d < dim; ++d) dst[d * kStrip] = 0.f;
  }
}

template <int MR>
void micro_tile(const float* U, int64_t ldu, const float* P, int64_t dim, int64_t nb_pad, float* S) {
  for (int64_t j = 0; j < nb_pad; j += kStrip) {
    v16 acc[MR][2];
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = v16{};
    const float* p = P + (j / kStrip) * dim * kStrip;
    for (int64_t d = 0; d < dim; ++d, p += kStrip) {
      const v16 p0 = load16(p), p1 = load16(p + 16);
      for (int r = 0; r < MR; ++r) {
        const v16 u = splat16(U[r * ldu + d]);
        acc[r][0] += u * p0;
        acc[r][1] += u * p1;
      }
    }
    for (int r = 0; r < MR; ++r) {
      store16(S + r * kBlock + j, acc[r][0]);
      store16(S + r * kBlock + j + 16, acc[r][1]);
    }
  }
}

void micro_tile_dispatch(int mr, const float* U, int64_t ldu, const float* P, int64_t dim,
                         int64_t nb_pad, float* S) {
  switch (mr) {
    case 1: return micro_tile<1>(U, ldu, P, dim, nb_pad, S);
    case 2: return micro_tile<2>(U, ldu, P, dim, nb_pad, S);
    case 3: return micro_tile<3>(U, ldu, P, dim, nb_pad, S);
    case 4: return micro_tile<4>(U, ldu, P, dim, nb_pad, S);
    case 5: return micro_tile<5>(U, ldu, P, dim, nb_pad, S);
    case 6: return micro_tile<6>(U, ldu, P, dim, nb_pad, S);
    case 7: return micro_tile<7>(U, ldu, P, dim, nb_pad, S);
    default: return micro_tile<8>(U, ldu, P, dim, nb_pad, S);
  }
}

// Offers one user's block scores to its top-k. Most blocks fail the bar in
// every lane, which costs one vector compare per 16 items.
inline void offer_row(const float* s, int64_t nb, int64_t n0, TopKBuffer& top,
                      const int64_t* ex_begin, const int64_t* ex_end) {
  for (int64_t j = 0; j < nb; j += 16) {
    uint32_t m = mask_pass(load16(s + j), top.threshold(), top.full());
    if (nb - j < 16) m &= (1u << (nb - j)) - 1u;
    while (m) {
      const int t = __builtin_ctz(m);
      m &= m - 1;
      const float score = s[j + t];
      if (!top.admits(score)) continue;  // the bar may have risen within this vector
      const int64_t index = n0 + j + t;
      if (ex_begin != ex_end && std::binary_search(ex_begin, ex_end, index)) continue;
      top.push(score, index);
    }
  }
}

}  // namespace

void fused_topk_cpu(const FusedTopKArgs& a) {
  const int64_t B = a.batch, N = a.num_items, k = a.k;
  const int64_t k_eff = std::min(k, N);
  fill_no_result(a);
  if (B == 0 || k_eff == 0) return;

  // Spaces actually read, and the user rows with their weights folded in.
  std::vector<Space> spaces;
  int64_t dim = 0;
  if (a.item_cf) spaces.push_back({a.item_cf, a.dc, dim}), dim += a.dc;
  if (a.item_ct) spaces.push_back({a.item_ct, a.dt, dim}), dim += a.dt;
  if (spaces.empty()) throw std::invalid_argument("fused_topk: no item table to score");
  std::vector<float> scaled(size_t(B * dim));
  for (int64_t b = 0; b < B; ++b) {
    float* row = scaled.data() + b * dim;
    int64_t off = 0;
    if (a.item_cf) {
      for (int64_t d = 0; d < a.dc; ++d) row[off + d] = a.w_cf[b] * a.user_cf[b * a.dc + d];
      off += a.dc;
    }
    if (a.item_ct) {
      for (int64_t d = 0; d < a.dt; ++d) row[off + d] = a.w_ct[b] * a.user_ct[b * a.dt + d];
    }
  }

  const int64_t num_blocks = (N + kBlock - 1) / kBlock;
  // Waking a thread costs tens of microseconds (more with OMP_WAIT_POLICY=passive):
  // give each thread at least kMinWork multiply-adds, so a small catalog is
  // scored by one thread instead of paying for a team it cannot use.
  constexpr int64_t kMinWork = int64_t(1) << 21;
  const int64_t work = N * dim * B;
  int threads = a.num_threads > 0 ? a.num_threads : omp_get_max_threads();
  threads = int(std::max<int64_t>(1, std::min<int64_t>({int64_t(threads), num_blocks, work / kMinWork + 1})));
  const int64_t cap = topk_capacity(k_eff);
  const bool packed = B >= kSmallBatch;
  const int64_t tile_users = packed ? kMR : B;

  // Everything the threads touch is allocated here: nothing inside the
  // parallel region may throw.
  std::vector<Candidate> storage(size_t(threads) * B * cap);
  std::vector<int64_t> sizes(size_t(threads) * B, 0);
  std::vector<AlignedBuffer> panels, tiles;
  for (int t = 0; t < threads; ++t) {
    panels.push_back(aligned_floats(packed ? dim * kBlock : 1));
    tiles.push_back(aligned_floats(tile_users * kBlock));
  }

#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int64_t blk_begin = num_blocks * t / threads, blk_end = num_blocks * (t + 1) / threads;
    std::vector<TopKBuffer> tops(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) tops[b].reset(storage.data() + (t * B + b) * cap, k_eff, cap);
    float* P = panels[t].get();
    float* S = tiles[t].get();
    auto excluded = [&](int64_t b, const int64_t** lo, const int64_t** hi) {
      if (a.exclude_indptr) {
        *lo = a.exclude_indices + a.exclude_indptr[b];
        *hi = a.exclude_indices + a.exclude_indptr[b + 1];
      } else {
        *lo = *hi = nullptr;
      }
    };

    for (int64_t blk = blk_begin; blk < blk_end; ++blk) {
      const int64_t n0 = blk * kBlock, nb = std::min(kBlock, N - n0);
      const int64_t* lo;
      const int64_t* hi;
      if (!packed) {
        score_block_rows(spaces, scaled.data(), dim, B, n0, nb, S);
        for (int64_t b = 0; b < B; ++b) {
          excluded(b, &lo, &hi);
          offer_row(S + b * kBlock, nb, n0, tops[b], lo, hi);
        }
        continue;
      }
      const int64_t nb_pad = (nb + 31) / 32 * 32;
      pack_panel(spaces, dim, n0, nb, nb_pad, P);
      for (int64_t b0 = 0; b0 < B; b0 += kMR) {
        const int mr = int(std::min<int64_t>(kMR, B - b0));
        micro_tile_dispatch(mr, scaled.data() + b0 * dim, dim, P, dim, nb_pad, S);
        for (int r = 0; r < mr; ++r) {
          excluded(b0 + r, &lo, &hi);
          offer_row(S + r * kBlock, nb, n0, tops[b0 + r], lo, hi);
        }
      }
    }
    for (int64_t b = 0; b < B; ++b) sizes[t * B + b] = tops[b].size();
  }

  // Merge the threads' candidates per user; each thread's list is exact for
  // its range, so the k best of their union are the k best overall.
  std::vector<std::vector<Candidate>> merge_buffers(static_cast<size_t>(threads));
  for (auto& m : merge_buffers) m.reserve(size_t(threads) * cap);  // no reallocation below
  const int merge_threads = B >= 64 ? threads : 1;
#pragma omp parallel num_threads(merge_threads)
  {
    std::vector<Candidate>& merged = merge_buffers[omp_get_thread_num()];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      merged.clear();
      for (int t = 0; t < threads; ++t) {
        const Candidate* c = storage.data() + (t * B + b) * cap;
        merged.insert(merged.end(), c, c + sizes[t * B + b]);
      }
      const int64_t take = std::min<int64_t>(k_eff, int64_t(merged.size()));
      std::partial_sort(merged.begin(), merged.begin() + take, merged.end(), better);
      for (int64_t i = 0; i < take; ++i) {
        a.out_indices[b * k + i] = merged[i].index;
        a.out_scores[b * k + i] = merged[i].score;
      }
    }
  }
}

}  // namespace genre
