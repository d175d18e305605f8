/* Decision values, one-vs-one votes, Platt scaling's affine step, libsvm's pairwise coupling
 * and the RBF kernel's elementwise steps for OnnxSVMClassifier / OnnxSVMRegressor, as C loops
 * over CPU tensors.
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
 * The RBF step (rbf_exponent) and the Platt step (decide_platt) are elementwise float32
 * additions, subtractions, products and a clamp, each rounded as torch's kernels round them;
 * the exponentials and sigmoids stay with torch.
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

/* decide_rows, then Platt's affine step for each pair instead of the decision values:
 * platt[n][k] = decision * (-a[k]) + (-b[k]) in float32 (the negation of decision * a + b,
 * rounded alike; a_step and b_step as rho_step). */
static void decide_platt_rows(const double *sums, const float *rho, Py_ssize_t rho_step,
                              Py_ssize_t n_rows, Py_ssize_t n_pairs, Py_ssize_t n_classes,
                              const int64_t *rows, const int64_t *columns,
                              const int64_t *labels, const float *a, Py_ssize_t a_step,
                              const float *b, Py_ssize_t b_step, float *platt, int64_t *out,
                              Py_ssize_t *counts)
{
    for (Py_ssize_t n = 0; n < n_rows; n++) {
        const double *sum = sums + n * n_pairs;
        float *affine = platt + n * n_pairs;
        memset(counts, 0, (size_t)n_classes * sizeof(Py_ssize_t));
        for (Py_ssize_t k = 0; k < n_pairs; k++) {
            const float decision = (float)(sum[k] + (double)rho[k * rho_step]);
            const float product = decision * -a[k * a_step];
            counts[decision > 0.0f ? rows[k] : columns[k]]++;
            affine[k] = product + -b[k * b_step];
        }
        Py_ssize_t best = 0;
        for (Py_ssize_t c = 1; c < n_classes; c++)
            if (counts[c] > counts[best])
                best = c;
        out[n] = labels[best];
    }
}

/* The RBF kernel's exponent, in place over dots[n][v] = x_n . v (a matrix product's result):
 * ((x_sq[n] + v_sq[v]) - 2 * dots[n][v]) clamped below at 0 (NaN kept), times g = -gamma,
 * each step rounded to float32 as torch's elementwise kernels round it. */
static void rbf_rows(float *dots, const float *x_sq, const float *v_sq, Py_ssize_t n_rows,
                     Py_ssize_t n_vectors, float g)
{
    for (Py_ssize_t n = 0; n < n_rows; n++) {
        float *row = dots + n * n_vectors;
        const float x_n = x_sq[n];
        for (Py_ssize_t v = 0; v < n_vectors; v++) {
            const float total = x_n + v_sq[v];
            const float twice = 2.0f * row[v];
            float squared = total - twice;
            squared = squared < 0.0f ? 0.0f : squared; /* NaN stays NaN, as in clamp_min */
            row[v] = squared * g;
        }
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

PyDoc_STRVAR(decide_platt_doc,
"decide_platt(sums, rho, rho_step, n_rows, n_pairs, n_classes, rows, columns, labels, a,\n"
"             a_step, b, b_step, platt, out)\n"
"\n"
"As decide, but writes -(decision * a + b) (float32 [rows, pairs], computed as\n"
"decision * -a + -b) into platt instead of the decision values. a and b (float32) hold one\n"
"value per pair (step 1) or one for all (step 0). Pointer arguments are data addresses of\n"
"contiguous CPU tensors; see bridge/svm/native.py.");

static PyObject *decide_platt(PyObject *self, PyObject *args)
{
    unsigned long long sums, rho, rows, columns, labels, a, b, platt, out;
    Py_ssize_t rho_step, a_step, b_step, n_rows, n_pairs, n_classes, *counts;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKnnnnKKKKnKnKK", &sums, &rho, &rho_step, &n_rows, &n_pairs,
                          &n_classes, &rows, &columns, &labels, &a, &a_step, &b, &b_step,
                          &platt, &out))
        return NULL;
    if (!check_sizes(n_rows, n_pairs, n_classes, (const int64_t *)(uintptr_t)rows,
                     (const int64_t *)(uintptr_t)columns, "decide_platt"))
        return NULL;
    if ((rho_step != 0 && rho_step != 1) || (a_step != 0 && a_step != 1)
            || (b_step != 0 && b_step != 1)) {
        PyErr_Format(PyExc_ValueError, "decide_platt: steps must be 0 or 1; got %zd, %zd, %zd",
                     rho_step, a_step, b_step);
        return NULL;
    }
    counts = PyMem_RawMalloc((size_t)n_classes * sizeof(Py_ssize_t));
    if (counts == NULL)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    decide_platt_rows((const double *)(uintptr_t)sums, (const float *)(uintptr_t)rho, rho_step,
                      n_rows, n_pairs, n_classes, (const int64_t *)(uintptr_t)rows,
                      (const int64_t *)(uintptr_t)columns, (const int64_t *)(uintptr_t)labels,
                      (const float *)(uintptr_t)a, a_step, (const float *)(uintptr_t)b, b_step,
                      (float *)(uintptr_t)platt, (int64_t *)(uintptr_t)out, counts);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(counts);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(rbf_exponent_doc,
"rbf_exponent(dots, x_sq, v_sq, n_rows, n_vectors, gamma)\n"
"\n"
"Turn dots (float32 [rows, vectors], x . v) into the RBF kernel's exponent in place:\n"
"max((x_sq[n] + v_sq[v]) - 2 * dots, 0) * (float)-gamma, each step rounded to float32.\n"
"x_sq (float32 [rows]) and v_sq (float32 [vectors]) are the squared norms. Pointer\n"
"arguments are data addresses of contiguous CPU tensors; see bridge/svm/native.py.");

static PyObject *rbf_exponent(PyObject *self, PyObject *args)
{
    unsigned long long dots, x_sq, v_sq;
    Py_ssize_t n_rows, n_vectors;
    double gamma;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKnnd", &dots, &x_sq, &v_sq, &n_rows, &n_vectors, &gamma))
        return NULL;
    if (n_rows < 0 || n_vectors < 0) {
        PyErr_Format(PyExc_ValueError, "rbf_exponent: need n_rows >= 0 and n_vectors >= 0; "
                     "got %zd, %zd", n_rows, n_vectors);
        return NULL;
    }
    const float g = (float)-gamma; /* torch's scalar product rounds the scalar to float32 */
    Py_BEGIN_ALLOW_THREADS
    rbf_rows((float *)(uintptr_t)dots, (const float *)(uintptr_t)x_sq,
             (const float *)(uintptr_t)v_sq, n_rows, n_vectors, g);
    Py_END_ALLOW_THREADS
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
    {"decide_platt", decide_platt, METH_VARARGS, decide_platt_doc},
    {"rbf_exponent", rbf_exponent, METH_VARARGS, rbf_exponent_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.svm._svm",
    "SVM decisions, votes, pairwise coupling and the RBF exponent in C, for CPU tensors (see "
    "bridge/svm/native.py).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__svm(void)
{
    return PyModule_Create(&module);
}
