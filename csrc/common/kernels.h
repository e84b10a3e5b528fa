// Plain-pointer entry points of the kernels, shared by the CPU and CUDA
// implementations. The pybind11 layer (bindings.cpp) converts arrays to these.
#pragma once

#include <cstdint>
#include <limits>

namespace genre {

// Scores of item n for user b: w_cf[b] * <user_cf[b], item_cf[n]> + w_ct[b] * <user_ct[b], item_ct[n]>.
// A space whose pointers are null is not read (its weight is treated as 0).
struct FusedTopKArgs {
  const float* user_cf = nullptr;  // [B, dc]
  const float* item_cf = nullptr;  // [N, dc]
  int64_t dc = 0;
  const float* user_ct = nullptr;  // [B, dt]
  const float* item_ct = nullptr;  // [N, dt]
  int64_t dt = 0;
  const float* w_cf = nullptr;  // [B] weight of the CF space per user
  const float* w_ct = nullptr;  // [B] weight of the content space per user
  int64_t batch = 0;            // B
  int64_t num_items = 0;        // N
  int64_t k = 0;
  const int64_t* exclude_indptr = nullptr;   // [B + 1], sorted segments of exclude_indices
  const int64_t* exclude_indices = nullptr;  // each segment sorted ascending
  int64_t* out_indices = nullptr;            // [B, k]
  float* out_scores = nullptr;               // [B, k]
  int num_threads = 0;                       // 0: OpenMP's default
};

void fused_topk_cpu(const FusedTopKArgs& args);

// The answer before any item is found: index -1, score -inf everywhere
// (the tail of every row where fewer than k items are eligible).
inline void fill_no_result(const FusedTopKArgs& args) {
  for (int64_t i = 0; i < args.batch * args.k; ++i) {
    args.out_indices[i] = -1;
    args.out_scores[i] = -std::numeric_limits<float>::infinity();
  }
}

struct CrossFeaturesArgs {
  const float* user = nullptr;        // [B, D]
  const float* items = nullptr;       // [N, D]
  const int64_t* candidates = nullptr;  // [B, K], -1 for none
  const float* scores = nullptr;      // [B, K] or null
  int64_t batch = 0, num_items = 0, dim = 0, num_candidates = 0;
  float* out = nullptr;  // [B, K, 4D (+1)]
  int num_threads = 0;
  bool scores_on_host = false;  // CUDA only: scores is a host pointer to stage
};

void cross_features_cpu(const CrossFeaturesArgs& args);

// Throws std::invalid_argument when a candidate lies outside [-1, N).
void check_candidates(const int64_t* candidates, int64_t count, int64_t num_items);

#ifdef GENRE_SERVE_WITH_CUDA
// Same semantics. The vectors and tables (user_*, item_*, user, items, and
// scores unless scores_on_host) are device pointers; the small per-call inputs
// that the wrapper validates on the host (w_cf, w_ct, the exclusion CSR,
// candidates) are host pointers, staged to the device in one pooled
// allocation; the outputs are host pointers the results are copied to.
void fused_topk_cuda(const FusedTopKArgs& args);
void cross_features_cuda(const CrossFeaturesArgs& args);
int cuda_device_count();
#endif

}  // namespace genre
