/* C loops over numpy and tensor buffers for the serving path: whether every value of a
 * contiguous float32 or float64 block is finite (the NaN/infinity check a converted model's
 * call makes on its input), a numpy input's serving checks at once, and data addresses.
 *
 * In Python the cheapest check of a one-row input (20 values) was a sum of the values as
 * Python floats, about 1.1 us with the tensor's tolist(); here it is a loop over the memory.
 * Each value adds v - v to an accumulator: 0 for a finite v, NaN for NaN or an infinity, so
 * the accumulators stay 0 exactly when every value is finite (no overflow, unlike a sum of
 * the values themselves). Eight accumulators let the compiler keep the loop in vector
 * registers without reordering any addition.
 *
 * finite(address, count, is_double) reads a block whose address a tensor's data_ptr()
 * gave; finite_array(array) reads anything with a C-contiguous buffer of 'f' or 'd' values
 * (a numpy array); served_array(...) makes all of a numpy input's serving checks at once;
 * address(array) gives a numpy array's data address to the other C loops (tree walks). bridge/sklearn/inputs.py checks device, dtype and contiguity first; no
 * Python API is used inside the loop, and the GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define DEFINE_FINITE(NAME, T)                                                              \
static int NAME(const T *x, Py_ssize_t n)                                                  \
{                                                                                          \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                   \
    Py_ssize_t i = 0;                                                                      \
    for (; i + 8 <= n; i += 8)                                                             \
        for (int lane = 0; lane < 8; lane++)                                               \
            acc[lane] += x[i + lane] - x[i + lane];                                        \
    for (; i < n; i++)                                                                     \
        acc[0] += x[i] - x[i];                                                             \
    T total = 0;                                                                           \
    for (int lane = 0; lane < 8; lane++)                                                   \
        total += acc[lane];                                                                \
    return total == 0;                                                                     \
}

DEFINE_FINITE(finite_float, float)
DEFINE_FINITE(finite_double, double)

static PyObject *finite_block(const void *x, Py_ssize_t n, int is_double)
{
    int result;
    Py_BEGIN_ALLOW_THREADS
    result = is_double ? finite_double((const double *)x, n) : finite_float((const float *)x, n);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(result);
}

/* finite(address, count, is_double): the block at an address given as an int. */
static PyObject *finite_at(PyObject *self, PyObject *args)
{
    unsigned long long x;
    Py_ssize_t n;
    int is_double;
    if (!PyArg_ParseTuple(args, "Knp", &x, &n, &is_double))
        return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "finite: count %zd; expected 0 or more", n);
        return NULL;
    }
    return finite_block((const void *)x, n, is_double);
}

/* A buffer's struct format without the byte-order prefix numpy writes for native values
 * ('<', '=' or '@'; '<' taken as native, as on the little-endian machines bridge builds
 * for); "B" when the buffer gives none. */
static const char *native_format(const Py_buffer *view)
{
    const char *format = view->format ? view->format : "B";
    if (*format == '<' || *format == '=' || *format == '@')
        format++;
    return format;
}

/* finite_array(array): a C-contiguous buffer of float32 ('f') or float64 ('d') values. */
static PyObject *finite_array(PyObject *self, PyObject *array)
{
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    const char *format = native_format(&view);
    int is_double = format[0] == 'd' && format[1] == '\0';
    if (!is_double && !(format[0] == 'f' && format[1] == '\0')) {
        PyErr_Format(PyExc_TypeError, "finite_array: values of format '%s'; expected "
                     "float32 ('f') or float64 ('d')", view.format ? view.format : "B");
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *result = finite_block(view.buf, view.len / view.itemsize, is_double);
    PyBuffer_Release(&view);
    return result;
}

/* served_array(array, format, ndim, width, finite): whether a numpy array is the serving
 * case in one call: a C-contiguous buffer of `format` values (one struct character, as
 * numpy's dtype.char: 'f', 'd', 'l'), `ndim` axes, at least one value, `width` columns
 * (ndim 2; -1: any) and, when `finite` is true, every value finite. False says "not this
 * case", never "invalid": the caller's full checks then decide and raise. */
static PyObject *served_array(PyObject *self, PyObject *args)
{
    PyObject *array;
    const char *expected;
    int ndim, finite;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "Osinp", &array, &expected, &ndim, &width, &finite))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
        PyErr_Clear();  /* no buffer: not the serving case */
        Py_RETURN_FALSE;
    }
    const char *format = native_format(&view);
    int served = strcmp(format, expected) == 0 && view.ndim == ndim && view.len > 0
        && (ndim != 2 || width < 0 || view.shape[1] == width)
        && PyBuffer_IsContiguous(&view, 'C');
    if (served && finite) {
        if (format[0] == 'd' || format[0] == 'f')
            served = format[0] == 'd' ? finite_double((const double *)view.buf, view.len / 8)
                                      : finite_float((const float *)view.buf, view.len / 4);
        else
            served = 0;  /* a finiteness check asked of integers: the caller's rules decide */
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(served);
}

/* address(array): where a C-contiguous buffer's first value lies, as an int (0.1 us where
 * numpy's own ways, ctypes.data or __array_interface__, take 0.6-1 us). The array must
 * outlive every use of the address. */
static PyObject *buffer_address(PyObject *self, PyObject *array)
{
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    PyObject *result = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"address", buffer_address, METH_O, "the address of a C-contiguous buffer's data"},
    {"finite", finite_at, METH_VARARGS, "whether a float block at an address is all finite"},
    {"finite_array", finite_array, METH_O, "whether a float buffer is all finite"},
    {"served_array", served_array, METH_VARARGS, "whether an array is the serving case"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge._buffers",
    "C loops over numpy and tensor buffers: the serving checks, data addresses", -1, methods,
};

PyMODINIT_FUNC PyInit__buffers(void)
{
    return PyModule_Create(&module);
}
