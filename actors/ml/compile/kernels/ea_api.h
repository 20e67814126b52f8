/* The kernels a generated model.c calls (defined in ea_kernels.c, linked from a cached
 * object), and the TVM ABI types. */
#ifndef EA_API_H
#define EA_API_H
#include <math.h> /* INFINITY in the generated code */
#include "ea_runtime.h"

EA_API int ea_conv_gemm(const float* a, const float* bias, const float* slope, const float* x, const float* r, float* y, int64_t M, int64_t K, int64_t N, int act, float lo, float hi);
EA_API int ea_conv_im2col(const float* a, const float* bias, const float* slope, const float* x, const float* r, float* y, int64_t C, int64_t H, int64_t W, int64_t M, int kh, int kw, int sh, int sw, int pt, int pl, int64_t Ho, int64_t Wo, int act, float lo, float hi);
EA_API int ea_conv_dw(const float* w, const float* bias, const float* slope, const float* x, float* y, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int kh, int kw, int sh, int sw, int pt, int pl, int pb, int pr, int act, float lo, float hi);
EA_API int ea_dense(const float* w, const float* bias, const float* slope, const float* x, float* y, int64_t N, int64_t K, int64_t M, int act, float lo, float hi);
EA_API int ea_gap(const float* x, float* y, int64_t rows, int64_t hw);
EA_API int ea_maxpool(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int pt, int pl, int64_t Ho, int64_t Wo);
EA_API int ea_softmax(const float* x, float* y, int64_t outer, int64_t C, int64_t inner);
EA_API int ea_eltwise(const float* a, const float* b, float* y, int64_t outer, int64_t C, int64_t inner, int act, float lo, float hi, const float* slope);
EA_API int ea_transpose(const float* x, float* y, int ndim, const int64_t* shape, const int* perm);

#endif
