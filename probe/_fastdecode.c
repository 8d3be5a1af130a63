/* Native twin of the fast path of probe.decode.Decoder.decode_batch (see there).
 *
 * decode_batch(decoder, linktype, data, meta, first) -> list of Datagram
 *
 * Ethernet / IPv4 without options / unfragmented UDP, not a tunnel port, is decoded here;
 * every other frame goes, in order, through decoder._guarded(Frame(...)). SPAN
 * de-duplication works on the decoder's SpanDedup object itself (its _seen, _older and
 * _rotate_at), so both paths share one window; addresses go through decoder._names.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define LT_EN10MB 1
#define VXLAN_PORT 4789
#define GTPU_PORT 2152
#define NAMES_MAX 65536

static PyObject *Datagram, *Frame, *StructError;
static PyObject *s_udp, *s_duplicates, *s_names, *s_dedup, *s_c, *s_guarded, *s_window,
    *s_seen, *s_older, *s_rotate_at;

/* Local view of a SpanDedup: written through to the object on rotation, re-read after every
 * call into Python (the slow path uses the same object). */
typedef struct {
    PyObject *obj, *seen, *older;
    double window, rotate_at;
} Dedup;

static int
get_double(PyObject *obj, PyObject *name, double *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
get_dict(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v != NULL && !PyDict_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "%U is not a dict", name);
        Py_CLEAR(v);
    }
    return v;
}

static int
dedup_load(Dedup *d)
{
    Py_CLEAR(d->seen);
    Py_CLEAR(d->older);
    if (get_double(d->obj, s_window, &d->window) < 0
        || get_double(d->obj, s_rotate_at, &d->rotate_at) < 0)
        return -1;
    d->seen = get_dict(d->obj, s_seen);
    d->older = get_dict(d->obj, s_older);
    return (d->seen && d->older) ? 0 : -1;
}

/* SpanDedup.is_duplicate: 1 duplicate, 0 not, -1 error. */
static int
is_duplicate(Dedup *d, PyObject *key, PyObject *ts_obj, double ts)
{
    if (d->window <= 0)
        return 0;
    if (ts >= d->rotate_at) {
        PyObject *fresh = PyDict_New(), *at = PyFloat_FromDouble(ts + d->window);
        if (fresh == NULL || at == NULL
            || PyObject_SetAttr(d->obj, s_older, d->seen) < 0
            || PyObject_SetAttr(d->obj, s_seen, fresh) < 0
            || PyObject_SetAttr(d->obj, s_rotate_at, at) < 0) {
            Py_XDECREF(fresh);
            Py_XDECREF(at);
            return -1;
        }
        Py_DECREF(at);
        Py_SETREF(d->older, d->seen);
        d->seen = fresh;
        d->rotate_at = ts + d->window;
    }
    /* setdefault: one lookup in the usual case of a new key (Python: get, then store) */
    PyObject *last = PyDict_SetDefault(d->seen, key, ts_obj);
    if (last == NULL)
        return -1;
    int in_seen = last != ts_obj;
    if (!in_seen && (last = PyDict_GetItemWithError(d->older, key)) == NULL)
        return PyErr_Occurred() ? -1 : 0;
    double lastv = PyFloat_AsDouble(last);  /* before the store below may free it */
    if (lastv == -1.0 && PyErr_Occurred())
        return -1;
    if (in_seen && PyDict_SetItem(d->seen, key, ts_obj) < 0)
        return -1;
    return 0 <= ts - lastv && ts - lastv <= d->window;
}

/* In front of the names dict: a bytes key, its hash and a lookup saved per address. Direct
 * mapped, kept across batches (a batch sees hundreds of hosts), emptied when another
 * decoder's dict comes in so that strings stay those of the decoder's own dict. */
#define RECENT 16384
static struct {
    uint32_t raw;
    PyObject *text;
} recent[RECENT];
static PyObject *recent_owner;  /* held, so that no other dict can take its address */

static void
recent_clear(void)
{
    for (int i = 0; i < RECENT; i++)
        Py_CLEAR(recent[i].text);
}

static void
recent_claim(PyObject *names)
{
    if (names != recent_owner) {
        recent_clear();
        Py_XSETREF(recent_owner, Py_NewRef(names));
    }
}

/* Decoder._addr4: text of an IPv4 address through the shared cache; new reference. */
static PyObject *
addr4(PyObject *names, const unsigned char *raw)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, 4);
    if (key == NULL)
        return NULL;
    PyObject *text = PyDict_GetItemWithError(names, key);
    if (text != NULL) {
        Py_INCREF(text);
    } else if (!PyErr_Occurred()) {
        char buf[INET_ADDRSTRLEN];
        if (PyDict_GET_SIZE(names) > NAMES_MAX) {
            PyDict_Clear(names);
            recent_clear();
        }
        inet_ntop(AF_INET, raw, buf, sizeof buf);
        text = PyUnicode_FromString(buf);
        if (text != NULL && PyDict_SetItem(names, key, text) < 0)
            Py_CLEAR(text);
    }
    Py_DECREF(key);
    return text;
}

static PyObject *
recent_addr4(PyObject *names, const unsigned char *raw)
{
    uint32_t v;
    memcpy(&v, raw, 4);
    int i = (v * 2654435761u) >> 18;  /* 14 bits */
    if (recent[i].text == NULL || recent[i].raw != v) {
        PyObject *text = addr4(names, raw);
        if (text == NULL)
            return NULL;
        Py_XSETREF(recent[i].text, text);
        recent[i].raw = v;
    }
    return Py_NewRef(recent[i].text);
}

/* An instance of a tuple (sub)class from n new references (stolen, NULL-safe). */
static PyObject *
record(PyObject *type, Py_ssize_t n, PyObject **items, int untrack)
{
    PyObject *rec = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    rec = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
    if (rec == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(rec, i, items[i]);
    if (untrack)  /* only str, int, float, bytes, (): no cycles, the collector can skip it */
        PyObject_GC_UnTrack(rec);
    return rec;
fail:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

static int
flush_duplicates(PyObject *counters, Py_ssize_t *n)
{
    if (*n == 0)
        return 0;
    PyObject *old = PyObject_GetItem(counters, s_duplicates);  /* Counter: 0 when missing */
    if (old == NULL)
        return -1;
    PyObject *add = PyLong_FromSsize_t(*n);
    PyObject *sum = add ? PyNumber_Add(old, add) : NULL;
    Py_DECREF(old);
    Py_XDECREF(add);
    int rc = sum ? PyObject_SetItem(counters, s_duplicates, sum) : -1;
    Py_XDECREF(sum);
    *n = 0;
    return rc;
}

static inline unsigned
be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static PyObject *
decode_batch(PyObject *self, PyObject *args)
{
    PyObject *decoder, *lt_obj, *first_obj;
    Py_buffer data, meta;
    if (!PyArg_ParseTuple(args, "OOy*y*O", &decoder, &lt_obj, &data, &meta, &first_obj))
        return NULL;

    PyObject *out = NULL, *names = NULL, *counters = NULL, *guarded = NULL;
    Dedup d = {NULL, NULL, NULL, 0.0, 0.0};
    Py_ssize_t dups = 0;
    int ok = 0;

    if (meta.len % 16) {
        PyErr_SetString(StructError,
                        "iterative unpacking requires a buffer of a multiple of 16 bytes");
        goto done;
    }
    long long number = PyLong_AsLongLong(first_obj);
    if (number == -1 && PyErr_Occurred())
        goto done;
    long lt = PyLong_AsLong(lt_obj);
    if (lt == -1 && PyErr_Occurred())
        goto done;
    names = get_dict(decoder, s_names);
    counters = PyObject_GetAttr(decoder, s_c);
    guarded = PyObject_GetAttr(decoder, s_guarded);
    d.obj = PyObject_GetAttr(decoder, s_dedup);
    if (names == NULL || counters == NULL || guarded == NULL || d.obj == NULL
        || dedup_load(&d) < 0 || (out = PyList_New(0)) == NULL)
        goto done;
    recent_claim(names);

    const unsigned char *buf = data.buf, *m = meta.buf;
    const uint64_t size = (uint64_t)data.len;
    for (Py_ssize_t i = 0; i < meta.len / 16; i++, number++) {
        uint32_t rec[4];  /* sec, usec, offset, caplen; native byte order */
        memcpy(rec, m + 16 * i, 16);
        const uint64_t off = rec[2], caplen = rec[3];
        /* volatile: no fused multiply-add, the same double as Python's sec + usec * 1e-6 */
        volatile double frac = (double)rec[1] * 1e-6;
        const double ts = (double)rec[0] + frac;
        PyObject *ts_obj = PyFloat_FromDouble(ts);
        PyObject *num_obj = PyLong_FromLongLong(number);
        if (ts_obj == NULL || num_obj == NULL) {
            Py_XDECREF(ts_obj);
            Py_XDECREF(num_obj);
            goto done;
        }
        if (lt == LT_EN10MB && caplen >= 42 && off + caplen <= size) {
            const unsigned char *p = buf + off;
            unsigned total = be16(p + 16), fragword = be16(p + 20), sport = be16(p + 34),
                     dport = be16(p + 36), ulen = be16(p + 38);
            if (be16(p + 12) == 0x0800 && p[14] == 0x45 && p[23] == 17 && !(fragword & 0x3FFF)
                && 28 <= total && total <= caplen - 14 && 8 <= ulen && ulen <= total - 20
                && sport != VXLAN_PORT && sport != GTPU_PORT
                && dport != VXLAN_PORT && dport != GTPU_PORT) {
                PyObject *src = recent_addr4(names, p + 26);
                PyObject *dst = src ? recent_addr4(names, p + 30) : NULL;
                PyObject *sp = PyLong_FromLong(sport), *dp = PyLong_FromLong(dport);
                PyObject *payload = PyBytes_FromStringAndSize((const char *)p + 42, ulen - 8);
                PyObject *key = record((PyObject *)&PyTuple_Type, 6, (PyObject *[]){
                    Py_XNewRef(src), Py_XNewRef(dst), PyLong_FromLong(be16(p + 18)),
                    Py_XNewRef(sp), Py_XNewRef(dp), Py_XNewRef(payload)}, 1);
                int dup = key ? is_duplicate(&d, key, ts_obj, ts) : -1;
                Py_XDECREF(key);
                if (dup == 0) {
                    PyObject *dg = record(Datagram, 10, (PyObject *[]){
                        ts_obj, num_obj, src, dst, sp, dp, Py_NewRef(s_udp), payload,
                        PyTuple_New(0), PyTuple_New(0)}, 1);
                    if (dg == NULL || PyList_Append(out, dg) < 0)
                        dup = -1;
                    Py_XDECREF(dg);
                    if (dup < 0)
                        goto done;
                    continue;
                }
                Py_DECREF(ts_obj);
                Py_DECREF(num_obj);
                Py_XDECREF(src);
                Py_XDECREF(dst);
                Py_XDECREF(sp);
                Py_XDECREF(dp);
                Py_XDECREF(payload);
                if (dup < 0)
                    goto done;
                dups++;
                continue;
            }
        }
        /* slow path: Python slicing semantics, clamped to the buffer */
        uint64_t start = off < size ? off : size, end = off + caplen < size ? off + caplen : size;
        PyObject *frame = record(Frame, 5, (PyObject *[]){
            ts_obj, num_obj, Py_NewRef(lt_obj),
            PyBytes_FromStringAndSize((const char *)buf + start, (Py_ssize_t)(end - start)),
            PyLong_FromUnsignedLong((unsigned long)caplen)}, 0);
        if (frame == NULL || flush_duplicates(counters, &dups) < 0) {
            Py_XDECREF(frame);
            goto done;
        }
        PyObject *res = PyObject_CallOneArg(guarded, frame);
        Py_DECREF(frame);
        if (res == NULL)
            goto done;
        int rc = PyList_SetSlice(out, PyList_GET_SIZE(out), PyList_GET_SIZE(out), res);
        Py_DECREF(res);
        if (rc < 0 || dedup_load(&d) < 0)
            goto done;
    }
    ok = 1;
done:
    if (ok) {
        if (flush_duplicates(counters, &dups) < 0)
            Py_CLEAR(out);
    } else {
        /* as in Python, duplicates seen before the error stay counted */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (counters != NULL && flush_duplicates(counters, &dups) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
        Py_CLEAR(out);
    }
    Py_XDECREF(names);
    Py_XDECREF(counters);
    Py_XDECREF(guarded);
    Py_XDECREF(d.obj);
    Py_XDECREF(d.seen);
    Py_XDECREF(d.older);
    PyBuffer_Release(&data);
    PyBuffer_Release(&meta);
    return out;
}

static PyMethodDef methods[] = {
    {"decode_batch", decode_batch, METH_VARARGS,
     "decode_batch(decoder, linktype, data, meta, first) -> list of Datagram"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "probe._fastdecode",
                                    "Native fast path of probe.decode.", -1, methods};

PyMODINIT_FUNC
PyInit__fastdecode(void)
{
    PyObject *records = PyImport_ImportModule("probe.records");
    PyObject *structmod = PyImport_ImportModule("struct");
    if (records == NULL || structmod == NULL)
        goto fail;
    Datagram = PyObject_GetAttrString(records, "Datagram");
    Frame = PyObject_GetAttrString(records, "Frame");
    StructError = PyObject_GetAttrString(structmod, "error");
    if (Datagram == NULL || Frame == NULL || StructError == NULL)
        goto fail;
    if (!PyType_Check(Datagram) || !PyType_IsSubtype((PyTypeObject *)Datagram, &PyTuple_Type)
        || !PyType_Check(Frame) || !PyType_IsSubtype((PyTypeObject *)Frame, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "probe.records: Datagram and Frame must be tuples");
        goto fail;
    }
    struct { PyObject **slot; const char *text; } strings[] = {
        {&s_udp, "udp"}, {&s_duplicates, "dedup.duplicates"}, {&s_names, "_names"},
        {&s_dedup, "dedup"}, {&s_c, "c"}, {&s_guarded, "_guarded"}, {&s_window, "window"},
        {&s_seen, "_seen"}, {&s_older, "_older"}, {&s_rotate_at, "_rotate_at"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if ((*strings[i].slot = PyUnicode_InternFromString(strings[i].text)) == NULL)
            goto fail;
    Py_DECREF(records);
    Py_DECREF(structmod);
    return PyModule_Create(&module);
fail:
    Py_XDECREF(records);
    Py_XDECREF(structmod);
    return NULL;
}
