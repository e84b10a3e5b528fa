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

inline float hsum16(v16 v) {
  float lanes[16];
  std::memcpy(lanes, &v, sizeof(lanes));
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  for (int i = 0; i < 16; i += 4) {
    s0 += lanes[i];
    s1 += lanes[i + 1];
    s2 += lanes[i + 2];
    s3 += lanes[i + 3];
  }
  return (s0 + s1) + (s2 + s3);
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
