/* TopK for eager CPU calls: the k smallest (or largest) entries of each row of a contiguous
 * float32 or float64 matrix, sorted, ties in index order (ONNX's rule: the lower index
 * first), in one pass over the row.
 *
 * torch.topk selects without that tie rule, so bridge/onnx/ops/indexing.py's torch path
 * follows it with comparisons and sorts over the whole row to repair ties; for kNN's search
 * (k = 5 of 5,000 distances per query row) that was half of a call's time. Here each row
 * keeps its best k in a small sorted buffer: an entry goes in only when strictly better
 * than the buffer's last, so of equal values the earlier (lower index) stays ahead. NaN
 * ranks above every number (as torch.sort orders it): last among the smallest, first
 * among the largest, equal NaNs in index order.
 *
 * bridge/onnx/select.py checks dtypes, shapes, contiguity and k (1..MAX_K) before calling;
 * no Python or torch API is used inside the loops, and the GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_K 256

/* Whether a ranks strictly before b: smaller (largest == 0) or larger (largest == 1), with
 * NaN above every number and equal to NaN. */
#define BEFORE(a, b, largest) \
    ((largest) ? ((a) > (b) || (isnan(a) && !isnan(b))) \
               : ((a) < (b) || (!isnan(a) && isnan(b))))

#define DEFINE_SELECT(NAME, T)                                                              \
static void NAME(const T *x, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t k,           \
                 int largest, T *values, int64_t *indices)                                 \
{                                                                                          \
    for (Py_ssize_t r = 0; r < n_rows; r++) {                                              \
        const T *row = x + r * n_cols;                                                     \
        T *best = values + r * k;                                                          \
        int64_t *at = indices + r * k;                                                     \
        Py_ssize_t held = 0;                                                               \
        for (Py_ssize_t j = 0; j < n_cols; j++) {                                          \
            T v = row[j];                                                                  \
            if (held == k && !BEFORE(v, best[k - 1], largest))                             \
                continue;                                                                  \
            Py_ssize_t i = held < k ? held++ : k - 1;                                      \
            while (i > 0 && BEFORE(v, best[i - 1], largest)) {                             \
                best[i] = best[i - 1];                                                     \
                at[i] = at[i - 1];                                                         \
                i--;                                                                       \
            }                                                                              \
            best[i] = v;                                                                   \
            at[i] = (int64_t)j;                                                            \
        }                                                                                  \
    }                                                                                      \
}

DEFINE_SELECT(select_float, float)
DEFINE_SELECT(select_double, double)

/* The k smallest distances per row from the parts of squared Euclidean distances (kNN):
 * row r's value j is max(products[r, j] + norms[r], 0) in float64 (the order torch's
 * squared_distances adds and clamps in), rounded to T, square-rooted when root, then
 * selected as above. One pass over each row where torch made five (add, clamp, cast,
 * sqrt, select); bit for bit the same values, since every step rounds as torch's does
 * (IEEE addition, round-to-nearest cast, correctly rounded square root). */
#define DEFINE_SQUARED(NAME, T, SELECT, ROOT)                                               \
static int NAME(const double *products, const double *norms, Py_ssize_t n_rows,            \
                Py_ssize_t n_cols, Py_ssize_t k, int root, T *values, int64_t *indices)    \
{                                                                                          \
    T *restrict row = (T *)malloc((size_t)n_cols * sizeof(T));                             \
    if (row == NULL)                                                                       \
        return 0;                                                                          \
    for (Py_ssize_t r = 0; r < n_rows; r++) {                                              \
        const double *restrict part = products + r * n_cols;                               \
        const double add = norms[r];                                                       \
        for (Py_ssize_t j = 0; j < n_cols; j++) {                                          \
            double v = part[j] + add;                                                      \
            row[j] = (T)(v < 0.0 ? 0.0 : v);                                               \
        }                                                                                  \
        if (root) /* a loop of its own: one type, so it vectorizes */                      \
            for (Py_ssize_t j = 0; j < n_cols; j++)                                        \
                row[j] = ROOT(row[j]);                                                     \
        SELECT(row, 1, n_cols, k, 0, values + r * k, indices + r * k);                     \
    }                                                                                      \
    free(row);                                                                             \
    return 1;                                                                              \
}

DEFINE_SQUARED(squared_float, float, select_float, sqrtf)
DEFINE_SQUARED(squared_double, double, select_double, sqrt)

/* Whether k of n_cols columns can be selected (1 <= k <= min(n_cols, MAX_K)); else a
 * ValueError naming the function and the sizes is set. */
static int sizes_fit(const char *name, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t k)
{
    if (n_rows < 0 || n_cols < 1 || k < 1 || k > n_cols || k > MAX_K) {
        PyErr_Format(PyExc_ValueError, "%s: k=%zd of %zd columns (rows %zd); expected "
                     "1 <= k <= min(columns, %d)", name, k, n_cols, n_rows, MAX_K);
        return 0;
    }
    return 1;
}

/* select(x, n_rows, n_cols, k, largest, is_double, values, indices): addresses as ints. */
static PyObject *select_rows(PyObject *self, PyObject *args)
{
    unsigned long long x, values, indices;
    Py_ssize_t n_rows, n_cols, k;
    int largest, is_double;
    if (!PyArg_ParseTuple(args, "KnnniiKK", &x, &n_rows, &n_cols, &k, &largest, &is_double,
                          &values, &indices))
        return NULL;
    if (!sizes_fit("select", n_rows, n_cols, k))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (is_double)
        select_double((const double *)x, n_rows, n_cols, k, largest, (double *)values,
                      (int64_t *)indices);
    else
        select_float((const float *)x, n_rows, n_cols, k, largest, (float *)values,
                     (int64_t *)indices);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* select_squared(products, norms, n_rows, n_cols, k, root, is_double, values, indices):
 * addresses as ints; products and norms float64, values float32 (or float64). */
static PyObject *select_squared(PyObject *self, PyObject *args)
{
    unsigned long long products, norms, values, indices;
    Py_ssize_t n_rows, n_cols, k;
    int root, is_double, done;
    if (!PyArg_ParseTuple(args, "KKnnniiKK", &products, &norms, &n_rows, &n_cols, &k, &root,
                          &is_double, &values, &indices))
        return NULL;
    if (!sizes_fit("select_squared", n_rows, n_cols, k))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (is_double)
        done = squared_double((const double *)products, (const double *)norms, n_rows, n_cols,
                              k, root, (double *)values, (int64_t *)indices);
    else
        done = squared_float((const double *)products, (const double *)norms, n_rows, n_cols,
                             k, root, (float *)values, (int64_t *)indices);
    Py_END_ALLOW_THREADS
    if (!done)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"select", select_rows, METH_VARARGS, "k best entries per row, ties in index order"},
    {"select_squared", select_squared, METH_VARARGS,
     "k smallest (root of) squared distances per row from their float64 parts"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.onnx._select",
    "TopK with ONNX's tie rule as a C loop (see bridge/onnx/select.py)", -1, methods,
};

PyMODINIT_FUNC PyInit__select(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_K", MAX_K) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
