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
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* rows walked through every tree before moving on: the trees' tables and the block's rows
 * stay in cache together */
#define BLOCK_ROWS 64
/* below this many rows, the summing walks step one row's trees (up to BLOCK_ROWS of them) in
 * lockstep instead of the rows of one tree: a one-row walk would otherwise wait on every
 * step's loads, one tree after another. Measured on the 2-core VM (one-call path, us): a
 * 100-tree depth-8 forest 1 row 3.3 -> 1.8 in C; at 4 / 6 / 8 rows lockstep 7.8 / 10.2 / 12.8
 * against blocks 9.3 / 10.3 / 11.7; 300 HistGradientBoosting trees gain more (4 rows: 18 vs
 * 23). Sums are added in the same order either way. */
#define FEW_ROWS 8

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
        if (sums != NULL && n_rows < FEW_ROWS) { /* a row's trees in lockstep, in blocks */ \
            int32_t depth[BLOCK_ROWS];                                                      \
            for (Py_ssize_t row = 0; row < n_rows; row++) {                                 \
                const XT *at_row = x + row * stride;                                        \
                XT *total = sums + row * n_outputs;                                         \
                for (Py_ssize_t first = 0; first < n_trees; first += BLOCK_ROWS) {          \
                    const Py_ssize_t size = n_trees - first < BLOCK_ROWS ? n_trees - first  \
                                                                         : BLOCK_ROWS;      \
                    int32_t deepest = 0;                                                    \
                    for (Py_ssize_t tree = 0; tree < size; tree++) {                        \
                        slot[tree] = roots[first + tree];                                   \
                        depth[tree] = depths[first + tree];                                 \
                        deepest = depth[tree] > deepest ? depth[tree] : deepest;            \
                    }                                                                       \
                    for (int32_t level = 0; level < deepest; level++) {                     \
                        int moved = 0;                                                      \
                        for (Py_ssize_t tree = 0; tree < size; tree++) {                    \
                            const IT here = slot[tree];                                     \
                            const IT next = first_child[here]                               \
                                + (IT)CMP(at_row[feature[here]], threshold[here]);          \
                            const IT chosen = level < depth[tree] ? next : here;            \
                            moved |= chosen != here;                                        \
                            slot[tree] = chosen;                                            \
                        }                                                                   \
                        if (!moved)                                                         \
                            break;                                                          \
                    }                                                                       \
                    for (Py_ssize_t tree = 0; tree < size; tree++) { /* in the trees' order */ \
                        if (tree_outputs != NULL) {                                         \
                            total[tree_outputs[first + tree]] += values[slot[tree]];        \
                            continue;                                                       \
                        }                                                                   \
                        const XT *value = values + (Py_ssize_t)slot[tree] * n_outputs;      \
                        for (Py_ssize_t output = 0; output < n_outputs; output++)           \
                            total[output] += value[output];                                 \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
            return;                                                                         \
        }                                                                                   \
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

/* ---- The serving call: walk, leaf sums, the operator's finish and labels in one call ----
 *
 * A one-row predict_proba of a 100-tree forest spends ~3 us walking and ~25 us in the Python
 * and torch operations around it (argument checks, table version checks, the average, base
 * values, softmax, the label arg-max). A Forest holds everything but the rows, built once
 * by bridge/trees/serving.py from the operator's tensors and rebuilt when one changes:
 * Forest.run() checks that each watched tensor is still the one its module holds, at the
 * same version (in-place edits and load_state_dict bump it, .to() replaces it), then walks
 * blocks of rows, adds the leaf values exactly as walk_sum does and writes the results. The
 * finish follows bridge/trees/finalize.py (onnxruntime's rules) in the same dtypes. */

#define POST_NONE 0
#define POST_SOFTMAX 1
#define POST_LOGISTIC 2
#define STACK_SUMS 1024 /* sums of a block kept on the stack up to this many values */

typedef struct {
    PyObject_HEAD
    PyObject *keep;   /* the tensors the addresses point into (kept alive) */
    PyObject *watch;  /* tuple of (dict, key, object, version) */
    Py_ssize_t n_watch;
    int disabled;     /* the watched objects are current but C may not run (inference tables) */
    /* the walk */
    unsigned long long feature, threshold, first_child, roots, depths, values, tree_outputs;
    Py_ssize_t n_trees, n_slots, n_outputs, width, n_features;
    int mode, double_values, wide_index, fill;
    double fill_value;
    /* the finish */
    int classifier, average, post, out_double, mask_unscored, binary_case, all_positive;
    unsigned long long base, has, labels;
    Py_ssize_t n_base;
} Forest;

static PyObject *version_name, *requires_grad_name;

/* 1 when every watched object is still where it was, unmodified; 0 when one moved or changed;
 * -1 with an exception set. With grad, a watched tensor that requires grad answers 2. */
static int watched_unchanged(Forest *self, int grad)
{
    for (Py_ssize_t i = 0; i < self->n_watch; i++) {
        PyObject *entry = PyTuple_GET_ITEM(self->watch, i);
        PyObject *now = PyDict_GetItemWithError(PyTuple_GET_ITEM(entry, 0),
                                                PyTuple_GET_ITEM(entry, 1));
        if (now != PyTuple_GET_ITEM(entry, 2))
            return now == NULL && PyErr_Occurred() ? -1 : 0;
        long long expected = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 3));
        if (expected < 0)
            continue; /* a module, or a tensor without a version counter */
        PyObject *version = PyObject_GetAttr(now, version_name);
        if (version == NULL)
            return -1;
        long long current = PyLong_AsLongLong(version);
        Py_DECREF(version);
        if (current != expected)
            return current == -1 && PyErr_Occurred() ? -1 : 0;
        if (grad) {
            PyObject *flag = PyObject_GetAttr(now, requires_grad_name);
            if (flag == NULL)
                return -1;
            int requires = flag == Py_True;
            Py_DECREF(flag);
            if (requires)
                return 2;
        }
    }
    return 1;
}

static float logistic_f(float x)
{
    const float v = 1.0f / (1.0f + expf(-fabsf(x)));
    return x < 0 ? 1.0f - v : v;
}

/* the post transform of one row of n float scores, in place */
static void transform_row(float *row, Py_ssize_t n, int post)
{
    if (post == POST_LOGISTIC) {
        for (Py_ssize_t i = 0; i < n; i++)
            row[i] = logistic_f(row[i]);
    } else if (post == POST_SOFTMAX) {
        float top = row[0], total = 0.0f;
        for (Py_ssize_t i = 1; i < n; i++)
            top = row[i] > top || row[i] != row[i] ? row[i] : top;
        for (Py_ssize_t i = 0; i < n; i++) {
            row[i] = expf(row[i] - top);
            total += row[i];
        }
        for (Py_ssize_t i = 0; i < n; i++)
            row[i] = row[i] / total;
    }
}

/* torch.argmax: the first largest entry, NaN counting as the largest */
static Py_ssize_t first_largest(const float *row, Py_ssize_t n)
{
    Py_ssize_t best = 0;
    for (Py_ssize_t i = 1; i < n; i++) {
        if (row[best] != row[best])
            break;
        if (row[i] > row[best] || row[i] != row[i])
            best = i;
    }
    return best;
}

/* ClassifierOutput (finalize.py) for a block of float scores [rows, classes], in place */
static void finish_classes(const Forest *f, float *scores, Py_ssize_t rows, int64_t *labels,
                           float *probabilities, float *scratch)
{
    const Py_ssize_t k = f->n_outputs;
    const float *base = (const float *)(uintptr_t)f->base;
    const uint8_t *has = (const uint8_t *)(uintptr_t)f->has;
    const int64_t *classes = (const int64_t *)(uintptr_t)f->labels;
    for (Py_ssize_t r = 0; r < rows; r++) {
        float *s = scores + r * k;
        float *p = probabilities == NULL ? NULL : probabilities + r * k;
        if (k > 2) {
            for (Py_ssize_t c = 0; c < k && f->n_base; c++)
                s[c] = s[c] + base[f->n_base == 1 ? 0 : c];
            if (f->n_base == 0 && has != NULL) { /* classes no leaf scores: 0, never chosen */
                if (labels != NULL) {
                    float *candidates = scratch;
                    for (Py_ssize_t c = 0; c < k; c++)
                        candidates[c] = has[c] ? s[c] : -INFINITY;
                    labels[r] = classes[first_largest(candidates, k)];
                }
                for (Py_ssize_t c = 0; c < k; c++)
                    s[c] = has[c] ? s[c] : 0.0f;
            } else if (labels != NULL) {
                labels[r] = classes[first_largest(s, k)];
            }
            if (p != NULL) {
                memcpy(p, s, (size_t)k * sizeof(float));
                transform_row(p, k, f->post);
            }
            continue;
        }
        /* binary: onnxruntime's rules with the has-score flags fixed per column */
        const int h0 = has == NULL || has[0], h1 = has == NULL || has[1];
        float s0 = s[0], s1 = s[1];
        int two_entries = h1;
        if (f->n_base == 2) {
            const float shifted = s0 + base[1];
            s1 = h1 ? shifted : s1 + base[1];
            s0 = h1 ? -shifted : s0 + base[0];
            two_entries = 1;
        } else if (f->n_base == 1) {
            s0 = s0 + base[0];
        }
        const float positive = h1 ? s1 : (h0 ? s0 : 0.0f);
        if (labels != NULL) {
            if (f->binary_case)
                labels[r] = classes[(f->all_positive ? positive > 0.5f : positive > 0.0f)];
            else
                labels[r] = positive > 0.0f;
        }
        if (p == NULL)
            continue;
        s0 = h0 ? s0 : 0.0f;
        if (two_entries) {
            p[0] = s0;
            p[1] = h1 ? s1 : 0.0f;
            transform_row(p, 2, f->post);
        } else if (!(f->binary_case || f->n_base == 0)) {
            p[0] = s0;
            p[1] = 0.0f;
        } else if (f->post == POST_LOGISTIC) {
            p[0] = logistic_f(-s0);
            p[1] = logistic_f(s0);
        } else if (f->binary_case && f->all_positive) {
            p[0] = 1.0f - s0;
            p[1] = s0;
        } else {
            p[0] = -s0;
            p[1] = s0;
        }
    }
}

/* One function per value type: walk a block, then finish it into the outputs. */
#define DEFINE_SERVE(NAME, XT, WALKS32, WALKS64)                                            \
    static int NAME(const Forest *f, const XT *x, Py_ssize_t stride, Py_ssize_t n_rows,      \
                    int64_t *labels, void *out)                                             \
    {                                                                                       \
        const Py_ssize_t k = f->n_outputs;                                                  \
        XT stack_sums[STACK_SUMS];                                                          \
        float stack_row[STACK_SUMS];                                                        \
        XT *sums = stack_sums, *filled = NULL;                                              \
        float *row = stack_row;                                                             \
        if ((BLOCK_ROWS + 1) * k > STACK_SUMS) { /* (a row of scratch after the block) */ \
            sums = (XT *)malloc((size_t)(BLOCK_ROWS * k) * sizeof(XT));                     \
            row = (float *)malloc((size_t)((BLOCK_ROWS + 1) * k) * sizeof(float));          \
        }                                                                                   \
        if (f->fill)                                                                        \
            filled = (XT *)malloc((size_t)(BLOCK_ROWS * 2 * f->n_features) * sizeof(XT));  \
        if (sums == NULL || row == NULL || (f->fill && filled == NULL)) {                   \
            if (sums != stack_sums) {                                                       \
                free(sums);                                                                 \
                free(row);                                                                  \
            }                                                                               \
            free(filled);                                                                   \
            return 0;                                                                       \
        }                                                                                   \
        const XT *values = (const XT *)(uintptr_t)f->values;                                \
        const XT *base = (const XT *)(uintptr_t)f->base;                                    \
        const uint8_t *has = (const uint8_t *)(uintptr_t)f->has;                            \
        const int64_t *tree_outputs = (const int64_t *)(uintptr_t)f->tree_outputs;          \
        for (Py_ssize_t start = 0; start < n_rows; start += BLOCK_ROWS) {                   \
            const Py_ssize_t size = n_rows - start < BLOCK_ROWS ? n_rows - start            \
                                                                : BLOCK_ROWS;               \
            const XT *block = x + start * stride;                                           \
            Py_ssize_t block_stride = stride;                                               \
            if (f->fill) { /* filled_rows (traversal.py): the features, then NaN filled */  \
                const Py_ssize_t n = f->n_features;                                         \
                for (Py_ssize_t r = 0; r < size; r++) {                                     \
                    for (Py_ssize_t c = 0; c < n; c++) {                                    \
                        const XT v = block[r * stride + c];                                 \
                        filled[r * 2 * n + c] = v;                                          \
                        filled[r * 2 * n + n + c] = v != v ? (XT)f->fill_value : v;         \
                    }                                                                       \
                }                                                                           \
                block = filled;                                                             \
                block_stride = 2 * n;                                                       \
            }                                                                               \
            if (f->wide_index)                                                              \
                WALKS64[f->mode](block, block_stride, size, f->n_trees,                     \
                                 (const int64_t *)(uintptr_t)f->feature,                    \
                                 (const XT *)(uintptr_t)f->threshold,                       \
                                 (const int64_t *)(uintptr_t)f->first_child,                \
                                 (const int64_t *)(uintptr_t)f->roots,                      \
                                 (const int32_t *)(uintptr_t)f->depths, NULL, values, k,    \
                                 tree_outputs, sums);                                       \
            else                                                                            \
                WALKS32[f->mode](block, block_stride, size, f->n_trees,                     \
                                 (const int32_t *)(uintptr_t)f->feature,                    \
                                 (const XT *)(uintptr_t)f->threshold,                       \
                                 (const int32_t *)(uintptr_t)f->first_child,                \
                                 (const int32_t *)(uintptr_t)f->roots,                      \
                                 (const int32_t *)(uintptr_t)f->depths, NULL, values, k,    \
                                 tree_outputs, sums);                                       \
            if (f->classifier) { /* scores.float(), then finalize.ClassifierOutput */       \
                for (Py_ssize_t i = 0; i < size * k; i++)                                   \
                    row[i] = (float)sums[i];                                                \
                finish_classes(f, row, size, labels == NULL ? NULL : labels + start,        \
                               out == NULL ? NULL : (float *)out + start * k,               \
                               row + BLOCK_ROWS * k);                                       \
                continue;                                                                   \
            }                                                                               \
            for (Py_ssize_t i = 0; i < size * k; i++) { /* finalize.RegressionOutput */     \
                XT v = sums[i];                                                             \
                if (f->average)                                                             \
                    v = v / (XT)f->n_trees;                                                 \
                if (base != NULL)                                                           \
                    v = v + base[i % k];                                                    \
                if (f->mask_unscored && !has[i % k])                                        \
                    v = 0;                                                                  \
                sums[i] = v;                                                                \
            }                                                                               \
            if (f->post != POST_NONE) { /* in float32, back to the scores' dtype */         \
                for (Py_ssize_t r = 0; r < size; r++) {                                     \
                    float *t = row + r * k;                                                 \
                    for (Py_ssize_t o = 0; o < k; o++)                                      \
                        t[o] = (float)sums[r * k + o];                                      \
                    transform_row(t, k, f->post);                                           \
                    for (Py_ssize_t o = 0; o < k; o++)                                      \
                        sums[r * k + o] = (XT)t[o];                                         \
                }                                                                           \
            }                                                                               \
            for (Py_ssize_t i = 0; i < size * k; i++) {                                     \
                if (f->out_double)                                                          \
                    ((double *)out)[start * k + i] = (double)sums[i];                       \
                else                                                                        \
                    ((float *)out)[start * k + i] = (float)sums[i];                         \
            }                                                                               \
        }                                                                                   \
        if (sums != stack_sums) {                                                           \
            free(sums);                                                                     \
            free(row);                                                                      \
        }                                                                                   \
        free(filled);                                                                       \
        return 1;                                                                           \
    }

DEFINE_SERVE(serve_f32, float, walk_f32_i32_modes, walk_f32_i64_modes)
DEFINE_SERVE(serve_f64, double, walk_f64_i32_modes, walk_f64_i64_modes)

static void forest_dealloc(Forest *self)
{
    Py_XDECREF(self->keep);
    Py_XDECREF(self->watch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(forest_run_doc,
"run(x, stride, n_columns, n_rows, grad, labels, out) -> int\n"
"\n"
"Walk n_rows rows at address x (row stride, n_columns columns, the Forest's dtype) and\n"
"write labels (int64 [n_rows], a classifier's, or 0 to skip) and out (the probabilities\n"
"float32 [n_rows, outputs], a regressor's values, or 0 to skip). Returns 0 when it ran,\n"
"1 when a watched tensor was replaced or modified or the rows have another width (build\n"
"a new Forest), 2 when C may not run this call (grad true and a watched tensor requires\n"
"grad, or tables without a version counter).");

static PyObject *forest_run(Forest *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "Forest.run takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    const unsigned long long x = PyLong_AsUnsignedLongLong(args[0]);
    const Py_ssize_t stride = PyLong_AsSsize_t(args[1]);
    const Py_ssize_t n_columns = PyLong_AsSsize_t(args[2]);
    const Py_ssize_t n_rows = PyLong_AsSsize_t(args[3]);
    const int grad = PyObject_IsTrue(args[4]);
    const unsigned long long labels = PyLong_AsUnsignedLongLong(args[5]);
    const unsigned long long out = PyLong_AsUnsignedLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    const int unchanged = watched_unchanged(self, grad);
    if (unchanged < 0)
        return NULL;
    if (!unchanged)
        return PyLong_FromLong(1);
    if (unchanged == 2 || self->disabled)
        return PyLong_FromLong(2);
    const Py_ssize_t needed = self->fill ? self->n_features : self->width;
    if (self->fill ? n_columns < needed : n_columns != needed)
        return PyLong_FromLong(1);
    if (n_rows < 0 || stride < n_columns || x == 0 || (out == 0 && labels == 0)
        || (out == 0 && !self->classifier)) {
        PyErr_SetString(PyExc_ValueError, "Forest.run: bad sizes or addresses");
        return NULL;
    }
    int done;
    Py_BEGIN_ALLOW_THREADS
    if (self->double_values)
        done = serve_f64(self, (const double *)(uintptr_t)x, stride, n_rows,
                         (int64_t *)(uintptr_t)labels, (void *)(uintptr_t)out);
    else
        done = serve_f32(self, (const float *)(uintptr_t)x, stride, n_rows,
                         (int64_t *)(uintptr_t)labels, (void *)(uintptr_t)out);
    Py_END_ALLOW_THREADS
    if (!done)
        return PyErr_NoMemory();
    return PyLong_FromLong(0);
}

static PyMethodDef forest_methods[] = {
    {"run", (PyCFunction)(void (*)(void))forest_run, METH_FASTCALL, forest_run_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ForestType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bridge.trees._walk.Forest",
    .tp_basicsize = sizeof(Forest),
    .tp_dealloc = (destructor)forest_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A tree-ensemble operator ready to serve calls in C (see forest()).",
    .tp_methods = forest_methods,
};

PyDoc_STRVAR(forest_doc,
"forest(keep, watch, disabled, walk, finish) -> Forest\n"
"\n"
"walk: (feature, threshold, first_child, roots, depths, values, tree_outputs, n_trees,\n"
"n_slots, n_outputs, width, mode, double_values, wide_index, fill, fill_value,\n"
"n_features), addresses and sizes as walk_sum() takes them (tree_outputs 0: none; width:\n"
"the columns of the walked rows, 2 * n_features with fill). finish: (classifier, average,\n"
"post, out_double, mask_unscored, binary_case, all_positive, base, n_base, has, labels).\n"
"keep: the tensors behind the addresses; watch: (dict, key, object, version) entries\n"
"that run() checks (version -1: identity only). The tables' indices are checked here\n"
"(IndexError), the other arguments by the caller (bridge/trees/serving.py).");

static PyObject *forest_new(PyObject *self, PyObject *args)
{
    PyObject *keep, *watch, *walk_args, *finish_args;
    int disabled;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!pO!O!", &PyTuple_Type, &keep, &PyTuple_Type, &watch,
                          &disabled, &PyTuple_Type, &walk_args, &PyTuple_Type, &finish_args))
        return NULL;
    Forest *f = PyObject_New(Forest, &ForestType);
    if (f == NULL)
        return NULL;
    f->keep = NULL;
    f->watch = NULL;
    if (!PyArg_ParseTuple(walk_args, "KKKKKKKnnnniiiidn", &f->feature, &f->threshold,
                          &f->first_child, &f->roots, &f->depths, &f->values, &f->tree_outputs,
                          &f->n_trees, &f->n_slots, &f->n_outputs, &f->width, &f->mode,
                          &f->double_values, &f->wide_index, &f->fill, &f->fill_value,
                          &f->n_features)
        || !PyArg_ParseTuple(finish_args, "iiiiiiiKnKK", &f->classifier, &f->average,
                             &f->post, &f->out_double, &f->mask_unscored, &f->binary_case,
                             &f->all_positive, &f->base, &f->n_base, &f->has, &f->labels)) {
        Py_DECREF(f);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(watch); i++) {
        PyObject *entry = PyTuple_GET_ITEM(watch, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 4
            || !PyDict_Check(PyTuple_GET_ITEM(entry, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(entry, 3))) {
            Py_DECREF(f);
            PyErr_SetString(PyExc_TypeError, "forest: watch entries are (dict, key, object, int)");
            return NULL;
        }
    }
    Py_INCREF(keep);
    f->keep = keep;
    Py_INCREF(watch);
    f->watch = watch;
    f->n_watch = PyTuple_GET_SIZE(watch);
    f->disabled = disabled;
    if (f->mode < MODE_LEQ || f->mode > MODE_NEQ || f->n_trees < 0 || f->n_slots < 0
        || f->n_outputs < 1 || f->width < 0 || f->n_features < 0
        || (f->fill && f->width != 2 * f->n_features) || f->post < POST_NONE
        || f->post > POST_LOGISTIC || (f->classifier && (f->n_outputs < 2 || f->labels == 0))
        || (f->mask_unscored && f->has == 0) || f->n_base < 0) {
        Py_DECREF(f);
        PyErr_SetString(PyExc_ValueError, "forest: inconsistent sizes, mode or finish");
        return NULL;
    }
    if (disabled)
        return (PyObject *)f;
    int valid;
    if (f->double_values && f->wide_index)
        valid = walk_f64_i64_check(f->width, f->n_trees, f->n_slots,
                                   (const int64_t *)(uintptr_t)f->feature,
                                   (const double *)(uintptr_t)f->threshold,
                                   (const int64_t *)(uintptr_t)f->first_child,
                                   (const int64_t *)(uintptr_t)f->roots, f->mode);
    else if (f->double_values)
        valid = walk_f64_i32_check(f->width, f->n_trees, f->n_slots,
                                   (const int32_t *)(uintptr_t)f->feature,
                                   (const double *)(uintptr_t)f->threshold,
                                   (const int32_t *)(uintptr_t)f->first_child,
                                   (const int32_t *)(uintptr_t)f->roots, f->mode);
    else if (f->wide_index)
        valid = walk_f32_i64_check(f->width, f->n_trees, f->n_slots,
                                   (const int64_t *)(uintptr_t)f->feature,
                                   (const float *)(uintptr_t)f->threshold,
                                   (const int64_t *)(uintptr_t)f->first_child,
                                   (const int64_t *)(uintptr_t)f->roots, f->mode);
    else
        valid = walk_f32_i32_check(f->width, f->n_trees, f->n_slots,
                                   (const int32_t *)(uintptr_t)f->feature,
                                   (const float *)(uintptr_t)f->threshold,
                                   (const int32_t *)(uintptr_t)f->first_child,
                                   (const int32_t *)(uintptr_t)f->roots, f->mode);
    if (valid && f->tree_outputs != 0) {
        const int64_t *output = (const int64_t *)(uintptr_t)f->tree_outputs;
        for (Py_ssize_t tree = 0; tree < f->n_trees; tree++)
            valid &= (uint64_t)output[tree] < (uint64_t)f->n_outputs;
    }
    if (!valid) {
        Py_DECREF(f);
        PyErr_Format(PyExc_IndexError,
                     "forest: the tree tables lead to a slot outside 0..%zd, read a column "
                     "outside 0..%zd of the rows or name an output outside 0..%zd",
                     f->n_slots - 1, f->width - 1, f->n_outputs - 1);
        return NULL;
    }
    return (PyObject *)f;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"walk_sum", walk_sum, METH_VARARGS, walk_sum_doc},
    {"forest", forest_new, METH_VARARGS, forest_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.trees._walk",
    "The tree walk in C, for CPU tensors (see bridge/trees/native.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__walk(void)
{
    version_name = PyUnicode_InternFromString("_version");
    requires_grad_name = PyUnicode_InternFromString("requires_grad");
    if (version_name == NULL || requires_grad_name == NULL || PyType_Ready(&ForestType) < 0)
        return NULL;
    PyObject *created = PyModule_Create(&module);
    if (created == NULL)
        return NULL;
    Py_INCREF(&ForestType);
    if (PyModule_AddObject(created, "Forest", (PyObject *)&ForestType) < 0) {
        Py_DECREF(&ForestType);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
