/* A chain of stride-1 convolutions, each followed or not by a PReLU (a ReLU is one with a
 * fixed slope), at inference in one pass by rows: FSRCNN whole, its deconvolution as its
 * sub-pixel convolution. The kernel of runner/net/conv_chain.py, compiled on first use by
 * runner/net/compiled.py.
 *
 * Why our own: oneDNN computes output channels in blocks of 16 floats, so FSRCNN's 12 channels
 * cost it 16 in every mapping layer and its 9 sub-pixel phases 16, and every blob between the
 * layers goes through memory. Here each thread holds, for every layer, a ring of as many
 * planar rows of its input as its kernel is tall (FSRCNN's 56 channels of a 481-pixel row:
 * 120 KB), computes every row of every layer once, when the next layer first needs it, and
 * takes the output channels a group at a time, their accumulators for several vectors of
 * pixels in registers.
 *
 * Every output pixel is the same sum in the same order wherever it lies in the image, in a
 * band or in a thread's share of the rows (every lane of a vector computes its own pixel, the
 * columns past the image are zeros), so tiles and bands agree to the bit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Built for AVX-512 or for AVX2 (runner/net/compiled.py's BUILDS, the first the processor
 * has): vectors of 16 or 8 floats, as many vectors of pixels per output channel as leave the
 * accumulators, the vectors read and a weight in the 32 or 16 vector registers. */
#if defined(__AVX512F__)
#define LANES 16
#define OUT_VECTORS 4
#elif defined(__AVX2__)
#define LANES 8
#define OUT_VECTORS 3
#else
#error "conv_chain.c is built for AVX-512 or AVX2"
#endif
#define OUT_GROUP 3                  /* output channels computed at a time */
#define BLOCK (LANES * OUT_VECTORS)  /* output pixels computed at a time along a row */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t mask __attribute__((vector_size(LANES * sizeof(float))));
/* the same vector, read or written at any float's address */
typedef float vec_unaligned __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));

/* Held in a register: GCC would otherwise fold a loaded vector into every multiply-add that
 * reads it, one load per multiply-add (FSRCNN's tail of a BSD100 image 29.6 against 18.9 ms). */
#define IN_REGISTER(value) __asm__("" : "+v"(value))

static inline vec load(const float *at) { return *(const vec_unaligned *)at; }
static inline void store(float *at, vec value) { *(vec_unaligned *)at = value; }

/* One layer: a convolution of stride 1, weights (outputs, inputs, taps_h, taps_w) with
 * outputs a multiple of OUT_GROUP (zero filters appended), bias (outputs), zero padding on
 * each side, then PReLU by `slopes` (one per output) or nothing (NULL). */
struct layer {
    const float *weight, *bias, *slopes;
    int64_t inputs, outputs, taps_h, taps_w, pad_h, pad_w;
    int64_t in_height, in_width, out_height, out_width;
    int64_t floats;         /* a planar row of its input: pad_w zeros, the row, zeros after */
};

struct chain {
    const struct layer *layers;
    int64_t count;
    const float *bottom;    /* one image: (height, width, channels) at these strides */
    int64_t pixel_stride, row_stride;
    float *top;             /* (kept, height, width) of the last layer at these strides */
    int64_t kept, channel_stride, out_row_stride, out_pixel_stride;
};

/* One thread's rings: for each layer, taps_h planar rows of its input, and which is newest. */
struct rings {
    float **rows;
    int64_t *held;
    const float *zero_row;
};

/* Output row `row` of layer `l` from the input rows it reads (`in`: taps_h of them), PReLU
 * applied: into `out` planar (after the next layer's pad_w zeros), or the top's row. */
static void layer_row(const struct chain *c, int64_t l, const float *const *in,
                             float *out, int64_t row) {
    const struct layer *y = &c->layers[l];
    int last = l == c->count - 1;
    int64_t per_output = y->inputs * y->taps_h * y->taps_w;
    int64_t next_floats = last ? 0 : c->layers[l + 1].floats;
    int64_t offset = last ? 0 : c->layers[l + 1].pad_w;
    for (int64_t o0 = 0; o0 < y->outputs; o0 += OUT_GROUP) {
        const float *w = y->weight + o0 * per_output;
        for (int64_t x0 = 0; x0 < y->out_width; x0 += BLOCK) {
            vec acc[OUT_GROUP][OUT_VECTORS];
            for (int64_t o = 0; o < OUT_GROUP; o++)
                for (int64_t j = 0; j < OUT_VECTORS; j++)
                    acc[o][j] = (vec){0} + y->bias[o0 + o];
            for (int64_t k = 0; k < y->inputs; k++)
                for (int64_t dy = 0; dy < y->taps_h; dy++) {
                    const float *from = in[dy] + k * y->floats + x0;
                    const float *tap = w + (k * y->taps_h + dy) * y->taps_w;
                    for (int64_t dx = 0; dx < y->taps_w; dx++) {
                        vec v[OUT_VECTORS];
                        for (int64_t j = 0; j < OUT_VECTORS; j++) {
                            v[j] = load(from + dx + j * LANES);
                            IN_REGISTER(v[j]);
                        }
                        for (int64_t o = 0; o < OUT_GROUP; o++) {
                            float weight = tap[o * per_output + dx];
                            for (int64_t j = 0; j < OUT_VECTORS; j++)
                                acc[o][j] += v[j] * weight;
                        }
                    }
                }
            if (y->slopes != NULL)
                for (int64_t o = 0; o < OUT_GROUP; o++)
                    for (int64_t j = 0; j < OUT_VECTORS; j++) {
                        /* PyTorch's PReLU: the value where positive, else times the slope */
                        mask positive = acc[o][j] > 0;
                        acc[o][j] = (vec)(((mask)acc[o][j] & positive)
                                          | ((mask)(acc[o][j] * y->slopes[o0 + o]) & ~positive));
                    }
            int64_t valid = y->out_width - x0 < BLOCK ? y->out_width - x0 : BLOCK;
            for (int64_t o = 0; o < OUT_GROUP; o++) {
                float *to;
                int64_t step = 1;
                if (!last) {
                    to = out + (o0 + o) * next_floats + offset + x0;
                } else if (o0 + o < c->kept) {
                    to = c->top + (o0 + o) * c->channel_stride + row * c->out_row_stride
                         + x0 * c->out_pixel_stride;
                    step = c->out_pixel_stride;
                } else {
                    continue;
                }
                if (step == 1 && valid == BLOCK) {
                    for (int64_t j = 0; j < OUT_VECTORS; j++)
                        store(to + j * LANES, acc[o][j]);
                } else {
                    float values[BLOCK];
                    memcpy(values, acc[o], sizeof values);
                    for (int64_t x = 0; x < valid; x++)
                        to[x * step] = values[x];
                }
            }
        }
    }
}

/* Input row `row` of the chain's bottom, planar, into `planar` after pad_w zero columns. */
static void bottom_row(const struct chain *c, int64_t row, float *planar) {
    const struct layer *first = &c->layers[0];
    const float *pixels = c->bottom + row * c->row_stride;
    float *start = planar + first->pad_w;
    for (int64_t x = 0; x < first->in_width; x++)
        for (int64_t k = 0; k < first->inputs; k++)
            start[k * first->floats + x] = pixels[x * c->pixel_stride + k];
}

/* Input row `row` of layer `l` (a zero row outside its input), computed into the layer's ring
 * if it is not there yet: rows are asked for in rising order, each at most taps_h rows behind
 * the newest, so the ring holds every row still asked for. */
static const float *input_row(const struct chain *c, struct rings *r, int64_t l,
                                     int64_t row) {
    const struct layer *y = &c->layers[l];
    if (row < 0 || row >= y->in_height)
        return r->zero_row;
    float *slot = r->rows[l] + (row % y->taps_h) * y->inputs * y->floats;
    if (row <= r->held[l])
        return slot;
    r->held[l] = row;
    if (l == 0) {
        bottom_row(c, row, slot);
        return slot;
    }
    const struct layer *below = &c->layers[l - 1];
    const float *in[below->taps_h];
    for (int64_t dy = 0; dy < below->taps_h; dy++)
        in[dy] = input_row(c, r, l - 1, row - below->pad_h + dy);
    layer_row(c, l - 1, in, slot, row);
    return slot;
}

/* The last layer's output rows first..last with one thread's rings. */
static void chain_rows(const struct chain *c, struct rings *r, int64_t first,
                              int64_t last) {
    const struct layer *top = &c->layers[c->count - 1];
    const float *in[top->taps_h];
    for (int64_t row = first; row < last; row++) {
        for (int64_t dy = 0; dy < top->taps_h; dy++)
            in[dy] = input_row(c, r, c->count - 1, row - top->pad_h + dy);
        layer_row(c, c->count - 1, in, NULL, row);
    }
}

/* The chain over one image. `shapes`: per layer inputs, outputs, taps_h, taps_w, pad_h,
 * pad_w; `weights`, `biases`, `slopes`: per layer (a slope NULL: no PReLU). Returns 0, or -1
 * when memory for the rings ran out. */
int conv_chain(const float *bottom, int64_t pixel_stride, int64_t row_stride, int64_t height,
               int64_t width, int64_t count, const int64_t *shapes,
               const float *const *weights, const float *const *biases,
               const float *const *slopes, float *top, int64_t kept, int64_t channel_stride,
               int64_t out_row_stride, int64_t out_pixel_stride, int threads) {
    struct layer layers[count];
    int64_t ring_floats = 0, zero_floats = 0;
    for (int64_t l = 0; l < count; l++) {
        const int64_t *s = shapes + 6 * l;
        struct layer *y = &layers[l];
        *y = (struct layer){weights[l], biases[l], slopes[l], s[0], s[1], s[2], s[3], s[4],
                            s[5], height, width, 0, 0, 0};
        y->out_height = height + 2 * y->pad_h - y->taps_h + 1;
        y->out_width = width + 2 * y->pad_w - y->taps_w + 1;
        if (y->out_height <= 0 || y->out_width <= 0)
            return 0;
        int64_t blocks = (y->out_width + BLOCK - 1) / BLOCK;
        /* every vector read of a block stays inside the row */
        y->floats = blocks * BLOCK + y->taps_w - 1 + LANES;
        ring_floats += y->taps_h * y->inputs * y->floats;
        if (y->inputs * y->floats > zero_floats)
            zero_floats = y->inputs * y->floats;
        height = y->out_height;
        width = y->out_width;
    }
    struct chain c = {layers, count, bottom, pixel_stride, row_stride, top, kept,
                      channel_stride, out_row_stride, out_pixel_stride};
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        int teams = omp_get_num_threads(), index = omp_get_thread_num();
        int64_t share = (height + teams - 1) / teams;
        int64_t first = index * share;
        int64_t last = first + share < height ? first + share : height;
        float *memory = calloc(ring_floats + zero_floats, sizeof(float));
        float **rows = malloc(count * sizeof *rows);
        int64_t *held = malloc(count * sizeof *held);
        if (memory == NULL || rows == NULL || held == NULL) {
            #pragma omp atomic write
            failed = 1;
        } else if (first < last) {
            float *at = memory;
            for (int64_t l = 0; l < count; l++) {
                rows[l] = at;
                held[l] = -1;
                at += layers[l].taps_h * layers[l].inputs * layers[l].floats;
            }
            struct rings r = {rows, held, at};
            chain_rows(&c, &r, first, last);
        }
        free(memory);
        free(rows);
        free(held);
    }
    return failed ? -1 : 0;
}
