/* Native twin of the fast path of probe.decode.Decoder.decode_batch (see there).
 *
 * decode_batch(decoder, linktype, data, meta, first) -> list of Datagram
 *
 * Ethernet / IPv4 without options / unfragmented UDP, not a tunnel port, is decoded here;
 * every other frame goes, in order, through decoder._guarded(Frame(...)). SPAN
 * de-duplication shares the decoder's SpanDedup object (its _seen, _older and _rotate_at)
 * with the Python path, so both see one window: the fast path works on a C mirror of it and
 * writes it back before any frame goes to Python and when it returns (see "mirror" below).
 * Addresses go through decoder._names.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "counters.h"  /* native/: counters[key] += n */
#include "mum.h"  /* native/: the byte-hash mixer */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define LT_EN10MB 1
#define VXLAN_PORT 4789
#define GTPU_PORT 2152
#define NAMES_MAX 65536

static PyObject *Datagram, *Frame, *StructError, *empty_tuple;
enum { D_SIZE = 10 };  /* Datagram's fields */
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

/* SpanDedup.is_duplicate on the dicts themselves: 1 duplicate, 0 not, -1 error. The
 * fallback for dicts holding keys the mirror below cannot read (none that decode.py makes). */
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

/* ---- The de-duplication mirror --------------------------------------------------------------
 *
 * A key (src, dst, ipid, sport, dport, payload) in SpanDedup's dicts costs a hash of the whole
 * payload (siphash, about 4 instructions a byte), and nearly every key is dropped with its
 * generation without ever being looked up again. So the fast path keeps both generations in C
 * tables keyed by a cheap hash of the raw fields, and writes its keys into the dicts only when
 * Python can look at them: before a frame goes to the Python path, and when decode_batch
 * returns. Keys of generations dropped in between are never hashed at all. The tables hold
 * the dicts' own fast-path-shaped keys too (read in on the way in; only the new ones, as
 * SpanDedup adds keys and replaces whole dicts but never deletes one), so a copy that came
 * through Python is found as well. After Python ran, a clean entry's time is re-read from its
 * dict before use (Python may have stored a later one). */

typedef struct {
    uint64_t h;
    uint32_t src, dst;      /* raw, as in the packet */
    uint32_t ports;         /* sport << 16 | dport */
    uint16_t ipid;
    uint8_t dirty;          /* ts not in the dict yet */
    uint8_t gone;           /* no longer in the dict (only if someone deleted it) */
    unsigned epoch;         /* clean entries: ts read from the dict in this epoch */
    double ts;
    PyObject *payload;      /* bytes */
    PyObject *key;          /* the key in the dict; NULL until written */
    PyObject *s, *t;        /* address strs to build the key with (until it exists) */
} MEntry;

/* One generation. Entries in arrival order, found through an open-addressing index; nothing
 * is deleted but the whole generation, and its arrays are reused for the next one. */
typedef struct {
    PyObject *dict;         /* this generation's dict; NULL until written (a new generation) */
    Py_ssize_t known;       /* len(dict) the table accounts for */
    MEntry *ent;
    size_t n, cap;
    uint32_t *index;        /* entry number + 1, 0 empty; at most half full */
    size_t mask;
    size_t *dirty;          /* entry numbers of dirty entries (room for cap) */
    size_t ndirty;
} Gen;

static struct {
    PyObject *owner;        /* the SpanDedup mirrored, held; NULL: nothing mirrored */
    Gen seen, older;
    double rotate_at;
    int attrs_stale;        /* _seen, _older, _rotate_at to be written to the owner */
    unsigned epoch;         /* bumped whenever Python may have run */
} M;

/* forget the entries and the dict, keep the arrays */
static void
gen_empty(Gen *g)
{
    for (size_t i = 0; i < g->n; i++) {
        MEntry *e = &g->ent[i];
        Py_XDECREF(e->payload);
        Py_XDECREF(e->key);
        Py_XDECREF(e->s);
        Py_XDECREF(e->t);
    }
    if (g->n && g->index != NULL)
        memset(g->index, 0, (g->mask + 1) * sizeof *g->index);
    g->n = g->ndirty = 0;
    g->known = 0;
    Py_CLEAR(g->dict);
}

static void
gen_free(Gen *g)
{
    gen_empty(g);
    PyMem_Free(g->ent);
    PyMem_Free(g->index);
    PyMem_Free(g->dirty);
    memset(g, 0, sizeof *g);
}

static void
mirror_drop(void)
{
    gen_free(&M.seen);
    gen_free(&M.older);
    Py_CLEAR(M.owner);
    M.attrs_stale = 0;
}


/* Not a strong hash, a fast one: the length, the first and the last 64 bytes (copies differ
 * from other packets near the start: Via branch, Call-ID, RTP sequence number); equal keys
 * are told apart from colliding ones by memcmp. */
#define HASHED_EDGE 64
static uint64_t
key_hash(uint32_t src, uint32_t dst, uint32_t ports, unsigned ipid, const unsigned char *p,
         Py_ssize_t n)
{
    const uint64_t K0 = 0xa0761d6478bd642fULL, K1 = 0xe7037ed1a0b428dbULL;
    uint64_t h = mum(((uint64_t)src << 32 | dst) ^ K0, ((uint64_t)ports << 16 | ipid) ^ K1)
                 ^ (uint64_t)n;
    uint64_t w0, w1;
    if (n > 2 * HASHED_EDGE) {  /* the tail here, the head below */
        for (const unsigned char *q = p + n - HASHED_EDGE; q < p + n; q += 16) {
            memcpy(&w0, q, 8);
            memcpy(&w1, q + 8, 8);
            h = mum(w0 ^ K1, w1 ^ h);
        }
        n = HASHED_EDGE;
    }
    for (; n >= 16; p += 16, n -= 16) {
        memcpy(&w0, p, 8);
        memcpy(&w1, p + 8, 8);
        h = mum(w0 ^ K0, w1 ^ h);
    }
    unsigned char tail[16] = {0};
    memcpy(tail, p, n);
    memcpy(&w0, tail, 8);
    memcpy(&w1, tail + 8, 8);
    h = mum(w0 ^ K0 ^ h, w1 ^ K1);
    return mum(h ^ K1, h ^ K0);
}

/* the index slot of that key: its entry number + 1, or 0 where it would go */
static uint32_t *
gen_find(Gen *g, uint64_t h, uint32_t src, uint32_t dst, uint32_t ports, unsigned ipid,
         const char *p, Py_ssize_t n)
{
    if (g->index == NULL)
        return NULL;
    for (size_t i = h & g->mask;; i = (i + 1) & g->mask) {
        uint32_t *slot = &g->index[i];
        if (*slot == 0)
            return slot;
        const MEntry *e = &g->ent[*slot - 1];
        if (e->h == h && e->src == src && e->dst == dst && e->ports == ports && e->ipid == ipid
            && PyBytes_GET_SIZE(e->payload) == n
            && memcmp(PyBytes_AS_STRING(e->payload), p, n) == 0)
            return slot;
    }
}

/* room for one more entry (call before gen_find: the index may be rebuilt) */
static int
gen_reserve(Gen *g)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        if (cap > UINT32_MAX) {
            PyErr_NoMemory();
            return -1;
        }
        MEntry *ent = PyMem_Realloc(g->ent, cap * sizeof *ent);
        if (ent == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        g->ent = ent;
        size_t *dirty = PyMem_Realloc(g->dirty, cap * sizeof *dirty);
        if (dirty == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        g->dirty = dirty;
        g->cap = cap;
    }
    if (g->index != NULL && 2 * (g->n + 1) <= g->mask + 1)
        return 0;
    size_t size = g->index ? 2 * (g->mask + 1) : 32;
    uint32_t *index = PyMem_Calloc(size, sizeof *index);
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(g->index);
    g->index = index;
    g->mask = size - 1;
    for (size_t i = 0; i < g->n; i++) {
        size_t j = g->ent[i].h & g->mask;
        while (index[j])
            j = (j + 1) & g->mask;
        index[j] = (uint32_t)(i + 1);
    }
    return 0;
}

/* put a new entry where gen_find said; it is entry g->n - 1 */
static MEntry *
gen_add(Gen *g, uint32_t *slot, MEntry e)
{
    g->ent[g->n] = e;
    *slot = (uint32_t)++g->n;
    return &g->ent[g->n - 1];
}

static void
set_dirty(Gen *g, MEntry *e)
{
    if (!e->dirty) {
        g->dirty[g->ndirty++] = (size_t)(e - g->ent);
        e->dirty = 1;
    }
}

/* a dotted quad exactly as inet_ntop writes it, to its raw 4 bytes; 0 when it is not one */
static int
parse_addr4(PyObject *s, uint32_t *raw)
{
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    const char *p = (const char *)PyUnicode_1BYTE_DATA(s), *e = p + PyUnicode_GET_LENGTH(s);
    unsigned char b[4];
    for (int i = 0; i < 4; i++) {
        if (i && (p >= e || *p++ != '.'))
            return 0;
        if (p >= e || *p < '0' || *p > '9' || (*p == '0' && p + 1 < e && p[1] >= '0' && p[1] <= '9'))
            return 0;  /* no digit, or a leading zero */
        unsigned v = 0;
        for (int k = 0; p < e && *p >= '0' && *p <= '9'; k++, p++)
            if (k == 3 || (v = v * 10 + (unsigned)(*p - '0')) > 255)
                return 0;
        b[i] = (unsigned char)v;
    }
    if (p != e)
        return 0;
    memcpy(raw, b, 4);
    return 1;
}

/* an exact int in 0..65535, or -1 */
static long
u16_of(PyObject *o)
{
    if (!PyLong_CheckExact(o))
        return -1;
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        PyErr_Clear();
    return v >= 0 && v <= 0xFFFF ? v : -1;
}

/* Read the dict's entries from position g->known on into the table. Returns 0, -1 error, 1 when
 * a key could equal a fast-path key without being one the table can hold (then the plain
 * dict algorithm runs instead). A key that can never equal one (another shape, IPv6, TCP,
 * fragment bytes) is left to the dict alone. */
static int
gen_import(Gen *g)
{
    Py_ssize_t pos = g->known;
    PyObject *k, *v;
    while (PyDict_Next(g->dict, &pos, &k, &v)) {
        if (PyBytes_CheckExact(k) || (PyTuple_CheckExact(k) && PyTuple_GET_SIZE(k) != 6))
            continue;
        if (!PyTuple_CheckExact(k))
            return 1;
        PyObject **f = &PyTuple_GET_ITEM(k, 0);
        if (!PyUnicode_CheckExact(f[0]) || !PyUnicode_CheckExact(f[1]))
            return 1;
        uint32_t src, dst;
        if (!parse_addr4(f[0], &src) || !parse_addr4(f[1], &dst) || f[2] == Py_None)
            continue;  /* IPv6 or another text: never equal to a fast-path key */
        if (!PyLong_CheckExact(f[2]) || !PyLong_CheckExact(f[3]) || !PyLong_CheckExact(f[4])
            || !PyBytes_CheckExact(f[5]) || !PyFloat_CheckExact(v))
            return 1;
        long ipid = u16_of(f[2]), sport = u16_of(f[3]), dport = u16_of(f[4]);
        if (ipid < 0 || sport < 0 || dport < 0)
            continue;
        uint32_t ports = (uint32_t)sport << 16 | (uint32_t)dport;
        const char *p = PyBytes_AS_STRING(f[5]);
        Py_ssize_t n = PyBytes_GET_SIZE(f[5]);
        uint64_t h = key_hash(src, dst, ports, (unsigned)ipid, (const unsigned char *)p, n);
        if (gen_reserve(g) < 0)
            return -1;
        uint32_t *slot = gen_find(g, h, src, dst, ports, (unsigned)ipid, p, n);
        if (*slot) {  /* cannot be: dict keys are distinct */
            PyErr_SetString(PyExc_RuntimeError, "SpanDedup dict holds one key twice");
            return -1;
        }
        gen_add(g, slot, (MEntry){h, src, dst, ports, (uint16_t)ipid, 0, 0, M.epoch,
                                  PyFloat_AS_DOUBLE(v), Py_NewRef(f[5]), Py_NewRef(k), NULL,
                                  NULL});
    }
    g->known = PyDict_GET_SIZE(g->dict);
    return 0;
}

/* a generation for `dict`, read in whole */
static int
gen_load(Gen *g, PyObject *dict)
{
    gen_empty(g);
    g->dict = Py_NewRef(dict);
    return gen_import(g);
}

/* Bring the mirror up to date with the SpanDedup `obj` (its dicts and rotation time may have
 * been changed by Python since). 0 mirrored, 1 not possible (use the dicts), -1 error. */
static int
mirror_sync(Dedup *d)
{
    M.epoch++;
    int rc = 0;
    if (M.owner == d->obj && M.seen.dict == d->seen && M.older.dict == d->older
        && M.rotate_at == d->rotate_at && !M.attrs_stale
        && PyDict_GET_SIZE(d->seen) >= M.seen.known && PyDict_GET_SIZE(d->older) >= M.older.known) {
        if (PyDict_GET_SIZE(d->seen) > M.seen.known)
            rc = gen_import(&M.seen);
        if (rc == 0 && PyDict_GET_SIZE(d->older) > M.older.known)
            rc = gen_import(&M.older);
    } else {
        mirror_drop();
        M.owner = Py_NewRef(d->obj);
        M.rotate_at = d->rotate_at;
        rc = gen_load(&M.seen, d->seen);
        if (rc == 0)
            rc = gen_load(&M.older, d->older);
    }
    if (rc != 0)
        mirror_drop();
    return rc;
}

/* Write the keys and times the dicts lack, and a rotation, to the SpanDedup. */
static int
gen_flush(Gen *g)
{
    if (g->dict == NULL && (g->dict = PyDict_New()) == NULL)
        return -1;
    for (size_t i = 0; i < g->ndirty; i++) {
        MEntry *e = &g->ent[g->dirty[i]];
        if (e->key == NULL) {
            PyObject *ipid = PyLong_FromLong(e->ipid), *sp = PyLong_FromLong(e->ports >> 16),
                     *dp = PyLong_FromLong(e->ports & 0xFFFF);
            if (ipid != NULL && sp != NULL && dp != NULL)
                e->key = PyTuple_Pack(6, e->s, e->t, ipid, sp, dp, e->payload);
            Py_XDECREF(ipid);
            Py_XDECREF(sp);
            Py_XDECREF(dp);
            if (e->key == NULL)
                return -1;
            Py_CLEAR(e->s);
            Py_CLEAR(e->t);
        }
        PyObject *ts = PyFloat_FromDouble(e->ts);
        int rc = ts ? PyDict_SetItem(g->dict, e->key, ts) : -1;
        Py_XDECREF(ts);
        if (rc < 0)
            return -1;
        e->dirty = e->gone = 0;
        e->epoch = M.epoch;
    }
    g->ndirty = 0;
    g->known = PyDict_GET_SIZE(g->dict);
    return 0;
}

static int
mirror_flush(void)
{
    if (M.owner == NULL)
        return 0;
    if (gen_flush(&M.seen) < 0 || gen_flush(&M.older) < 0)
        goto fail;
    if (M.attrs_stale) {
        PyObject *at = PyFloat_FromDouble(M.rotate_at);
        int rc = at == NULL || PyObject_SetAttr(M.owner, s_older, M.older.dict) < 0
                 || PyObject_SetAttr(M.owner, s_seen, M.seen.dict) < 0
                 || PyObject_SetAttr(M.owner, s_rotate_at, at) < 0;
        Py_XDECREF(at);
        if (rc)
            goto fail;
        M.attrs_stale = 0;
    }
    return 0;
fail:
    mirror_drop();  /* the dicts are what they are; they will be read in afresh */
    return -1;
}

/* the time an entry found in the table stands for; 0 when its key is not in the generation */
static int
entry_time(Gen *g, MEntry *e, double *ts)
{
    if (!e->dirty && e->epoch != M.epoch) {  /* Python ran since: its dict has the truth */
        PyObject *v = e->gone ? NULL : PyDict_GetItemWithError(g->dict, e->key);
        if (v == NULL) {
            if (PyErr_Occurred())
                return -1;
            e->gone = 1;
            return 0;
        }
        double t = PyFloat_AsDouble(v);
        if (t == -1.0 && PyErr_Occurred())
            return -1;
        e->ts = t;
        e->gone = 0;
        e->epoch = M.epoch;
    }
    if (e->gone)
        return 0;
    *ts = e->ts;
    return 1;
}

/* SpanDedup.is_duplicate((s, t, ipid, sport, dport, payload), ts) on the mirror. s and t are
 * the address strs of raw src and dst (borrowed: referenced when the key is kept). */
static int
mirror_is_duplicate(double window, uint32_t src, uint32_t dst, PyObject *s, PyObject *t,
                    unsigned ipid, unsigned sport, unsigned dport, PyObject *payload, double ts)
{
    if (window <= 0)
        return 0;
    if (ts >= M.rotate_at) {  /* older, seen = seen, {}: the arrays of the dropped go on */
        Gen spare = M.older;
        gen_empty(&spare);
        M.older = M.seen;
        M.seen = spare;
        M.rotate_at = ts + window;
        M.attrs_stale = 1;
    }
    uint32_t ports = (uint32_t)sport << 16 | dport;
    const char *p = PyBytes_AS_STRING(payload);
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    uint64_t h = key_hash(src, dst, ports, ipid, (const unsigned char *)p, n);
    double last = 0;
    int found = 0;
    if (gen_reserve(&M.seen) < 0)
        return -1;
    uint32_t *slot = gen_find(&M.seen, h, src, dst, ports, ipid, p, n);
    MEntry *e = *slot ? &M.seen.ent[*slot - 1] : NULL;
    if (e != NULL && (found = entry_time(&M.seen, e, &last)) < 0)
        return -1;
    if (!found) {
        uint32_t *o = gen_find(&M.older, h, src, dst, ports, ipid, p, n);
        if (o != NULL && *o && (found = entry_time(&M.older, &M.older.ent[*o - 1], &last)) < 0)
            return -1;
    }
    if (e == NULL) {  /* seen[key] = ts, a new key */
        e = gen_add(&M.seen, slot, (MEntry){h, src, dst, ports, (uint16_t)ipid, 0, 0, 0, ts,
                                            Py_NewRef(payload), NULL, Py_NewRef(s),
                                            Py_NewRef(t)});
    } else {
        e->ts = ts;
        e->gone = 0;
    }
    set_dirty(&M.seen, e);
    return found && 0 <= ts - last && ts - last <= window;
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

/* inet_ntop(AF_INET) without its printf: the same dotted quad, a tenth of the cost */
static Py_ssize_t
format_addr4(const unsigned char *raw, char *buf)
{
    char *p = buf;
    for (int i = 0; i < 4; i++) {
        unsigned v = raw[i];
        if (i)
            *p++ = '.';
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
    }
    return p - buf;
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
        text = PyUnicode_FromStringAndSize(buf, format_addr4(raw, buf));
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

/* int(port): the few ports a capture uses, kept (ints are immutable: sharing one is invisible) */
#define PORTS 1024
static struct {
    unsigned port;
    PyObject *obj;
} ports[PORTS];

static PyObject *
port_int(unsigned port)
{
    unsigned i = port % PORTS;
    if (ports[i].obj == NULL || ports[i].port != port) {
        PyObject *obj = PyLong_FromLong((long)port);
        if (obj == NULL)
            return NULL;
        Py_XSETREF(ports[i].obj, obj);
        ports[i].port = port;
    }
    return Py_NewRef(ports[i].obj);
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

/* counters[key] += *n, and *n = 0 (counts kept in C and written once per batch) */
/* A Datagram from 10 new references (stolen, NULL-safe), untracked by the collector (only str,
 * int, float, bytes and () in it). Allocated as PyTuple_New does: record()'s tp_alloc zeroes
 * the memory and tracks the object, which is then untracked (about 60 instructions a datagram).
 * Only for a Datagram class laid out as a plain tuple (checked at import: datagram_plain). */
static int datagram_plain;

static PyObject *
new_datagram(PyObject **items)
{
    if (!datagram_plain)
        return record(Datagram, D_SIZE, items, 1);
    PyObject *rec = NULL;
    for (int i = 0; i < D_SIZE; i++)
        if (items[i] == NULL)
            goto fail;
    rec = (PyObject *)PyObject_GC_NewVar(PyTupleObject, (PyTypeObject *)Datagram, D_SIZE);
    if (rec == NULL)
        goto fail;
    memcpy(((PyTupleObject *)rec)->ob_item, items, D_SIZE * sizeof *items);
    return rec;
fail:
    for (int i = 0; i < D_SIZE; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

static int
add_count(PyObject *counters, PyObject *key, Py_ssize_t *n)
{
    if (*n == 0)
        return 0;
    int rc = counters_add(counters, key, *n);
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
    int ok = 0, mirrored = 0;  /* mirrored: de-duplicating on the mirror, not the dicts */

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
    /* on the mirror, unless the window is off (then nothing is stored) or the dicts hold keys
     * it cannot read */
    if ((mirrored = d.window > 0 ? mirror_sync(&d) : 1) < 0)
        goto done;
    mirrored = mirrored == 0;

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
                PyObject *sp = port_int(sport), *dp = port_int(dport);
                PyObject *payload = PyBytes_FromStringAndSize((const char *)p + 42, ulen - 8);
                int dup;
                if (src == NULL || dst == NULL || sp == NULL || dp == NULL || payload == NULL) {
                    dup = -1;
                } else if (mirrored) {
                    uint32_t rs, rd;
                    memcpy(&rs, p + 26, 4);
                    memcpy(&rd, p + 30, 4);
                    dup = mirror_is_duplicate(d.window, rs, rd, src, dst, be16(p + 18), sport,
                                              dport, payload, ts);
                } else {
                    PyObject *key = record((PyObject *)&PyTuple_Type, 6, (PyObject *[]){
                        Py_NewRef(src), Py_NewRef(dst), PyLong_FromLong(be16(p + 18)),
                        Py_NewRef(sp), Py_NewRef(dp), Py_NewRef(payload)}, 1);
                    dup = key ? is_duplicate(&d, key, ts_obj, ts) : -1;
                    Py_XDECREF(key);
                }
                if (dup == 0) {
                    PyObject *dg = new_datagram((PyObject *[]){
                        ts_obj, num_obj, src, dst, sp, dp, Py_NewRef(s_udp), payload,
                        Py_NewRef(empty_tuple), Py_NewRef(empty_tuple)});
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
        /* Python is going to look at the de-duplication state: write the mirror out */
        if (frame == NULL || add_count(counters, s_duplicates, &dups) < 0
            || (mirrored && mirror_flush() < 0)) {
            Py_XDECREF(frame);
            goto done;
        }
        mirrored = 0;
        PyObject *res = PyObject_CallOneArg(guarded, frame);
        Py_DECREF(frame);
        if (res == NULL)
            goto done;
        int rc = PyList_SetSlice(out, PyList_GET_SIZE(out), PyList_GET_SIZE(out), res);
        Py_DECREF(res);
        if (rc < 0 || dedup_load(&d) < 0)
            goto done;
        if ((mirrored = d.window > 0 ? mirror_sync(&d) : 1) < 0)
            goto done;
        mirrored = mirrored == 0;
    }
    ok = 1;
done:
    if (ok) {
        if (add_count(counters, s_duplicates, &dups) < 0 || (mirrored && mirror_flush() < 0))
            Py_CLEAR(out);
    } else {
        /* as in Python, duplicates seen before the error stay counted, and stored */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (counters != NULL && add_count(counters, s_duplicates, &dups) < 0)
            PyErr_Clear();
        if (mirrored && mirror_flush() < 0)
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
    PyTypeObject *dt = (PyTypeObject *)Datagram;
    datagram_plain = dt->tp_basicsize == PyTuple_Type.tp_basicsize
                     && dt->tp_itemsize == PyTuple_Type.tp_itemsize
                     && dt->tp_dictoffset == 0 && dt->tp_weaklistoffset == 0;
    if ((empty_tuple = PyTuple_New(0)) == NULL)
        goto fail;
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
