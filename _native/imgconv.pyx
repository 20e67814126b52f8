# cython: language_level=3
"""Image-to-tensor kernels: the hot loops only; the API lives in actors.ml.convert."""

from libc.stdint cimport uint8_t


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
