// Bounded top-k selection shared by the CPU kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace genre {

struct Candidate {
  float score;
  int64_t index;
};

// The result order of every kernel: higher score first, lower index on ties.
inline bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

// Capacity of one user's append buffer for a top-k of size k. Pruning costs
// O(capacity), so the slack above k bounds the amortised cost per push while
// keeping memory at about 2k for the usual k <= 1024.
inline int64_t topk_capacity(int64_t k) { return k + std::min<int64_t>(std::max<int64_t>(k, 16), 1024); }

// One user's running top-k: an append buffer pruned with nth_element when it
// fills. (A binary heap was measured slower here: its unpredictable sift-down
// costs more than re-selecting about k * log2(N/k) candidates in bulk.)
// Candidates must arrive in ascending index order, so that a candidate
// whose score equals the k-th best has a higher index and loses the tie: the
// admission test is then a strict comparison against one float.
class TopKBuffer {
 public:
  void reset(Candidate* storage, int64_t k, int64_t capacity) {
    buf_ = storage;
    k_ = k;
    capacity_ = capacity;
    size_ = 0;
    full_ = false;
    threshold_ = -std::numeric_limits<float>::infinity();
  }

  // NaN scores are never admitted; -inf scores are, until k better ones exist.
  bool full() const { return full_; }
  float threshold() const { return threshold_; }
  bool admits(float s) const { return full_ ? s > threshold_ : s == s; }

  void push(float s, int64_t index) {
    buf_[size_++] = Candidate{s, index};
    if (size_ == capacity_) prune();
  }

  // Keeps the k best; afterwards the k-th best score is the admission bar.
  void prune() {
    if (size_ <= k_) return;
    std::nth_element(buf_, buf_ + (k_ - 1), buf_ + size_, better);
    size_ = k_;
    full_ = true;
    threshold_ = buf_[k_ - 1].score;
  }

  const Candidate* data() const { return buf_; }
  int64_t size() const { return size_; }

 private:
  Candidate* buf_ = nullptr;
  int64_t k_ = 0, capacity_ = 0, size_ = 0;
  bool full_ = false;
  float threshold_ = 0.f;
};

}  // namespace genre
