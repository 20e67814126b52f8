/* The kernels, compiled once per instruction set: the including file defines
 *   VW   floats per vector, MR rows of the GEMM micro-kernel (a divisor of EA_PM),
 *   SUF(name) the per-ISA name.
 * Written with GCC vector extensions: the same code becomes AVX-512, AVX2+FMA, SSE2 or NEON.
 */
typedef float SUF(vf) __attribute__((vector_size(VW * 4), aligned(4)));
typedef int32_t SUF(vi) __attribute__((vector_size(VW * 4)));
#define vf SUF(vf)
#define vi SUF(vi)

/* m ? a : b lane by lane (the vector ?: is C++ only). */
static inline vf SUF(sel)(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* x - 0 folds to x (x + 0 does not: -0 + 0 is +0), so this is a plain broadcast. */
static inline vf SUF(splat)(float x) { return x - (vf){0}; }
static inline vf SUF(load)(const float* p) { return *(const vf*)p; }
static inline void SUF(store)(float* p, vf v) { *(vf*)p = v; }

static inline vf SUF(vact)(vf v, int act, float lo, float hi, float slope) {
  if (act == EA_ACT_CLIP) {
    vf l = SUF(splat)(lo), h = SUF(splat)(hi);
#if defined(EA_X86) && VW == 16 /* max(l, v) is l when l > v, else v (a NaN v stays) */
    v = (vf)_mm512_min_ps((__m512)h, _mm512_max_ps((__m512)l, (__m512)v));
#elif defined(EA_X86) && VW == 8
    v = (vf)_mm256_min_ps((__m256)h, _mm256_max_ps((__m256)l, (__m256)v));
#else
    v = SUF(sel)(v < l, l, v);
    v = SUF(sel)(v > h, h, v);
#endif
  } else if (act == EA_ACT_PRELU) {
    vf z = SUF(splat)(0.f);
    v = SUF(sel)(v < z, v * SUF(splat)(slope), v);
  }
  return v;
}

static inline float SUF(sact)(float v, int act, float lo, float hi, float slope) {
  if (act == EA_ACT_CLIP) return v < lo ? lo : (v > hi ? hi : v);
  if (act == EA_ACT_PRELU) return v < 0.f ? v * slope : v;
  return v;
}

/* ---- GEMM: Y[M][N] = act(A[M][K] X[K][N] + bias (+ R)), A packed in panels of EA_PM rows:
 * a[(m / EA_PM) * K * EA_PM + k * EA_PM + m % EA_PM]. X rows have stride ldx, Y and R ldy. */
typedef struct {
  const float* a; const float* bias; const float* slope; const float* x; const float* r;
  float* y; int64_t M, K, N, ldx, ldy; int act; float lo, hi;
} SUF(gemm_args);

/* One MR x (NV*VW) tile; x points at the tile's first column (row stride ldx), y likewise. */
#define MICRO(NV)                                                                              \
  static inline void SUF(micro##NV)(const SUF(gemm_args) * g, const float* a, const float* x, \
                                    int64_t ldx, float* y, int64_t ldy, const float* r,       \
                                    int64_t m0, int rows) {                                    \
    vf acc[MR][NV];                                                                            \
    for (int i = 0; i < MR; i++)                                                               \
      for (int v = 0; v < NV; v++) acc[i][v] = SUF(splat)(0.f);                                \
    const int64_t K = g->K;                                                                    \
    for (int64_t k = 0; k < K; k++) {                                                          \
      vf xv[NV];                                                                               \
      for (int v = 0; v < NV; v++) xv[v] = SUF(load)(x + k * ldx + v * VW);                    \
      const float* ak = a + k * EA_PM;                                                         \
      for (int i = 0; i < MR; i++) {                                                           \
        vf av = SUF(splat)(ak[i]);                                                             \
        for (int v = 0; v < NV; v++) acc[i][v] += av * xv[v];                                  \
      }                                                                                        \
    }                                                                                          \
    for (int i = 0; i < MR && i < rows; i++) {                                                 \
      int64_t m = m0 + i;                                                                      \
      vf b = SUF(splat)(g->bias ? g->bias[m] : 0.f);                                           \
      float s = g->slope ? g->slope[m] : 0.f;                                                  \
      for (int v = 0; v < NV; v++) {                                                           \
        vf o = acc[i][v] + b;                                                                  \
        if (r) o += SUF(load)(r + i * ldy + v * VW);                                           \
        SUF(store)(y + i * ldy + v * VW, SUF(vact)(o, g->act, g->lo, g->hi, s));               \
      }                                                                                        \
    }                                                                                          \
  }
MICRO(1)
MICRO(2)
MICRO(3)
#undef MICRO

#define NVMAX 3
#define NB (NVMAX * VW)

#if VW == 16
/* A block of 8 columns or fewer (the tail of N = 49, 196, ...): 8-lane vectors with masked
 * loads and stores, in place. A 16-lane tile would spend as many cycles on one column as
 * on sixteen; Zen 4 runs two 8-lane FMAs a cycle, so this takes half as long. */
_Static_assert(MR == EA_PM, "the masked tail covers one panel");
typedef float SUF(hf) __attribute__((vector_size(32), aligned(4)));
static void SUF(microh)(const SUF(gemm_args) * g, const float* a, const float* x, int64_t ldx,
                        float* y, int64_t ldy, const float* r, int64_t m0, int rows,
                        int width) {
  const __mmask8 mk = (__mmask8)((1u << width) - 1);
  SUF(hf) acc[MR];
  /* Every loop over the rows fully unrolled: an array indexed at run time (the epilogue's
   * i < rows) made gcc store every accumulator on each step of the k loop. */
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) acc[i] = (SUF(hf)){0};
  const int64_t K = g->K;
  for (int64_t k = 0; k < K; k++) {
    SUF(hf) xv = (SUF(hf))_mm256_maskz_loadu_ps(mk, x + k * ldx);
    const float* ak = a + k * EA_PM;
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) acc[i] += ak[i] * xv;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    if (i >= rows) break;
    int64_t m = m0 + i;
    SUF(hf) o = acc[i] + (g->bias ? g->bias[m] : 0.f);
    if (r) o += (SUF(hf))_mm256_maskz_loadu_ps(mk, r + i * ldy);
    if (g->act == EA_ACT_CLIP) {
      o = (SUF(hf))_mm256_max_ps((__m256)o, _mm256_set1_ps(g->lo));
      o = (SUF(hf))_mm256_min_ps((__m256)o, _mm256_set1_ps(g->hi));
    } else if (g->act == EA_ACT_PRELU) {
      __mmask8 neg = _mm256_cmp_ps_mask((__m256)o, _mm256_setzero_ps(), _CMP_LT_OQ);
      o = (SUF(hf))_mm256_mask_mul_ps((__m256)o, neg, (__m256)o, _mm256_set1_ps(g->slope[m]));
    }
    _mm256_mask_storeu_ps(y + i * ldy, mk, (__m256)o);
  }
}
#endif

#if VW == 16
/* The last W (1, 2 or 4) columns (N = 49, 196) with vectors along the rows instead: a
 * panel's 8 rows at step k are one load of the packed weights, times each column's x
 * broadcast; four panels at a time. The masked 8-lane tile above spent 8 FMAs a step on
 * each panel for one column: 1280x320x49 took 1.24x the time of 1280x320x48. */
static inline __attribute__((always_inline)) void SUF(tailcols)(const SUF(gemm_args) * g,
                                                                 int64_t n0, int64_t p0,
                                                                 int64_t p1, const int W) {
  const int64_t K = g->K, ldx = g->ldx, ldy = g->ldy;
  const float* x = g->x + n0;
  for (int64_t p = p0; p < p1; p += 4) {
    const int np = p1 - p < 4 ? (int)(p1 - p) : 4;
    const float* a[4];
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
      a[i] = g->a + (i < np ? p + i : p) * K * EA_PM; /* spare panels redo the first */
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
      __m256 xv[4];
#pragma GCC unroll 4
      for (int j = 0; j < W; j++) xv[j] = _mm256_broadcast_ss(x + k * ldx + j);
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        const __m256 av = _mm256_loadu_ps(a[i] + k * EA_PM);
#pragma GCC unroll 4
        for (int j = 0; j < W; j++) acc[i][j] = _mm256_fmadd_ps(av, xv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < np; i++)
      for (int j = 0; j < W; j++) {
        float v[8];
        _mm256_storeu_ps(v, acc[i][j]);
        for (int row = 0; row < EA_PM; row++) {
          const int64_t m = (p + i) * EA_PM + row;
          if (m >= g->M) break;
          float o = v[row] + (g->bias ? g->bias[m] : 0.f);
          if (g->r) o += g->r[m * ldy + n0 + j];
          g->y[m * ldy + n0 + j] =
              SUF(sact)(o, g->act, g->lo, g->hi, g->slope ? g->slope[m] : 0.f);
        }
      }
  }
}
#endif

/* Columns [n0, n0 + width) for every row panel in [p0, p1). A full-width block reads X and
 * writes Y in place; a narrower one goes through zero-padded copies. */
static void SUF(gemm_block)(const SUF(gemm_args) * g, int64_t n0, int64_t p0, int64_t p1) {
  int64_t width = g->N - n0 < NB ? g->N - n0 : NB;
  int nv = (int)((width + VW - 1) / VW);
  int exact = (width == (int64_t)nv * VW);
#if VW == 16
  if (width == 1 || width == 2 || width == 4) {
    if (width == 1) SUF(tailcols)(g, n0, p0, p1, 1);
    else if (width == 2) SUF(tailcols)(g, n0, p0, p1, 2);
    else SUF(tailcols)(g, n0, p0, p1, 4);
    return;
  }
  if (width <= 8) {
    for (int64_t p = p0; p < p1; p++) {
      int64_t m0 = p * EA_PM;
      if (m0 >= g->M) break;
      int rows = (int)(g->M - m0 < MR ? g->M - m0 : MR);
      SUF(microh)(g, g->a + p * g->K * EA_PM, g->x + n0, g->ldx, g->y + m0 * g->ldy + n0,
                  g->ldy, g->r ? g->r + m0 * g->ldy + n0 : NULL, m0, rows, (int)width);
    }
    return;
  }
#endif
  const float* x = g->x + n0;
  int64_t ldx = g->ldx;
  float* tmp_y = NULL;
  float* tmp_r = NULL;
  if (!exact) {
    int64_t cols = (int64_t)nv * VW;
    float* px = ea_scratch(0, (size_t)(g->K * cols + 2 * MR * cols));
    if (!px) return;
    for (int64_t k = 0; k < g->K; k++) {
      memcpy(px + k * cols, g->x + k * g->ldx + n0, (size_t)width * 4);
      memset(px + k * cols + width, 0, (size_t)(cols - width) * 4);
    }
    x = px;
    ldx = cols;
    tmp_y = px + g->K * cols;
    tmp_r = tmp_y + MR * cols;
  }
  for (int64_t p = p0; p < p1; p++) {
    const float* ap = g->a + p * g->K * EA_PM;
    for (int sub = 0; sub < EA_PM; sub += MR) {
      int64_t m0 = p * EA_PM + sub;
      if (m0 >= g->M) break;
      int rows = (int)(g->M - m0 < MR ? g->M - m0 : MR);
      float* y = g->y + m0 * g->ldy + n0;
      const float* r = g->r ? g->r + m0 * g->ldy + n0 : NULL;
      int64_t ldy = g->ldy;
      if (!exact) {
        int64_t cols = (int64_t)nv * VW;
        if (r) {
          for (int i = 0; i < rows; i++) memcpy(tmp_r + i * cols, r + i * g->ldy, (size_t)width * 4);
          r = tmp_r;
        }
        y = tmp_y;
        ldy = cols;
      }
      if (nv == 3) SUF(micro3)(g, ap + sub, x, ldx, y, ldy, r, m0, rows);
      else if (nv == 2) SUF(micro2)(g, ap + sub, x, ldx, y, ldy, r, m0, rows);
      else SUF(micro1)(g, ap + sub, x, ldx, y, ldy, r, m0, rows);
      if (!exact)
        for (int i = 0; i < rows; i++)
          memcpy(g->y + (m0 + i) * g->ldy + n0, tmp_y + i * ldy, (size_t)width * 4);
    }
  }
}

/* Tasks over column blocks (wide outputs) or row panels (narrow ones). */
static void SUF(gemm_cols)(void* data, int64_t begin, int64_t end) {
  const SUF(gemm_args)* g = (const SUF(gemm_args)*)data;
  int64_t panels = (g->M + EA_PM - 1) / EA_PM;
  /* Chunks of 16 blocks, row panel by row panel: each panel writes runs of 16 blocks of
   * its rows (not one block of every row in turn: up to M streams 4 * N bytes apart), and
   * the chunk's columns of X stay in L2. Outputs not in cache (96x16x12544): 0.96 -> 0.68
   * ms; in cache: the same. */
  const int64_t full = g->N / NB; /* a narrower last block copies X: all panels at once */
  for (int64_t c0 = begin; c0 < end; c0 += 16) {
    int64_t c1 = c0 + 16 < end ? c0 + 16 : end;
    int64_t f1 = c1 < full ? c1 : full;
    for (int64_t p = 0; p < panels; p++)
      for (int64_t b = c0; b < f1; b++) SUF(gemm_block)(g, b * NB, p, p + 1);
    for (int64_t b = f1 > c0 ? f1 : c0; b < c1; b++) SUF(gemm_block)(g, b * NB, 0, panels);
  }
}

static void SUF(gemm_rows)(void* data, int64_t begin, int64_t end) {
  const SUF(gemm_args)* g = (const SUF(gemm_args)*)data;
  for (int64_t n0 = 0; n0 < g->N; n0 += NB) SUF(gemm_block)(g, n0, begin, end);
}

static void SUF(gemm)(SUF(gemm_args) * g) {
  int64_t blocks = (g->N + NB - 1) / NB, panels = (g->M + EA_PM - 1) / EA_PM;
  if (blocks >= 8) ea_parallel(blocks, 2, SUF(gemm_cols), g);
  else ea_parallel(panels, 2, SUF(gemm_rows), g);
}

/* ---- Convolution through im2col + GEMM (any kernel, group 1). Each row of columns is
 * its zero borders and a branch-free strided copy between them. */
static inline __attribute__((always_inline)) void SUF(im2col_row)(float* restrict row,
    const float* restrict in, int64_t lo, int64_t hi, int64_t Wo, int sw, int off) {
  for (int64_t ox = 0; ox < lo; ox++) row[ox] = 0.f;
  for (int64_t ox = lo; ox < hi; ox++) row[ox] = in[ox * sw + off];
  for (int64_t ox = hi; ox < Wo; ox++) row[ox] = 0.f;
}

/* The columns of output rows [oy0, oy1): K rows of (oy1 - oy0) * Wo. */
static void SUF(im2col)(const float* x, float* col, int64_t C, int64_t H, int64_t W, int kh,
                        int kw, int sh, int sw, int pt, int pl, int64_t oy0, int64_t oy1,
                        int64_t Wo) {
  const int64_t n = (oy1 - oy0) * Wo;
  for (int64_t c = 0; c < C; c++)
    for (int ky = 0; ky < kh; ky++)
      for (int kx = 0; kx < kw; kx++) {
        float* out = col + ((c * kh + ky) * kw + kx) * n - oy0 * Wo;
        /* outputs ox reading inside the row: 0 <= ox * sw + kx - pl < W */
        const int off = kx - pl;
        int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
        int64_t hi = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
        if (hi > Wo) hi = Wo;
        if (lo > hi) lo = hi;
        for (int64_t oy = oy0; oy < oy1; oy++) {
          int64_t iy = oy * sh + ky - pt;
          float* row = out + oy * Wo;
          if (iy < 0 || iy >= H) {
            memset(row, 0, (size_t)Wo * 4);
            continue;
          }
          const float* in = x + (c * H + iy) * W;
          if (sw == 1) SUF(im2col_row)(row, in, lo, hi, Wo, 1, off);
          else if (sw == 2) SUF(im2col_row)(row, in, lo, hi, Wo, 2, off);
          else SUF(im2col_row)(row, in, lo, hi, Wo, sw, off);
        }
      }
}

/* The convolution in bands of output rows, one task item each: the band's columns (about
 * 64 KiB) are made and multiplied while in cache, instead of all of them (1.35 MB for
 * the stem) written out and read back. */
typedef struct {
  SUF(gemm_args) g; /* x, N and ldx set per band; ldy = Ho * Wo */
  const float* x; int64_t C, H, W; int kh, kw, sh, sw, pt, pl; int64_t Ho, Wo, rows;
} SUF(conv_args);

static void SUF(conv_task)(void* data, int64_t begin, int64_t end) {
  const SUF(conv_args)* c = (const SUF(conv_args)*)data;
  const int64_t panels = (c->g.M + EA_PM - 1) / EA_PM;
  for (int64_t band = begin; band < end; band++) {
    const int64_t oy0 = band * c->rows, oy1 = oy0 + c->rows < c->Ho ? oy0 + c->rows : c->Ho;
    const int64_t n = (oy1 - oy0) * c->Wo;
    float* col = ea_scratch(2, (size_t)(c->g.K * n));
    if (!col) return;
    SUF(im2col)(c->x, col, c->C, c->H, c->W, c->kh, c->kw, c->sh, c->sw, c->pt, c->pl, oy0,
                oy1, c->Wo);
    SUF(gemm_args) g = c->g;
    g.x = col;
    g.N = n;
    g.ldx = n;
    g.y = c->g.y + oy0 * c->Wo;
    g.r = c->g.r ? c->g.r + oy0 * c->Wo : NULL;
    for (int64_t n0 = 0; n0 < n; n0 += NB) SUF(gemm_block)(&g, n0, 0, panels);
  }
}

static void SUF(conv_run)(SUF(conv_args) * c) {
  ea_parallel((c->Ho + c->rows - 1) / c->rows, 1, SUF(conv_task), c);
}

/* ---- Depthwise convolution: one channel per task item, over a zero-padded copy. */
typedef struct {
  const float* w; const float* bias; const float* slope; const float* x; float* y;
  int64_t C, H, W, Ho, Wo; int kh, kw, sh, sw, pt, pl, pb, pr; int act; float lo, hi;
} SUF(dw_args);

/* The output rows of one channel from its padded planes; inlined with constant kernel
 * sizes and strides for the common cases. */
static inline __attribute__((always_inline)) void SUF(dw_store)(float* out, int64_t ox,
                                                                  int64_t Wo, vf sum,
                                                                  float* spill) {
  if (ox + VW <= Wo) {
    SUF(store)(out + ox, sum);
  } else {
#if VW == 16 /* (vmaskmovps, AVX2's masked store, is slow on AMD: measured) */
    _mm512_mask_storeu_ps(out + ox, (__mmask16)((1u << (Wo - ox)) - 1), (__m512)sum);
    (void)spill;
#else
    SUF(store)(spill, sum);
    for (int64_t i = 0; i < Wo - ox; i++) out[ox + i] = spill[i];
#endif
  }
}

static inline __attribute__((always_inline)) void SUF(dw_rows)(
    const float* pad, const vf* wv, vf bias, float* y, float* spill, int64_t Ho, int64_t Wo,
    int64_t Wv, int64_t Wq, int64_t plane, int sh, int kh, int kw, int sw, int act, float lo,
    float hi, float s) {
  int64_t oy = 0;
  /* Two output rows at a time: twice the independent FMA chains (one row's chains alone
   * left the FMA units waiting on their latency). */
  for (; oy + 2 <= Ho; oy += 2) {
    float* out = y + oy * Wo;
    for (int64_t ox = 0; ox < Wv; ox += VW) {
      vf a0[3] = {bias, SUF(splat)(0.f), SUF(splat)(0.f)};
      vf a1[3] = {bias, SUF(splat)(0.f), SUF(splat)(0.f)};
      for (int ky = 0; ky < kh; ky++) {
        const float* row = pad + (oy * sh + ky) * Wq + ox;
        const float* row1 = row + sh * Wq;
        for (int kx = 0; kx < kw; kx++) {
          vf w = wv[ky * kw + kx];
          a0[ky % 3] += w * SUF(load)(row + (kx % sw) * plane + kx / sw);
          a1[ky % 3] += w * SUF(load)(row1 + (kx % sw) * plane + kx / sw);
        }
      }
      SUF(dw_store)(out, ox, Wo, SUF(vact)(a0[0] + a0[1] + a0[2], act, lo, hi, s), spill);
      SUF(dw_store)(out + Wo, ox, Wo, SUF(vact)(a1[0] + a1[1] + a1[2], act, lo, hi, s), spill);
    }
  }
  for (; oy < Ho; oy++) {
    float* out = y + oy * Wo;
    for (int64_t ox = 0; ox < Wv; ox += VW) {
      /* Three partial sums (kernel rows 0, 3, .. / 1, 4, .. / 2, 5, ..): one chain of
       * kh * kw dependent FMAs was the bound for short rows. */
      vf acc[3] = {bias, SUF(splat)(0.f), SUF(splat)(0.f)};
      for (int ky = 0; ky < kh; ky++) {
        const float* row = pad + (oy * sh + ky) * Wq + ox;
        for (int kx = 0; kx < kw; kx++)
          acc[ky % 3] += wv[ky * kw + kx] * SUF(load)(row + (kx % sw) * plane + kx / sw);
      }
      SUF(dw_store)(out, ox, Wo, SUF(vact)(acc[0] + acc[1] + acc[2], act, lo, hi, s), spill);
    }
  }
}

/* Depthwise, vectorised along the output row: each channel's input is copied into
 * zero-padded planes (for stride 2, its even and odd columns apart), so that every tap
 * of a vector of outputs is one contiguous load. Kernels up to 7x7, strides 1 and 2. */
static void SUF(dw_task)(void* data, int64_t begin, int64_t end) {
  const SUF(dw_args)* d = (const SUF(dw_args)*)data;
  const int kh = d->kh, kw = d->kw, sh = d->sh, sw = d->sw, pt = d->pt, pl = d->pl;
  const int64_t H = d->H, W = d->W, Ho = d->Ho, Wo = d->Wo;
  const int64_t Wv = (Wo + VW - 1) / VW * VW;
  const int64_t Hp = (Ho - 1) * sh + kh;
  const int64_t Wq = Wv + (kw - 1) / sw + 1;
  float* pad = ea_scratch(1, (size_t)(sw * Hp * Wq + VW));
  if (!pad) return;
  float* spill = pad + sw * Hp * Wq;
  vf wv[49];
  /* The borders stay zero for every channel: only the interior is rewritten. */
  memset(pad, 0, (size_t)(sw * Hp * Wq) * 4);
  const int64_t y0 = pt, y1 = H + pt < Hp ? H + pt : Hp;  /* plane rows holding input rows */
  for (int64_t c = begin; c < end; c++) {
    const float* x = d->x + c * H * W;
    if (sw == 1) {
      const int64_t n = W < Wq - pl ? W : Wq - pl;
      for (int64_t py = y0; py < y1; py++) {
        const float* restrict src = x + (py - pt) * W;
        float* restrict dst = pad + py * Wq + pl;
        for (int64_t i = 0; i < n; i++) dst[i] = src[i];
      }
    } else {
      for (int64_t py = y0; py < y1; py++) {
        const float* restrict src = x + (py - pt) * W;
        float* restrict even = pad + py * Wq;
        float* restrict odd = even + Hp * Wq;
        /* padded column j = ix + pl goes to plane j % 2, column j / 2 */
        int64_t ix = 0;
        if (pl & 1) {
          odd[(pl) / 2] = src[0];
          ix = 1;
        }
        int64_t base = (ix + pl) / 2;
        int64_t pairs = (W - ix) / 2;
        if (base + pairs > Wq) pairs = Wq - base;
        for (int64_t k = 0; k < pairs; k++) {
          even[base + k] = src[ix + 2 * k];
          odd[base + k] = src[ix + 2 * k + 1];
        }
        int64_t last = ix + 2 * pairs;
        if (last < W && base + pairs < Wq) even[base + pairs] = src[last];
      }
    }
    const float* w = d->w + c * kh * kw;
    for (int k = 0; k < kh * kw; k++) wv[k] = SUF(splat)(w[k]);
    vf bias = SUF(splat)(d->bias ? d->bias[c] : 0.f);
    float s = d->slope ? d->slope[c] : 0.f;
    float* y = d->y + c * Ho * Wo;
    const int64_t plane = Hp * Wq;
#define DW_ROWS(KH, KW, SW) SUF(dw_rows)(pad, wv, bias, y, spill, Ho, Wo, Wv, Wq, plane, sh, KH, \
                                         KW, SW, d->act, d->lo, d->hi, s)
    if (kh == 3 && kw == 3 && sw == 1) DW_ROWS(3, 3, 1);
    else if (kh == 3 && kw == 3 && sw == 2) DW_ROWS(3, 3, 2);
    else if (kh == 5 && kw == 5 && sw == 1) DW_ROWS(5, 5, 1);
    else if (kh == 5 && kw == 5 && sw == 2) DW_ROWS(5, 5, 2);
    else DW_ROWS(kh, kw, sw);
#undef DW_ROWS
  }
}

/* Any other depthwise kernel: scalar, straight from the input. */
static void SUF(dw_task_any)(void* data, int64_t begin, int64_t end) {
  const SUF(dw_args)* d = (const SUF(dw_args)*)data;
  for (int64_t c = begin; c < end; c++) {
    const float* x = d->x + c * d->H * d->W;
    const float* w = d->w + c * d->kh * d->kw;
    float b = d->bias ? d->bias[c] : 0.f, s = d->slope ? d->slope[c] : 0.f;
    for (int64_t oy = 0; oy < d->Ho; oy++)
      for (int64_t ox = 0; ox < d->Wo; ox++) {
        float acc = b;
        for (int ky = 0; ky < d->kh; ky++) {
          int64_t iy = oy * d->sh + ky - d->pt;
          if (iy < 0 || iy >= d->H) continue;
          for (int kx = 0; kx < d->kw; kx++) {
            int64_t ix = ox * d->sw + kx - d->pl;
            if (ix >= 0 && ix < d->W) acc += w[ky * d->kw + kx] * x[iy * d->W + ix];
          }
        }
        d->y[(c * d->Ho + oy) * d->Wo + ox] = SUF(sact)(acc, d->act, d->lo, d->hi, s);
      }
  }
}

#if VW == 16
/* 16x16 transpose in registers: r[i][j] becomes r[j][i] (64 shuffles). */
static inline __attribute__((always_inline)) void SUF(tr16)(__m512 r[16]) {
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  /* u[4i + j], 128-bit lane L: column 4L + j of rows 4i .. 4i + 3 */
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    __m512 ab0 = _mm512_shuffle_f32x4(u[j], u[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
    __m512 ab1 = _mm512_shuffle_f32x4(u[j], u[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
    __m512 cd0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
    __m512 cd1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
    r[j] = _mm512_shuffle_f32x4(ab0, cd0, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + j] = _mm512_shuffle_f32x4(ab0, cd0, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + j] = _mm512_shuffle_f32x4(ab1, cd1, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + j] = _mm512_shuffle_f32x4(ab1, cd1, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

/* The output rows of 16 channels from their [row][column][16] plane t: 16 outputs of a row
 * at a time (16 independent FMA chains), transposed back to the channels' rows. */
static inline __attribute__((always_inline)) void SUF(dwcv_rows)(
    const SUF(dw_args) * d, const float* t, const __m512* w16, __m512 bias, __m512 slope,
    float* y, int64_t Wp, int kh, int kw, int sh, int sw) {
  const int64_t Ho = d->Ho, Wo = d->Wo;
  const __m512 lo = _mm512_set1_ps(d->lo), hi = _mm512_set1_ps(d->hi);
  for (int64_t oy = 0; oy < Ho; oy++)
    for (int64_t ox0 = 0; ox0 < Wo; ox0 += 16) {
      __m512 acc[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) acc[i] = bias;
      for (int ky = 0; ky < kh; ky++) {
        const float* row = t + ((oy * sh + ky) * Wp + ox0 * sw) * 16;
        for (int kx = 0; kx < kw; kx++) {
          const __m512 w = w16[ky * kw + kx];
#pragma GCC unroll 16
          for (int i = 0; i < 16; i++)
            acc[i] = _mm512_fmadd_ps(w, _mm512_load_ps(row + (i * sw + kx) * 16), acc[i]);
        }
      }
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) {
        if (d->act == EA_ACT_CLIP) {
          acc[i] = _mm512_min_ps(hi, _mm512_max_ps(lo, acc[i]));
        } else if (d->act == EA_ACT_PRELU) {
          __mmask16 neg = _mm512_cmp_ps_mask(acc[i], _mm512_setzero_ps(), _CMP_LT_OQ);
          acc[i] = _mm512_mask_mul_ps(acc[i], neg, acc[i], slope);
        }
      }
      SUF(tr16)(acc);
      const int64_t n = Wo - ox0 < 16 ? Wo - ox0 : 16;
      const __mmask16 m = (__mmask16)((1u << n) - 1);
      float* out = y + oy * Wo + ox0;
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(out + j * Ho * Wo, m, acc[j]);
    }
}

/* Planes with rows of 8 or fewer (7x7: 14-wide rows measured faster by rows): 16
 * consecutive outputs of the plane at a time, across rows, stored as one run of each
 * channel's plane. Past the plane's end, the spare outputs read the spare rows below it. */
static inline __attribute__((always_inline)) void SUF(dwcv_flat)(
    const SUF(dw_args) * d, const float* t, const __m512* w16, __m512 bias, __m512 slope,
    float* y, int64_t Wp, int kh, int kw, int sh, int sw) {
  const int64_t Ho = d->Ho, Wo = d->Wo, plane = Ho * Wo;
  const __m512 lo = _mm512_set1_ps(d->lo), hi = _mm512_set1_ps(d->hi);
  for (int64_t f0 = 0; f0 < plane; f0 += 16) {
    const float* p[16];
    int64_t oy = f0 / Wo, ox = f0 % Wo;
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
      p[i] = t + (oy * sh * Wp + ox * sw) * 16;
      if (++ox == Wo) {
        ox = 0;
        oy++;
      }
    }
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = bias;
    /* Two halves of 8 outputs: 16 pointers and the tap offset did not fit the registers */
#pragma GCC unroll 2
    for (int h = 0; h < 16; h += 8)
      for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++) {
          const __m512 w = w16[ky * kw + kx];
          const int64_t off = (ky * Wp + kx) * 16;
#pragma GCC unroll 8
          for (int i = h; i < h + 8; i++)
            acc[i] = _mm512_fmadd_ps(w, _mm512_load_ps(p[i] + off), acc[i]);
        }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
      if (d->act == EA_ACT_CLIP) {
        acc[i] = _mm512_min_ps(hi, _mm512_max_ps(lo, acc[i]));
      } else if (d->act == EA_ACT_PRELU) {
        __mmask16 neg = _mm512_cmp_ps_mask(acc[i], _mm512_setzero_ps(), _CMP_LT_OQ);
        acc[i] = _mm512_mask_mul_ps(acc[i], neg, acc[i], slope);
      }
    }
    SUF(tr16)(acc);
    const int64_t n = plane - f0 < 16 ? plane - f0 : 16;
    const __mmask16 m = (__mmask16)((1u << n) - 1);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(y + j * plane + f0, m, acc[j]);
  }
}

/* Depthwise with 16 channels in a vector, for task items of 16 channels: their input is
 * transposed into a zero-padded [row][column][16] plane, so every output is kh * kw
 * full-width FMAs whatever the row length (no lane is lost on the 7- and 14-wide rows)
 * and a stride of 2 is only an address step. */
static void SUF(dwcv_task)(void* data, int64_t begin, int64_t end) {
  const SUF(dw_args)* d = (const SUF(dw_args)*)data;
  const int kh = d->kh, kw = d->kw, sh = d->sh, sw = d->sw, pt = d->pt, pl = d->pl;
  const int64_t H = d->H, W = d->W, Ho = d->Ho, Wo = d->Wo, taps = kh * kw;
  const int64_t Hp = (Ho - 1) * sh + kh;
  const int64_t Wp = (Wo + 15) / 16 * 16 * sw + kw; /* the last block's 16 outputs read here */
  /* sh spare rows for the spare outputs of the flat blocks */
  float* t = ea_scratch(1, (size_t)((Hp + sh) * Wp * 16));
  if (!t) return;
  /* The borders (and the columns only the last block's spare outputs read) stay zero. */
  const int64_t y1 = H + pt < Hp ? H + pt : Hp, x1 = W + pl < Wp ? W + pl : Wp;
  memset(t, 0, (size_t)(pt * Wp * 16) * 4);
  memset(t + y1 * Wp * 16, 0, (size_t)((Hp + sh - y1) * Wp * 16) * 4);
  for (int64_t py = pt; py < y1; py++) {
    memset(t + py * Wp * 16, 0, (size_t)(pl * 16) * 4);
    memset(t + (py * Wp + x1) * 16, 0, (size_t)((Wp - x1) * 16) * 4);
  }
  __m512 w16[49];
  for (int64_t g = begin; g < end; g++) {
    const int64_t c0 = g * 16;
    const float* x = d->x + c0 * H * W;
    for (int64_t iy = 0; iy + pt < y1; iy++)
      for (int64_t ix0 = 0; ix0 < W; ix0 += 16) {
        const int64_t n = W - ix0 < 16 ? W - ix0 : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) r[j] = _mm512_maskz_loadu_ps(m, x + j * H * W + iy * W + ix0);
        SUF(tr16)(r);
        float* dst = t + ((iy + pt) * Wp + ix0 + pl) * 16;
        const int64_t stop = ix0 + pl + n <= x1 ? n : x1 - ix0 - pl;
        /* (unrolled: as a loop gcc made it a memcpy from a spilled copy of r) */
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
          if (i < stop) _mm512_store_ps(dst + i * 16, r[i]);
      }
    /* The 16 channels' weights, tap by tap: rows of up to 16 taps transposed (gathers
     * were 15% of a 5x5 on 7x7 planes) */
    for (int64_t k0 = 0; k0 < taps; k0 += 16) {
      const int64_t n = taps - k0 < 16 ? taps - k0 : 16;
      const __mmask16 m = (__mmask16)((1u << n) - 1);
      __m512 r[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++) r[j] = _mm512_maskz_loadu_ps(m, d->w + (c0 + j) * taps + k0);
      SUF(tr16)(r);
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        if (i < n) w16[k0 + i] = r[i];
    }
    const __m512 bias = d->bias ? _mm512_loadu_ps(d->bias + c0) : _mm512_setzero_ps();
    const __m512 slope = d->slope ? _mm512_loadu_ps(d->slope + c0) : _mm512_setzero_ps();
    float* y = d->y + c0 * Ho * Wo;
#define DWCV(KH, KW, SH, SW)                                               \
  do {                                                                     \
    if (Wo <= 8) SUF(dwcv_flat)(d, t, w16, bias, slope, y, Wp, KH, KW, SH, SW); \
    else SUF(dwcv_rows)(d, t, w16, bias, slope, y, Wp, KH, KW, SH, SW);         \
  } while (0)
    if (kh == 3 && kw == 3 && sh == 1 && sw == 1) DWCV(3, 3, 1, 1);
    else if (kh == 3 && kw == 3 && sh == 2 && sw == 2) DWCV(3, 3, 2, 2);
    else if (kh == 5 && kw == 5 && sh == 1 && sw == 1) DWCV(5, 5, 1, 1);
    else if (kh == 5 && kw == 5 && sh == 2 && sw == 2) DWCV(5, 5, 2, 2);
    else DWCV(kh, kw, sh, sw);
#undef DWCV
  }
}
#endif

static void SUF(dw_run)(SUF(dw_args) * d) {
  int fast = d->kh * d->kw <= 49 && d->sw >= 1 && d->sw <= 2 && d->sh >= 1;
#if VW == 16
  if (fast && d->C >= 16) {
    ea_parallel(d->C / 16, 1, SUF(dwcv_task), d);
    if (d->C % 16) SUF(dw_task)(d, d->C / 16 * 16, d->C);
    return;
  }
#endif
  ea_parallel(d->C, 1, fast ? SUF(dw_task) : SUF(dw_task_any), d);
}

/* ---- Dense: y[n][m] = act(sum_k x[n][k] w[m][k] + b[m]). */
typedef struct {
  const float* w; const float* bias; const float* slope; const float* x; float* y;
  int64_t N, K, M; int act; float lo, hi;
} SUF(dense_args);

static void SUF(dense_task)(void* data, int64_t begin, int64_t end) {
  const SUF(dense_args)* d = (const SUF(dense_args)*)data;
  for (int64_t n = 0; n < d->N; n++) {
    const float* x = d->x + n * d->K;
    for (int64_t m = begin; m < end; m++) {
      const float* w = d->w + m * d->K;
      vf acc0 = SUF(splat)(0.f), acc1 = SUF(splat)(0.f);
      int64_t k = 0;
      for (; k + 2 * VW <= d->K; k += 2 * VW) {
        acc0 += SUF(load)(x + k) * SUF(load)(w + k);
        acc1 += SUF(load)(x + k + VW) * SUF(load)(w + k + VW);
      }
      acc0 += acc1;
      float sum = 0.f;
      for (int i = 0; i < VW; i++) sum += acc0[i];
      for (; k < d->K; k++) sum += x[k] * w[k];
      sum += d->bias ? d->bias[m] : 0.f;
      d->y[n * d->M + m] = SUF(sact)(sum, d->act, d->lo, d->hi, d->slope ? d->slope[m] : 0.f);
    }
  }
}
#undef vf
#undef vi
#undef NVMAX
#undef NB
