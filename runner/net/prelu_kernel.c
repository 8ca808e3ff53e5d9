/* PReLU over a channels-last blob, forward and backward, in float32 and bfloat16: the kernels
 * of runner/net/prelu_kernel.py, compiled on first use by runner/net/compiled.py.
 *
 * Why our own: PyTorch 2.13's CPU PReLU branches on every value's sign, and in bfloat16 it
 * vectorizes nothing (10x slower than these on FSRCNN's 16x56x29x29 training blobs).
 *
 * A channels-last blob is one run of values whose channel repeats with period C. The caller
 * tiles the slopes over `period` values (a whole number of pixels, a few KB that stay in L1),
 * so every inner loop below runs over plain arrays of equal index and the compiler vectorizes
 * it; the branch becomes a select. Each loop is compiled for AVX-512 (x86-64-v4), AVX2
 * (x86-64-v3) and the baseline, chosen when the library loads.
 *
 * bfloat16 values are the high halves of float32s: widened by a shift, computed in float32,
 * rounded to nearest even on the way back (NaN stays a quiet NaN), as PyTorch rounds.
 */
#include <stdint.h>
#include <string.h>
#include <omp.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

static inline float load_f32(const float *values, int64_t i) { return values[i]; }
static inline void store_f32(float *values, int64_t i, float value) { values[i] = value; }

static inline float load_bf16(const uint16_t *values, int64_t i) {
    uint32_t bits = (uint32_t)values[i] << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline void store_bf16(uint16_t *values, int64_t i, float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    uint32_t is_nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
    values[i] = (uint16_t)(is_nan ? 0x7FC0u : rounded);
}

/* top = bottom > 0 ? bottom : slope * bottom; `top` may be `bottom` (in place).
 * bottom_diff = bottom > 0 ? top_diff : slope * top_diff, and per thread
 * slope_diff_rows[thread][j % period] += bottom > 0 ? 0 : top_diff * bottom, in float32; the
 * caller sums the rows per channel. `slope_diff_rows` holds `threads` rows of `period` zeros. */
#define PRELU_KERNELS(SUFFIX, TYPE)                                                            \
VECTOR_CLONES void prelu_forward_##SUFFIX(const TYPE *bottom, TYPE *top, const float *slopes, \
                                          int64_t count, int64_t period, int threads) {       \
    int64_t blocks = (count + period - 1) / period;                                            \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                          \
    for (int64_t block = 0; block < blocks; block++) {                                         \
        int64_t start = block * period;                                                        \
        int64_t length = count - start < period ? count - start : period;                      \
        const TYPE *in = bottom + start;                                                       \
        TYPE *out = top + start;                                                               \
        for (int64_t j = 0; j < length; j++) {                                                 \
            float value = load_##SUFFIX(in, j);                                                \
            float negative = value * slopes[j];                                                \
            store_##SUFFIX(out, j, value > 0.0f ? value : negative);                           \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
VECTOR_CLONES void prelu_backward_##SUFFIX(const TYPE *bottom, const TYPE *top_diff,          \
                                           TYPE *bottom_diff, const float *slopes,             \
                                           float *slope_diff_rows, int64_t count,             \
                                           int64_t period, int threads) {                      \
    int64_t blocks = (count + period - 1) / period;                                            \
    _Pragma("omp parallel num_threads(threads)")                                               \
    {                                                                                          \
        float *slope_diff = slope_diff_rows + (int64_t)omp_get_thread_num() * period;          \
        _Pragma("omp for schedule(static)")                                                    \
        for (int64_t block = 0; block < blocks; block++) {                                     \
            int64_t start = block * period;                                                    \
            int64_t length = count - start < period ? count - start : period;                  \
            const TYPE *in = bottom + start, *diff = top_diff + start;                         \
            TYPE *out = bottom_diff + start;                                                   \
            for (int64_t j = 0; j < length; j++) {                                             \
                float value = load_##SUFFIX(in, j), gradient = load_##SUFFIX(diff, j);         \
                float through_slope = gradient * slopes[j], slope_term = gradient * value;     \
                int positive = value > 0.0f;                                                   \
                store_##SUFFIX(out, j, positive ? gradient : through_slope);                   \
                slope_diff[j] += positive ? 0.0f : slope_term;                                 \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

PRELU_KERNELS(f32, float)
PRELU_KERNELS(bf16, uint16_t)
