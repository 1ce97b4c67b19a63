// Shoal's CUDA kernels: f32 data, `int` sizes, row-major (NCHW for images).
//
// Every kernel walks its index space with a grid-stride loop, so any launch (down to grid 1 ×
// block 1) computes the whole result; launch.rs picks the usual configurations. Indices are
// `unsigned int`: sizes are below 2^31 and launches have at most 2^31 threads, so `i + stride`
// never wraps. The formulas mirror the CPU engine's (backend/kernels.rs, backend/rules.rs) and
// candle's pooling autograd operation for operation; tests/cuda_kernels.rs compiles this file
// as C++ (SHOAL_HOST_EMULATION) and checks every kernel against them.
//
// Activation codes are the index in `Activation::ALL`: 0 relu, 1 gelu, 2 tanh, 3 sigmoid,
// 4 silu, 5 leaky_relu, 6 identity.

#ifdef SHOAL_HOST_EMULATION
// Host emulation: the kernels become plain C++ functions. A launch is emulated by calling a
// kernel once per (block, thread) after shoal_set_thread has set the indices below.
#include <math.h>
#define __global__ __attribute__((visibility("default")))
#define __device__
#define __forceinline__ inline
struct shoal_dim3 {
    unsigned int x, y, z;
};
static shoal_dim3 blockIdx = {0, 0, 0};
static shoal_dim3 threadIdx = {0, 0, 0};
static shoal_dim3 blockDim = {1, 1, 1};
static shoal_dim3 gridDim = {1, 1, 1};
extern "C" __attribute__((visibility("default"))) void shoal_set_thread(unsigned int grid, unsigned int block,
                                                                         unsigned int block_index,
                                                                         unsigned int thread_index) {
    gridDim.x = grid;
    blockDim.x = block;
    blockIdx.x = block_index;
    threadIdx.x = thread_index;
}
static inline float shoal_neg_infinity() { return -INFINITY; }
static inline float shoal_nan() { return NAN; }
static inline unsigned int shoal_float_bits(float x) {
    unsigned int b;
    __builtin_memcpy(&b, &x, sizeof b);
    return b;
}
#else
__device__ __forceinline__ float shoal_neg_infinity() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float shoal_nan() { return __int_as_float(0x7fffffff); }
__device__ __forceinline__ unsigned int shoal_float_bits(float x) { return __float_as_uint(x); }
#endif

#define SHOAL_GRID_STRIDE(i, n) \
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

#ifdef SHOAL_HOST_EMULATION
// Emulation only: counts the visits of a grid-stride loop to each index (the tests check once).
extern "C" __attribute__((visibility("default"))) void shoal_count_visits(int* hits, int n) {
    SHOAL_GRID_STRIDE(i, (unsigned int)n) { hits[i]++; }
}
#endif

namespace shoal {

enum Act { RELU = 0, GELU = 1, TANH = 2, SIGMOID = 3, SILU = 4, LEAKY_RELU = 5, IDENTITY = 6 };

constexpr float LEAKY_SLOPE = 0.01f;
constexpr float FRAC_1_SQRT_2 = 0.707106781186547524400844362104849039f;
// 1/sqrt(2 pi), as kernels.rs writes it.
constexpr float INV_SQRT_2PI = 0.3989423f;

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

// erf with |error| < 1.5e-7 (Abramowitz and Stegun 7.1.26): the CPU engine's, not erff, so that
// GELU agrees across devices.
__device__ __forceinline__ float erf_as(float x) {
    float t = 1.0f / (1.0f + 0.3275911f * fabsf(x));
    float poly = t * (0.2548296f + t * (-0.28449674f + t * (1.4214137f + t * (-1.4531521f + t * 1.0614054f))));
    float r = 1.0f - poly * expf(-x * x);
    return x >= 0.0f ? r : -r;
}

__device__ __forceinline__ float activate(int act, float z) {
    switch (act) {
    case RELU:
        return fmaxf(z, 0.0f);
    case GELU:
        return 0.5f * z * (1.0f + erf_as(z * FRAC_1_SQRT_2));
    case TANH:
        return tanhf(z);
    case SIGMOID:
        return sigmoid(z);
    case SILU:
        return z * sigmoid(z);
    case LEAKY_RELU:
        return z < 0.0f ? z * LEAKY_SLOPE : z;
    default:
        return z;
    }
}

// act'(.) applied to g; `s` is the pre-activation z for gelu and silu, the output y otherwise.
__device__ __forceinline__ float activation_grad(int act, float s, float g) {
    switch (act) {
    case RELU:
        return s > 0.0f ? g : 0.0f;
    case GELU: {
        float cdf = 0.5f * (1.0f + erf_as(s * FRAC_1_SQRT_2));
        float pdf = expf(-0.5f * s * s) * INV_SQRT_2PI;
        return g * (cdf + s * pdf);
    }
    case TANH:
        return g * (1.0f - s * s);
    case SIGMOID:
        return g * (s * (1.0f - s));
    case SILU: {
        float sg = sigmoid(s);
        return g * (sg * (1.0f + s * (1.0f - sg)));
    }
    case LEAKY_RELU:
        return g * (s < 0.0f ? LEAKY_SLOPE : 1.0f);
    default:
        return g;
    }
}

// f32(1 / size²), rounded from f64 as candle's pooling does.
__device__ __forceinline__ float window_scale(int size) { return (float)(1.0 / (double)(size * size)); }

}  // namespace shoal

// ---- Bias and activation -------------------------------------------------------------------

// z[r, c] += b[c]; y = act(z). y may alias z (when backward needs only y).
extern "C" __global__ void bias_act_forward(float* z, const float* b, float* y, int rows, int cols, int act) {
    unsigned int n = (unsigned int)rows * (unsigned int)cols;
    SHOAL_GRID_STRIDE(i, n) {
        float v = z[i] + b[i % (unsigned int)cols];
        z[i] = v;
        y[i] = shoal::activate(act, v);
    }
}

// NCHW: z[n, c, i] += b[c]; y = act(z). y may alias z.
extern "C" __global__ void channel_bias_act_forward(float* z, const float* b, float* y, int batch, int channels,
                                                    int hw, int act) {
    unsigned int n = (unsigned int)batch * (unsigned int)channels * (unsigned int)hw;
    SHOAL_GRID_STRIDE(i, n) {
        float v = z[i] + b[(i / (unsigned int)hw) % (unsigned int)channels];
        z[i] = v;
        y[i] = shoal::activate(act, v);
    }
}

// g[i] *= act'(.): `saved` is z for gelu and silu (needs_preactivation), y for the others.
extern "C" __global__ void activation_backward(const float* saved, float* g, int n, int act) {
    if (act == shoal::IDENTITY) {
        return;
    }
    SHOAL_GRID_STRIDE(i, (unsigned int)n) { g[i] = shoal::activation_grad(act, saved[i], g[i]); }
}

// ---- Reductions ----------------------------------------------------------------------------

// gb[c] = (accumulate ? gb[c] : 0) + Σ_r dz[r, c], rows added in order. One thread per column:
// neighbouring threads read neighbouring columns.
extern "C" __global__ void column_sum(const float* dz, float* gb, int rows, int cols, int accumulate) {
    SHOAL_GRID_STRIDE(c, (unsigned int)cols) {
        float s = accumulate ? gb[c] : 0.0f;
        for (unsigned int r = 0; r < (unsigned int)rows; r++) {
            s += dz[r * (unsigned int)cols + c];
        }
        gb[c] = s;
    }
}

// gb[c] = (accumulate ? gb[c] : 0) + Σ_{n, i} dz[n, c, i] over an NCHW tensor. One thread per
// channel.
extern "C" __global__ void channel_sum(const float* dz, float* gb, int batch, int channels, int hw,
                                       int accumulate) {
    SHOAL_GRID_STRIDE(c, (unsigned int)channels) {
        float s = accumulate ? gb[c] : 0.0f;
        for (unsigned int n = 0; n < (unsigned int)batch; n++) {
            const float* plane = dz + (n * (unsigned int)channels + c) * (unsigned int)hw;
            for (unsigned int i = 0; i < (unsigned int)hw; i++) {
                s += plane[i];
            }
        }
        gb[c] = s;
    }
}

// out[p] = Σ_i x[p, i] over planes of hw values, in order: with one thread per (image, channel)
// plane, then column_sum over the batch × channels partial sums, a conv bias gradient with
// batch · channels threads instead of channel_sum's one per channel.
extern "C" __global__ void plane_sum(const float* x, float* out, int planes, int hw) {
    SHOAL_GRID_STRIDE(p, (unsigned int)planes) {
        const float* plane = x + p * (unsigned int)hw;
        float s = 0.0f;
        for (unsigned int i = 0; i < (unsigned int)hw; i++) {
            s += plane[i];
        }
        out[p] = s;
    }
}

// ---- Losses --------------------------------------------------------------------------------

// Per row of `classes` logits: row_loss = -log softmax[label], row_correct = (argmax == label),
// the first maximum winning ties; grad = scale · (softmax − onehot). One thread per row, in the
// CPU kernel's order of operations. The host checks labels first; a label out of range gives a
// NaN loss and a zero gradient row instead of an out-of-bounds read.
extern "C" __global__ void softmax_cross_entropy(const float* logits, const unsigned int* labels, float* grad,
                                                 float* row_loss, int* row_correct, int rows, int classes,
                                                 float scale) {
    SHOAL_GRID_STRIDE(r, (unsigned int)rows) {
        const float* row = logits + r * (unsigned int)classes;
        float* g = grad + r * (unsigned int)classes;
        unsigned int label = labels[r];
        if (label >= (unsigned int)classes) {
            for (unsigned int j = 0; j < (unsigned int)classes; j++) {
                g[j] = 0.0f;
            }
            row_loss[r] = shoal_nan();
            row_correct[r] = 0;
            continue;
        }
        unsigned int best = 0;
        float max = shoal_neg_infinity();
        for (unsigned int j = 0; j < (unsigned int)classes; j++) {
            float v = row[j];
            if (v > max) {
                max = v;
                best = j;
            }
        }
        float sum = 0.0f;
        for (unsigned int j = 0; j < (unsigned int)classes; j++) {
            sum += expf(row[j] - max);
        }
        row_loss[r] = logf(sum) + max - row[label];
        row_correct[r] = best == label ? 1 : 0;
        float inv = scale / sum;
        for (unsigned int j = 0; j < (unsigned int)classes; j++) {
            float p = expf(row[j] - max) * inv;
            g[j] = j == label ? p - scale : p;
        }
    }
}

// grad = scale · 2 (pred − target); row_loss[r] = Σ_c (pred − target)², each square rounded to
// f32 and summed in f64 as the CPU kernel does. One thread per row.
extern "C" __global__ void squared_error(const float* pred, const float* target, float* grad, float* row_loss,
                                         int rows, int cols, float scale) {
    SHOAL_GRID_STRIDE(r, (unsigned int)rows) {
        double s = 0.0;
        for (unsigned int c = 0; c < (unsigned int)cols; c++) {
            unsigned int i = r * (unsigned int)cols + c;
            float d = pred[i] - target[i];
            s += (double)(d * d);
            grad[i] = 2.0f * scale * d;
        }
        row_loss[r] = (float)s;
    }
}

// ---- Elementwise ---------------------------------------------------------------------------

// dst = overwrite ? src : dst + src.
extern "C" __global__ void accumulate(float* dst, const float* src, int n, int overwrite) {
    SHOAL_GRID_STRIDE(i, (unsigned int)n) { dst[i] = overwrite ? src[i] : dst[i] + src[i]; }
}

// x *= m (dropout masks, drawn on the host so that every backend draws the same).
extern "C" __global__ void multiply(float* x, const float* m, int n) {
    SHOAL_GRID_STRIDE(i, (unsigned int)n) { x[i] *= m[i]; }
}

// x *= s (gradient scaling).
extern "C" __global__ void scale(float* x, int n, float s) {
    SHOAL_GRID_STRIDE(i, (unsigned int)n) { x[i] *= s; }
}

// x = value (zeroing gradients and buffers).
extern "C" __global__ void fill(float* x, int n, float value) {
    SHOAL_GRID_STRIDE(i, (unsigned int)n) { x[i] = value; }
}

// bf16 copies of f32 operands for the products of training.precision = "bf16": the upper 16 bits,
// rounded to nearest with ties to even (as PyTorch converts); NaN stays a quiet NaN.
extern "C" __global__ void to_bf16(const float* x, unsigned short* y, int n) {
    SHOAL_GRID_STRIDE(i, (unsigned int)n) {
        unsigned int b = shoal_float_bits(x[i]);
        if ((b & 0x7fffffffu) > 0x7f800000u) {
            y[i] = (unsigned short)((b >> 16) | 0x40u);
        } else {
            y[i] = (unsigned short)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
        }
    }
}

// ---- Optimizer updates ---------------------------------------------------------------------

// rules.rs::sgd: coupled weight decay, momentum without dampening, optional Nesterov. Without
// momentum (has_momentum == 0 or momentum == 0) `buf` is not touched and may be null.
extern "C" __global__ void sgd(float* w, const float* g, float* buf, int n, float lr, float momentum, int nesterov,
                               float weight_decay, int first, int has_momentum) {
    bool plain = !has_momentum || momentum == 0.0f;
    SHOAL_GRID_STRIDE(i, (unsigned int)n) {
        float wi = w[i];
        float d = g[i] + weight_decay * wi;
        if (plain) {
            w[i] = wi - lr * d;
        } else {
            float b = first ? d : momentum * buf[i] + d;
            buf[i] = b;
            float step = nesterov ? d + momentum * b : b;
            w[i] = wi - lr * step;
        }
    }
}

// rules.rs::adamw: decoupled weight decay, bias-corrected moments. The bias corrections are
// f64 powers there, so the host computes them (source.rs::adam_bias_terms):
// step_size = f32(lr / (1 − beta1^t)) and bias2_sqrt = f32(sqrt(1 − beta2^t)).
extern "C" __global__ void adamw(float* w, const float* g, float* m, float* v, int n, float lr, float beta1,
                                 float beta2, float eps, float weight_decay, float step_size, float bias2_sqrt) {
    float decay = 1.0f - lr * weight_decay;
    SHOAL_GRID_STRIDE(i, (unsigned int)n) {
        float gi = g[i];
        float wi = w[i] * decay;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bias2_sqrt + eps;
        w[i] = wi - step_size * mi / denom;
    }
}

// ---- Convolution as a matrix product -------------------------------------------------------

// Per image, a (channels·k·k) × (oh·ow) matrix: cols[n][(c·k + ki)·k + kj][oy·ow + ox] =
// x[n][c][oy·stride − pad + ki][ox·stride − pad + kj], 0 outside the image. The convolution of
// image n is then W (out_channels × channels·k·k) · cols[n], already NCHW.
extern "C" __global__ void im2col(const float* x, float* cols, int batch, int channels, int h, int w, int k,
                                  int stride, int pad, int oh, int ow) {
    unsigned int ohw = (unsigned int)oh * (unsigned int)ow;
    unsigned int kk = (unsigned int)k * (unsigned int)k;
    unsigned int per_image = (unsigned int)channels * kk * ohw;
    unsigned int n_total = (unsigned int)batch * per_image;
    SHOAL_GRID_STRIDE(i, n_total) {
        unsigned int n = i / per_image;
        unsigned int row = (i % per_image) / ohw;
        unsigned int p = i % ohw;
        unsigned int c = row / kk;
        int ki = (int)((row % kk) / (unsigned int)k);
        int kj = (int)(row % (unsigned int)k);
        int iy = (int)(p / (unsigned int)ow) * stride - pad + ki;
        int ix = (int)(p % (unsigned int)ow) * stride - pad + kj;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
            v = x[((n * (unsigned int)channels + c) * (unsigned int)h + (unsigned int)iy) * (unsigned int)w +
                  (unsigned int)ix];
        }
        cols[i] = v;
    }
}

// The adjoint of im2col: dx[n][c][y][x] = Σ of the cols entries im2col reads from that pixel,
// in (ki, kj) order. A gather over input pixels, written rather than accumulated: deterministic
// and free of atomics.
extern "C" __global__ void col2im(const float* cols, float* dx, int batch, int channels, int h, int w, int k,
                                  int stride, int pad, int oh, int ow) {
    unsigned int ohw = (unsigned int)oh * (unsigned int)ow;
    unsigned int hw = (unsigned int)h * (unsigned int)w;
    unsigned int n_total = (unsigned int)batch * (unsigned int)channels * hw;
    SHOAL_GRID_STRIDE(i, n_total) {
        unsigned int plane = i / hw;  // n * channels + c
        int y = (int)((i % hw) / (unsigned int)w);
        int x = (int)(i % (unsigned int)w);
        // cols rows of image n, channel c start at (n·channels + c)·k·k.
        const float* base = cols + plane * (unsigned int)(k * k) * ohw;
        float s = 0.0f;
        for (int ki = 0; ki < k; ki++) {
            int ty = y + pad - ki;
            if (ty < 0 || ty % stride != 0 || ty / stride >= oh) {
                continue;
            }
            int oy = ty / stride;
            for (int kj = 0; kj < k; kj++) {
                int tx = x + pad - kj;
                if (tx < 0 || tx % stride != 0 || tx / stride >= ow) {
                    continue;
                }
                int ox = tx / stride;
                s += base[(unsigned int)(ki * k + kj) * ohw + (unsigned int)(oy * ow + ox)];
            }
        }
        dx[i] = s;
    }
}

// ---- Pooling over non-overlapping size × size windows --------------------------------------
// planes = batch · channels; output (h / size) × (w / size), rounded down as candle does.

// y = max over the window, the first value kept unless a later one is larger (candle's rule).
extern "C" __global__ void max_pool_forward(const float* x, float* y, int planes, int h, int w, int size) {
    unsigned int oh = (unsigned int)(h / size), ow = (unsigned int)(w / size);
    unsigned int n_total = (unsigned int)planes * oh * ow;
    SHOAL_GRID_STRIDE(i, n_total) {
        unsigned int p = i / (oh * ow);
        unsigned int oy = (i % (oh * ow)) / ow, ox = i % ow;
        const float* src = x + p * (unsigned int)h * (unsigned int)w;
        unsigned int y0 = oy * (unsigned int)size, x0 = ox * (unsigned int)size;
        float largest = src[y0 * (unsigned int)w + x0];
        for (unsigned int a = 0; a < (unsigned int)size; a++) {
            for (unsigned int b = 0; b < (unsigned int)size; b++) {
                float v = src[(y0 + a) * (unsigned int)w + x0 + b];
                if (largest < v) {
                    largest = v;
                }
            }
        }
        y[i] = largest;
    }
}

// y = f32(1/size²) · Σ over the window.
extern "C" __global__ void avg_pool_forward(const float* x, float* y, int planes, int h, int w, int size) {
    unsigned int oh = (unsigned int)(h / size), ow = (unsigned int)(w / size);
    unsigned int n_total = (unsigned int)planes * oh * ow;
    float k2 = shoal::window_scale(size);
    SHOAL_GRID_STRIDE(i, n_total) {
        unsigned int p = i / (oh * ow);
        unsigned int oy = (i % (oh * ow)) / ow, ox = i % ow;
        const float* src = x + p * (unsigned int)h * (unsigned int)w;
        unsigned int y0 = oy * (unsigned int)size, x0 = ox * (unsigned int)size;
        float s = 0.0f;
        for (unsigned int a = 0; a < (unsigned int)size; a++) {
            for (unsigned int b = 0; b < (unsigned int)size; b++) {
                s += src[(y0 + a) * (unsigned int)w + x0 + b];
            }
        }
        y[i] = s * k2;
    }
}

// Max-pool backward, gathered per input pixel: the window's first maximum (row-major, the one
// max_pool_forward keeps) receives the window's dy; every other pixel, and rows or columns cut
// off by the floor, receive 0. The host engine's pool kernels (backend/pool.rs) do the same.
extern "C" __global__ void max_pool_backward(const float* x, const float* y, const float* dy, float* dx, int planes,
                                             int h, int w, int size) {
    unsigned int oh = (unsigned int)(h / size), ow = (unsigned int)(w / size);
    unsigned int uw = (unsigned int)w, us = (unsigned int)size;
    unsigned int hw = (unsigned int)h * uw;
    unsigned int n_total = (unsigned int)planes * hw;
    (void)y;
    SHOAL_GRID_STRIDE(i, n_total) {
        unsigned int p = i / hw;
        unsigned int yi = (i % hw) / uw, xi = i % uw;
        unsigned int oy = yi / us, ox = xi / us;
        float out = 0.0f;
        if (oy < oh && ox < ow) {
            const float* xs = x + p * hw;
            unsigned int y0 = oy * us, x0 = ox * us;
            unsigned int best = y0 * uw + x0;
            for (unsigned int a = 0; a < us; a++) {
                for (unsigned int b = 0; b < us; b++) {
                    unsigned int at = (y0 + a) * uw + x0 + b;
                    if (xs[best] < xs[at]) {
                        best = at;
                    }
                }
            }
            if (best == yi * uw + xi) {
                out = dy[p * oh * ow + oy * ow + ox];
            }
        }
        dx[i] = out;
    }
}

// Avg-pool backward: every pixel of a window receives f32(1/size²) · its dy; rows or columns cut
// off by the floor receive 0.
extern "C" __global__ void avg_pool_backward(const float* dy, float* dx, int planes, int h, int w, int size) {
    unsigned int oh = (unsigned int)(h / size), ow = (unsigned int)(w / size);
    unsigned int uw = (unsigned int)w, us = (unsigned int)size;
    unsigned int hw = (unsigned int)h * uw;
    unsigned int n_total = (unsigned int)planes * hw;
    float k2 = shoal::window_scale(size);
    SHOAL_GRID_STRIDE(i, n_total) {
        unsigned int p = i / hw;
        unsigned int oy = ((i % hw) / uw) / us, ox = (i % uw) / us;
        dx[i] = (oy < oh && ox < ow) ? dy[p * oh * ow + oy * ow + ox] * k2 : 0.0f;
    }
}
