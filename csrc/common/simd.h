// Portable 16-lane float vectors (GCC/Clang vector extensions) plus the one
// operation they cannot express portably: a comparison turned into a bitmask.
// With -march=native on an AVX-512 machine v16 is one zmm register; on AVX2 it
// is split into two ymm registers by the compiler; elsewhere into SSE/NEON.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace genre {

typedef float v16 __attribute__((vector_size(64)));
// Same vector type with 4-byte alignment, for unaligned loads and stores.
typedef float v16u __attribute__((vector_size(64), aligned(4)));

inline v16 load16(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline void store16(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }
inline v16 splat16(float x) { return v16{} + x; }

typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

// Horizontal sum by halving (in registers: no round trip through memory).
inline float hsum16(v16 v) {
  const v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// Bit i set where lane i of v passes the bar: v > bar when strict, v >= bar
// otherwise. NaN lanes never pass (ordered comparisons).
inline uint32_t mask_pass(v16 v, float bar, bool strict) {
#if defined(__AVX512F__)
  const __m512 x = reinterpret_cast<__m512&>(v);
  const __m512 b = _mm512_set1_ps(bar);
  return strict ? _mm512_cmp_ps_mask(x, b, _CMP_GT_OQ) : _mm512_cmp_ps_mask(x, b, _CMP_GE_OQ);
#elif defined(__AVX2__)
  float lanes[16];
  std::memcpy(lanes, &v, sizeof(lanes));
  const __m256 lo = _mm256_loadu_ps(lanes), hi = _mm256_loadu_ps(lanes + 8);
  const __m256 b = _mm256_set1_ps(bar);
  uint32_t m_lo, m_hi;
  if (strict) {
    m_lo = _mm256_movemask_ps(_mm256_cmp_ps(lo, b, _CMP_GT_OQ));
    m_hi = _mm256_movemask_ps(_mm256_cmp_ps(hi, b, _CMP_GT_OQ));
  } else {
    m_lo = _mm256_movemask_ps(_mm256_cmp_ps(lo, b, _CMP_GE_OQ));
    m_hi = _mm256_movemask_ps(_mm256_cmp_ps(hi, b, _CMP_GE_OQ));
  }
  return m_lo | (m_hi << 8);
#else
  float lanes[16];
  std::memcpy(lanes, &v, sizeof(lanes));
  uint32_t m = 0;
  for (int i = 0; i < 16; ++i) m |= uint32_t(strict ? lanes[i] > bar : lanes[i] >= bar) << i;
  return m;
#endif
}

}  // namespace genre
