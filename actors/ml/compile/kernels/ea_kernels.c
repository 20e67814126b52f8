/* edge-actors DLR kernels: every operator the compiler emits, with the instruction set
 * chosen at run time on x86_64 (AVX-512, AVX2+FMA, else SSE2) so one library runs on any
 * x86_64 CPU; on ARM (NEON with -mfpu=neon) and elsewhere, one portable build.
 * Compiled once per target into an object (cached by its digest) that every model links;
 * a generated model.c includes ea_api.h and defines the packed functions. */
#include <math.h>
#define EA_KERNELS 1
#include "ea_api.h"

EA_EXPORT void* __tvm_module_ctx = NULL;
EA_EXPORT int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void*, int) = NULL;
EA_EXPORT int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv*) = NULL;
EA_EXPORT void (*__TVMAPISetLastError)(const char*) = NULL;

#if defined(__x86_64__) && !defined(EA_PORTABLE_ONLY)
#define EA_X86 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
#define VW 16
#define MR 8
#define SUF(name) name##_avx512
#include "ea_body.h"
#undef VW
#undef MR
#undef SUF
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VW 8
#define MR 4
#define SUF(name) name##_avx2
#include "ea_body.h"
#undef VW
#undef MR
#undef SUF
#pragma GCC pop_options
#endif

#define VW 4
#define MR 4
#define SUF(name) name##_base
#include "ea_body.h"
#undef VW
#undef MR
#undef SUF

/* 2: AVX-512, 1: AVX2+FMA, 0: portable. EDGE_ACTORS_DLR_ISA=portable|avx2 caps the choice. */
static int ea_isa_level = -1;

static int ea_isa(void) {
  if (ea_isa_level >= 0) return ea_isa_level;
  int level = 0;
#ifdef EA_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
  if (level == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    level = 2;
  const char* cap = getenv("EDGE_ACTORS_DLR_ISA");
  if (cap && strcmp(cap, "portable") == 0) level = 0;
  if (cap && strcmp(cap, "avx2") == 0 && level > 1) level = 1;
#endif
  ea_isa_level = level;
  return level;
}

EA_EXPORT int ea_isa_name(TVMValue* args, int* codes, int n, TVMValue* ret, int* ret_code,
                          void* res) {
  (void)args; (void)codes; (void)n; (void)res;
  static const char* names[] = {"portable", "avx2", "avx512"};
  ret->v_str = names[ea_isa()];
  *ret_code = 11; /* kTVMStr */
  return 0;
}

#ifdef EA_X86
#define EA_DISPATCH(name, type, args)                  \
  do {                                                 \
    int level_ = ea_isa();                             \
    if (level_ == 2) name##_avx512((type##_avx512*)(args)); \
    else if (level_ == 1) name##_avx2((type##_avx2*)(args)); \
    else name##_base((type##_base*)(args));            \
  } while (0)
#else
#define EA_DISPATCH(name, type, args) name##_base((type##_base*)(args))
#endif

/* The argument structs of every ISA have the same layout (same members). */
typedef gemm_args_base ea_gemm_args;
typedef dw_args_base ea_dw_args;
typedef dense_args_base ea_dense_args;
typedef conv_args_base ea_conv_args;

#ifdef EA_X86
static void gemm_run_avx512(gemm_args_avx512* g) { gemm_avx512(g); }
static void gemm_run_avx2(gemm_args_avx2* g) { gemm_avx2(g); }
static void dense_run_avx512(dense_args_avx512* d) { ea_parallel(d->M, 64, dense_task_avx512, d); }
static void dense_run_avx2(dense_args_avx2* d) { ea_parallel(d->M, 64, dense_task_avx2, d); }
#endif
static void gemm_run_base(gemm_args_base* g) { gemm_base(g); }
static void dense_run_base(dense_args_base* d) { ea_parallel(d->M, 64, dense_task_base, d); }

EA_API int ea_conv_gemm(const float* a, const float* bias, const float* slope, const float* x,
                        const float* r, float* y, int64_t M, int64_t K, int64_t N, int act,
                        float lo, float hi) {
  ea_gemm_args g = {a, bias, slope, x, r, y, M, K, N, N, N, act, lo, hi};
  EA_DISPATCH(gemm_run, gemm_args, &g);
  return 0;
}

EA_API int ea_conv_im2col(const float* a, const float* bias, const float* slope, const float* x,
                          const float* r, float* y, int64_t C, int64_t H, int64_t W, int64_t M,
                          int kh, int kw, int sh, int sw, int pt, int pl, int64_t Ho, int64_t Wo,
                          int act, float lo, float hi) {
  int64_t K = C * kh * kw, N = Ho * Wo;
  int64_t rows = 16384 / (K * Wo); /* output rows whose columns fill about 64 KiB */
  if (rows < 1) rows = 1;
  if (!ea_scratch(2, (size_t)(K * (rows < Ho ? rows : Ho) * Wo)))
    return ea_fail("edge-actors kernel: out of memory for im2col");
  ea_conv_args c = {{a, bias, slope, NULL, r, y, M, K, 0, 0, N, act, lo, hi},
                    x, C, H, W, kh, kw, sh, sw, pt, pl, Ho, Wo, rows};
  EA_DISPATCH(conv_run, conv_args, &c);
  return 0;
}

EA_API int ea_conv_dw(const float* w, const float* bias, const float* slope, const float* x,
                      float* y, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int kh,
                      int kw, int sh, int sw, int pt, int pl, int pb, int pr, int act, float lo,
                      float hi) {
  ea_dw_args d = {w, bias, slope, x, y, C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, pb, pr,
                  act, lo, hi};
#ifdef EA_X86
  /* Rows of 8 or fewer outputs would fill half a 16-lane vector: 8 lanes do it in one
   * (when there are too few channels for the AVX-512 path's 16 in a vector). */
  if (ea_isa() == 2 && Wo <= 8 && C < 16) {
    dw_run_avx2((dw_args_avx2*)&d);
    return 0;
  }
#endif
  EA_DISPATCH(dw_run, dw_args, &d);
  return 0;
}

EA_API int ea_dense(const float* w, const float* bias, const float* slope, const float* x,
                    float* y, int64_t N, int64_t K, int64_t M, int act, float lo, float hi) {
  ea_dense_args d = {w, bias, slope, x, y, N, K, M, act, lo, hi};
  EA_DISPATCH(dense_run, dense_args, &d);
  return 0;
}

/* ---- The small operators: portable C. */
EA_API int ea_gap(const float* x, float* y, int64_t rows, int64_t hw) {
  for (int64_t i = 0; i < rows; i++) {
    const float* p = x + i * hw;
    float s = 0.f;
    for (int64_t j = 0; j < hw; j++) s += p[j];
    y[i] = s / (float)hw;
  }
  return 0;
}

EA_API int ea_maxpool(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int kh,
                      int kw, int sh, int sw, int pt, int pl, int64_t Ho, int64_t Wo) {
  for (int64_t c = 0; c < planes; c++) {
    const float* in = x + c * H * W;
    float* out = y + c * Ho * Wo;
    for (int64_t oy = 0; oy < Ho; oy++)
      for (int64_t ox = 0; ox < Wo; ox++) {
        float m = -INFINITY;
        for (int ky = 0; ky < kh; ky++) {
          int64_t iy = oy * sh + ky - pt;
          if (iy < 0 || iy >= H) continue;
          for (int kx = 0; kx < kw; kx++) {
            int64_t ix = ox * sw + kx - pl;
            if (ix < 0 || ix >= W) continue;
            float v = in[iy * W + ix];
            if (v > m) m = v;
          }
        }
        out[oy * Wo + ox] = m;
      }
  }
  return 0;
}

/* Softmax over the middle axis of (outer, C, inner). */
EA_API int ea_softmax(const float* x, float* y, int64_t outer, int64_t C, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float* p = x + o * C * inner + i;
      float* q = y + o * C * inner + i;
      float m = p[0];
      for (int64_t c = 1; c < C; c++) if (p[c * inner] > m) m = p[c * inner];
      float s = 0.f;
      for (int64_t c = 0; c < C; c++) { q[c * inner] = expf(p[c * inner] - m); s += q[c * inner]; }
      float inv = 1.f / s;
      for (int64_t c = 0; c < C; c++) q[c * inner] *= inv;
    }
  return 0;
}

/* y = act(a + b) elementwise (b may be NULL), channels on the middle axis for PReLU. */
EA_API int ea_eltwise(const float* a, const float* b, float* y, int64_t outer, int64_t C,
                      int64_t inner, int act, float lo, float hi, const float* slope) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t c = 0; c < C; c++) {
      int64_t base = (o * C + c) * inner;
      float s = slope ? slope[c] : 0.f;
      for (int64_t i = 0; i < inner; i++) {
        float v = a[base + i] + (b ? b[base + i] : 0.f);
        y[base + i] = sact_base(v, act, lo, hi, s);
      }
    }
  return 0;
}

/* Transpose of up to 6 axes: y[...] = x[perm(...)]. */
EA_API int ea_transpose(const float* x, float* y, int ndim, const int64_t* shape,
                        const int* perm) {
  int64_t stride[6], out_shape[6], count = 1;
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) { stride[i] = s; s *= shape[i]; }
  for (int i = 0; i < ndim; i++) { out_shape[i] = shape[perm[i]]; count *= out_shape[i]; }
  int64_t idx[6] = {0, 0, 0, 0, 0, 0};
  for (int64_t n = 0; n < count; n++) {
    int64_t off = 0;
    for (int i = 0; i < ndim; i++) off += idx[i] * stride[perm[i]];
    y[n] = x[off];
    for (int i = ndim - 1; i >= 0; i--) {
      if (++idx[i] < out_shape[i]) break;
      idx[i] = 0;
    }
  }
  return 0;
}
