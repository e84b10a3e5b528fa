// Cross features [u, v, u*v, |u-v| (, score)] for every (user, candidate) pair
// in one pass: each output row is written once, reading u (cached) and the
// candidate's item row. torch/numpy need one pass per part plus temporaries.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/kernels.h"

namespace genre {

void check_candidates(const int64_t* candidates, int64_t count, int64_t num_items) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t c = candidates[i];
    if (c < -1 || c >= num_items) {
      throw std::invalid_argument("candidates: index " + std::to_string(c) + " at flat position " +
                                  std::to_string(i) + " is outside [-1, " + std::to_string(num_items) +
                                  ")");
    }
  }
}

void cross_features_cpu(const CrossFeaturesArgs& a) {
  const int64_t B = a.batch, K = a.num_candidates, D = a.dim;
  const int64_t F = 4 * D + (a.scores ? 1 : 0);
  check_candidates(a.candidates, B * K, a.num_items);
  const int threads = a.num_threads > 0 ? a.num_threads : omp_get_max_threads();

#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < B * K; ++r) {
    float* __restrict o = a.out + r * F;
    const int64_t c = a.candidates[r];
    if (c < 0) {
      std::memset(o, 0, sizeof(float) * size_t(F));
      continue;
    }
    const float* __restrict u = a.user + (r / K) * D;
    const float* __restrict v = a.items + c * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) {
      const float ud = u[d], vd = v[d];
      o[d] = ud;
      o[D + d] = vd;
      o[2 * D + d] = ud * vd;
      o[3 * D + d] = std::fabs(ud - vd);
    }
    if (a.scores) o[4 * D] = a.scores[r];
  }
}

}  // namespace genre
