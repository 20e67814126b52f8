/* The compiler's kernels against naive C on random data: pointwise (GEMM), im2col and
 * depthwise convolutions with every epilogue, dense. Built for the host and for armv7l
 * (run under qemu-arm) by tests/ml/test_compile.py; prints "ok" or the first mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "ea_api.h"

static unsigned rng = 12345;
static float rnd(void) { rng = rng * 1103515245u + 12345u; return ((rng >> 8) & 0xffff) / 32768.f - 1.f; }
static float* fill(size_t n) { float* p = malloc(n * 4); for (size_t i = 0; i < n; i++) p[i] = rnd(); return p; }
static float act(float v, int a, float lo, float hi, float s) {
  if (a == EA_ACT_CLIP) return v < lo ? lo : (v > hi ? hi : v);
  if (a == EA_ACT_PRELU) return v < 0 ? v * s : v;
  return v;
}
static int check(const char* what, const float* got, const float* want, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fabsf(got[i] - want[i]) > 1e-3f * (1.f + fabsf(want[i]))) {
      printf("%s: element %zu is %g, expected %g\n", what, i, got[i], want[i]);
      return 1;
    }
  return 0;
}

/* y = act(conv(x, w) + b (+ r)) for a group-1 or depthwise convolution, naively. */
static void conv_ref(const float* x, const float* w, const float* b, const float* s,
                     const float* r, float* y, int C, int H, int W, int M, int k, int st,
                     int pt, int pl, int Ho, int Wo, int dw, int a, float lo, float hi) {
  for (int m = 0; m < M; m++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++) {
        float acc = b[m];
        for (int c = dw ? m : 0; c < (dw ? m + 1 : C); c++)
          for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
              int iy = oy * st + ky - pt, ix = ox * st + kx - pl;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              float wv = dw ? w[(m * k + ky) * k + kx] : w[((m * C + c) * k + ky) * k + kx];
              acc += wv * x[(c * H + iy) * W + ix];
            }
        int o = (m * Ho + oy) * Wo + ox;
        if (r) acc += r[o];
        y[o] = act(acc, a, lo, hi, s ? s[m] : 0.f);
      }
}

/* GEMM weights in panels of EA_PM rows, as the compiler packs them. */
static float* pack(const float* w, int M, int K) {
  int panels = (M + EA_PM - 1) / EA_PM;
  float* p = calloc((size_t)panels * EA_PM * K, 4);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) p[((m / EA_PM) * K + k) * EA_PM + m % EA_PM] = w[m * K + k];
  return p;
}

int main(void) {
  int failed = 0;
  /* (C, H, W, M, k, stride, pad, depthwise, act) */
  int cases[][9] = {{16, 13, 11, 37, 1, 1, 0, 0, 1}, {3, 17, 19, 8, 3, 2, 1, 0, 2},
                    {24, 14, 14, 24, 3, 1, 1, 1, 1}, {24, 15, 13, 24, 3, 2, 1, 1, 0},
                    {8, 9, 22, 8, 5, 2, 2, 1, 1}, {8, 7, 7, 8, 5, 1, 2, 1, 2},
                    /* pointwise tails of 1 and 4 columns (N = 49, 196); im2col 3x3 and
                     * 5x5, strides 1 and 2, padded or not */
                    {20, 7, 7, 19, 1, 1, 0, 0, 1}, {12, 14, 14, 21, 1, 1, 0, 0, 2},
                    {40, 7, 7, 16, 1, 1, 0, 0, 0}, {5, 9, 10, 11, 3, 1, 1, 0, 1},
                    {3, 12, 13, 9, 5, 2, 2, 0, 2}, {2, 10, 11, 8, 3, 2, 0, 0, 1},
                    /* depthwise with 16 channels in a vector (AVX-512): rows longer than
                     * 16, short planes, a remainder of channels, 5x5 strides 1 and 2 */
                    {32, 19, 40, 32, 3, 2, 1, 1, 2}, {37, 9, 22, 37, 5, 2, 2, 1, 1},
                    {16, 7, 7, 16, 3, 1, 1, 1, 1}, {48, 17, 18, 48, 5, 1, 2, 1, 2},
                    {16, 14, 14, 16, 3, 2, 0, 1, 0},
                    /* a wide pointwise: more than 16 column blocks and a narrower last */
                    {8, 29, 31, 13, 1, 1, 0, 0, 1},
                    /* a pointwise tail of 2 columns (N = 50), 35 rows: 5 panels */
                    {9, 5, 10, 35, 1, 1, 0, 0, 2}};
  for (unsigned t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int C = cases[t][0], H = cases[t][1], W = cases[t][2], M = cases[t][3], k = cases[t][4];
    int st = cases[t][5], p = cases[t][6], dw = cases[t][7], a = cases[t][8];
    int Ho = (H + 2 * p - k) / st + 1, Wo = (W + 2 * p - k) / st + 1;
    size_t nw = dw ? (size_t)M * k * k : (size_t)M * C * k * k, ny = (size_t)M * Ho * Wo;
    float *x = fill((size_t)C * H * W), *w = fill(nw), *b = fill(M), *s = fill(M);
    float *r = fill(ny), *y = malloc(ny * 4), *want = malloc(ny * 4);
    int residual = !dw && (t % 2 == 0);
    conv_ref(x, w, b, s, residual ? r : NULL, want, C, H, W, M, k, st, p, p, Ho, Wo, dw, a,
             0.f, 0.5f);
    if (dw) {
      ea_conv_dw(w, b, s, x, y, C, H, W, Ho, Wo, k, k, st, st, p, p, p, p, a, 0.f, 0.5f);
    } else {
      float* packed = pack(w, M, C * k * k);
      if (k == 1 && st == 1 && p == 0)
        ea_conv_gemm(packed, b, s, x, residual ? r : NULL, y, M, C, H * W, a, 0.f, 0.5f);
      else
        ea_conv_im2col(packed, b, s, x, residual ? r : NULL, y, C, H, W, M, k, k, st, st, p, p,
                       Ho, Wo, a, 0.f, 0.5f);
      free(packed);
    }
    char what[64];
    snprintf(what, sizeof what, "conv case %u", t);
    failed |= check(what, y, want, ny);
  }
  {
    int N = 2, K = 70, M = 19;
    float *x = fill(N * K), *w = fill(M * K), *b = fill(M), *y = malloc(N * M * 4);
    float *want = malloc(N * M * 4);
    for (int n = 0; n < N; n++)
      for (int m = 0; m < M; m++) {
        float acc = b[m];
        for (int i = 0; i < K; i++) acc += x[n * K + i] * w[m * K + i];
        want[n * M + m] = act(acc, EA_ACT_CLIP, 0.f, INFINITY, 0.f);
      }
    ea_dense(w, b, NULL, x, y, N, K, M, EA_ACT_CLIP, 0.f, INFINITY);
    failed |= check("dense", y, want, (size_t)N * M);
  }
  puts(failed ? "FAILED" : "ok");
  return failed;
}
