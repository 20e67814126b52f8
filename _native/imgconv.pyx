# cython: language_level=3
"""Image-to-tensor kernels: the hot loops only; the API lives in actors.ml.convert.

The fused resize/normalise/layout kernel is C in ``imgconv_kernels.h`` (so its
vector paths can be compiled per CPU feature and chosen at run time); this
module checks the buffers and runs it without the GIL, so a worker thread can
convert while the event loop keeps going.
"""

from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from libc.stdint cimport int16_t, int32_t, uint8_t


cdef extern from "imgconv_kernels.h" nogil:
    ctypedef struct ic_job:
        const uint8_t *src
        Py_ssize_t src_stride
        int src_h, src_w, src_c
        void *dst
        int dst_h, dst_w
        int roi_y, roi_x, roi_h, roi_w
        int layout, dtype, mode, swap_rb
        float mul[3]
        float add[3]
        float pad[3]
    int ic_run(const ic_job *job, int threads)
    int ic_set_simd(int enable)
    int ic_simd_level()
    int IC_OK, IC_ENOMEM


def simd_level():
    """1 when the vector path runs on this CPU (AVX2+FMA on x86_64, NEON on armv7l),
    0 for the portable C path."""
    return ic_simd_level()


def set_simd(bint enable):
    """Force the portable C path (False) or restore the best this CPU has (True).

    For tests and benchmarks that compare the two paths; returns the level now in use.
    """
    return ic_set_simd(enable)


def resize_convert(const uint8_t[:, :, :] src, object out, int dst_h, int dst_w,
                   int roi_y, int roi_x, int roi_h, int roi_w,
                   int layout, int dtype, int mode, bint swap_rb,
                   float m0, float m1, float m2, float a0, float a1, float a2,
                   float p0, float p1, float p2, int threads=1):
    """Resize ``src`` (HxWxC uint8, C in 1, 3, 4) into the ROI of ``out``, normalised.

    ``out`` is any writable C-contiguous buffer of ``3 * dst_h * dst_w`` elements
    (float32, or one byte for uint8/int8), laid out NCHW (layout 0) or NHWC (1).
    Each output channel c gets ``pixel * m_c + a_c`` (then rounded and clamped
    for integer dtypes); outside the ROI it gets ``p_c``. ``threads`` > 1 splits
    the rows into that many bands run in parallel (POSIX threads). The Python front
    validates the arguments; this raises ValueError for what it cannot accept.
    """
    cdef Py_ssize_t h = src.shape[0], w = src.shape[1], c = src.shape[2]
    if c not in (1, 3, 4) or src.strides[2] != 1 or src.strides[1] != c:
        raise ValueError("src must be HxWxC uint8 with packed pixels, C in (1, 3, 4)")
    cdef Py_buffer view
    PyObject_GetBuffer(out, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    cdef ic_job job
    cdef int rc
    cdef Py_ssize_t elem = 4 if dtype == 0 else 1
    try:
        if view.len != 3 * dst_h * dst_w * elem:
            raise ValueError(f"out holds {view.len} bytes, expected {3 * dst_h * dst_w * elem}")
        job.src = &src[0, 0, 0]
        job.src_stride = src.strides[0]
        job.src_h = <int>h
        job.src_w = <int>w
        job.src_c = <int>c
        job.dst = view.buf
        job.dst_h = dst_h
        job.dst_w = dst_w
        job.roi_y = roi_y
        job.roi_x = roi_x
        job.roi_h = roi_h
        job.roi_w = roi_w
        job.layout = layout
        job.dtype = dtype
        job.mode = mode
        job.swap_rb = swap_rb
        job.mul[0] = m0
        job.mul[1] = m1
        job.mul[2] = m2
        job.add[0] = a0
        job.add[1] = a1
        job.add[2] = a2
        job.pad[0] = p0
        job.pad[1] = p1
        job.pad[2] = p2
        with nogil:
            rc = ic_run(&job, threads)
    finally:
        PyBuffer_Release(&view)
    if rc == IC_ENOMEM:
        raise MemoryError("no memory for the resize buffers")
    if rc != IC_OK:
        raise ValueError("the region of interest does not fit the output, or a size is zero")


def hwc_to_chw_normalize(const uint8_t[:, :, ::1] src, float[:, :, ::1] dst,
                         float[::1] scale, float[::1] bias):
    """dst[c, y, x] = src[y, x, c] * scale[c] + bias[c], for 3-channel uint8 images.

    Shapes are checked by the Python front; the loop runs without the GIL so a
    worker thread can convert while the event loop keeps going.
    """
    cdef Py_ssize_t h = src.shape[0], w = src.shape[1], y, x
    cdef float s0 = scale[0], s1 = scale[1], s2 = scale[2]
    cdef float b0 = bias[0], b1 = bias[1], b2 = bias[2]
    cdef const uint8_t* row
    cdef float* d0
    cdef float* d1
    cdef float* d2
    with nogil:
        for y in range(h):
            row = &src[y, 0, 0]
            d0 = &dst[0, y, 0]
            d1 = &dst[1, y, 0]
            d2 = &dst[2, y, 0]
            for x in range(w):
                d0[x] = row[3 * x] * s0 + b0
                d1[x] = row[3 * x + 1] * s1 + b1
                d2[x] = row[3 * x + 2] * s2 + b2
