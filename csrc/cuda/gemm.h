// cuBLAS's sgemm, loaded at run time. The module links no cuBLAS, so it loads
// and runs where there is none; fused_topk then scores batches with its scan
// kernel instead (see kernels.cu).
#pragma once

namespace genre {

class Gemm {
 public:
  // The cuBLAS of this process for the current device; null when no
  // libcublas could be loaded, or when the current device is not the one
  // its handle was made for.
  static Gemm* for_current_device();

  // scores[n][m] (row-major, leading dimension m) = alpha * users[n][k] . items[m][k]^T + beta * scores,
  // all row-major device arrays, on the legacy default stream.
  virtual void users_times_items(int m, int n, int k, float alpha, const float* items, const float* users, float beta,
                                 float* scores) = 0;
  virtual ~Gemm() = default;
};

}  // namespace genre
