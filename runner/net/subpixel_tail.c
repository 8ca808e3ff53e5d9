/* A net's sub-pixel tail at inference in one pass: a 1x1 convolution widening a narrow
 * channels-last blob, PReLU, and the sub-pixel convolution of the Deconvolution after them
 * (FSRCNN's expanding layer, its PReLU and its 9x9 stride-3 deconvolution as a 3x3
 * convolution into 9 phases): the kernel of runner/net/subpixel_tail.py, compiled on first use
 * by runner/net/compiled.py.
 *
 * Why our own: oneDNN computes output channels in blocks of 16 floats, so FSRCNN's 9 phases
 * cost it 16 (the largest layer of the net, 4,536 of its 12,464 multiply-adds per pixel), and
 * the wide blob between the layers goes through memory twice. Here the wide rows live only in
 * a ring of `taps_h` planar rows per thread (FSRCNN's 56 channels of a 481-pixel row: 120
 * KB each), each computed once, and the output channels are taken in groups of OUT_GROUP, whose
 * accumulators for OUT_VECTORS vectors of pixels stay in registers.
 *
 * Every output pixel is the same sum in the same order wherever it lies in the image, in a
 * band or in a thread's share of the rows (every lane of a vector computes its own pixel, the
 * columns past the image are zeros), so tiles and bands agree to the bit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define LANES 16                     /* floats in a vector */
#define OUT_VECTORS 4                /* vectors of pixels per output channel at a time */
#define OUT_GROUP 3                  /* output channels at a time */
#define BLOCK (LANES * OUT_VECTORS)  /* output pixels at a time along a row */
#define WIDE_GROUP 8                 /* wide channels the 1x1 convolution computes at a time */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
/* the same vector, read or written at any float's address */
typedef int32_t mask __attribute__((vector_size(LANES * sizeof(float))));
typedef float vec_unaligned __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));

#if defined(__GNUC__) && defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,avx512vl,fma")))
#else
#define AVX512
#endif

AVX512 static inline vec load(const float *at) { return *(const vec_unaligned *)at; }
AVX512 static inline void store(float *at, vec value) { *(vec_unaligned *)at = value; }

/* Whether this processor runs the kernel (AVX-512; elsewhere oneDNN computes the layers). */
int subpixel_tail_supported(void) {
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

struct tail {
    const float *narrow;         /* the narrow blob of one image: (height, width, narrow) */
    int64_t pixel_stride, row_stride;
    int64_t height, width, narrow_channels, wide_channels;
    const float *expand_weight;  /* (wide, narrow), wide a multiple of WIDE_GROUP */
    const float *expand_bias;    /* (wide) */
    const float *slopes;         /* (wide) */
    const float *weight;         /* (out, wide, taps_h, taps_w), out a multiple of OUT_GROUP */
    const float *bias;           /* (out) */
    int64_t out_channels, taps_h, taps_w, pad_h, pad_w;
    float *top;                  /* (out_channels, out_height, out_width) planar */
    int64_t out_height, out_width, out_channels_kept;
    int64_t row_floats;          /* a planar wide row with its zero columns */
};

/* One wide row (input row `row` of the narrow blob) into `wide` planar, PReLU applied; the
 * zero columns around it stay as they were written. `planar`: scratch of narrow x width. */
AVX512 static void widen_row(const struct tail *t, int64_t row, float *wide, float *planar) {
    int64_t width = t->width, vectors = (width + LANES - 1) / LANES, n = t->narrow_channels;
    const float *pixels = t->narrow + row * t->row_stride;
    int64_t padded_width = vectors * LANES;
    for (int64_t x = 0; x < width; x++)
        for (int64_t k = 0; k < n; k++)
            planar[k * padded_width + x] = pixels[x * t->pixel_stride + k];
    for (int64_t k = 0; k < n; k++)
        memset(planar + k * padded_width + width, 0, (padded_width - width) * sizeof(float));
    for (int64_t c0 = 0; c0 < t->wide_channels; c0 += WIDE_GROUP) {
        for (int64_t v = 0; v < vectors; v++) {
            vec acc[WIDE_GROUP];
            for (int64_t c = 0; c < WIDE_GROUP; c++)
                acc[c] = (vec){0} + t->expand_bias[c0 + c];
            for (int64_t k = 0; k < n; k++) {
                vec in = load(planar + k * padded_width + v * LANES);
                for (int64_t c = 0; c < WIDE_GROUP; c++)
                    acc[c] += in * t->expand_weight[(c0 + c) * n + k];
            }
            int64_t valid = width - v * LANES < LANES ? width - v * LANES : LANES;
            for (int64_t c = 0; c < WIDE_GROUP; c++) {
                /* PyTorch's PReLU: the value where positive, else the value times the slope */
                mask positive = acc[c] > 0;
                vec value = (vec)(((mask)acc[c] & positive)
                                  | ((mask)(acc[c] * t->slopes[c0 + c]) & ~positive));
                float *out = wide + (c0 + c) * t->row_floats + t->pad_w + v * LANES;
                if (valid == LANES)
                    store(out, value);
                else
                    memcpy(out, &value, valid * sizeof(float));
            }
        }
    }
}

/* Output rows first..last of one image, with a ring of taps_h wide rows. */
AVX512 static void tail_rows(const struct tail *t, int64_t first, int64_t last, float *ring,
                             const float *zero_row, float *planar, float *scratch) {
    int64_t wide = t->wide_channels, row_floats = t->row_floats;
    int64_t ring_floats = wide * row_floats;
    const float *rows[t->taps_h];
    int64_t held = first - t->pad_h - 1;    /* the last input row in the ring */
    for (int64_t r = first; r < last; r++) {
        for (int64_t dy = 0; dy < t->taps_h; dy++) {
            int64_t in_row = r - t->pad_h + dy;
            if (in_row < 0 || in_row >= t->height) {
                rows[dy] = zero_row;
                continue;
            }
            float *slot = ring + (in_row % t->taps_h) * ring_floats;
            if (in_row > held) {
                widen_row(t, in_row, slot, planar);
                held = in_row;
            }
            rows[dy] = slot;
        }
        for (int64_t o0 = 0; o0 < t->out_channels; o0 += OUT_GROUP) {
            const float *w = t->weight + o0 * wide * t->taps_h * t->taps_w;
            int64_t per_out = wide * t->taps_h * t->taps_w;
            for (int64_t x0 = 0; x0 < t->out_width; x0 += BLOCK) {
                vec acc[OUT_GROUP][OUT_VECTORS];
                for (int64_t o = 0; o < OUT_GROUP; o++)
                    for (int64_t j = 0; j < OUT_VECTORS; j++)
                        acc[o][j] = (vec){0} + t->bias[o0 + o];
                for (int64_t c = 0; c < wide; c++)
                    for (int64_t dy = 0; dy < t->taps_h; dy++) {
                        const float *in = rows[dy] + c * row_floats + x0;
                        const float *tap = w + (c * t->taps_h + dy) * t->taps_w;
                        for (int64_t dx = 0; dx < t->taps_w; dx++) {
                            vec v[OUT_VECTORS];
                            for (int64_t j = 0; j < OUT_VECTORS; j++)
                                v[j] = load(in + dx + j * LANES);
                            /* held in registers: GCC would fold each load into every
                             * multiply-add reading it, 12 loads for 12 of them instead of 4
                             * (the tail of a BSD100 image 29.6 against 18.9 ms) */
                            for (int64_t j = 0; j < OUT_VECTORS; j++)
                                __asm__("" : "+v"(v[j]));
                            for (int64_t o = 0; o < OUT_GROUP; o++) {
                                float weight = tap[o * per_out + dx];
                                for (int64_t j = 0; j < OUT_VECTORS; j++)
                                    acc[o][j] += v[j] * weight;
                            }
                        }
                    }
                int64_t valid = t->out_width - x0 < BLOCK ? t->out_width - x0 : BLOCK;
                for (int64_t o = 0; o < OUT_GROUP && o0 + o < t->out_channels_kept; o++) {
                    float *out = t->top + ((o0 + o) * t->out_height + r) * t->out_width + x0;
                    if (valid == BLOCK) {
                        for (int64_t j = 0; j < OUT_VECTORS; j++)
                            store(out + j * LANES, acc[o][j]);
                    } else {
                        memcpy(scratch, acc[o], sizeof acc[o]);
                        memcpy(out, scratch, valid * sizeof(float));
                    }
                }
            }
        }
    }
}

/* The tail of one image; returns 0, or -1 when memory for the rings ran out. */
int subpixel_tail(const float *narrow, int64_t pixel_stride, int64_t row_stride,
                  int64_t height, int64_t width, int64_t narrow_channels,
                  const float *expand_weight, const float *expand_bias, const float *slopes,
                  int64_t wide_channels, const float *weight, const float *bias,
                  int64_t out_channels, int64_t out_channels_kept, int64_t taps_h,
                  int64_t taps_w, int64_t pad_h, int64_t pad_w, float *top, int threads) {
    struct tail t = {narrow, pixel_stride, row_stride, height, width, narrow_channels,
                     wide_channels, expand_weight, expand_bias, slopes, weight, bias,
                     out_channels, taps_h, taps_w, pad_h, pad_w, top,
                     height + 2 * pad_h - taps_h + 1, width + 2 * pad_w - taps_w + 1,
                     out_channels_kept, 0};
    if (t.out_height <= 0 || t.out_width <= 0)
        return 0;
    int64_t blocks = (t.out_width + BLOCK - 1) / BLOCK;
    /* every vector read of a block's row stays inside: pad_w zeros, the row, zeros after */
    t.row_floats = blocks * BLOCK + taps_w - 1 + LANES;
    int64_t padded_width = (width + LANES - 1) / LANES * LANES;
    int64_t wide_row = wide_channels * t.row_floats;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        int count = omp_get_num_threads(), index = omp_get_thread_num();
        int64_t share = (t.out_height + count - 1) / count;
        int64_t first = index * share;
        int64_t last = first + share < t.out_height ? first + share : t.out_height;
        float *ring = calloc(taps_h * wide_row + t.row_floats * wide_channels
                             + narrow_channels * padded_width + BLOCK, sizeof(float));
        if (ring == NULL) {
            #pragma omp atomic write
            failed = 1;
        } else {
            float *zero_row = ring + taps_h * wide_row;
            float *planar = zero_row + wide_row;
            float *scratch = planar + narrow_channels * padded_width;
            if (first < last)
                tail_rows(&t, first, last, ring, zero_row, planar, scratch);
            free(ring);
        }
    }
    return failed ? -1 : 0;
}
