/*
 * _rtcheck_dvh: the DVH sampler's two innermost loops in C.
 *
 * rtcheck.dvh.core computes the same two things with NumPy (``_edge_cells`` and
 * ``_sample_cells``); this module is an optional speed-up built by ``pip install`` where a C
 * compiler exists, and rtcheck.dvh.kernel falls back to the NumPy code when it is absent or
 * of another API_VERSION. Both follow the same arithmetic, step by step, so that they agree
 * to rounding (the tests compare them, and both against analytic volumes and doses).
 *
 * The functions take and fill C-contiguous buffers (the caller allocates every output),
 * check each buffer's item size and length, and release the GIL while they compute, so
 * that two structures' DVHs run on two cores.
 *
 * No NumPy headers are needed: arrays are read through the buffer protocol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define API_VERSION 2

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static void release(Buf *b) {
    if (b->held) {
        PyBuffer_Release(&b->view);
        b->held = 0;
    }
}

/* Whether a buffer's struct format is one item of ``kind``: 'd' float64, 'n' a signed
 * integer of pointer size (numpy.intp), '?' one byte (bool). */
static int format_is(const char *fmt, char kind, Py_ssize_t itemsize) {
    if (fmt == NULL) fmt = "B";
    if (*fmt == '@' || *fmt == '=') {
        fmt++;
    }
#if PY_LITTLE_ENDIAN
    else if (*fmt == '<') {
        fmt++;
    }
#else
    else if (*fmt == '>' || *fmt == '!') {
        fmt++;
    }
#endif
    if (fmt[0] == 0 || fmt[1] != 0) return 0;
    switch (kind) {
    case 'd':
        return fmt[0] == 'd' && itemsize == 8;
    case 'n':
        return (fmt[0] == 'n' || fmt[0] == 'l' || fmt[0] == 'q' || fmt[0] == 'i') &&
               itemsize == (Py_ssize_t)sizeof(Py_ssize_t);
    case '?':
        return (fmt[0] == '?' || fmt[0] == 'B' || fmt[0] == 'b') && itemsize == 1;
    }
    return 0;
}

/* A C-contiguous buffer of ``count`` items (any number when negative) of ``kind`` (see
 * format_is), writable when asked. */
static int take(PyObject *obj, Buf *b, char kind, Py_ssize_t count, int writable,
                const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) {
        return -1;
    }
    b->held = 1;
    const char *what = kind == 'd' ? "float64" : (kind == 'n' ? "intp" : "bool");
    if (!format_is(b->view.format, kind, b->view.itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %s items, got format '%s'", name, what,
                     b->view.format ? b->view.format : "B");
        release(b);
        return -1;
    }
    if (count >= 0 && b->view.len != count * b->view.itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd %s items, got %zd", name, count, what,
                     b->view.len / b->view.itemsize);
        release(b);
        return -1;
    }
    return 0;
}

/* A C-contiguous float64 matrix of ``columns`` columns; its row count in ``rows``. */
static int take_rows(PyObject *obj, Buf *b, Py_ssize_t columns, Py_ssize_t *rows,
                     const char *name) {
    if (take(obj, b, 'd', -1, 0, name) < 0) return -1;
    *rows = b->view.len / (8 * columns);
    if (b->view.len != *rows * 8 * columns) {
        PyErr_Format(PyExc_ValueError, "%s: expected rows of %zd float64", name, columns);
        return -1;
    }
    return 0;
}

/* Release several buffers (those not taken are skipped). */
static void release_all(int n, ...) {
    va_list args;
    va_start(args, n);
    for (int i = 0; i < n; i++) release(va_arg(args, Buf *));
    va_end(args);
}

#define F64(b) ((double *)(b).view.buf)
#define IDX(b) ((Py_ssize_t *)(b).view.buf)

/* ---------------------------------------------------------------------------------------
 * edge_cells: covered fraction, centroid and extents of lattice cells (even-odd rule).
 * ------------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x) || isnan(y)) return isnan(x) - isnan(y); /* NaN last: a total order */
    return (x > y) - (x < y);
}

static void sort_small(double *v, Py_ssize_t n) {
    if (n > 24) {
        qsort(v, (size_t)n, sizeof(double), cmp_double);
        return;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        double key = v[i];
        Py_ssize_t j = i - 1;
        while (j >= 0 && cmp_double(&v[j], &key) > 0) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = key;
    }
}

static double clampd(double v, double lo, double hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Column of the cell holding x: floor((x - e0) / hx) within [0, n_cols - 1] (0 for NaN). */
static Py_ssize_t cell_index(double x, double e0, double hx, Py_ssize_t n_cols) {
    double j = floor((x - e0) / hx);
    if (!(j > 0)) return 0;
    if (j > (double)(n_cols - 1)) return n_cols - 1;
    return (Py_ssize_t)j;
}

/* First scan line at or above ``y``: ceil((y - scan0) / hy) clipped to [0, n_rows]. */
static Py_ssize_t first_row(double y, double scan0, double hy, Py_ssize_t n_rows) {
    double r = ceil((y - scan0) / hy);
    if (!(r > 0)) {
        return 0;
    }
    if (r > (double)n_rows) {
        return n_rows;
    }
    return (Py_ssize_t)r;
}

/* Index of the first ``v[k] >= key`` (searchsorted side="left"). */
static Py_ssize_t lower_bound(const double *v, Py_ssize_t n, double key) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (v[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Which rows an edge crosses. Rows are the scan lines ``scan0 + r * hy`` (``Y`` NULL;
 * core._edge_cells) or the raster rows ``Y[r]`` (interpolation.inside_raster); an edge
 * crosses row r when ylo <= row < yhi. */
typedef struct {
    const double *Y;
    Py_ssize_t n;
    double scan0, hy;
} RowRule;

/* The rows [*a, *b) edge ``E`` (x0, y0, x1, y1) crosses; none for a horizontal edge or a
 * NaN end (NumPy's ranges are empty there too). */
static void edge_rows(const double *E, const RowRule *rule, Py_ssize_t *a, Py_ssize_t *b) {
    double y0 = E[1], y1 = E[3];
    *a = *b = 0;
    if (y0 == y1 || isnan(y0) || isnan(y1)) return;
    double ylo = y0 < y1 ? y0 : y1, yhi = y0 < y1 ? y1 : y0;
    if (rule->Y == NULL) {
        *a = first_row(ylo, rule->scan0, rule->hy, rule->n);
        *b = first_row(yhi, rule->scan0, rule->hy, rule->n);
    } else {
        *a = lower_bound(rule->Y, rule->n, ylo);
        *b = lower_bound(rule->Y, rule->n, yhi);
    }
}

/* Buckets of crossings per row: ``start[r]`` where row r's begin (a prefix sum of
 * ``count``), and ``count`` zeroed to be filled again as each crossing is placed. */
static void start_buckets(Py_ssize_t *count, Py_ssize_t *start, Py_ssize_t n) {
    start[0] = 0;
    for (Py_ssize_t r = 0; r < n; r++) start[r + 1] = start[r] + count[r];
    memset(count, 0, (size_t)(n + 1) * sizeof(Py_ssize_t));
}

/* Dense coverage of ``n_planes`` x ``n_rows`` x ``n_cols`` lattice cells by the edges
 * (``m`` rows of x0, y0, x1, y1; ``plane`` the layer of each): covered fraction (clipped at
 * 1), centroid, covered share of the cell's width and of its scan lines, as
 * core._edge_cells computes them. Runs without the GIL. Returns 0, or -1 when out of
 * memory. */
static int coverage(const double *E, const Py_ssize_t *P, Py_ssize_t m, Py_ssize_t n_planes,
                    const double *X, Py_ssize_t n_cols, const double *Y, Py_ssize_t n_rows,
                    double hx, double hy, const double *G, Py_ssize_t n_gauss, double *frac,
                    double *mx, double *my, double *ext, double *hit) {
    Py_ssize_t n_lines = n_planes * n_rows, n_cells = n_lines * n_cols;
    memset(frac, 0, (size_t)n_cells * sizeof(double));
    memset(mx, 0, (size_t)n_cells * sizeof(double));
    memset(my, 0, (size_t)n_cells * sizeof(double));
    memset(hit, 0, (size_t)n_cells * sizeof(double));
    memset(ext, 0, (size_t)n_cells * sizeof(double));
    if (n_cells == 0) return 0;
    int failed = 0;
    double *length = calloc((size_t)n_cells, sizeof(double));
    double *moment = calloc((size_t)n_cells, sizeof(double));
    Py_ssize_t *line_count = calloc((size_t)n_lines + 1, sizeof(Py_ssize_t));
    Py_ssize_t *line_start = calloc((size_t)n_lines + 1, sizeof(Py_ssize_t));
    double *crossings = NULL;
    if (!length || !moment || !line_count || !line_start) {
        failed = 1;
        goto out;
    }
    double e0 = X[0] - hx / 2, e_end = e0 + (double)n_cols * hx;
    double y_first = Y[0] - hy / 2;
    for (Py_ssize_t g = 0; g < n_gauss; g++) {
        double scan0 = y_first + G[g] * hy;
        RowRule rule = {NULL, n_rows, scan0, hy};
        /* Crossings per scan line: count, then place, then sort each line. */
        memset(line_count, 0, (size_t)(n_lines + 1) * sizeof(Py_ssize_t));
        Py_ssize_t total = 0;
        for (Py_ssize_t e = 0; e < m; e++) {
            Py_ssize_t a, b;
            edge_rows(E + 4 * e, &rule, &a, &b);
            Py_ssize_t base = P[e] * n_rows;
            for (Py_ssize_t r = a; r < b; r++) line_count[base + r]++;
            if (b > a) total += b - a;
        }
        if (total == 0) continue;
        crossings = malloc((size_t)total * sizeof(double));
        if (!crossings) {
            failed = 1;
            goto out;
        }
        start_buckets(line_count, line_start, n_lines);
        for (Py_ssize_t e = 0; e < m; e++) {
            double x0 = E[4 * e], y0 = E[4 * e + 1], x1 = E[4 * e + 2], y1 = E[4 * e + 3];
            Py_ssize_t a, b;
            edge_rows(E + 4 * e, &rule, &a, &b);
            Py_ssize_t base = P[e] * n_rows;
            for (Py_ssize_t r = a; r < b; r++) {
                double scan = y_first + ((double)r + G[g]) * hy;
                double t = (scan - y0) / (y1 - y0);
                double xc = clampd(x0 + t * (x1 - x0), e0, e_end);
                Py_ssize_t l = base + r;
                crossings[line_start[l] + line_count[l]++] = xc;
            }
        }
        memset(length, 0, (size_t)n_cells * sizeof(double));
        memset(moment, 0, (size_t)n_cells * sizeof(double));
        for (Py_ssize_t l = 0; l < n_lines; l++) {
            sort_small(crossings + line_start[l], line_count[l]);
        }
        /* Consecutive crossings pair up into inside intervals (even-odd rule). A line with
         * an odd count (an outline not closed) pairs into the next line, as NumPy's global
         * pairing of the sorted crossings does. */
        Py_ssize_t line = 0;
        for (Py_ssize_t k = 0; k + 1 < total; k += 2) {
            while (line_start[line + 1] <= k) line++;
            double ax = crossings[k], bx = crossings[k + 1];
            Py_ssize_t ja = cell_index(ax, e0, hx, n_cols);
            Py_ssize_t jb = cell_index(bx, e0, hx, n_cols);
            Py_ssize_t base = line * n_cols;
            if (ja == jb) {
                length[base + ja] += bx - ax;
                moment[base + ja] += (bx * bx - ax * ax) / 2;
            } else {
                double a_end = e0 + (double)(ja + 1) * hx;
                double b_start = e0 + (double)jb * hx;
                length[base + ja] += a_end - ax;
                moment[base + ja] += (a_end * a_end - ax * ax) / 2;
                length[base + jb] += bx - b_start;
                moment[base + jb] += (bx * bx - b_start * b_start) / 2;
                for (Py_ssize_t j = ja + 1; j < jb; j++) {
                    length[base + j] += hx;
                    moment[base + j] += hx * X[j];
                }
            }
        }
        free(crossings);
        crossings = NULL;
        for (Py_ssize_t l = 0; l < n_lines; l++) {
            double scan = y_first + ((double)(l % n_rows) + G[g]) * hy;
            Py_ssize_t base = l * n_cols;
            for (Py_ssize_t j = 0; j < n_cols; j++) {
                double len = length[base + j];
                if (len == 0.0) continue;
                frac[base + j] += 0.5 * len / hx;
                mx[base + j] += 0.5 * moment[base + j];
                my[base + j] += 0.5 * len * scan;
                if (len > 0) hit[base + j] += 0.5;
            }
        }
    }
    for (Py_ssize_t c = 0; c < n_cells; c++) {
        Py_ssize_t j = c % n_cols, i = (c / n_cols) % n_rows;
        double f = frac[c];
        if (f > 0) {
            double safe = f * hx;
            mx[c] = mx[c] / safe;
            my[c] = my[c] / safe;
        } else {
            mx[c] = X[j];
            my[c] = Y[i];
        }
        double h = hit[c];
        if (h > 0) {
            double r = f / (h > 1e-12 ? h : 1e-12);
            ext[c] = r < 1.0 ? r : 1.0;
        }
        if (f > 1.0) frac[c] = 1.0;
    }
out:
    free(length);
    free(moment);
    free(crossings);
    free(line_count);
    free(line_start);
    return failed ? -1 : 0;
}

/* The edges, their planes, the lattice axes and Gauss rows of edge_cells/covered_cells. */
typedef struct {
    Buf edges, plane, xs, ys, gauss;
    Py_ssize_t m, n_planes, n_cols, n_rows, n_gauss;
    double hx, hy;
} Lattice;

static void release_lattice(Lattice *L) {
    release_all(5, &L->edges, &L->plane, &L->xs, &L->ys, &L->gauss);
}

static int take_lattice(Lattice *L, PyObject *o_edges, PyObject *o_plane, PyObject *o_xs,
                        PyObject *o_ys, PyObject *o_gauss) {
    if (take_rows(o_edges, &L->edges, 4, &L->m, "edges") < 0) return -1;
    if (take(o_plane, &L->plane, 'n', L->m, 0, "plane") < 0) return -1;
    if (take(o_xs, &L->xs, 'd', -1, 0, "xs") < 0) return -1;
    if (take(o_ys, &L->ys, 'd', -1, 0, "ys") < 0) return -1;
    if (take(o_gauss, &L->gauss, 'd', -1, 0, "gauss") < 0) return -1;
    L->n_cols = L->xs.view.len / 8;
    L->n_rows = L->ys.view.len / 8;
    if (L->n_planes < 0 || (L->n_rows > 0 && L->n_cols > 0 &&
                            L->n_planes > PY_SSIZE_T_MAX / L->n_rows / L->n_cols / 8)) {
        PyErr_SetString(PyExc_ValueError, "lattice size out of range");
        return -1;
    }
    L->n_gauss = L->gauss.view.len / 8;
    for (Py_ssize_t e = 0; e < L->m; e++) {
        if (IDX(L->plane)[e] < 0 || IDX(L->plane)[e] >= L->n_planes) {
            PyErr_SetString(PyExc_ValueError, "plane index out of range");
            return -1;
        }
    }
    if (!(L->hx > 0) || !(L->hy > 0)) {
        PyErr_SetString(PyExc_ValueError, "lattice steps must be positive");
        return -1;
    }
    return 0;
}

static PyObject *edge_cells(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_edges, *o_plane, *o_xs, *o_ys, *o_gauss;
    PyObject *o_fraction, *o_cx, *o_cy, *o_extent, *o_rows;
    Lattice L = {0};
    if (!PyArg_ParseTuple(args, "OOnOOddOOOOOO", &o_edges, &o_plane, &L.n_planes, &o_xs, &o_ys,
                          &L.hx, &L.hy, &o_gauss, &o_fraction, &o_cx, &o_cy, &o_extent, &o_rows)) {
        return NULL;
    }
    Buf fraction = {0}, cx = {0}, cy = {0}, extent = {0}, rows = {0};
    PyObject *result = NULL;
    if (take_lattice(&L, o_edges, o_plane, o_xs, o_ys, o_gauss) < 0) goto done;
    Py_ssize_t n_cells = L.n_planes * L.n_rows * L.n_cols;
    if (take(o_fraction, &fraction, 'd', n_cells, 1, "fraction") < 0) goto done;
    if (take(o_cx, &cx, 'd', n_cells, 1, "cx") < 0) goto done;
    if (take(o_cy, &cy, 'd', n_cells, 1, "cy") < 0) goto done;
    if (take(o_extent, &extent, 'd', n_cells, 1, "extent_x") < 0) goto done;
    if (take(o_rows, &rows, 'd', n_cells, 1, "rows_hit") < 0) goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = coverage(F64(L.edges), IDX(L.plane), L.m, L.n_planes, F64(L.xs), L.n_cols,
                      F64(L.ys), L.n_rows, L.hx, L.hy, F64(L.gauss), L.n_gauss, F64(fraction),
                      F64(cx), F64(cy), F64(extent), F64(rows));
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_lattice(&L);
    release_all(5, &fraction, &cx, &cy, &extent, &rows);
    return result;
}

/* covered_cells: edge_cells, keeping only the covered cells, in (plane, row, column) order
 * (the order of numpy.nonzero on the dense arrays). Returns the count written. */
static PyObject *covered_cells(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_edges, *o_plane, *o_xs, *o_ys, *o_gauss;
    PyObject *o_plane_out, *o_fraction, *o_cx, *o_cy, *o_wx, *o_wy;
    Lattice L = {0};
    if (!PyArg_ParseTuple(args, "OOnOOddOOOOOOO", &o_edges, &o_plane, &L.n_planes, &o_xs,
                          &o_ys, &L.hx, &L.hy, &o_gauss, &o_plane_out, &o_fraction, &o_cx,
                          &o_cy, &o_wx, &o_wy)) {
        return NULL;
    }
    Buf plane_out = {0}, fraction = {0}, cx = {0}, cy = {0}, wx = {0}, wy = {0};
    PyObject *result = NULL;
    double *work = NULL;
    if (take_lattice(&L, o_edges, o_plane, o_xs, o_ys, o_gauss) < 0) goto done;
    Py_ssize_t n_cells = L.n_planes * L.n_rows * L.n_cols;
    if (take(o_plane_out, &plane_out, 'n', n_cells, 1, "plane_out") < 0)
        goto done;
    if (take(o_fraction, &fraction, 'd', n_cells, 1, "fraction") < 0) goto done;
    if (take(o_cx, &cx, 'd', n_cells, 1, "cx") < 0) goto done;
    if (take(o_cy, &cy, 'd', n_cells, 1, "cy") < 0) goto done;
    if (take(o_wx, &wx, 'd', n_cells, 1, "wx") < 0) goto done;
    if (take(o_wy, &wy, 'd', n_cells, 1, "wy") < 0) goto done;
    work = malloc((size_t)(n_cells > 0 ? n_cells : 1) * 5 * sizeof(double));
    if (!work) {
        PyErr_NoMemory();
        goto done;
    }
    int status;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    double *f = work, *mx = work + n_cells, *my = work + 2 * n_cells;
    double *ext = work + 3 * n_cells, *hit = work + 4 * n_cells;
    status = coverage(F64(L.edges), IDX(L.plane), L.m, L.n_planes, F64(L.xs), L.n_cols,
                      F64(L.ys), L.n_rows, L.hx, L.hy, F64(L.gauss), L.n_gauss, f, mx, my, ext,
                      hit);
    if (status == 0) {
        Py_ssize_t per_plane = L.n_rows * L.n_cols;
        for (Py_ssize_t c = 0; c < n_cells; c++) {
            if (f[c] == 0.0) continue;
            IDX(plane_out)[count] = c / per_plane;
            F64(fraction)[count] = f[c];
            F64(cx)[count] = mx[c];
            F64(cy)[count] = my[c];
            F64(wx)[count] = L.hx * ext[c];
            F64(wy)[count] = L.hy * hit[c];
            count++;
        }
    }
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyLong_FromSsize_t(count);
done:
    free(work);
    release_lattice(&L);
    release_all(6, &plane_out, &fraction, &cx, &cy, &wx, &wy);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * spread_histogram: add samples, each spread evenly over [d - w/2, d + w/2], to a
 * differential histogram kept as point masses and slope/intercept changes
 * (core._SpreadHistogram).
 * ------------------------------------------------------------------------------------- */

static PyObject *spread_histogram(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_doses, *o_widths, *o_weights, *o_points, *o_slope, *o_intercept;
    double lower, bin_width;
    if (!PyArg_ParseTuple(args, "OOOddOOO", &o_doses, &o_widths, &o_weights, &lower,
                          &bin_width, &o_points, &o_slope, &o_intercept)) {
        return NULL;
    }
    Buf doses = {0}, widths = {0}, weights = {0}, points = {0}, slope = {0}, intercept = {0};
    PyObject *result = NULL;
    if (take(o_doses, &doses, 'd', -1, 0, "doses") < 0) goto done;
    Py_ssize_t n = doses.view.len / 8;
    if (take(o_widths, &widths, 'd', n, 0, "widths") < 0) goto done;
    if (take(o_weights, &weights, 'd', n, 0, "weights") < 0) goto done;
    if (take(o_points, &points, 'd', -1, 1, "points") < 0) goto done;
    Py_ssize_t bins = points.view.len / 8;
    if (bins < 1 || !(bin_width > 0)) {
        PyErr_SetString(PyExc_ValueError, "spread_histogram: needs bins of positive width");
        goto done;
    }
    if (take(o_slope, &slope, 'd', bins + 2, 1, "slope") < 0) goto done;
    if (take(o_intercept, &intercept, 'd', bins + 2, 1, "intercept") < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    const double *D = F64(doses), *W = F64(widths), *V = F64(weights);
    double *pts = F64(points), *sl = F64(slope), *ic = F64(intercept);
    double nb = (double)bins;
    for (Py_ssize_t i = 0; i < n; i++) {
        double a = (D[i] - W[i] / 2 - lower) / bin_width;
        double b = (D[i] + W[i] / 2 - lower) / bin_width;
        if (b - a < 1.0) {
            double u = (D[i] - lower) / bin_width;
            Py_ssize_t k = u >= nb ? bins - 1 : (u > 0 ? (Py_ssize_t)u : 0);
            if (k > bins - 1) k = bins - 1;
            pts[k] += V[i];
            continue;
        }
        a = clampd(a, 0.0, nb);
        b = clampd(b, 0.0, nb);
        if (!(b > a)) continue;
        double s = V[i] / (b - a);
        Py_ssize_t ka = (Py_ssize_t)ceil(a), kb = (Py_ssize_t)ceil(b);
        sl[ka] += s;
        sl[kb] -= s;
        ic[ka] += -s * a;
        ic[kb] += s * b;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_all(6, &doses, &widths, &weights, &points, &slope, &intercept);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * sample_cells: trilinear dose, its spread and weight at every sub-slice of lattice cells.
 * ------------------------------------------------------------------------------------- */

typedef struct {
    const double *node;
    Py_ssize_t n;
    int uniform;
    double start, step;
} Axis;

/* The dose grid's axes (two nodes at least each) and its dose, nz x ny x nx float64. */
static int take_grid(PyObject *o_dose, PyObject *o_x, PyObject *o_y, PyObject *o_z, Buf *dose,
                     Buf *bx, Buf *by, Buf *bz) {
    if (take(o_x, bx, 'd', -1, 0, "x") < 0) return -1;
    if (take(o_y, by, 'd', -1, 0, "y") < 0) return -1;
    if (take(o_z, bz, 'd', -1, 0, "z") < 0) return -1;
    Py_ssize_t nx = bx->view.len / 8, ny = by->view.len / 8, nz = bz->view.len / 8;
    if (nx < 2 || ny < 2 || nz < 2) {
        PyErr_SetString(PyExc_ValueError, "dose grid: every axis needs two nodes");
        return -1;
    }
    return take(o_dose, dose, 'd', nx * ny * nz, 0, "dose");
}

static Axis make_axis(const Buf *b, int uniform) {
    const double *node = F64(*b);
    Py_ssize_t n = b->view.len / 8;
    Axis a = {node, n, uniform, node[0], (node[n - 1] - node[0]) / (double)(n - 1)};
    return a;
}

/* Lower node index and linear weight along one axis, clamped at the ends
 * (core._axis_weights). */
static void axis_weight(const Axis *a, double c, Py_ssize_t *idx, double *frac) {
    Py_ssize_t last = a->n - 2;
    if (a->uniform) {
        double u = (c - a->start) / a->step;
        double fl = floor(u);
        Py_ssize_t i = !(fl > 0) ? 0 : (fl > (double)last ? last : (Py_ssize_t)fl);
        *idx = i;
        *frac = clampd(u - (double)i, 0.0, 1.0);
        return;
    }
    /* searchsorted(side="right") - 1: the last node <= c. */
    Py_ssize_t lo = 0, hi = a->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a->node[mid] <= c) lo = mid + 1;
        else hi = mid;
    }
    Py_ssize_t i = lo - 1;
    if (i < 0) i = 0;
    if (i > last) i = last;
    *idx = i;
    double n0 = a->node[i];
    *frac = clampd((c - n0) / (a->node[i + 1] - n0), 0.0, 1.0);
}

static PyObject *sample_cells(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_dose, *o_x, *o_y, *o_z, *o_invz, *o_lo, *o_dz, *o_reps, *o_px, *o_py, *o_wx,
        *o_wy, *o_weight, *o_out_dose, *o_out_spread, *o_out_weight, *o_touched;
    int ux, uy, uz;
    double dx, dy, xlo, xhi, ylo, yhi, zlo, zhi;
    if (!PyArg_ParseTuple(args, "OOOOOpppdd(dddddd)OOOOOOOOOOOO", &o_dose, &o_x, &o_y, &o_z,
                          &o_invz, &ux, &uy, &uz, &dx, &dy, &xlo, &xhi, &ylo, &yhi, &zlo, &zhi,
                          &o_lo, &o_dz, &o_reps, &o_px, &o_py, &o_wx, &o_wy, &o_weight,
                          &o_out_dose, &o_out_spread, &o_out_weight, &o_touched)) {
        return NULL;
    }
    Buf dose = {0}, bx = {0}, by = {0}, bz = {0}, invz = {0};
    Buf lo = {0}, dz = {0}, reps = {0}, px = {0}, py = {0}, wx = {0}, wy = {0}, weight = {0};
    Buf out_dose = {0}, out_spread = {0}, out_weight = {0}, touched = {0};
    PyObject *result = NULL;
    if (take_grid(o_dose, o_x, o_y, o_z, &dose, &bx, &by, &bz) < 0) goto done;
    Py_ssize_t nx = bx.view.len / 8, ny = by.view.len / 8, nz = bz.view.len / 8;
    if (take(o_invz, &invz, 'd', nz - 1, 0, "inverse_z_steps") < 0) goto done;
    if (take(o_lo, &lo, 'd', -1, 0, "lo") < 0) goto done;
    Py_ssize_t n = lo.view.len / 8;
    if (take(o_dz, &dz, 'd', n, 0, "dz") < 0) goto done;
    if (take(o_reps, &reps, 'n', n, 0, "reps") < 0) goto done;
    if (take(o_px, &px, 'd', n, 0, "px") < 0) goto done;
    if (take(o_py, &py, 'd', n, 0, "py") < 0) goto done;
    if (take(o_wx, &wx, 'd', n, 0, "wx") < 0) goto done;
    if (take(o_wy, &wy, 'd', n, 0, "wy") < 0) goto done;
    if (take(o_weight, &weight, 'd', n, 0, "weight") < 0) goto done;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (IDX(reps)[i] < 0 || IDX(reps)[i] > PY_SSIZE_T_MAX / 8 - total) {
            PyErr_SetString(PyExc_ValueError, "sample_cells: sub-slice count out of range");
            goto done;
        }
        total += IDX(reps)[i];
    }
    if (take(o_out_dose, &out_dose, 'd', total, 1, "out_dose") < 0) goto done;
    if (take(o_out_spread, &out_spread, 'd', total, 1, "out_spread") < 0) goto done;
    if (take(o_out_weight, &out_weight, 'd', total, 1, "out_weight") < 0) goto done;
    unsigned char *mark = NULL;
    if (o_touched != Py_None) {
        if (take(o_touched, &touched, '?', nx * ny * nz, 1, "touched") < 0) goto done;
        mark = (unsigned char *)touched.view.buf;
    }
    const double *D = F64(dose), *IZ = F64(invz);
    Axis ax = make_axis(&bx, ux), ay = make_axis(&by, uy), az = make_axis(&bz, uz);
    double inv_dx = 1.0 / dx, inv_dy = 1.0 / dy;
    Py_ssize_t count = 0;
    double outside = 0.0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t plane_step = nx * ny;
    for (Py_ssize_t c = 0; c < n; c++) {
        double x = F64(px)[c], y = F64(py)[c], w = F64(weight)[c];
        double l0 = F64(lo)[c], step = F64(dz)[c];
        double cell_wx = F64(wx)[c], cell_wy = F64(wy)[c];
        Py_ssize_t r = IDX(reps)[c];
        int xy_inside = x >= xlo && x <= xhi && y >= ylo && y <= yhi;
        if (!xy_inside) {
            outside += w * (double)r;
            continue;
        }
        Py_ssize_t ix, iy;
        double fx, fy;
        axis_weight(&ax, x, &ix, &fx);
        axis_weight(&ay, y, &iy, &fy);
        for (Py_ssize_t s = 0; s < r; s++) {
            double z = l0 + ((double)s + 0.5) * step;
            if (!(z >= zlo && z <= zhi)) {
                outside += w;
                continue;
            }
            Py_ssize_t iz;
            double fz;
            axis_weight(&az, z, &iz, &fz);
            Py_ssize_t base = (iz * ny + iy) * nx + ix;
            double v[2], gxs[2], gys[2];
            for (int k = 0; k < 2; k++) {
                const double *p = D + base + k * plane_step;
                double d00 = p[0], d01 = p[1], d10 = p[nx], d11 = p[nx + 1];
                double step_lower = d01 - d00, step_upper = d11 - d10;
                double lower_row = d00 + step_lower * fx;
                double across = d10 + step_upper * fx - lower_row;
                v[k] = lower_row + across * fy;
                gxs[k] = step_lower + (step_upper - step_lower) * fy;
                gys[k] = across;
            }
            double rise = v[1] - v[0];
            double gx = (gxs[0] + (gxs[1] - gxs[0]) * fz) * inv_dx;
            double gy = (gys[0] + (gys[1] - gys[0]) * fz) * inv_dy;
            double gz = rise * IZ[iz];
            double a = gx * cell_wx, b = gy * cell_wy, cz = gz * step;
            F64(out_dose)[count] = v[0] + rise * fz;
            F64(out_spread)[count] = sqrt(a * a + b * b + cz * cz);
            F64(out_weight)[count] = w;
            if (mark) mark[base] = 1;
            count++;
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nd", count, outside);
done:
    release_all(17, &dose, &bx, &by, &bz, &invz, &lo, &dz, &reps, &px, &py, &wx, &wy, &weight,
               &out_dose, &out_spread, &out_weight, &touched);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * nearest_distance: distance from raster nodes to the nearest of their block's candidate
 * edges (interpolation.SignedDistance._compute).
 * ------------------------------------------------------------------------------------- */

static PyObject *nearest_distance(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_segments, *o_candidates, *o_start, *o_count, *o_block, *o_px, *o_py, *o_out;
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &o_segments, &o_candidates, &o_start, &o_count,
                          &o_block, &o_px, &o_py, &o_out)) {
        return NULL;
    }
    Buf segments = {0}, candidates = {0}, start = {0}, count = {0}, block = {0};
    Buf px = {0}, py = {0}, out = {0};
    PyObject *result = NULL;
    Py_ssize_t n_seg;
    if (take_rows(o_segments, &segments, 5, &n_seg, "segments") < 0) goto done;
    if (take(o_candidates, &candidates, 'n', -1, 0, "candidates") < 0) goto done;
    Py_ssize_t n_cand = candidates.view.len / (Py_ssize_t)sizeof(Py_ssize_t);
    if (take(o_start, &start, 'n', -1, 0, "start") < 0) goto done;
    Py_ssize_t n_blocks = start.view.len / (Py_ssize_t)sizeof(Py_ssize_t);
    if (take(o_count, &count, 'n', n_blocks, 0, "count") < 0) goto done;
    if (take(o_block, &block, 'n', -1, 0, "block") < 0) goto done;
    Py_ssize_t n = block.view.len / (Py_ssize_t)sizeof(Py_ssize_t);
    if (take(o_px, &px, 'd', n, 0, "px") < 0) goto done;
    if (take(o_py, &py, 'd', n, 0, "py") < 0) goto done;
    if (take(o_out, &out, 'd', n, 1, "out") < 0) goto done;
    const Py_ssize_t *B = IDX(block), *S = IDX(start), *C = IDX(count), *K = IDX(candidates);
    for (Py_ssize_t b = 0; b < n_blocks; b++) {
        if (S[b] < 0 || C[b] < 0 || S[b] + C[b] > n_cand) {
            PyErr_SetString(PyExc_ValueError, "nearest_distance: candidate list out of range");
            goto done;
        }
    }
    for (Py_ssize_t c = 0; c < n_cand; c++) {
        if (K[c] < 0 || K[c] >= n_seg) {
            PyErr_SetString(PyExc_ValueError, "nearest_distance: edge index out of range");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (B[i] < 0 || B[i] >= n_blocks) {
            PyErr_SetString(PyExc_ValueError, "nearest_distance: block index out of range");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    const double *G = F64(segments), *X = F64(px), *Y = F64(py);
    double *D = F64(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t b = B[i];
        double best = INFINITY;
        for (Py_ssize_t k = S[b], end = S[b] + C[b]; k < end; k++) {
            const double *g = G + 5 * K[k];
            double ex = X[i] - g[0], ey = Y[i] - g[1];
            double t = clampd((ex * g[2] + ey * g[3]) * g[4], 0.0, 1.0);
            ex = ex - t * g[2];
            ey = ey - t * g[3];
            double d2 = ex * ex + ey * ey;
            if (d2 < best) best = d2;
        }
        D[i] = sqrt(best);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_all(8, &segments, &candidates, &start, &count, &block, &px, &py, &out);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * inside_raster: even-odd inside test of every raster node (interpolation.inside_raster).
 * ------------------------------------------------------------------------------------- */

static PyObject *inside_raster(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_edges, *o_xs, *o_ys, *o_out;
    if (!PyArg_ParseTuple(args, "OOOO", &o_edges, &o_xs, &o_ys, &o_out)) {
        return NULL;
    }
    Buf edges = {0}, xs = {0}, ys = {0}, out = {0};
    PyObject *result = NULL;
    Py_ssize_t *count = NULL, *begin = NULL;
    double *crossings = NULL;
    Py_ssize_t m;
    if (take_rows(o_edges, &edges, 4, &m, "edges") < 0) goto done;
    if (take(o_xs, &xs, 'd', -1, 0, "xs") < 0) goto done;
    if (take(o_ys, &ys, 'd', -1, 0, "ys") < 0) goto done;
    Py_ssize_t nx = xs.view.len / 8, ny = ys.view.len / 8;
    if (take(o_out, &out, '?', nx * ny, 1, "out") < 0) goto done;
    count = calloc((size_t)ny + 1, sizeof(Py_ssize_t));
    begin = calloc((size_t)ny + 1, sizeof(Py_ssize_t));
    if (!count || !begin) {
        PyErr_NoMemory();
        goto done;
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    const double *E = F64(edges), *X = F64(xs), *Y = F64(ys);
    unsigned char *inside = (unsigned char *)out.view.buf;
    memset(inside, 0, (size_t)(nx * ny));
    /* Edge e crosses row i when ylo <= ys[i] < yhi: rows [lower_bound(ylo), lower_bound(yhi)). */
    Py_ssize_t total = 0;
    RowRule rule = {Y, ny, 0.0, 0.0};
    for (Py_ssize_t e = 0; e < m; e++) {
        Py_ssize_t a, b;
        edge_rows(E + 4 * e, &rule, &a, &b);
        for (Py_ssize_t r = a; r < b; r++) count[r]++;
        if (b > a) total += b - a;
    }
    crossings = malloc((size_t)(total > 0 ? total : 1) * sizeof(double));
    if (!crossings) {
        failed = 1;
    } else {
        start_buckets(count, begin, ny);
        for (Py_ssize_t e = 0; e < m; e++) {
            double x0 = E[4 * e], y0 = E[4 * e + 1], x1 = E[4 * e + 2], y1 = E[4 * e + 3];
            Py_ssize_t a, b;
            edge_rows(E + 4 * e, &rule, &a, &b);
            for (Py_ssize_t r = a; r < b; r++) {
                double t = (Y[r] - y0) / (y1 - y0);
                crossings[begin[r] + count[r]++] = x0 + t * (x1 - x0);
            }
        }
        /* A node is inside when an odd number of crossings of its row lie left of it. */
        for (Py_ssize_t r = 0; r < ny; r++) {
            double *c = crossings + begin[r];
            Py_ssize_t n = count[r];
            if (n == 0) continue;
            sort_small(c, n);
            Py_ssize_t k = 0;
            unsigned char *row = inside + r * nx;
            for (Py_ssize_t j = 0; j < nx; j++) {
                while (k < n && c[k] < X[j]) k++;
                row[j] = (unsigned char)(k & 1);
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    free(count);
    free(begin);
    free(crossings);
    release_all(4, &edges, &xs, &ys, &out);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * trilinear: dose at points, NaN outside the grid's box (core.DoseGrid.interpolate).
 * ------------------------------------------------------------------------------------- */

static PyObject *trilinear(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_dose, *o_x, *o_y, *o_z, *o_points, *o_out;
    int ux, uy, uz;
    double xlo, xhi, ylo, yhi, zlo, zhi;
    if (!PyArg_ParseTuple(args, "OOOOppp(dddddd)OO", &o_dose, &o_x, &o_y, &o_z, &ux, &uy, &uz,
                          &xlo, &xhi, &ylo, &yhi, &zlo, &zhi, &o_points, &o_out)) {
        return NULL;
    }
    Buf dose = {0}, bx = {0}, by = {0}, bz = {0}, points = {0}, out = {0};
    PyObject *result = NULL;
    if (take_grid(o_dose, o_x, o_y, o_z, &dose, &bx, &by, &bz) < 0) goto done;
    Py_ssize_t nx = bx.view.len / 8, ny = by.view.len / 8;
    Py_ssize_t n;
    if (take_rows(o_points, &points, 3, &n, "points") < 0) goto done;
    if (take(o_out, &out, 'd', n, 1, "out") < 0) goto done;
    const double *D = F64(dose), *P = F64(points);
    double *O = F64(out);
    Axis ax = make_axis(&bx, ux), ay = make_axis(&by, uy), az = make_axis(&bz, uz);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = P[3 * i], y = P[3 * i + 1], z = P[3 * i + 2];
        if (!(x >= xlo && x <= xhi && y >= ylo && y <= yhi && z >= zlo && z <= zhi)) {
            O[i] = NAN;
            continue;
        }
        Py_ssize_t ix, iy, iz;
        double fx, fy, fz;
        axis_weight(&ax, x, &ix, &fx);
        axis_weight(&ay, y, &iy, &fy);
        axis_weight(&az, z, &iz, &fz);
        const double *p0 = D + (iz * ny + iy) * nx + ix, *p1 = p0 + nx * ny;
        double c00 = p0[0] * (1 - fx) + p0[1] * fx;
        double c01 = p0[nx] * (1 - fx) + p0[nx + 1] * fx;
        double c10 = p1[0] * (1 - fx) + p1[1] * fx;
        double c11 = p1[nx] * (1 - fx) + p1[nx + 1] * fx;
        O[i] = (c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_all(6, &dose, &bx, &by, &bz, &points, &out);
    return result;
}

static PyMethodDef methods[] = {
    {"edge_cells", edge_cells, METH_VARARGS,
     "edge_cells(edges, plane, n_planes, xs, ys, hx, hy, gauss, fraction, cx, cy, extent_x, "
     "rows_hit): cell coverage of closed outlines (see rtcheck.dvh.core._edge_cells)."},
    {"covered_cells", covered_cells, METH_VARARGS,
     "covered_cells(edges, plane, n_planes, xs, ys, hx, hy, gauss, plane_out, fraction, cx, "
     "cy, wx, wy) -> count: the covered cells of edge_cells, with their spread widths."},
    {"spread_histogram", spread_histogram, METH_VARARGS,
     "spread_histogram(doses, widths, weights, lower, bin_width, points, slope, intercept): "
     "add samples to a spread histogram (see rtcheck.dvh.core._SpreadHistogram)."},
    {"nearest_distance", nearest_distance, METH_VARARGS,
     "nearest_distance(segments, candidates, start, count, block, px, py, out): distance "
     "from points to the nearest candidate edge of their block."},
    {"inside_raster", inside_raster, METH_VARARGS,
     "inside_raster(edges, xs, ys, out): even-odd inside test of every raster node."},
    {"trilinear", trilinear, METH_VARARGS,
     "trilinear(dose, x, y, z, ux, uy, uz, extent, points, out): dose at points (n, 3), NaN "
     "outside the grid's box."},
    {"sample_cells", sample_cells, METH_VARARGS,
     "sample_cells(dose, x, y, z, inverse_z_steps, ux, uy, uz, dx, dy, extent, lo, dz, reps, "
     "px, py, wx, wy, weight, out_dose, out_spread, out_weight, touched) -> (count, "
     "outside_mm3): samples of lattice cells (see rtcheck.dvh.core._sample_cells)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtcheck_dvh",
    "The DVH sampler's innermost loops in C (optional; see rtcheck.dvh.kernel).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rtcheck_dvh(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "API_VERSION", API_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
