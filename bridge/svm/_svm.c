/* Decision values, one-vs-one votes and libsvm's pairwise coupling for OnnxSVMClassifier,
 * as C loops over CPU tensors.
 *
 * In eager torch the coupling (bridge/svm/coupling.py) runs about 45 small operations per
 * sweep and synchronises once per sweep to decide whether to stop: ~240 us for one row of a
 * 3-class SVC, where onnxruntime's whole call takes ~15 us. Here each row iterates on its
 * own, in registers and a C x C workspace.
 *
 * The arithmetic is the torch version's, operation for operation, in float32: sums run in
 * index order from 0 (as torch's batched matmul sums small products, and as onnxruntime's
 * loops do), the stop test compares in float32 against (float)(0.005 / C), a row whose
 * error is NaN stops, and at most max_sweeps sweeps run. setup.py builds this file with
 * -ffp-contract=off so that no compiler fuses a multiply and an add (torch rounds each).
 *
 * bridge/svm/native.py checks dtypes, shapes, devices and contiguity before calling; this
 * file checks that every pair index names a class. No Python or torch API is used inside
 * the loops, and the GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* the coupling's workspace is 2 * C * C + C floats: 128 MB at this bound (native.py sends
 * larger models to the torch version) */
#define MAX_CLASSES 4096

/* Whether every pair (rows[k], columns[k]) names two classes in 0..n_classes-1. */
static int pairs_in_range(const int64_t *rows, const int64_t *columns, Py_ssize_t n_pairs,
                          Py_ssize_t n_classes)
{
    int outside = 0;
    for (Py_ssize_t k = 0; k < n_pairs; k++)
        outside |= ((uint64_t)rows[k] >= (uint64_t)n_classes)
                   | ((uint64_t)columns[k] >= (uint64_t)n_classes);
    return !outside;
}

/* Decision values and labels: decisions[n][k] = (float)(sums[n][k] + (double)rho[k]) (rho
 * holds one value per pair, or one for all: rho_step 1 or 0), then one-vs-one votes: pair k
 * votes for rows[k] when its decision is > 0, else (NaN included) for columns[k]; the class
 * with most votes wins, ties going to the lowest index (torch.argmax's first maximum), and
 * labels[winner] is written. counts: n_classes entries of workspace. */
static void decide_rows(const double *sums, const float *rho, Py_ssize_t rho_step,
                        Py_ssize_t n_rows, Py_ssize_t n_pairs, Py_ssize_t n_classes,
                        const int64_t *rows, const int64_t *columns, const int64_t *labels,
                        float *decisions, int64_t *out, Py_ssize_t *counts)
{
    for (Py_ssize_t n = 0; n < n_rows; n++) {
        const double *sum = sums + n * n_pairs;
        float *decision = decisions + n * n_pairs;
        memset(counts, 0, (size_t)n_classes * sizeof(Py_ssize_t));
        for (Py_ssize_t k = 0; k < n_pairs; k++) {
            decision[k] = (float)(sum[k] + (double)rho[k * rho_step]);
            counts[decision[k] > 0.0f ? rows[k] : columns[k]]++;
        }
        Py_ssize_t best = 0;
        for (Py_ssize_t c = 1; c < n_classes; c++)
            if (counts[c] > counts[best])
                best = c;
        out[n] = labels[best];
    }
}

/* The coupling of one row. r: the pairwise matrix (C x C, zero diagonal), q: C x C
 * workspace, qp: C floats of workspace, p: the C probabilities written. */
static void couple_row(const float *r, Py_ssize_t C, int max_sweeps, float *q, float *qp,
                       float *p)
{
    const float eps = (float)(0.005 / (double)C);
    /* q[t][t] = sum_j r[j][t]^2 - r[t][t]^2, q[t][j] = -(r[j][t] * r[t][j]) */
    for (Py_ssize_t t = 0; t < C; t++) {
        float total = 0.0f;
        for (Py_ssize_t j = 0; j < C; j++) {
            const float square = r[j * C + t] * r[j * C + t];
            total = total + square;
        }
        for (Py_ssize_t j = 0; j < C; j++) {
            const float product = r[j * C + t] * r[t * C + j];
            q[t * C + j] = -product;
        }
        q[t * C + t] = total - r[t * C + t] * r[t * C + t];
        p[t] = (float)(1.0 / (double)C);
    }
    for (int sweep = 0; sweep < max_sweeps; sweep++) {
        float pqp = 0.0f, largest = 0.0f;
        int nan = 0;
        for (Py_ssize_t t = 0; t < C; t++) {
            float total = 0.0f;
            for (Py_ssize_t j = 0; j < C; j++) {
                const float product = q[t * C + j] * p[j];
                total = total + product;
            }
            qp[t] = total;
        }
        for (Py_ssize_t t = 0; t < C; t++) {
            const float product = p[t] * qp[t];
            pqp = pqp + product;
        }
        for (Py_ssize_t t = 0; t < C; t++) {
            const float error = qp[t] - pqp;
            const float size = error < 0.0f ? -error : error;
            nan |= size != size;
            largest = size > largest ? size : largest;
        }
        if (nan || !(largest >= eps)) /* torch: max(...) >= eps, false for NaN */
            break;
        for (Py_ssize_t i = 0; i < C; i++) {
            const float q_ii = q[i * C + i];
            const float diff = (pqp - qp[i]) / q_ii;
            const float scale = 1.0f + diff;
            const float inner = diff * q_ii + 2.0f * qp[i];
            p[i] = p[i] + diff;
            pqp = (pqp + diff * inner) / scale / scale;
            for (Py_ssize_t j = 0; j < C; j++) {
                const float step = diff * q[i * C + j];
                qp[j] = (qp[j] + step) / scale;
            }
            for (Py_ssize_t j = 0; j < C; j++)
                p[j] = p[j] / scale;
        }
    }
}

/* Pairwise probabilities of each row, clamped to [1e-7, 1 - 1e-7] as float32, laid out as a
 * C x C matrix (r[rows[k]][columns[k]] = pair, r[columns[k]][rows[k]] = 1 - pair), then
 * coupled. work: 2 * C * C + C floats. */
static void couple_rows(const float *pairs, Py_ssize_t n_rows, Py_ssize_t n_pairs,
                        Py_ssize_t C, const int64_t *rows, const int64_t *columns,
                        int max_sweeps, float *out, float *work)
{
    const float low = (float)1e-7, high = (float)(1.0 - 1e-7);
    float *r = work, *q = work + C * C, *qp = work + 2 * C * C;
    for (Py_ssize_t n = 0; n < n_rows; n++) {
        const float *pair = pairs + n * n_pairs;
        memset(r, 0, (size_t)(C * C) * sizeof(float));
        for (Py_ssize_t k = 0; k < n_pairs; k++) { /* NaN passes through, as in torch.clamp */
            const float value = pair[k] < low ? low : (pair[k] > high ? high : pair[k]);
            r[rows[k] * C + columns[k]] = value;
        }
        for (Py_ssize_t k = 0; k < n_pairs; k++) {
            const float value = pair[k] < low ? low : (pair[k] > high ? high : pair[k]);
            r[columns[k] * C + rows[k]] = 1.0f - value;
        }
        couple_row(r, C, max_sweeps, q, qp, out + n * C);
    }
}

/* Parse the common arguments and check sizes and pair indices (sets an exception and
 * returns 0 when they are invalid). */
static int check_sizes(Py_ssize_t n_rows, Py_ssize_t n_pairs, Py_ssize_t n_classes,
                       const int64_t *rows, const int64_t *columns, const char *name)
{
    if (n_rows < 0 || n_pairs < 0 || n_classes < 1) {
        PyErr_Format(PyExc_ValueError, "%s: need n_rows >= 0, n_pairs >= 0 and n_classes >= 1; "
                     "got %zd, %zd, %zd", name, n_rows, n_pairs, n_classes);
        return 0;
    }
    if (n_classes > MAX_CLASSES) {
        PyErr_Format(PyExc_ValueError, "%s: %zd classes; at most %d are supported", name,
                     n_classes, MAX_CLASSES);
        return 0;
    }
    if (!pairs_in_range(rows, columns, n_pairs, n_classes)) {
        PyErr_Format(PyExc_IndexError, "%s: a pair names a class outside 0..%zd", name,
                     n_classes - 1);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(decide_doc,
"decide(sums, rho, rho_step, n_rows, n_pairs, n_classes, rows, columns, labels, decisions,\n"
"       out)\n"
"\n"
"Write the decision values (float32 [rows, pairs]) of the kernel sums (float64 [rows,\n"
"pairs]) plus rho (float32, one per pair with rho_step 1, one for all with rho_step 0)\n"
"into decisions, and the one-vs-one label of each row (labels[winner], int64) into out.\n"
"rows and columns (int64 [pairs]) give each pair's classes. Pointer arguments are data\n"
"addresses of contiguous CPU tensors; see bridge/svm/native.py. Raises IndexError when a\n"
"pair names a class outside 0..n_classes-1.");

static PyObject *decide(PyObject *self, PyObject *args)
{
    unsigned long long sums, rho, rows, columns, labels, decisions, out;
    Py_ssize_t rho_step, n_rows, n_pairs, n_classes, *counts;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKnnnnKKKKK", &sums, &rho, &rho_step, &n_rows, &n_pairs,
                          &n_classes, &rows, &columns, &labels, &decisions, &out))
        return NULL;
    if (!check_sizes(n_rows, n_pairs, n_classes, (const int64_t *)(uintptr_t)rows,
                     (const int64_t *)(uintptr_t)columns, "decide"))
        return NULL;
    if (rho_step != 0 && rho_step != 1) {
        PyErr_Format(PyExc_ValueError, "decide: rho_step must be 0 or 1; got %zd", rho_step);
        return NULL;
    }
    counts = PyMem_RawMalloc((size_t)n_classes * sizeof(Py_ssize_t));
    if (counts == NULL)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    decide_rows((const double *)(uintptr_t)sums, (const float *)(uintptr_t)rho, rho_step,
                n_rows, n_pairs, n_classes, (const int64_t *)(uintptr_t)rows,
                (const int64_t *)(uintptr_t)columns, (const int64_t *)(uintptr_t)labels,
                (float *)(uintptr_t)decisions, (int64_t *)(uintptr_t)out, counts);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(counts);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(couple_doc,
"couple(pairs, n_rows, n_pairs, n_classes, rows, columns, max_sweeps, out)\n"
"\n"
"Write the coupled probabilities [rows, classes] (float32) of pair probabilities\n"
"pairs [rows, pairs] (float32, clamped to [1e-7, 1 - 1e-7] here) into out. rows and\n"
"columns (int64 [pairs]) give each pair's classes. Pointer arguments are data addresses of\n"
"contiguous CPU tensors; see bridge/svm/native.py. Raises IndexError when a pair names a\n"
"class outside 0..n_classes-1.");

static PyObject *couple(PyObject *self, PyObject *args)
{
    unsigned long long pairs, rows, columns, out;
    Py_ssize_t n_rows, n_pairs, n_classes;
    int max_sweeps;
    float *work;
    (void)self;
    if (!PyArg_ParseTuple(args, "KnnnKKiK", &pairs, &n_rows, &n_pairs, &n_classes, &rows,
                          &columns, &max_sweeps, &out))
        return NULL;
    if (!check_sizes(n_rows, n_pairs, n_classes, (const int64_t *)(uintptr_t)rows,
                     (const int64_t *)(uintptr_t)columns, "couple"))
        return NULL;
    work = PyMem_RawMalloc((size_t)(2 * n_classes * n_classes + n_classes) * sizeof(float));
    if (work == NULL)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    couple_rows((const float *)(uintptr_t)pairs, n_rows, n_pairs, n_classes,
                (const int64_t *)(uintptr_t)rows, (const int64_t *)(uintptr_t)columns,
                max_sweeps, (float *)(uintptr_t)out, work);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(work);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decide", decide, METH_VARARGS, decide_doc},
    {"couple", couple, METH_VARARGS, couple_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.svm._svm",
    "SVM decisions, votes and pairwise coupling in C, for CPU tensors (see "
    "bridge/svm/native.py).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__svm(void)
{
    return PyModule_Create(&module);
}
