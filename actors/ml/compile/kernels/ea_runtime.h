/* edge-actors DLR kernels: the TVM ABI a graph-executor model library speaks.
 *
 * A model library exports packed functions
 *   int f(TVMValue* args, int* type_codes, int num_args, TVMValue* ret, int* ret_code, void* res)
 * whose arguments are DLTensor*, and the context pointers the runtime fills in when it
 * loads the library (__TVMBackendParallelLaunch, __TVMAPISetLastError, ...). Without a
 * runtime filling them (they stay NULL), everything runs on the calling thread.
 */
#ifndef EA_RUNTIME_H
#define EA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EA_EXPORT __attribute__((visibility("default")))
#define EA_API __attribute__((visibility("hidden")))

typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;
typedef union { int64_t v_int64; double v_float64; void* v_handle; const char* v_str; } TVMValue;
typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

/* Filled in by the runtime that loads the library (TVM's library_module.cc does);
 * defined in ea_kernels.c. */
extern EA_EXPORT void* __tvm_module_ctx;
extern EA_EXPORT int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void*, int);
extern EA_EXPORT int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv*);
extern EA_EXPORT void (*__TVMAPISetLastError)(const char*);

static inline int ea_fail(const char* message) {
  if (__TVMAPISetLastError) __TVMAPISetLastError(message);
  return -1;
}

static inline float* ea_f32(TVMValue* args, int i) {
  DLTensor* t = (DLTensor*)args[i].v_handle;
  return (float*)((char*)t->data + t->byte_offset);
}

#ifdef EA_KERNELS
/* Work split into ranges [begin, end) of n items over the runtime's thread pool. */
typedef void (*ea_range_fn)(void* data, int64_t begin, int64_t end);
typedef struct { ea_range_fn fn; void* data; int64_t n; } ea_job;

static int ea_job_task(int task_id, TVMParallelGroupEnv* penv, void* cdata) {
  ea_job* job = (ea_job*)cdata;
  int64_t tasks = penv->num_task > 0 ? penv->num_task : 1;
  int64_t begin = job->n * task_id / tasks, end = job->n * (task_id + 1) / tasks;
  if (begin < end) job->fn(job->data, begin, end);
  return 0;
}

/* Runs fn over [0, n): in parallel when the runtime gave a launcher and each of at least
 * two tasks would get `grain` items or more. */
static void ea_parallel(int64_t n, int64_t grain, ea_range_fn fn, void* data) {
  if (__TVMBackendParallelLaunch && n >= 2 * grain && n > 1) {
    ea_job job = {fn, data, n};
    if (__TVMBackendParallelLaunch(ea_job_task, &job, 0) == 0) return;
  }
  fn(data, 0, n);
}

/* Per-thread scratch space (im2col columns, padded planes, packed panels). */
static __thread float* ea_scratch_ptr[3];
static __thread size_t ea_scratch_cap[3];

static float* ea_scratch(int slot, size_t floats) {
  if (ea_scratch_cap[slot] < floats) {
    free(ea_scratch_ptr[slot]);
    size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
    ea_scratch_ptr[slot] = (float*)aligned_alloc(64, bytes);
    ea_scratch_cap[slot] = ea_scratch_ptr[slot] ? floats : 0;
  }
  return ea_scratch_ptr[slot];
}

#endif /* EA_KERNELS */

enum { EA_ACT_NONE = 0, EA_ACT_CLIP = 1, EA_ACT_PRELU = 2 };

/* The packed weight layout of GEMM-based convolutions: rows in panels of EA_PM. */
#define EA_PM 8

#endif
