// The one way CUDA errors leave the extension: an exception naming file:line.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace genre {

inline void cuda_check(cudaError_t err, const char* expr, const char* file, int line) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr +
                             " failed: " + cudaGetErrorString(err));
  }
}

// Owns one device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_) cuda_check(cudaMalloc(&ptr_, bytes_), "cudaMalloc", __FILE__, __LINE__);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// One call's temporary device memory, taken from the device's stream-ordered
// pool on the legacy default stream (where the kernels run): after the first
// call it is reused instead of costing a cudaMalloc and a synchronizing
// cudaFree per request, as a caching allocator would. The pool keeps what it
// got (its release threshold is raised once per device; by default it would
// hand everything back to the driver at every synchronization).
class ScratchBuffer {
 public:
  explicit ScratchBuffer(size_t bytes) : bytes_(bytes) {
    if (!bytes_) return;
    keep_pool_memory();
    cuda_check(cudaMallocAsync(&ptr_, bytes_, 0), "cudaMallocAsync", __FILE__, __LINE__);
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, 0);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  static void keep_pool_memory() {
    static std::atomic<bool> done[kMaxDevices];
    int device = 0;
    cuda_check(cudaGetDevice(&device), "cudaGetDevice", __FILE__, __LINE__);
    if (device >= kMaxDevices || done[device].exchange(true)) return;
    cudaMemPool_t pool;
    cuda_check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool", __FILE__, __LINE__);
    uint64_t keep_all = UINT64_MAX;
    cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all), "cudaMemPoolSetAttribute",
               __FILE__, __LINE__);
  }
  static constexpr int kMaxDevices = 64;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace genre

#define GENRE_CUDA_CHECK(expr) ::genre::cuda_check((expr), #expr, __FILE__, __LINE__)
