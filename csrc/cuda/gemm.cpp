// cuBLAS found with dlopen: the few declarations used are written out here
// (their ABI has been stable since the _v2 API), so neither cuBLAS's headers
// nor its library are needed to build or to load the module.
#include "cuda/gemm.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace genre {
namespace {

struct cublasContext;
using Handle = cublasContext*;
using Status = int;       // CUBLAS_STATUS_SUCCESS is 0
constexpr int kOpN = 0;   // CUBLAS_OP_N
constexpr int kOpT = 1;   // CUBLAS_OP_T
using CreateFn = Status (*)(Handle*);
using SgemmFn = Status (*)(Handle, int, int, int, int, int, const float*, const float*, int, const float*, int,
                           const float*, float*, int);

class Cublas final : public Gemm {
 public:
  Cublas(SgemmFn sgemm, Handle handle, int device) : sgemm_(sgemm), handle_(handle), device_(device) {}
  int device() const { return device_; }

  void users_times_items(int m, int n, int k, float alpha, const float* items, const float* users, float beta,
                         float* scores) override {
    // Column-major view: scores^T [m x n] = items [k x m]^T . users [k x n].
    std::lock_guard<std::mutex> lock(mutex_);  // one handle, calls from any thread
    const Status status = sgemm_(handle_, kOpT, kOpN, m, n, k, &alpha, items, k, users, k, &beta, scores, m);
    if (status != 0) throw std::runtime_error("cuBLAS sgemm failed with status " + std::to_string(status));
  }

 private:
  SgemmFn sgemm_;
  Handle handle_;
  int device_;
  std::mutex mutex_;
};

std::unique_ptr<Cublas> load_cublas() {
  // The sonames of CUDA 13 and 12, then the unversioned name; a process that
  // already loaded cuBLAS (torch does) gets that one back.
  for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) continue;
    auto create = reinterpret_cast<CreateFn>(dlsym(lib, "cublasCreate_v2"));
    auto sgemm = reinterpret_cast<SgemmFn>(dlsym(lib, "cublasSgemm_v2"));
    Handle handle = nullptr;
    int device = 0;
    if (create && sgemm && cudaGetDevice(&device) == cudaSuccess && create(&handle) == 0) {
      return std::make_unique<Cublas>(sgemm, handle, device);  // the library stays loaded
    }
    dlclose(lib);
  }
  cudaGetLastError();  // leave no sticky error behind
  return nullptr;
}

}  // namespace

Gemm* Gemm::for_current_device() {
  static std::once_flag once;
  static std::unique_ptr<Cublas> cublas;
  std::call_once(once, [] { cublas = load_cublas(); });
  int device = 0;
  if (!cublas || cudaGetDevice(&device) != cudaSuccess || device != cublas->device()) return nullptr;
  return cublas.get();
}

}  // namespace genre
