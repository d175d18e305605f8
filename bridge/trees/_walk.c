/* The level walk of bridge/trees/traversal.py as one C loop, for CPU tensors.
 *
 * In eager mode each level of the torch walk is about seven operations over the whole
 * batch, and each costs its dispatch plus a pass over memory: a depth-20 tree took 1.56 ms
 * at 10k rows on a 2-core VM where onnxruntime took 1.31 ms (benchmarks/results/trees-vm.md,
 * session 4). Here blocks of rows walk every tree in one loop nest, in cache. See
 * bridge/trees/native.py for the Python side, which checks every argument (dtypes, shapes,
 * contiguity, devices) before calling walk(); this file checks the tables' indices.
 *
 * Tables (one entry per slot, laid out as in TraversalTrees): feature (the column tested),
 * threshold (x's dtype), first_child (the false child; the true child follows it; a terminal
 * slot's step leads back to itself). roots and depths hold each tree's root slot and the
 * levels its deepest walk takes. The result is [trees, rows], in first_child's dtype.
 *
 * Built as an optional extension (setup.py): without a C compiler bridge installs without
 * it and the torch walk runs. No Python or torch API is used inside the loops, and the GIL is
 * released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* rows walked through every tree before moving on: the trees' tables and the block's rows
 * stay in cache together */
#define BLOCK_ROWS 64

/* the ensemble's branch modes (bridge/trees/ensemble.py, checked by native.py) */
#define MODE_LEQ 0
#define MODE_LT 1
#define MODE_GTE 2
#define MODE_GT 3
#define MODE_EQ 4
#define MODE_NEQ 5

#define CMP_LEQ(v, t) ((v) <= (t))
#define CMP_LT(v, t) ((v) < (t))
#define CMP_GTE(v, t) ((v) >= (t))
#define CMP_GT(v, t) ((v) > (t))
#define CMP_EQ(v, t) ((v) == (t))
#define CMP_NEQ(v, t) ((v) != (t))

/* Tables are checked before a walk (check_tables) unless the caller says it checked these
 * very tables before: every column a test reads exists in x, and every step from every slot,
 * first_child + outcome, lands on a slot. A slot with a NaN threshold has a fixed outcome (1
 * under "!=", else 0): terminal slots rely on it. The walks then read no index unchecked, and
 * edited or corrupt tables give an error, not a crash. One pass over the slots (~2.5 ns per
 * slot) costs less than checking every step did (25% of the walk), and the caller skips it
 * while its tables are unchanged (native.CheckedTables). */
#define DEFINE_CHECK(NAME, XT, IT)                                                          \
    static int NAME(Py_ssize_t n_columns, Py_ssize_t n_trees, Py_ssize_t n_slots,           \
                    const IT *feature, const XT *threshold, const IT *first_child,          \
                    const IT *roots, int mode)                                              \
    {                                                                                       \
        const IT neq = mode == MODE_NEQ;                                                    \
        int outside = 0;                                                                    \
        for (Py_ssize_t slot = 0; slot < n_slots; slot++) {                                 \
            const IT fixed = threshold[slot] != threshold[slot];                            \
            const IT low = first_child[slot] + (fixed & neq);                               \
            const IT high = first_child[slot] + (fixed ? neq : 1);                          \
            outside |= ((uint64_t)feature[slot] >= (uint64_t)n_columns) | (low < 0)         \
                       | (high >= n_slots);                                                 \
        }                                                                                   \
        for (Py_ssize_t tree = 0; tree < n_trees; tree++)                                   \
            outside |= (uint64_t)roots[tree] >= (uint64_t)n_slots;                          \
        return !outside;                                                                    \
    }

/* One function per (value type, index type, comparison): the comparison is fixed inside the
 * innermost loop. Rows walk in blocks, level by level, so the steps of a block's rows are
 * independent and overlap in the CPU (walking one row at a time to its leaf waits on each
 * step's loads: 3x slower on a depth-20 tree). A block stops when none of its walks moved. */
#define DEFINE_WALK(NAME, XT, IT, CMP)                                                      \
    static void NAME(const XT *x, Py_ssize_t stride, Py_ssize_t n_rows, Py_ssize_t n_trees,  \
                     const IT *feature, const XT *threshold, const IT *first_child,          \
                     const IT *roots, const int32_t *depths, IT *out, const XT *values,      \
                     Py_ssize_t n_outputs, const int64_t *tree_outputs, XT *sums)            \
    {                                                                                       \
        IT slot[BLOCK_ROWS];                                                                \
        if (sums != NULL)                                                                   \
            memset(sums, 0, (size_t)(n_rows * n_outputs) * sizeof(XT));                     \
        for (Py_ssize_t start = 0; start < n_rows; start += BLOCK_ROWS) {                   \
            const Py_ssize_t size = n_rows - start < BLOCK_ROWS ? n_rows - start        \
                                                                : BLOCK_ROWS;               \
            const XT *block = x + start * stride;                                           \
            for (Py_ssize_t tree = 0; tree < n_trees; tree++) {                             \
                for (Py_ssize_t row = 0; row < size; row++)                                 \
                    slot[row] = roots[tree];                                                \
                for (int32_t level = 0; level < depths[tree]; level++) {                    \
                    int moved = 0;                                                          \
                    for (Py_ssize_t row = 0; row < size; row++) {                           \
                        const IT at = slot[row];                                            \
                        const IT next = first_child[at]                                     \
                            + (IT)CMP(block[row * stride + feature[at]], threshold[at]);    \
                        moved |= next != at;                                                \
                        slot[row] = next;                                                   \
                    }                                                                       \
                    if (!moved) /* every walk of the block is at its leaf */                \
                        break;                                                              \
                }                                                                           \
                if (sums == NULL) {                                                         \
                    memcpy(out + tree * n_rows + start, slot, (size_t)size * sizeof(IT));   \
                    continue;                                                               \
                }                                                                           \
                if (tree_outputs != NULL) { /* the tree scores one output: one value */     \
                    XT *total = sums + start * n_outputs + tree_outputs[tree];              \
                    for (Py_ssize_t row = 0; row < size; row++)                             \
                        total[row * n_outputs] += values[slot[row]];                        \
                    continue;                                                               \
                }                                                                           \
                for (Py_ssize_t row = 0; row < size; row++) { /* trees in order, per row */ \
                    const XT *value = values + (Py_ssize_t)slot[row] * n_outputs;           \
                    XT *total = sums + (start + row) * n_outputs;                           \
                    for (Py_ssize_t output = 0; output < n_outputs; output++)               \
                        total[output] += value[output];                                     \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

#define DEFINE_MODES(PREFIX, XT, IT)                                                        \
    DEFINE_CHECK(PREFIX##_check, XT, IT)                                                    \
    DEFINE_WALK(PREFIX##_leq, XT, IT, CMP_LEQ)                                              \
    DEFINE_WALK(PREFIX##_lt, XT, IT, CMP_LT)                                                \
    DEFINE_WALK(PREFIX##_gte, XT, IT, CMP_GTE)                                              \
    DEFINE_WALK(PREFIX##_gt, XT, IT, CMP_GT)                                                \
    DEFINE_WALK(PREFIX##_eq, XT, IT, CMP_EQ)                                                \
    DEFINE_WALK(PREFIX##_neq, XT, IT, CMP_NEQ)                                              \
    static void (*const PREFIX##_modes[6])(const XT *, Py_ssize_t, Py_ssize_t, Py_ssize_t,  \
                                           const IT *, const XT *, const IT *, const IT *,  \
                                           const int32_t *, IT *, const XT *, Py_ssize_t,   \
                                           const int64_t *, XT *) =                         \
        {PREFIX##_leq, PREFIX##_lt, PREFIX##_gte, PREFIX##_gt, PREFIX##_eq, PREFIX##_neq};  \
    static int PREFIX(unsigned long long x, Py_ssize_t stride, Py_ssize_t n_columns,        \
                      Py_ssize_t n_rows, Py_ssize_t n_trees, Py_ssize_t n_slots,            \
                      unsigned long long feature, unsigned long long threshold,             \
                      unsigned long long first_child, unsigned long long roots,             \
                      unsigned long long depths, unsigned long long out,                    \
                      unsigned long long values, Py_ssize_t n_outputs,                      \
                      unsigned long long tree_outputs, unsigned long long sums, int mode,   \
                      int check)                                                            \
    {                                                                                       \
        if (check && !PREFIX##_check(n_columns, n_trees, n_slots,                           \
                                     (const IT *)(uintptr_t)feature,                        \
                                     (const XT *)(uintptr_t)threshold,                      \
                                     (const IT *)(uintptr_t)first_child,                    \
                                     (const IT *)(uintptr_t)roots, mode))                   \
            return 0;                                                                       \
        PREFIX##_modes[mode]((const XT *)(uintptr_t)x, stride, n_rows, n_trees,             \
                             (const IT *)(uintptr_t)feature,                                \
                             (const XT *)(uintptr_t)threshold,                              \
                             (const IT *)(uintptr_t)first_child,                            \
                             (const IT *)(uintptr_t)roots,                                  \
                             (const int32_t *)(uintptr_t)depths, (IT *)(uintptr_t)out,      \
                             (const XT *)(uintptr_t)values, n_outputs,                      \
                             (const int64_t *)(uintptr_t)tree_outputs, (XT *)(uintptr_t)sums); \
        return 1;                                                                           \
    }

DEFINE_MODES(walk_f32_i32, float, int32_t)
DEFINE_MODES(walk_f32_i64, float, int64_t)
DEFINE_MODES(walk_f64_i32, double, int32_t)
DEFINE_MODES(walk_f64_i64, double, int64_t)

/* The shared body of walk() and walk_sum(): values, n_outputs, tree_outputs and sums are 0
 * for walk(). */
static PyObject *run(unsigned long long x, Py_ssize_t stride, Py_ssize_t n_columns,
                     Py_ssize_t n_rows, Py_ssize_t n_trees, Py_ssize_t n_slots,
                     unsigned long long feature, unsigned long long threshold,
                     unsigned long long first_child, unsigned long long roots,
                     unsigned long long depths, unsigned long long out,
                     unsigned long long values, Py_ssize_t n_outputs,
                     unsigned long long tree_outputs, unsigned long long sums,
                     int mode, int double_values, int wide_index, int check)
{
    int valid;
    if (mode < MODE_LEQ || mode > MODE_NEQ) {
        PyErr_Format(PyExc_ValueError, "walk: mode %d is not a comparison mode (0..5)", mode);
        return NULL;
    }
    if (stride < 0 || n_columns < 0 || n_rows < 0 || n_trees < 0 || n_slots < 0
        || n_outputs < 0) {
        PyErr_SetString(PyExc_ValueError, "walk: sizes and stride must be >= 0");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (double_values && wide_index)
        valid = walk_f64_i64(x, stride, n_columns, n_rows, n_trees, n_slots, feature,
                             threshold, first_child, roots, depths, out, values, n_outputs,
                             tree_outputs, sums, mode, check);
    else if (double_values)
        valid = walk_f64_i32(x, stride, n_columns, n_rows, n_trees, n_slots, feature,
                             threshold, first_child, roots, depths, out, values, n_outputs,
                             tree_outputs, sums, mode, check);
    else if (wide_index)
        valid = walk_f32_i64(x, stride, n_columns, n_rows, n_trees, n_slots, feature,
                             threshold, first_child, roots, depths, out, values, n_outputs,
                             tree_outputs, sums, mode, check);
    else
        valid = walk_f32_i32(x, stride, n_columns, n_rows, n_trees, n_slots, feature,
                             threshold, first_child, roots, depths, out, values, n_outputs,
                             tree_outputs, sums, mode, check);
    Py_END_ALLOW_THREADS
    if (!valid) {
        PyErr_Format(PyExc_IndexError,
                     "walk: the tree tables lead to a slot outside 0..%zd or read a column "
                     "outside 0..%zd of x", n_slots - 1, n_columns - 1);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(walk_doc,
"walk(x, stride, n_columns, n_rows, n_trees, n_slots, feature, threshold, first_child,\n"
"     roots, depths, out, mode, double_values, wide_index, check)\n"
"\n"
"Write the terminal slot of each row in each tree into out [trees, rows]. Pointer\n"
"arguments are data addresses of contiguous CPU tensors; see bridge/trees/native.py.\n"
"With check true, raises IndexError before walking when a table leads to a slot or\n"
"column out of range; with check false the caller vouches for the tables.");

static PyObject *walk(PyObject *self, PyObject *args)
{
    unsigned long long x, feature, threshold, first_child, roots, depths, out;
    Py_ssize_t stride, n_columns, n_rows, n_trees, n_slots;
    int mode, double_values, wide_index, check;
    (void)self;
    if (!PyArg_ParseTuple(args, "KnnnnnKKKKKKippp", &x, &stride, &n_columns, &n_rows, &n_trees,
                          &n_slots, &feature, &threshold, &first_child, &roots, &depths, &out,
                          &mode, &double_values, &wide_index, &check))
        return NULL;
    return run(x, stride, n_columns, n_rows, n_trees, n_slots, feature, threshold,
               first_child, roots, depths, out, 0, 0, 0, 0, mode, double_values, wide_index,
               check);
}

PyDoc_STRVAR(walk_sum_doc,
"walk_sum(x, stride, n_columns, n_rows, n_trees, n_slots, feature, threshold, first_child,\n"
"         roots, depths, values, n_outputs, tree_outputs, sums, mode, double_values,\n"
"         wide_index, check)\n"
"\n"
"Walk as walk() does and write into sums [rows, n_outputs] (x's dtype) the sum over the\n"
"trees, in the order of roots, of values [slots, n_outputs] (x's dtype) at the slot each\n"
"walk ends at. With tree_outputs (int64 [trees], each in 0..n_outputs-1, else IndexError),\n"
"values holds one value per slot [slots], added to output tree_outputs[tree].\n"
"Same pointer rules and checks as walk().");

static PyObject *walk_sum(PyObject *self, PyObject *args)
{
    unsigned long long x, feature, threshold, first_child, roots, depths, values, sums;
    unsigned long long tree_outputs;
    Py_ssize_t stride, n_columns, n_rows, n_trees, n_slots, n_outputs;
    int mode, double_values, wide_index, check;
    (void)self;
    if (!PyArg_ParseTuple(args, "KnnnnnKKKKKKnKKippp", &x, &stride, &n_columns, &n_rows,
                          &n_trees, &n_slots, &feature, &threshold, &first_child, &roots,
                          &depths, &values, &n_outputs, &tree_outputs, &sums, &mode,
                          &double_values, &wide_index, &check))
        return NULL;
    if (n_rows > 0 && n_outputs > 0 && (values == 0 || sums == 0)) {
        PyErr_SetString(PyExc_ValueError, "walk_sum: values and sums must be data addresses");
        return NULL;
    }
    if (tree_outputs != 0 && n_trees > 0) { /* n_trees entries: checked on every call */
        const int64_t *output = (const int64_t *)(uintptr_t)tree_outputs;
        int outside = n_trees < 0;
        for (Py_ssize_t tree = 0; tree < n_trees; tree++)
            outside |= (uint64_t)output[tree] >= (uint64_t)n_outputs;
        if (outside) {
            PyErr_Format(PyExc_IndexError, "walk_sum: a tree's output is outside 0..%zd",
                         n_outputs - 1);
            return NULL;
        }
    }
    return run(x, stride, n_columns, n_rows, n_trees, n_slots, feature, threshold,
               first_child, roots, depths, 0, values, n_outputs, tree_outputs, sums, mode,
               double_values, wide_index, check);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"walk_sum", walk_sum, METH_VARARGS, walk_sum_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.trees._walk",
    "The tree walk in C, for CPU tensors (see bridge/trees/native.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__walk(void)
{
    return PyModule_Create(&module);
}
