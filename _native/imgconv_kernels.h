/* Fused resize + colour order + normalisation + layout + dtype for model input tensors.
 *
 * The Cython module imgconv.pyx holds the Python-facing wrappers; this header
 * holds the hot loops in plain C so that the vector paths can be compiled for
 * a CPU feature (GCC target attributes) and picked at run time: the build must
 * run on any x86_64 (baseline SSE2) and on armv7l, while the machine it runs
 * on may have AVX2.
 *
 * The resize is separable and fixed point:
 *   1. vertical pass: the source rows an output row needs are blended into one
 *      row of int16 values scaled by 128 (2^TSHIFT), three channels interleaved
 *      (grey is replicated, alpha dropped); bilinear blends two rows with 7-bit
 *      weights (one u8 x s8 multiply-add per pair in AVX2; at worst 1/256 of a
 *      pixel step off, under one grey level), area sums rows with 14-bit ones;
 *   2. horizontal pass: each output pixel takes its taps from that row with
 *      14-bit weights, giving int32 values scaled by 2^21, then one multiply-add
 *      per channel folds the normalisation ((x * scale - mean) / std, and the
 *      int8/uint8 quantisation) into float.
 * With AVX2, bilinear RGB runs both passes fused per output pixel (same
 * integers, so the same results): only the source columns the taps use are
 * blended, which at 1080p -> 224 is under a quarter of them.
 * Bilinear follows OpenCV's INTER_LINEAR geometry (pixel centres, edges
 * clamped); area follows INTER_AREA (each output pixel averages the source
 * area it covers, partial pixels weighted by their coverage).
 *
 * Vector paths: AVX2+FMA on x86 (checked with __builtin_cpu_supports), NEON
 * on 32-bit Arm (checked with getauxval); everything else runs the portable C,
 * which the compiler vectorises for the baseline (SSE2, Advanced SIMD).
 * ic_set_simd(0) forces the portable path, so tests can compare the two.
 */
#ifndef EDGE_ACTORS_IMGCONV_KERNELS_H
#define EDGE_ACTORS_IMGCONV_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define IC_X86 1
#include <immintrin.h>
#else
#define IC_X86 0
#endif

/* 32-bit Arm (armv7l): NEON is optional in the ABI (armhf builds for VFP
 * only), so the vector clones are compiled for it and picked at run time. */
#if defined(__GNUC__) && defined(__arm__) && !defined(__aarch64__) && defined(__linux__)
#define IC_ARM_NEON_CLONES 1
#include <arm_neon.h> /* its functions are compiled for fpu=neon whatever the flags */
#include <sys/auxv.h>
#ifndef HWCAP_NEON
#define HWCAP_NEON (1 << 12)
#endif
#else
#define IC_ARM_NEON_CLONES 0
#endif

#if defined(__unix__)
#define IC_THREADS 1
#include <pthread.h>
#else
#define IC_THREADS 0
#endif
#define IC_MAX_THREADS 8

#define IC_WBITS 14                 /* tap weights sum to 2^14 */
#define IC_ONE (1 << IC_WBITS)
#define IC_TSHIFT 7                 /* the vertical pass output is value * 2^7 */
#define IC_VBITS 7                  /* bilinear vertical weights sum to 2^7 (u8 x s8 madd) */

enum { IC_NCHW = 0, IC_NHWC = 1 };
enum { IC_F32 = 0, IC_U8 = 1, IC_I8 = 2 };
enum { IC_BILINEAR = 0, IC_AREA = 1 };
enum { IC_OK = 0, IC_ENOMEM = -1, IC_EINVAL = -2 };

typedef struct {
    const uint8_t *src;      /* top-left pixel; pixels packed, channels packed */
    ptrdiff_t src_stride;    /* bytes between rows (may exceed src_w * src_c) */
    int src_h, src_w, src_c; /* src_c in {1, 3, 4} */
    void *dst;               /* C-contiguous output: 3 x dst_h x dst_w or dst_h x dst_w x 3 */
    int dst_h, dst_w;
    int roi_y, roi_x, roi_h, roi_w; /* where the resized image lands (letterbox) */
    int layout, dtype, mode, swap_rb;
    float mul[3], add[3];    /* per output channel: y = pixel * mul + add */
    float pad[3];            /* per output channel: the value outside the ROI */
} ic_job;

/* ---------------------------------------------------------------- taps */

typedef struct {
    int n;          /* number of output positions */
    int k;          /* taps per position (weights padded with zeros) */
    int *start;     /* first source index of each position */
    int32_t *w;     /* n * k weights, each position summing to 2^bits */
} ic_taps;

static void ic_taps_free(ic_taps *t) {
    free(t->start);
    free(t->w);
    t->start = NULL;
    t->w = NULL;
}

/* Two taps per position (i, i + 1); i + 1 may equal `in` at the right edge,
 * with weight 0: callers replicate the last source pixel there. */
static int ic_taps_bilinear(ic_taps *t, int in, int out, int bits) {
    const double scale = (double)in / (double)out;
    const int one = 1 << bits;
    t->n = out;
    t->k = 2;
    t->start = (int *)malloc(sizeof(int) * (size_t)out);
    t->w = (int32_t *)malloc(sizeof(int32_t) * 2 * (size_t)out);
    if (!t->start || !t->w) return IC_ENOMEM;
    for (int d = 0; d < out; d++) {
        double s = ((double)d + 0.5) * scale - 0.5;
        if (s < 0) s = 0;
        int i = (int)floor(s);
        double f = s - i;
        if (i >= in - 1) {
            i = in - 1;
            f = 0;
        }
        int w1 = (int)lrint(f * one);
        t->start[d] = i;
        t->w[2 * d] = one - w1;
        t->w[2 * d + 1] = w1;
    }
    return IC_OK;
}

/* Box filter with fractional coverage (in >= out); weights sum exactly to 2^bits. */
static int ic_taps_area(ic_taps *t, int in, int out, int bits) {
    const double scale = (double)in / (double)out;
    const int one = 1 << bits;
    const int k = (int)ceil(scale) + 1;
    t->n = out;
    t->k = k;
    t->start = (int *)malloc(sizeof(int) * (size_t)out);
    t->w = (int32_t *)calloc((size_t)out * (size_t)k, sizeof(int32_t));
    if (!t->start || !t->w) return IC_ENOMEM;
    for (int d = 0; d < out; d++) {
        double lo = d * scale, hi = (d + 1) * scale;
        int i0 = (int)floor(lo);
        int i1 = (int)ceil(hi);
        if (i1 > in) i1 = in;
        if (i1 - i0 > k) i1 = i0 + k;
        int32_t *w = t->w + (size_t)d * k;
        int total = 0, best = 0;
        for (int i = i0; i < i1; i++) {
            double a = (i < lo ? lo : i), b = (i + 1 > hi ? hi : i + 1);
            int q = (int)lrint((b - a) / scale * one);
            w[i - i0] = q;
            total += q;
            if (q > w[best]) best = i - i0;
        }
        w[best] += one - total;  /* rounding residue on the largest tap */
        t->start[d] = i0;
    }
    return IC_OK;
}

static int ic_taps_make(ic_taps *t, int in, int out, int mode, int bits) {
    if (mode == IC_AREA && in > out) return ic_taps_area(t, in, out, bits);
    return ic_taps_bilinear(t, in, out, bits);
}

/* ---------------------------------------------------------------- vertical pass */

/* Bilinear: tmp = a * w0 + b * w1 with w0 + w1 = 128: value * 128, exact in
 * 16 bits. Callers keep both weights below 128 (a weight of 128 is given as
 * 64 + 64 on the same row) so that they fit the signed bytes of the AVX2 path.
 * The always_inline body is compiled once per target below. */
static inline __attribute__((always_inline)) void
ic_vpass2_body(const uint8_t *restrict a, const uint8_t *restrict b, int16_t *restrict tmp,
               int n, int w0, int w1) {
    const uint16_t u0 = (uint16_t)w0, u1 = (uint16_t)w1;
    for (int i = 0; i < n; i++) tmp[i] = (int16_t)(uint16_t)(a[i] * u0 + b[i] * u1);
}

/* Any taps: int32 accumulation with 14-bit weights, rounded down to value * 128. */
static inline __attribute__((always_inline)) void
ic_vpassn_body(const uint8_t *const *rows, const int32_t *w, int k, int32_t *restrict acc,
               int16_t *restrict tmp, int n) {
    for (int i = 0; i < n; i++) acc[i] = 1 << (IC_WBITS - IC_TSHIFT - 1);
    for (int j = 0; j < k; j++) {
        const uint8_t *restrict r = rows[j];
        const int32_t wj = w[j];
        if (!wj) continue;
        for (int i = 0; i < n; i++) acc[i] += r[i] * wj;
    }
    for (int i = 0; i < n; i++) tmp[i] = (int16_t)(acc[i] >> (IC_WBITS - IC_TSHIFT));
}

static void ic_vpass2_base(const uint8_t *a, const uint8_t *b, int16_t *tmp, int n, int w0,
                           int w1) {
    ic_vpass2_body(a, b, tmp, n, w0, w1);
}

static void ic_vpassn_base(const uint8_t *const *rows, const int32_t *w, int k, int32_t *acc,
                           int16_t *tmp, int n) {
    ic_vpassn_body(rows, w, k, acc, tmp, n);
}

#if IC_X86
/* 32 values per step: bytes of the two rows interleaved, one u8 x s8 multiply-add. */
__attribute__((target("avx2"))) static void
ic_vpass2_avx2(const uint8_t *a, const uint8_t *b, int16_t *tmp, int n, int w0, int w1) {
    const __m256i w = _mm256_set1_epi16((short)((w1 << 8) | w0));
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i lo = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(va, vb), w);
        __m256i hi = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(va, vb), w);
        _mm256_storeu_si256((__m256i *)(tmp + i), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(tmp + i + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    ic_vpass2_base(a + i, b + i, tmp + i, n - i, w0, w1);
}

__attribute__((target("avx2"))) static void
ic_vpassn_avx2(const uint8_t *const *rows, const int32_t *w, int k, int32_t *acc, int16_t *tmp,
               int n) {
    ic_vpassn_body(rows, w, k, acc, tmp, n);
}
#endif

#if IC_ARM_NEON_CLONES
/* Under qemu-arm (how armv7l is tested here) widening (vmovl), multiply-long,
 * multiply-accumulate and vbic/vsli/vzip each measured several times the cost of a
 * plain 16- or 32-bit multiply, add, and, or shift by an immediate (inline vector
 * code on the host): the NEON kernels are written with the latter, even where the
 * former would be fewer instructions on a Cortex-A. */
#define IC_NEON_OPAQUE(v) __asm__("" : "+w"(v)) /* keeps a constant in a register (vand, not
                                                 * vbic #imm) and a multiply from being
                                                 * folded into the add (vmla) */
#define IC_NEON_COPY(v) __asm__ volatile("vorr %q0, %q0, %q0" : "+w"(v))

/* 16 values: the bytes read as 16-bit lanes, even bytes (& 0xff) and odd ones (>> 8)
 * blended apart, then stored interleaved again (vst2). tmp is 8-byte aligned (a
 * malloc'd row, 16 values a step), as GCC's vst2 (":64") assumes. */
__attribute__((target("fpu=neon"), always_inline)) static inline void
ic_vblend16_neon(uint16x8_t va, uint16x8_t vb, uint16x8_t v0, uint16x8_t v1, uint16x8_t lo,
                 int16_t *tmp) {
    uint16x8_t ea = vmulq_u16(vandq_u16(va, lo), v0);
    uint16x8_t oa = vmulq_u16(vshrq_n_u16(va, 8), v0);
    uint16x8_t eb = vmulq_u16(vandq_u16(vb, lo), v1);
    uint16x8_t ob = vmulq_u16(vshrq_n_u16(vb, 8), v1);
    IC_NEON_OPAQUE(ea);
    IC_NEON_OPAQUE(oa);
    IC_NEON_OPAQUE(eb);
    IC_NEON_OPAQUE(ob);
    uint16x8x2_t t;
    t.val[0] = vaddq_u16(ea, eb);
    t.val[1] = vaddq_u16(oa, ob);
    vst2q_u16((uint16_t *)tmp, t);
}

/* The bytes of each step are loaded one step ahead: qemu-arm writes a loaded q
 * register as two 64-bit halves, and a 128-bit read of it right after stalls the
 * host (store forwarding cannot join two stores). */
__attribute__((target("fpu=neon"))) static void
ic_vpass2_neon(const uint8_t *a, const uint8_t *b, int16_t *tmp, int n, int w0, int w1) {
    const uint16x8_t v0 = vdupq_n_u16((uint16_t)w0), v1 = vdupq_n_u16((uint16_t)w1);
    uint16x8_t lo = vdupq_n_u16(0xff);
    IC_NEON_OPAQUE(lo);
    int i = 0;
    if (n >= 16) {
        uint16x8_t va = vreinterpretq_u16_u8(vld1q_u8(a)), vb = vreinterpretq_u16_u8(vld1q_u8(b));
        for (; i + 32 <= n; i += 16) {
            const uint16x8_t na = vreinterpretq_u16_u8(vld1q_u8(a + i + 16));
            const uint16x8_t nb = vreinterpretq_u16_u8(vld1q_u8(b + i + 16));
            ic_vblend16_neon(va, vb, v0, v1, lo, tmp + i);
            va = na;
            vb = nb;
        }
        ic_vblend16_neon(va, vb, v0, v1, lo, tmp + i);
        i += 16;
    }
    ic_vpass2_base(a + i, b + i, tmp + i, n - i, w0, w1);
}

__attribute__((target("fpu=neon"))) static void
ic_vpassn_neon(const uint8_t *const *rows, const int32_t *w, int k, int32_t *acc, int16_t *tmp,
               int n) {
    ic_vpassn_body(rows, w, k, acc, tmp, n);
}
#endif

/* ---------------------------------------------------------------- horizontal pass */

/* The int16 row `tmp` holds 3 interleaved channels, with the last pixel
 * replicated once more and 8 spare zeros so that vector loads stay inside.
 * Output: three float planes o[0..2] (already normalised), in output channel
 * order: channel c reads source channel src_ch[c]. */

static void ic_hpass_generic(const int16_t *tmp, const ic_taps *tx, const int src_ch[3],
                             const float k[3], const float b[3], float *const o[3]) {
    for (int x = 0; x < tx->n; x++) {
        const int16_t *p = tmp + 3 * tx->start[x];
        const int32_t *w = tx->w + (size_t)x * tx->k;
        for (int c = 0; c < 3; c++) {
            int32_t acc = 0;
            const int16_t *q = p + src_ch[c];
            for (int j = 0; j < tx->k; j++) acc += q[3 * j] * w[j];
            o[c][x] = (float)acc * k[c] + b[c];
        }
    }
}

/* Bilinear taps packed per output pixel: element offset 3 * i and (w0 | w1 << 16). */
typedef struct {
    int32_t *ofs;
    int32_t *wp;
} ic_hpack;

static void ic_hpass2_scalar(const int16_t *tmp, const ic_hpack *hp, int x, int ow,
                             const int src_ch[3], const float k[3], const float b[3],
                             float *const o[3]) {
    for (; x < ow; x++) {
        const int16_t *p = tmp + hp->ofs[x];
        const int32_t w0 = (int16_t)(hp->wp[x] & 0xffff), w1 = hp->wp[x] >> 16;
        for (int c = 0; c < 3; c++) {
            int32_t acc = p[src_ch[c]] * w0 + p[3 + src_ch[c]] * w1;
            o[c][x] = (float)acc * k[c] + b[c];
        }
    }
}

#if IC_X86
/* Eight output pixels per step. Per pixel, one 16-byte load holds both taps of
 * all three channels (r0 g0 b0 r1 g1 b1 . .); a byte shuffle pairs them per
 * channel (and applies the RGB/BGR order), and one madd gives r, g, b as
 * int32. A 4x4 transpose inside each 128-bit lane turns pixels into planes. */
__attribute__((target("avx2,fma"))) static void
ic_hpass2_avx2(const int16_t *tmp, const ic_hpack *hp, int ow, const int src_ch[3],
               const float k[3], const float b[3], float *const o[3]) {
    char m[16];
    for (int c = 0; c < 3; c++) {
        int s = src_ch[c];
        m[4 * c + 0] = (char)(2 * s);
        m[4 * c + 1] = (char)(2 * s + 1);
        m[4 * c + 2] = (char)(2 * (s + 3));
        m[4 * c + 3] = (char)(2 * (s + 3) + 1);
    }
    for (int i = 12; i < 16; i++) m[i] = (char)0x80;
    const __m128i m128 = _mm_loadu_si128((const __m128i *)m);
    const __m256i shuf = _mm256_broadcastsi128_si256(m128);
    const __m256 k0 = _mm256_set1_ps(k[0]), k1 = _mm256_set1_ps(k[1]), k2 = _mm256_set1_ps(k[2]);
    const __m256 b0 = _mm256_set1_ps(b[0]), b1 = _mm256_set1_ps(b[1]), b2 = _mm256_set1_ps(b[2]);
    const __m256i sel0 = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    const __m256i one = _mm256_set1_epi32(1);
    float *o0 = o[0], *o1 = o[1], *o2 = o[2];
    const int32_t *ofs = hp->ofs;
    int x = 0;
    for (; x + 8 <= ow; x += 8) {
        const __m256i W = _mm256_loadu_si256((const __m256i *)(hp->wp + x));
        __m256 p[4];
        __m256i sel = sel0;
        for (int j = 0; j < 4; j++) {
            __m128i lo = _mm_loadu_si128((const __m128i *)(tmp + ofs[x + j]));
            __m128i hi = _mm_loadu_si128((const __m128i *)(tmp + ofs[x + j + 4]));
            __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
            v = _mm256_shuffle_epi8(v, shuf);
            __m256i w = _mm256_permutevar8x32_epi32(W, sel);
            p[j] = _mm256_cvtepi32_ps(_mm256_madd_epi16(v, w));
            sel = _mm256_add_epi32(sel, one);
        }
        __m256 t0 = _mm256_unpacklo_ps(p[0], p[1]); /* r0 r1 g0 g1 */
        __m256 t1 = _mm256_unpacklo_ps(p[2], p[3]); /* r2 r3 g2 g3 */
        __m256 t2 = _mm256_unpackhi_ps(p[0], p[1]); /* b0 b1 .  .  */
        __m256 t3 = _mm256_unpackhi_ps(p[2], p[3]); /* b2 b3 .  .  */
        __m256 r = _mm256_shuffle_ps(t0, t1, 0x44);
        __m256 g = _mm256_shuffle_ps(t0, t1, 0xEE);
        __m256 bl = _mm256_shuffle_ps(t2, t3, 0x44);
        _mm256_storeu_ps(o0 + x, _mm256_fmadd_ps(r, k0, b0));
        _mm256_storeu_ps(o1 + x, _mm256_fmadd_ps(g, k1, b1));
        _mm256_storeu_ps(o2 + x, _mm256_fmadd_ps(bl, k2, b2));
    }
    ic_hpass2_scalar(tmp, hp, x, ow, src_ch, k, b, o);
}
#endif

#if IC_ARM_NEON_CLONES
/* Four output pixels per step. The int32 sums take NEON: per pixel, three 32-bit
 * words hold both taps of all three channels (r0 g0 | b0 r1 | g1 b1); lane loads
 * gather them into three vectors of four pixels, an and or a shift splits the
 * channels, then two 32-bit multiplies and an add per channel. The float
 * conversion, multiply and add stay scalar VFP, the same operations as the
 * portable path, so the output is identical (NEON's float arithmetic flushes
 * denormals, and runs slower than VFP under qemu-arm). */
__attribute__((target("fpu=neon"))) static void
ic_hpass2_neon(const int16_t *tmp, const ic_hpack *hp, int ow, const int src_ch[3],
               const float k[3], const float b[3], float *const o[3]) {
    float *d[3];
    float ks[3], bs[3];
    for (int c = 0; c < 3; c++) { /* by source channel */
        d[src_ch[c]] = o[c];
        ks[src_ch[c]] = k[c];
        bs[src_ch[c]] = b[c];
    }
    uint32x4_t m = vdupq_n_u32(0xffff);
    IC_NEON_OPAQUE(m);
    const int32_t *ofs = hp->ofs;
    int x = 0;
    for (; x + 4 <= ow; x += 4) {
        uint32x4_t A = vdupq_n_u32(0), B = A, C = A;
#define IC_GATHER(i)                                                                  \
        do {                                                                          \
            const uint32_t *p = (const uint32_t *)(tmp + ofs[x + i]);                 \
            A = vld1q_lane_u32(p, A, i);                                              \
            B = vld1q_lane_u32(p + 1, B, i);                                          \
            C = vld1q_lane_u32(p + 2, C, i);                                          \
        } while (0)
        IC_GATHER(0);
        IC_GATHER(1);
        IC_GATHER(2);
        IC_GATHER(3);
#undef IC_GATHER
        uint32x4_t W = vld1q_u32((const uint32_t *)hp->wp + x);
        /* One 128-bit copy of each: qemu-arm wrote them in pieces (lanes, halves),
         * and each 128-bit read of such a register stalls the host once. */
        IC_NEON_COPY(A);
        IC_NEON_COPY(B);
        IC_NEON_COPY(C);
        IC_NEON_COPY(W);
        const uint32x4_t w0 = vandq_u32(W, m), w1 = vshrq_n_u32(W, 16);
        /* values below 2^15, weights at most 2^14: the sums fit in int32 */
        uint32x4_t r0 = vmulq_u32(vandq_u32(A, m), w0), r1 = vmulq_u32(vshrq_n_u32(B, 16), w1);
        uint32x4_t g0 = vmulq_u32(vshrq_n_u32(A, 16), w0), g1 = vmulq_u32(vandq_u32(C, m), w1);
        uint32x4_t b0 = vmulq_u32(vandq_u32(B, m), w0), b1 = vmulq_u32(vshrq_n_u32(C, 16), w1);
        IC_NEON_OPAQUE(r0);
        IC_NEON_OPAQUE(r1);
        IC_NEON_OPAQUE(g0);
        IC_NEON_OPAQUE(g1);
        IC_NEON_OPAQUE(b0);
        IC_NEON_OPAQUE(b1);
        int32_t acc[3][4];
        vst1q_s32(acc[0], vreinterpretq_s32_u32(vaddq_u32(r0, r1)));
        vst1q_s32(acc[1], vreinterpretq_s32_u32(vaddq_u32(g0, g1)));
        vst1q_s32(acc[2], vreinterpretq_s32_u32(vaddq_u32(b0, b1)));
        for (int c = 0; c < 3; c++)
            /* volatile: stored one by one, or GCC gathers the four into a vector through
             * the stack (32-bit pieces read as 64-bit again: stalls under qemu-arm) */
            for (int i = 0; i < 4; i++)
                ((volatile float *)d[c])[x + i] = (float)acc[c][i] * ks[c] + bs[c];
    }
    ic_hpass2_scalar(tmp, hp, x, ow, src_ch, k, b, o);
}
#endif

#if IC_X86
/* Both passes at once: each output pixel blends its two
 * source pixels of rows a and b (8 bytes of each, one u8 x s8 madd) into the
 * same int16 values the vertical pass would have stored, so the results are
 * identical, but only the columns the taps use are computed. */
__attribute__((target("avx2,fma"))) static void
ic_fused2_avx2(const uint8_t *ra, const uint8_t *rb, int nbytes, int wy0, int wy1,
               const ic_hpack *hp, int ow, const int src_ch[3], const float k[3],
               const float b[3], float *const o[3]) {
    char m[16];
    for (int c = 0; c < 3; c++) {
        int s = src_ch[c];
        m[4 * c + 0] = (char)(2 * s);
        m[4 * c + 1] = (char)(2 * s + 1);
        m[4 * c + 2] = (char)(2 * (s + 3));
        m[4 * c + 3] = (char)(2 * (s + 3) + 1);
    }
    for (int i = 12; i < 16; i++) m[i] = (char)0x80;
    const __m256i shuf = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)m));
    const __m128i wy = _mm_set1_epi16((short)((wy1 << 8) | wy0));
    const __m256 k0 = _mm256_set1_ps(k[0]), k1 = _mm256_set1_ps(k[1]), k2 = _mm256_set1_ps(k[2]);
    const __m256 b0 = _mm256_set1_ps(b[0]), b1 = _mm256_set1_ps(b[1]), b2 = _mm256_set1_ps(b[2]);
    const __m256i sel0 = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    const __m256i one = _mm256_set1_epi32(1);
    const int32_t *ofs = hp->ofs;
    float *o0 = o[0], *o1 = o[1], *o2 = o[2];
    int x = 0;
    /* Offsets grow with x: the group's last load must stay inside the row. */
    for (; x + 8 <= ow && ofs[x + 7] + 8 <= nbytes; x += 8) {
        const __m256i W = _mm256_loadu_si256((const __m256i *)(hp->wp + x));
        __m256 p[4];
        __m256i sel = sel0;
        for (int j = 0; j < 4; j++) {
            const int lo_at = ofs[x + j], hi_at = ofs[x + j + 4];
            __m128i lo = _mm_maddubs_epi16(
                _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(ra + lo_at)),
                                  _mm_loadl_epi64((const __m128i *)(rb + lo_at))), wy);
            __m128i hi = _mm_maddubs_epi16(
                _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(ra + hi_at)),
                                  _mm_loadl_epi64((const __m128i *)(rb + hi_at))), wy);
            __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
            v = _mm256_shuffle_epi8(v, shuf);
            __m256i w = _mm256_permutevar8x32_epi32(W, sel);
            p[j] = _mm256_cvtepi32_ps(_mm256_madd_epi16(v, w));
            sel = _mm256_add_epi32(sel, one);
        }
        __m256 t0 = _mm256_unpacklo_ps(p[0], p[1]);
        __m256 t1 = _mm256_unpacklo_ps(p[2], p[3]);
        __m256 t2 = _mm256_unpackhi_ps(p[0], p[1]);
        __m256 t3 = _mm256_unpackhi_ps(p[2], p[3]);
        _mm256_storeu_ps(o0 + x, _mm256_fmadd_ps(_mm256_shuffle_ps(t0, t1, 0x44), k0, b0));
        _mm256_storeu_ps(o1 + x, _mm256_fmadd_ps(_mm256_shuffle_ps(t0, t1, 0xEE), k1, b1));
        _mm256_storeu_ps(o2 + x, _mm256_fmadd_ps(_mm256_shuffle_ps(t2, t3, 0x44), k2, b2));
    }
    /* The last pixels: their two source pixels, the right one replicated past the edge. */
    for (; x < ow; x++) {
        int16_t t[6];
        for (int e = 0; e < 6; e++) {
            int at = ofs[x] + e;
            if (at >= nbytes) at -= 3;
            t[e] = (int16_t)(ra[at] * wy0 + rb[at] * wy1);
        }
        const int32_t w0 = (int16_t)(hp->wp[x] & 0xffff), w1 = hp->wp[x] >> 16;
        for (int c = 0; c < 3; c++) {
            int32_t acc = t[src_ch[c]] * w0 + t[3 + src_ch[c]] * w1;
            o[c][x] = (float)acc * k[c] + b[c];
        }
    }
}
#endif

/* ---------------------------------------------------------------- stores */

/* One output row in NHWC order, from the three channel planes. */
static inline __attribute__((always_inline)) void
ic_store_body(const float *const p[3], void *dst, int n, int dtype) {
    if (dtype == IC_F32) {
        float *d = (float *)dst;
        for (int i = 0; i < n; i++) {
            d[3 * i] = p[0][i];
            d[3 * i + 1] = p[1][i];
            d[3 * i + 2] = p[2][i];
        }
        return;
    }
    /* Round half up after clamping; the offset keeps the cast's truncation a floor. */
    const float lo = dtype == IC_U8 ? 0.0f : -128.0f, hi = dtype == IC_U8 ? 255.0f : 127.0f;
    const float off = 0.5f - lo;
    const int shift = dtype == IC_U8 ? 0 : 128;
    uint8_t *d = (uint8_t *)dst;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++) {
            float v = p[c][i];
            v = v > lo ? v : lo; /* maxps, minps */
            v = v < hi ? v : hi;
            d[3 * i + c] = (uint8_t)((int)(v + off) - shift);
        }
    }
}

static void ic_store_base(const float *const p[3], void *dst, int n, int dtype) {
    ic_store_body(p, dst, n, dtype);
}

#if IC_X86
__attribute__((target("avx2"))) static void
ic_store_avx2(const float *const p[3], void *dst, int n, int dtype) {
    ic_store_body(p, dst, n, dtype);
}
#endif

/* One NCHW plane row of uint8/int8, rounded half up after clamping. */
static inline __attribute__((always_inline)) void
ic_store_plane_body(const float *restrict s, uint8_t *restrict d, int n, int dtype) {
    const float lo = dtype == IC_U8 ? 0.0f : -128.0f, hi = dtype == IC_U8 ? 255.0f : 127.0f;
    const float off = 0.5f - lo;
    const int shift = dtype == IC_U8 ? 0 : 128;
    for (int i = 0; i < n; i++) {
        float v = s[i];
        v = v > lo ? v : lo; /* maxps, minps */
        v = v < hi ? v : hi;
        d[i] = (uint8_t)((int)(v + off) - shift);
    }
}

static void ic_store_plane_int(const float *s, uint8_t *d, int n, int dtype) {
    ic_store_plane_body(s, d, n, dtype);
}

#if IC_X86
__attribute__((target("avx2"))) static void
ic_store_plane_int_avx2(const float *s, uint8_t *d, int n, int dtype) {
    ic_store_plane_body(s, d, n, dtype);
}
#endif

/* ---------------------------------------------------------------- dispatch */

/* -1: not probed yet; 0: portable C; 1: AVX2 + FMA (x86) or NEON (32-bit Arm).
 * Aarch64 always has Advanced SIMD: there the portable C is vectorised already. */
static int ic_simd_enabled = -1;

static int ic_simd_level(void) {
    if (ic_simd_enabled < 0) {
#if IC_X86
        __builtin_cpu_init();
        ic_simd_enabled = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif IC_ARM_NEON_CLONES
        ic_simd_enabled = (getauxval(AT_HWCAP) & HWCAP_NEON) != 0;
#else
        ic_simd_enabled = 0;
#endif
    }
    return ic_simd_enabled;
}

/* Force the portable path (0) or go back to the probed best (1); returns the level in use. */
static int ic_set_simd(int enable) {
    ic_simd_enabled = -1;
    int best = ic_simd_level();
    ic_simd_enabled = enable ? best : 0;
    return ic_simd_enabled;
}

/* ---------------------------------------------------------------- the job */

static size_t ic_elem_size(int dtype) { return dtype == IC_F32 ? 4 : 1; }

static void ic_fill(const ic_job *j, int y, int x0, int x1) {
    /* Fill output row y, columns [x0, x1), with the pad value of each channel. */
    const size_t es = ic_elem_size(j->dtype);
    const size_t plane = (size_t)j->dst_h * j->dst_w;
    uint8_t q[3];
    if (j->dtype != IC_F32)
        for (int c = 0; c < 3; c++) ic_store_plane_int(&j->pad[c], &q[c], 1, j->dtype);
    for (int c = 0; c < 3; c++) {
        for (int x = x0; x < x1; x++) {
            size_t at = j->layout == IC_NCHW ? c * plane + (size_t)y * j->dst_w + x
                                             : ((size_t)y * j->dst_w + x) * 3 + c;
            if (es == 4)
                ((float *)j->dst)[at] = j->pad[c];
            else
                ((uint8_t *)j->dst)[at] = q[c];
        }
    }
}

/* What every band of rows shares (read only while the bands run). */
typedef struct {
    const ic_job *j;
    ic_taps tx, ty;
    ic_hpack hp;
    int simd, bilinear_x, bilinear_y, direct, fuse;
    int src_ch[3];
    float k[3], b[3];
} ic_ctx;

typedef struct {
    const ic_ctx *ctx;
    int y0, y1, rc;
} ic_band;

/* Output rows [y0, y1) of the ROI, with this band's own row buffers. */
static int ic_band_run(const ic_ctx *ctx, int y0, int y1) {
    const ic_job *j = ctx->j;
    const ic_taps tx = ctx->tx, ty = ctx->ty;
    const ic_hpack hp = ctx->hp;
    const int simd = ctx->simd, bilinear_x = ctx->bilinear_x, bilinear_y = ctx->bilinear_y;
    const int direct = ctx->direct;
    const int *src_ch = ctx->src_ch;
    const float *k = ctx->k, *b = ctx->b;
    const int sw = j->src_w, sc = j->src_c, ow = j->roi_w;
    const int n = sw * sc;
    (void)simd; /* unused where no vector clone exists */
    int16_t *tmp = NULL, *tmpc = NULL;
    int32_t *acc = NULL;
    float *stage = NULL;
    const uint8_t **rows = NULL;
    int rc = IC_ENOMEM;
    tmp = (int16_t *)calloc((size_t)(sw + 2 + tx.k) * 3 + 16, sizeof(int16_t));
    if (!tmp) goto done;
    if (sc != 3 && !(tmpc = (int16_t *)malloc(sizeof(int16_t) * (size_t)n))) goto done;
    if (!bilinear_y) {
        acc = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
        rows = (const uint8_t **)malloc(sizeof(*rows) * (size_t)ty.k);
        if (!acc || !rows) goto done;
    }
    if (!direct && !(stage = (float *)malloc(sizeof(float) * 3 * (size_t)ow))) goto done;
    rc = IC_OK;

    const size_t plane = (size_t)j->dst_h * j->dst_w;
    const size_t es = ic_elem_size(j->dtype);
    int16_t *vrow = sc == 3 ? tmp : tmpc;
    for (int y = y0; y < y1; y++) {
        /* Float planes: straight into the output for NCHW float. */
        const size_t row_at = (size_t)(j->roi_y + y) * j->dst_w + j->roi_x;
        float *o[3];
        for (int c = 0; c < 3; c++)
            o[c] = direct ? (float *)j->dst + c * plane + row_at : stage + (size_t)c * ow;
        int fused = 0;
        /* Vertical pass into vrow (sc channels). */
        if (bilinear_y) {
            const int i0 = ty.start[y];
            const int i1 = i0 + 1 < j->src_h ? i0 + 1 : i0;
            const uint8_t *a = j->src + (ptrdiff_t)i0 * j->src_stride;
            const uint8_t *bb = j->src + (ptrdiff_t)i1 * j->src_stride;
            int w0 = ty.w[2 * y], w1 = ty.w[2 * y + 1];
            const int half = 1 << (IC_VBITS - 1);
            if (w0 == 2 * half) {
                bb = a;
                w0 = w1 = half;
            } else if (w1 == 2 * half) {
                a = bb;
                w0 = w1 = half;
            }
#if IC_X86
            if (ctx->fuse) {
                ic_fused2_avx2(a, bb, n, w0, w1, &hp, ow, src_ch, k, b, o);
                fused = 1;
            } else if (simd)
                ic_vpass2_avx2(a, bb, vrow, n, w0, w1);
            else
#elif IC_ARM_NEON_CLONES
            if (simd)
                ic_vpass2_neon(a, bb, vrow, n, w0, w1);
            else
#endif
                ic_vpass2_base(a, bb, vrow, n, w0, w1);
        } else {
            const int i0 = ty.start[y];
            int kk = 0;
            for (; kk < ty.k && i0 + kk < j->src_h; kk++)
                rows[kk] = j->src + (ptrdiff_t)(i0 + kk) * j->src_stride;
#if IC_X86
            if (simd)
                ic_vpassn_avx2(rows, ty.w + (size_t)y * ty.k, kk, acc, vrow, n);
            else
#elif IC_ARM_NEON_CLONES
            if (simd)
                ic_vpassn_neon(rows, ty.w + (size_t)y * ty.k, kk, acc, vrow, n);
            else
#endif
                ic_vpassn_base(rows, ty.w + (size_t)y * ty.k, kk, acc, vrow, n);
        }
        /* Grey and RGBA into three interleaved channels. */
        if (fused) {
            /* the row is done */
        } else if (sc == 1) {
            for (int x = 0; x < sw; x++) tmp[3 * x] = tmp[3 * x + 1] = tmp[3 * x + 2] = tmpc[x];
        } else if (sc == 4) {
            for (int x = 0; x < sw; x++) {
                tmp[3 * x] = tmpc[4 * x];
                tmp[3 * x + 1] = tmpc[4 * x + 1];
                tmp[3 * x + 2] = tmpc[4 * x + 2];
            }
        }
        /* Replicate the last pixel past the edge: taps at i + 1 == src_w read it. */
        for (int e = 0; e < 1 + tx.k && !fused; e++)
            for (int c = 0; c < 3; c++) tmp[3 * (sw + e) + c] = tmp[3 * (sw - 1) + c];

        /* Horizontal pass into the float planes. */
        if (fused) {
            /* done above */
        } else if (bilinear_x) {
#if IC_X86
            if (simd)
                ic_hpass2_avx2(tmp, &hp, ow, src_ch, k, b, o);
            else
#elif IC_ARM_NEON_CLONES
            if (simd)
                ic_hpass2_neon(tmp, &hp, ow, src_ch, k, b, o);
            else
#endif
                ic_hpass2_scalar(tmp, &hp, 0, ow, src_ch, k, b, o);
        } else {
            ic_hpass_generic(tmp, &tx, src_ch, k, b, o);
        }
        if (direct) continue;
        const float *po[3] = {o[0], o[1], o[2]};
        if (j->layout == IC_NHWC) {
            void *d = (uint8_t *)j->dst + row_at * 3 * es;
#if IC_X86
            if (simd)
                ic_store_avx2(po, d, ow, j->dtype);
            else
#endif
                ic_store_base(po, d, ow, j->dtype);
        } else {
            for (int c = 0; c < 3; c++) {
                uint8_t *d = (uint8_t *)j->dst + c * plane + row_at;
#if IC_X86
                if (simd)
                    ic_store_plane_int_avx2(po[c], d, ow, j->dtype);
                else
#endif
                    ic_store_plane_int(po[c], d, ow, j->dtype);
            }
        }
    }

done:
    free(tmp);
    free(tmpc);
    free(acc);
    free(stage);
    free((void *)rows);
    return rc;
}

#if IC_THREADS
static void *ic_band_thread(void *arg) {
    ic_band *band = (ic_band *)arg;
    band->rc = ic_band_run(band->ctx, band->y0, band->y1);
    return NULL;
}
#endif

/* Run a job; with threads > 1 the ROI's rows are split into that many bands,
 * one per thread (the caller's thread takes the first). */
static int ic_run(const ic_job *j, int threads) {
    if (j->src_h < 1 || j->src_w < 1 || j->roi_h < 1 || j->roi_w < 1 ||
        (j->src_c != 1 && j->src_c != 3 && j->src_c != 4) || j->roi_y < 0 || j->roi_x < 0 ||
        j->roi_y + j->roi_h > j->dst_h || j->roi_x + j->roi_w > j->dst_w)
        return IC_EINVAL;
    ic_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.j = j;
    ctx.simd = ic_simd_level();
    const int sw = j->src_w, ow = j->roi_w, oh = j->roi_h;
    ctx.bilinear_x = !(j->mode == IC_AREA && sw > ow);
    ctx.bilinear_y = !(j->mode == IC_AREA && j->src_h > oh);
    ctx.direct = j->layout == IC_NCHW && j->dtype == IC_F32;
    /* Fused passes were faster at every size measured (upscaling included): the
     * int16 row is never stored, and skipped columns are never blended. */
    ctx.fuse = IC_X86 && ctx.simd && ctx.bilinear_x && ctx.bilinear_y && j->src_c == 3;
    ctx.src_ch[0] = j->swap_rb ? 2 : 0;
    ctx.src_ch[1] = 1;
    ctx.src_ch[2] = j->swap_rb ? 0 : 2;
    const float unit = 1.0f / (float)(1 << (IC_WBITS + IC_TSHIFT));
    for (int c = 0; c < 3; c++) {
        ctx.k[c] = j->mul[c] * unit;
        ctx.b[c] = j->add[c];
    }
    int rc = IC_ENOMEM;
    if (ic_taps_make(&ctx.tx, sw, ow, j->mode, IC_WBITS)) goto done;
    if (ic_taps_make(&ctx.ty, j->src_h, oh, j->mode, ctx.bilinear_y ? IC_VBITS : IC_WBITS))
        goto done;
    if (ctx.bilinear_x) {
        ctx.hp.ofs = (int32_t *)malloc(sizeof(int32_t) * (size_t)ow);
        ctx.hp.wp = (int32_t *)malloc(sizeof(int32_t) * (size_t)ow);
        if (!ctx.hp.ofs || !ctx.hp.wp) goto done;
        for (int x = 0; x < ow; x++) {
            ctx.hp.ofs[x] = 3 * ctx.tx.start[x];
            ctx.hp.wp[x] = (int32_t)((uint32_t)(uint16_t)ctx.tx.w[2 * x] |
                                     ((uint32_t)ctx.tx.w[2 * x + 1] << 16));
        }
    }

    /* The border first (letterbox), then the ROI. */
    for (int y = 0; y < j->dst_h; y++) {
        if (y < j->roi_y || y >= j->roi_y + oh) {
            ic_fill(j, y, 0, j->dst_w);
        } else {
            if (j->roi_x > 0) ic_fill(j, y, 0, j->roi_x);
            if (j->roi_x + ow < j->dst_w) ic_fill(j, y, j->roi_x + ow, j->dst_w);
        }
    }

    if (threads > IC_MAX_THREADS) threads = IC_MAX_THREADS;
    if (threads > oh) threads = oh;
#if IC_THREADS
    if (threads > 1) {
        ic_band bands[IC_MAX_THREADS];
        pthread_t ids[IC_MAX_THREADS];
        int started[IC_MAX_THREADS] = {0};
        for (int t = 0; t < threads; t++) {
            bands[t].ctx = &ctx;
            bands[t].y0 = (int)((long long)oh * t / threads);
            bands[t].y1 = (int)((long long)oh * (t + 1) / threads);
            bands[t].rc = IC_OK;
        }
        for (int t = 1; t < threads; t++)
            started[t] = pthread_create(&ids[t], NULL, ic_band_thread, &bands[t]) == 0;
        rc = ic_band_run(&ctx, bands[0].y0, bands[0].y1);
        for (int t = 1; t < threads; t++) {
            if (started[t])
                pthread_join(ids[t], NULL);
            else  /* no thread to be had: do its rows here */
                bands[t].rc = ic_band_run(&ctx, bands[t].y0, bands[t].y1);
            if (rc == IC_OK) rc = bands[t].rc;
        }
        goto done;
    }
#endif
    rc = ic_band_run(&ctx, 0, oh);

done:
    ic_taps_free(&ctx.tx);
    ic_taps_free(&ctx.ty);
    free(ctx.hp.ofs);
    free(ctx.hp.wp);
    return rc;
}

#endif
