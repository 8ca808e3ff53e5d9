/* PReLU over a channels-last blob, forward and backward, in float32 and bfloat16: the kernels
 * of runner/net/prelu_kernel.py, compiled on first use by runner/net/compiled.py.
 *
 * Why our own: PyTorch 2.13's CPU PReLU branches on every value's sign, and in bfloat16 it
 * vectorizes nothing (10x slower than these on FSRCNN's 16x56x29x29 training blobs).
 *
 * A channels-last blob is one run of values whose channel repeats with period C. The slopes
 * are tiled over TILE_PIXELS pixels, so every inner loop below runs over plain arrays of equal
 * index and the compiler vectorizes it; the branch becomes a select. Each loop is compiled for
 * AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and the baseline, chosen when the library loads.
 *
 * bfloat16 values are the high halves of float32s: widened by a shift, computed in float32,
 * rounded to nearest even on the way back (NaN stays a quiet NaN), as PyTorch rounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* pixels of slopes tiled: 64 pixels of 56 channels are 14 KB, in L1 */
#define TILE_PIXELS 64

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

/* The slopes (one per channel) tiled over TILE_PIXELS pixels: `channels * TILE_PIXELS` floats
 * that the caller frees; NULL when out of memory. */
static float *tiled_slopes(const float *slopes, int64_t channels) {
    float *tiled = malloc(sizeof(float) * channels * TILE_PIXELS);
    if (tiled != NULL)
        for (int64_t j = 0; j < channels * TILE_PIXELS; j++)
            tiled[j] = slopes[j % channels];
    return tiled;
}

/* top = bottom > 0 ? bottom : slope * bottom (`top` may be `bottom`: in place).
 * bottom_diff = bottom > 0 ? top_diff : slope * top_diff, and per channel
 * slope_diff = the sum of top_diff * bottom where bottom <= 0, in float32: each thread sums
 * into a row of its own, the rows are added up at the end.
 * Both return 0, or -1 when out of memory (nothing written then). */
#define PRELU_KERNELS(SUFFIX, TYPE)                                                            \
VECTOR_CLONES int prelu_forward_##SUFFIX(const TYPE *bottom, TYPE *top, const float *slopes,  \
                                         int64_t channels, int64_t count, int threads) {      \
    int64_t period = channels * TILE_PIXELS, blocks = (count + period - 1) / period;           \
    float *tiled = tiled_slopes(slopes, channels);                                             \
    if (tiled == NULL)                                                                         \
        return -1;                                                                             \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                          \
    for (int64_t block = 0; block < blocks; block++) {                                         \
        int64_t start = block * period;                                                        \
        int64_t length = count - start < period ? count - start : period;                      \
        const TYPE *in = bottom + start;                                                       \
        TYPE *out = top + start;                                                               \
        for (int64_t j = 0; j < length; j++) {                                                 \
            float value = load_##SUFFIX(in, j);                                                \
            float negative = value * tiled[j];                                                 \
            store_##SUFFIX(out, j, value > 0.0f ? value : negative);                           \
        }                                                                                      \
    }                                                                                          \
    free(tiled);                                                                               \
    return 0;                                                                                  \
}                                                                                              \
                                                                                               \
VECTOR_CLONES int prelu_backward_##SUFFIX(const TYPE *bottom, const TYPE *top_diff,           \
                                          TYPE *bottom_diff, const float *slopes,              \
                                          float *slope_diff, int64_t channels, int64_t count, \
                                          int threads) {                                       \
    int64_t period = channels * TILE_PIXELS, blocks = (count + period - 1) / period;           \
    float *tiled = tiled_slopes(slopes, channels);                                             \
    float *rows = calloc((size_t)threads * period, sizeof(float));                             \
    if (tiled == NULL || rows == NULL) {                                                       \
        free(tiled);                                                                           \
        free(rows);                                                                            \
        return -1;                                                                             \
    }                                                                                          \
    _Pragma("omp parallel num_threads(threads)")                                               \
    {                                                                                          \
        float *row = rows + (int64_t)omp_get_thread_num() * period;                            \
        _Pragma("omp for schedule(static)")                                                    \
        for (int64_t block = 0; block < blocks; block++) {                                     \
            int64_t start = block * period;                                                    \
            int64_t length = count - start < period ? count - start : period;                  \
            const TYPE *in = bottom + start, *diff = top_diff + start;                         \
            TYPE *out = bottom_diff + start;                                                   \
            for (int64_t j = 0; j < length; j++) {                                             \
                float value = load_##SUFFIX(in, j), gradient = load_##SUFFIX(diff, j);         \
                float through_slope = gradient * tiled[j], slope_term = gradient * value;      \
                int positive = value > 0.0f;                                                   \
                store_##SUFFIX(out, j, positive ? gradient : through_slope);                   \
                row[j] += positive ? 0.0f : slope_term;                                        \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    for (int64_t c = 0; c < channels; c++)                                                     \
        slope_diff[c] = 0.0f;                                                                  \
    for (int64_t j = 0; j < (int64_t)threads * period; j++)                                    \
        slope_diff[j % channels] += rows[j];                                                   \
    free(tiled);                                                                               \
    free(rows);                                                                                \
    return 0;                                                                                  \
}

PRELU_KERNELS(f32, float)
PRELU_KERNELS(bf16, uint16_t)
