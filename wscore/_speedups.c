/* Optional accelerator for RFC 6455 §5.3 masking; wscore/frames.py has the pure-Python fallback
 * and the tests run both against the same reference. Built by hatch_build.py when a C compiler is
 * available (set WSCORE_NO_EXTENSIONS=1 to skip it at build time or ignore it at run time).
 *
 * mask(data, key) -> bytes           XOR any contiguous buffer with a 4-byte key
 * masked_frame(header, payload, key) -> bytes
 *     header + mask(payload, key) without the copy a concatenation makes: a client's frame.
 * unmask_from(buf, start, end) -> bytes
 *     unmask buf[start:end] with the key at buf[start-4:start], straight from the receive buffer:
 *     the frame parser's call, with no slice objects in between.
 * unmask_inplace(buf, start, end) -> None
 *     the same, in place, in the parser's own bytearray buffer (no copy of a large payload).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Eight bytes at a time through memcpy (alignment-safe; compilers turn it into plain loads and
 * vectorize the unrolled loop); the 64-bit key is the 4-byte key twice, in memory order, so the
 * result does not depend on the machine's byte order. */
static void
xor_key(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    uint32_t k32;
    uint64_t k64, a, b, c, d;
    Py_ssize_t i = 0;

    memcpy(&k32, key, 4);
    k64 = ((uint64_t)k32 << 32) | k32;
    for (; i + 32 <= n; i += 32) {
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k64;
        b ^= k64;
        c ^= k64;
        d ^= k64;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        memcpy(&a, src + i, 8);
        a ^= k64;
        memcpy(dst + i, &a, 8);
    }
    /* i is a multiple of 8 here, so the key is back at its first byte. */
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

static PyObject *
speedups_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "mask() takes exactly 2 arguments (data, key)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_key((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf, data.len,
                (const unsigned char *)key.buf);
    }
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
speedups_masked_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer header, payload, key;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "masked_frame() takes exactly 3 arguments (header, payload, key)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &header, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&header);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&payload);
        PyBuffer_Release(&header);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
        goto done;
    }
    if (payload.len > PY_SSIZE_T_MAX - header.len) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, header.len + payload.len);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        memcpy(out, header.buf, header.len);
        xor_key(out + header.len, (const unsigned char *)payload.buf, payload.len,
                (const unsigned char *)key.buf);
    }
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&payload);
    PyBuffer_Release(&header);
    return result;
}

static PyObject *
speedups_unmask_from(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    Py_ssize_t start, end;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unmask_from() takes exactly 3 arguments (buf, start, end)");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (start < 4 || end < start || end > buf.len) {
        PyErr_SetString(PyExc_ValueError, "unmask_from() needs 4 <= start <= end <= len(buf)");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, end - start);
    if (result != NULL) {
        const unsigned char *base = (const unsigned char *)buf.buf;
        xor_key((unsigned char *)PyBytes_AS_STRING(result), base + start, end - start, base + start - 4);
    }
done:
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *
speedups_unmask_inplace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    Py_ssize_t start, end;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unmask_inplace() takes exactly 3 arguments (buf, start, end)");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (start < 4 || end < start || end > buf.len) {
        PyErr_SetString(PyExc_ValueError, "unmask_inplace() needs 4 <= start <= end <= len(buf)");
        PyBuffer_Release(&buf);
        return NULL;
    }
    {
        unsigned char *base = (unsigned char *)buf.buf;
        unsigned char key[4];
        memcpy(key, base + start - 4, 4);
        xor_key(base + start, base + start, end - start, key);
    }
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

static PyMethodDef speedups_methods[] = {
    {"mask", (PyCFunction)(void (*)(void))speedups_mask, METH_FASTCALL,
     "mask(data, key) -> bytes: XOR data with the repeated 4-byte key (RFC 6455 §5.3)."},
    {"masked_frame", (PyCFunction)(void (*)(void))speedups_masked_frame, METH_FASTCALL,
     "masked_frame(header, payload, key) -> bytes: header + masked payload, in one buffer."},
    {"unmask_from", (PyCFunction)(void (*)(void))speedups_unmask_from, METH_FASTCALL,
     "unmask_from(buf, start, end) -> bytes: buf[start:end] XOR the key at buf[start-4:start]."},
    {"unmask_inplace", (PyCFunction)(void (*)(void))speedups_unmask_inplace, METH_FASTCALL,
     "unmask_inplace(buf, start, end): XOR writable buf[start:end] with the key at buf[start-4:start]."},
    {NULL, NULL, 0, NULL},
};

/* Multi-phase init and no module state: safe in subinterpreters and, having no shared mutable
 * state, without the GIL on free-threaded builds. */
static PyModuleDef_Slot speedups_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "wscore._speedups",
    "Optional C implementation of WebSocket masking.",
    0,
    speedups_methods,
    speedups_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
