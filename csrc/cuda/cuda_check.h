// The one way CUDA errors leave the extension: an exception naming file:line.
#pragma once

#include <cuda_runtime.h>

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

}  // namespace genre

#define GENRE_CUDA_CHECK(expr) ::genre::cuda_check((expr), #expr, __FILE__, __LINE__)
