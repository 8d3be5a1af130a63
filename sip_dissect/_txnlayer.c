/* Native twin of sip_dissect/transaction.py: Transaction and TransactionLayer.
 *
 * The same matching, states, counters and timers, statement for statement, so that the
 * dialog and accounting layers (Python) cannot tell which one runs: Transaction has the
 * Python class's attributes (read-only but `call`, the one they set), is_initial_invite and
 * winning_branch(); the
 * layer has request(), response(), close(), by_key and forwarders. The Python module is
 * the reference; tests/test_native_transactions.py replays every capture through both and
 * requires the same rows, CDRs and counters.
 *
 * Messages are read by position: SipHead and Datagram are NamedTuples (tuples).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mum.h"  /* native/: the byte-hash mixer */
#include <structmember.h>

/* SipHead fields (sip_dissect/scan.py) */
enum { H_METHOD = 0, H_STATUS = 2, H_REASON = 3, H_CALL_ID = 4, H_CSEQ = 5, H_CSEQ_METHOD = 6,
       H_FROM_TAG = 8, H_TO_TAG = 10, H_VIA_TRANSPORT = 12, H_VIA_SENT_BY = 13,
       H_VIA_BRANCH = 14, H_VIA2_SENT_BY = 15, H_VIA2_BRANCH = 16, H_CONTENT_LENGTH = 17,
       H_BODY = 18, H_ANOMALIES = 19, H_FIELDS = 20 };
/* Datagram fields (probe/records.py) */
enum { D_TS = 0, D_FRAME = 1, D_SRC = 2, D_DST = 3, D_SPORT = 4, D_DPORT = 5,
       D_TRANSPORT = 6, D_PAYLOAD = 7, D_FIELDS = 8 };

#define T1 0.5
#define TIMER_F (64 * T1)
#define LINGER (64 * T1)
#define SWEEP_EVERY 0.25

static PyObject *s_invite, *s_ack, *s_cancel, *s_cookie, *s_rfc2543, *s_empty, *s_tls, *s_wss;
static PyObject *s_calling, *s_trying, *s_proceeding, *s_completed, *s_confirmed,
    *s_terminated;
static PyObject *s_provisional, *s_final, *s_retransmission, *s_extra_2xx;
static PyObject *c_missing, *c_ack_non2xx, *c_ack_2xx, *c_req_retrans, *c_evicted,
    *c_orphan, *c_late_prov, *c_resp_retrans, *c_timeout, *c_open_at_end;

/* ---------------------------------------------------------------- Transaction */

typedef struct {
    PyObject_HEAD
    PyObject *key, *method, *request, *src, *dst, *transport, *created, *frame, *state;
    PyObject *callid, *from_tag, *to_tag, *cseq, *final_status, *final_reason, *final_ts;
    PyObject *final_to_tag, *extra_2xx_tags, *upstream, *downstream, *cancel, *invite;
    PyObject *call;
    Py_ssize_t retransmissions;
} Txn;

#define N_TXN_OBJECTS 23  /* the PyObject * fields above, key to call, in order */
#define TXN_FIELDS(t) (&(t)->key)

static PyTypeObject TxnType;

static int txn_traverse(Txn *t, visitproc visit, void *arg)
{
    PyObject **f = TXN_FIELDS(t);
    for (int i = 0; i < N_TXN_OBJECTS; i++)
        Py_VISIT(f[i]);
    return 0;
}

static int txn_clear(Txn *t)
{
    PyObject **f = TXN_FIELDS(t);
    for (int i = 0; i < N_TXN_OBJECTS; i++)
        Py_CLEAR(f[i]);
    return 0;
}

static void txn_dealloc(Txn *t)
{
    PyObject_GC_UnTrack(t);
    Py_TRASHCAN_BEGIN(t, txn_dealloc)
    txn_clear(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
    Py_TRASHCAN_END
}

static PyObject *pair(PyObject *a, PyObject *b)
{
    PyObject *p = PyTuple_New(2);
    if (p == NULL)
        return NULL;
    Py_INCREF(a);
    Py_INCREF(b);
    PyTuple_SET_ITEM(p, 0, a);
    PyTuple_SET_ITEM(p, 1, b);
    return p;
}

static int is_str(PyObject *o, PyObject *s)  /* s: one of the interned ASCII names here */
{
    if (o == s)
        return 1;
    if (PyUnicode_CheckExact(o) && PyUnicode_IS_COMPACT_ASCII(o))
        return PyUnicode_GET_LENGTH(o) == PyUnicode_GET_LENGTH(s)
               && memcmp(PyUnicode_1BYTE_DATA(o), PyUnicode_1BYTE_DATA(s),
                         PyUnicode_GET_LENGTH(s)) == 0;
    return PyUnicode_Check(o) && PyUnicode_Compare(o, s) == 0;
}

/* Transaction(key, msg, d, method) of transaction.py; steals nothing */
static Txn *txn_new(PyObject *key, PyObject *msg, PyObject *d, PyObject *method)
{
    Txn *t = PyObject_GC_New(Txn, &TxnType);
    if (t == NULL)
        return NULL;
    PyObject **f = TXN_FIELDS(t);
    for (int i = 0; i < N_TXN_OBJECTS; i++)
        f[i] = NULL;
    t->retransmissions = 0;
    PyObject **h = &PyTuple_GET_ITEM(msg, 0), **g = &PyTuple_GET_ITEM(d, 0);
    t->src = pair(g[D_SRC], g[D_SPORT]);
    t->dst = pair(g[D_DST], g[D_DPORT]);
    if (t->src == NULL || t->dst == NULL) {
        Py_DECREF(t);
        return NULL;
    }
#define SET(field, value) (Py_INCREF(value), t->field = (value))
    SET(key, key);
    SET(method, method);
    SET(request, msg);
    SET(transport, g[D_TRANSPORT]);
    SET(created, g[D_TS]);
    SET(frame, g[D_FRAME]);
    SET(state, is_str(method, s_invite) ? s_calling : s_trying);
    SET(callid, h[H_CALL_ID]);
    SET(from_tag, h[H_FROM_TAG]);
    SET(to_tag, h[H_TO_TAG]);
    SET(cseq, h[H_CSEQ]);
    SET(final_status, Py_None);
    SET(final_reason, s_empty);
    SET(final_ts, Py_None);
    SET(final_to_tag, s_empty);
    PyObject *empty = PyTuple_New(0);
    t->extra_2xx_tags = empty;
    Py_XINCREF(empty);
    t->downstream = empty;
    SET(upstream, Py_None);
    SET(cancel, Py_None);
    SET(invite, Py_None);
    SET(call, Py_None);
#undef SET
    if (empty == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    PyObject_GC_Track(t);
    return t;
}

static int truthy_str(PyObject *o)
{
    return o != Py_None && PyObject_IsTrue(o) == 1;
}

/* An INVITE outside any dialog: no To tag (section 12.1) */
static int is_initial_invite(Txn *t)
{
    return is_str(t->method, s_invite) && !truthy_str(t->to_tag);
}

static PyObject *txn_is_initial_invite(Txn *t, void *closure)
{
    return PyBool_FromLong(is_initial_invite(t));
}

/* the relayed branch whose final reply this transaction passed upstream */
static PyObject *txn_winning_branch(Txn *t, PyObject *unused)
{
    if (!PyTuple_Check(t->downstream) || PyTuple_GET_SIZE(t->downstream) == 0)
        Py_RETURN_NONE;
    Py_ssize_t n = PyTuple_GET_SIZE(t->downstream);
    PyObject *last_done = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Txn *b = (Txn *)PyTuple_GET_ITEM(t->downstream, i);
        if (!Py_IS_TYPE((PyObject *)b, &TxnType)) {
            PyErr_SetString(PyExc_TypeError, "downstream holds a non-Transaction");
            return NULL;
        }
        if (b->final_status == Py_None)
            continue;
        int eq = PyObject_RichCompareBool(b->final_status, t->final_status, Py_EQ);
        if (eq < 0)
            return NULL;
        if (eq) {
            eq = PyObject_RichCompareBool(b->final_to_tag, t->final_to_tag, Py_EQ);
            if (eq < 0)
                return NULL;
            if (eq) {
                Py_INCREF(b);
                return (PyObject *)b;
            }
        }
        last_done = (PyObject *)b;
    }
    if (last_done == NULL)
        last_done = PyTuple_GET_ITEM(t->downstream, n - 1);
    Py_INCREF(last_done);
    return last_done;
}

/* Read-only but for `call`, the one field the layers above set: the C code relies on the
 * others' types (a deleted member would be NULL). T_OBJECT_EX, as a __slots__ member of the
 * Python twin: CPython specialises loads of these (about 3 times cheaper from the layers above,
 * 4 % of a replay), and a deleted `call` reads as AttributeError there too. */
#define M(name) {#name, T_OBJECT_EX, offsetof(Txn, name), READONLY, NULL}
static PyMemberDef txn_members[] = {
    M(key), M(method), M(request), M(src), M(dst), M(transport), M(created), M(frame),
    M(state), M(callid), M(from_tag), M(to_tag), M(cseq), M(final_status), M(final_reason),
    M(final_ts), M(final_to_tag), M(extra_2xx_tags), M(upstream), M(downstream), M(cancel),
    M(invite),
    {"call", T_OBJECT_EX, offsetof(Txn, call), 0, "the dialog-layer Call of an initial INVITE or BYE"},
    {"retransmissions", T_PYSSIZET, offsetof(Txn, retransmissions), READONLY, NULL},
    {NULL},
};
#undef M

static PyGetSetDef txn_getset[] = {
    {"is_initial_invite", (getter)txn_is_initial_invite, NULL,
     "An INVITE outside any dialog: no To tag (section 12.1).", NULL},
    {NULL},
};

static PyMethodDef txn_methods[] = {
    {"winning_branch", (PyCFunction)txn_winning_branch, METH_NOARGS,
     "The relayed branch whose final reply this transaction passed upstream."},
    {NULL},
};

static PyTypeObject TxnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sip_dissect._txnlayer.Transaction",
    .tp_doc = "One request and the responses to it, on one hop (transaction.py's twin).",
    .tp_basicsize = sizeof(Txn),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)txn_dealloc,
    .tp_traverse = (traverseproc)txn_traverse,
    .tp_clear = (inquiry)txn_clear,
    .tp_members = txn_members,
    .tp_getset = txn_getset,
    .tp_methods = txn_methods,
};

/* A member set from Python to something else than a Transaction would break the casts
 * below; Python code only ever stores Transactions or None there. */
static int is_txn(PyObject *o)
{
    return Py_IS_TYPE(o, &TxnType);
}

/* _unlink: cut the back links of a forgotten transaction (see transaction.py) */
static void unlink_txn(Txn *t)
{
    Py_XSETREF(t->call, Py_NewRef(Py_None));  /* X: `del txn.call` leaves NULL */
    Py_SETREF(t->upstream, Py_NewRef(Py_None));
    Py_SETREF(t->invite, Py_NewRef(Py_None));
}

/* ---------------------------------------------------------------- deadline queues */

typedef struct {
    double t;
    PyObject *key;
} Deadline;

typedef struct {
    Deadline *items;
    Py_ssize_t head, len, cap;  /* a ring buffer */
} Queue;

static int q_push(Queue *q, double t, PyObject *key)
{
    if (q->len == q->cap) {
        Py_ssize_t cap = q->cap ? q->cap * 2 : 1024;
        Deadline *items = PyMem_Malloc(cap * sizeof(Deadline));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < q->len; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        PyMem_Free(q->items);
        q->items = items;
        q->head = 0;
        q->cap = cap;
    }
    Py_INCREF(key);
    q->items[(q->head + q->len) % q->cap] = (Deadline){t, key};
    q->len++;
    return 0;
}

static Deadline *q_front(Queue *q)
{
    return q->len ? &q->items[q->head] : NULL;
}

/* pop the front; returns its key (a new reference) */
static PyObject *q_pop(Queue *q)
{
    PyObject *key = q->items[q->head].key;
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return key;
}

static void q_free(Queue *q)
{
    while (q->len)
        Py_DECREF(q_pop(q));
    PyMem_Free(q->items);
    q->items = NULL;
    q->cap = q->head = 0;
}

static int q_traverse(Queue *q, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < q->len; i++)
        Py_VISIT(q->items[(q->head + i) % q->cap].key);
    return 0;
}

/* ---------------------------------------------------------------- TransactionLayer */

/* An index over by_key (below): key items' hash, the key and its transaction (both held) */
typedef struct {
    uint64_t h;
    PyObject *key;  /* NULL: empty */
    Txn *txn;
} Slot;

typedef struct {
    PyObject_HEAD
    PyObject *c, *by_key, *forwarders;
    double invite_timeout, next_sweep;
    Py_ssize_t max_transactions;
    Queue open_invites, open_others, finished;
    Slot *ix;                 /* linear probing, at most half full */
    size_t ix_mask, ix_used;
    Py_ssize_t ix_unindexed;  /* keys of by_key the index cannot hold */
} Layer;

/* ---------------------------------------------------------------- the by_key index
 *
 * by_key.get(key) hashes a key tuple of strings made fresh from each message (siphash) and
 * compares it item by item through the generic protocol: over a thousand instructions a
 * lookup, and a tuple built to do it. The index finds the same transaction from the items
 * themselves, with a cheap hash and memcmp. It holds exactly the keys of by_key made of exact
 * str and int (every key _key makes from a SipHead), is updated with by_key by every
 * insertion and deletion here, and is rebuilt when by_key's size says someone else changed
 * it. When by_key holds any other key (a str subclass could equal a str), or the key sought
 * is one, by_key itself answers: it stays the reference. */


#define K0 0xa0761d6478bd642fULL
#define K1 0xe7037ed1a0b428dbULL

/* The hash of n key items when all are exact str or exact int fitting a long: 1; else 0.
 * Equal items give equal hashes: str data is canonical (PEP 393), so equal strings have the
 * same kind and bytes. */
static int digest(PyObject *const *items, Py_ssize_t n, uint64_t *out)
{
    uint64_t h = (uint64_t)n ^ K1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = items[i];
        if (PyUnicode_CheckExact(o) && PyUnicode_IS_READY(o)) {
            const unsigned char *p = PyUnicode_DATA(o);
            size_t len = (size_t)(PyUnicode_GET_LENGTH(o) * PyUnicode_KIND(o));
            uint64_t w0 = 0, w1 = 0;
            uint32_t a, b;
            h = mum(h ^ (uint64_t)len, K0 ^ (uint64_t)PyUnicode_KIND(o));
            /* 16 bytes at a time, the last 1-16 read as overlapping words (wyhash-like):
             * the length is in the hash already */
            for (; len > 16; p += 16, len -= 16) {
                memcpy(&w0, p, 8);
                memcpy(&w1, p + 8, 8);
                h = mum(w0 ^ K0, w1 ^ h);
            }
            if (len >= 8) {
                memcpy(&w0, p, 8);
                memcpy(&w1, p + len - 8, 8);
            } else if (len >= 4) {
                memcpy(&a, p, 4);
                memcpy(&b, p + len - 4, 4);
                w0 = a, w1 = b;
            } else if (len) {
                w0 = (uint64_t)p[0] << 16 | (uint64_t)p[len >> 1] << 8 | p[len - 1];
            }
            h = mum(w0 ^ K0 ^ h, w1 ^ K1);
        } else if (PyLong_CheckExact(o)) {
            int overflow;
            long v = PyLong_AsLongAndOverflow(o, &overflow);
            if (overflow || (v == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 0;
            }
            h = mum(h ^ (uint64_t)v, K1 ^ 0x1);  /* ^ 1: an int never hashes as a str would */
        } else {
            return 0;
        }
    }
    *out = mum(h ^ K1, h ^ K0);
    return 1;
}

/* do these items (digest said: exact str and int) equal those of the key tuple? */
static int same_items(PyObject *const *items, Py_ssize_t n, PyObject *key)
{
    if (PyTuple_GET_SIZE(key) != n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = items[i], *b = PyTuple_GET_ITEM(key, i);
        if (a == b)
            continue;
        if (Py_TYPE(a) != Py_TYPE(b))
            return 0;
        if (PyUnicode_CheckExact(a)) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(a);
            if (PyUnicode_GET_LENGTH(b) != len || PyUnicode_KIND(a) != PyUnicode_KIND(b)
                    || memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), len * PyUnicode_KIND(a)))
                return 0;
        } else if (PyLong_AsLong(a) != PyLong_AsLong(b)) {  /* both fit a long (digest) */
            return 0;
        }
    }
    return 1;
}

/* the slot of these items, or the empty slot where they would go */
static Slot *ix_slot(Layer *self, PyObject *const *items, Py_ssize_t n, uint64_t h)
{
    for (size_t i = h & self->ix_mask;; i = (i + 1) & self->ix_mask) {
        Slot *sl = &self->ix[i];
        if (sl->key == NULL || (sl->h == h && same_items(items, n, sl->key)))
            return sl;
    }
}

static void ix_clear(Layer *self)
{
    for (size_t i = 0; self->ix != NULL && i <= self->ix_mask; i++)
        if (self->ix[i].key != NULL) {
            Py_CLEAR(self->ix[i].key);
            Py_CLEAR(self->ix[i].txn);
        }
    PyMem_Free(self->ix);
    self->ix = NULL;
    self->ix_mask = self->ix_used = 0;
    self->ix_unindexed = 0;
}

static int ix_grow(Layer *self)
{
    size_t size = self->ix ? 2 * (self->ix_mask + 1) : 1024;
    Slot *ix = PyMem_Calloc(size, sizeof *ix), *old = self->ix;
    if (ix == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t old_size = old ? self->ix_mask + 1 : 0;
    self->ix = ix;
    self->ix_mask = size - 1;
    for (size_t i = 0; i < old_size; i++)
        if (old[i].key != NULL) {
            size_t j = old[i].h & self->ix_mask;
            while (ix[j].key != NULL)
                j = (j + 1) & self->ix_mask;
            ix[j] = old[i];
        }
    PyMem_Free(old);
    return 0;
}

static int is_txn(PyObject *o);

/* by_key[key] = txn has just been done: the same in the index. *hp: the key's digest when
 * known, or NULL. */
static int ix_add(Layer *self, PyObject *key, PyObject *txn, const uint64_t *hp)
{
    uint64_t h = hp ? *hp : 0;
    if (!PyTuple_CheckExact(key) || !is_txn(txn)
            || (hp == NULL && !digest(&PyTuple_GET_ITEM(key, 0), PyTuple_GET_SIZE(key), &h))) {
        self->ix_unindexed++;
        return 0;
    }
    if (2 * (self->ix_used + 1) > (self->ix ? self->ix_mask + 1 : 0) && ix_grow(self) < 0)
        return -1;
    Slot *sl = ix_slot(self, &PyTuple_GET_ITEM(key, 0), PyTuple_GET_SIZE(key), h);
    if (sl->key != NULL) {  /* replaced in by_key (not done here, but harmless) */
        Py_SETREF(sl->txn, (Txn *)Py_NewRef(txn));
        return 0;
    }
    *sl = (Slot){h, Py_NewRef(key), (Txn *)Py_NewRef(txn)};
    self->ix_used++;
    return 0;
}

/* del by_key[key] is about to be done: the same in the index (backward-shift deletion) */
static void ix_remove(Layer *self, PyObject *key)
{
    uint64_t h;
    if (!PyTuple_CheckExact(key)
            || !digest(&PyTuple_GET_ITEM(key, 0), PyTuple_GET_SIZE(key), &h)) {
        self->ix_unindexed--;
        return;
    }
    if (self->ix == NULL)
        return;
    Slot *sl = ix_slot(self, &PyTuple_GET_ITEM(key, 0), PyTuple_GET_SIZE(key), h);
    if (sl->key == NULL) {  /* a key the index could hold but does not: not a Transaction */
        self->ix_unindexed--;
        return;
    }
    PyObject *k = sl->key;
    Txn *t = sl->txn;
    size_t i = (size_t)(sl - self->ix), j = i;
    for (;;) {  /* move later entries of the run back into the hole when their home allows */
        j = (j + 1) & self->ix_mask;
        if (self->ix[j].key == NULL)
            break;
        size_t home = self->ix[j].h & self->ix_mask;
        if (((j - home) & self->ix_mask) >= ((j - i) & self->ix_mask)) {
            self->ix[i] = self->ix[j];
            i = j;
        }
    }
    self->ix[i].key = NULL;
    self->ix[i].txn = NULL;
    self->ix_used--;
    Py_DECREF(k);  /* by_key still holds both */
    Py_DECREF(t);
}

/* The index agrees with by_key unless someone else changed by_key: then read it afresh. */
static int ix_check(Layer *self)
{
    if ((Py_ssize_t)self->ix_used + self->ix_unindexed == PyDict_GET_SIZE(self->by_key))
        return 0;
    ix_clear(self);
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(self->by_key, &pos, &k, &v))
        if (ix_add(self, k, v, NULL) < 0)
            return -1;
    return 0;
}

/* by_key.get(tuple(items)) as a Transaction, borrowed; NULL when absent or on error. When
 * hp is not NULL, *hp is the items' digest if the index answered, else hp is set to NULL
 * (for ix_add). */
static Txn *lookup_items(Layer *self, PyObject *const *items, Py_ssize_t n, uint64_t **hp)
{
    uint64_t h;
    if (self->ix_unindexed == 0 && digest(items, n, &h)) {
        if (hp != NULL)
            **hp = h;
        if (self->ix == NULL)
            return NULL;
        Slot *sl = ix_slot(self, items, n, h);
        return sl->key != NULL ? sl->txn : NULL;
    }
    PyObject *key = PyTuple_New(n);
    if (key == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(key, i, Py_NewRef(items[i]));
    PyObject *t = PyDict_GetItemWithError(self->by_key, key);
    Py_DECREF(key);
    if (hp != NULL)
        *hp = NULL;
    return t != NULL && is_txn(t) ? (Txn *)t : NULL;
}

static PyObject *dict_getitem, *dict_setitem;  /* dict's own __getitem__, __setitem__ */
static PyObject *s_getitem_name, *s_setitem_name;

/* self.c[name] += n. Counters is a Counter, which defines __delitem__: that alone sends every
 * item store through a Python-level slot (a thousand instructions). When the type's
 * __getitem__ and __setitem__ are still dict's own and the counter exists, storing through
 * the dict API is the same operation; a missing name goes the general way (__missing__). */
static int count(Layer *self, PyObject *name, long n)
{
    PyObject *c = self->c, *old;
    PyTypeObject *tp = Py_TYPE(c);
    int plain = PyDict_Check(c) && _PyType_Lookup(tp, s_getitem_name) == dict_getitem
                && _PyType_Lookup(tp, s_setitem_name) == dict_setitem;
    if (plain) {
        old = PyDict_GetItemWithError(c, name);
        if (old == NULL && PyErr_Occurred())
            return -1;
        Py_XINCREF(old);
    } else {
        old = NULL;
    }
    if (old == NULL && (old = PyObject_GetItem(c, name)) == NULL)
        return -1;
    PyObject *inc = PyLong_FromLong(n);
    PyObject *new = inc ? PyNumber_Add(old, inc) : NULL;
    Py_DECREF(old);
    Py_XDECREF(inc);
    if (new == NULL)
        return -1;
    int r = plain ? PyDict_SetItem(c, name, new) : PyObject_SetItem(c, name, new);
    Py_DECREF(new);
    return r;
}

static int layer_init(Layer *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"counters", "invite_timeout", "max_transactions", NULL};
    PyObject *counters;
    double invite_timeout = 300.0;
    Py_ssize_t max_transactions = 200000;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$dn", names, &counters, &invite_timeout,
                                     &max_transactions))
        return -1;
    q_free(&self->open_invites);  /* __init__ called again: start afresh, as Python does */
    q_free(&self->open_others);
    q_free(&self->finished);
    Py_XSETREF(self->c, Py_NewRef(counters));
    ix_clear(self);
    Py_XSETREF(self->by_key, PyDict_New());
    Py_XSETREF(self->forwarders, PySet_New(NULL));
    if (self->by_key == NULL || self->forwarders == NULL)
        return -1;
    self->invite_timeout = invite_timeout;
    self->max_transactions = max_transactions;
    self->next_sweep = 0.0;
    return 0;
}

static int layer_traverse(Layer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->c);
    Py_VISIT(self->by_key);
    Py_VISIT(self->forwarders);
    q_traverse(&self->open_invites, visit, arg);
    q_traverse(&self->open_others, visit, arg);
    q_traverse(&self->finished, visit, arg);
    for (size_t i = 0; self->ix != NULL && i <= self->ix_mask; i++)
        if (self->ix[i].key != NULL) {
            Py_VISIT(self->ix[i].key);
            Py_VISIT(self->ix[i].txn);
        }
    return 0;
}

static int layer_clear(Layer *self)
{
    Py_CLEAR(self->c);
    ix_clear(self);
    Py_CLEAR(self->by_key);
    Py_CLEAR(self->forwarders);
    q_free(&self->open_invites);
    q_free(&self->open_others);
    q_free(&self->finished);
    return 0;
}

static void layer_dealloc(Layer *self)
{
    PyObject_GC_UnTrack(self);
    layer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* the items of _key(msg, method, branch, sent_by) of transaction.py (borrowed) in items[7];
 * returns how many (3 or 7), -1 on error */
static Py_ssize_t key_items(PyObject **h, PyObject *method, PyObject *branch, PyObject *sent_by,
                            PyObject **items)
{
    int cookie;
    if (PyUnicode_Check(branch) && PyUnicode_IS_COMPACT_ASCII(branch))  /* the usual case */
        cookie = PyUnicode_GET_LENGTH(branch) >= 7
                 && memcmp(PyUnicode_1BYTE_DATA(branch), "z9hG4bK", 7) == 0;
    else
        cookie = PyUnicode_Check(branch)
            ? (int)PyUnicode_Tailmatch(branch, s_cookie, 0, PY_SSIZE_T_MAX, -1) : 0;
    if (cookie < 0)
        return -1;
    if (cookie) {
        items[0] = branch, items[1] = sent_by, items[2] = method;
        return 3;
    }
    items[0] = s_rfc2543, items[1] = h[H_CALL_ID], items[2] = h[H_CSEQ];
    items[3] = h[H_FROM_TAG], items[4] = sent_by, items[5] = branch, items[6] = method;
    return 7;
}

static PyObject *tuple_of(PyObject *const *items, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t != NULL)
        for (Py_ssize_t i = 0; i < n; i++)
            PyTuple_SET_ITEM(t, i, Py_NewRef(items[i]));
    return t;
}

/* _sent_by_port(msg): the top Via's sent-by port, the transport's default when absent */
static PyObject *sent_by_port(PyObject **h)
{
    PyObject *hp = h[H_VIA_SENT_BY];
    if (PyUnicode_Check(hp)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(hp), start = n, colon;
        int kind = PyUnicode_KIND(hp);
        const void *data = PyUnicode_DATA(hp);
        if (n && PyUnicode_READ(kind, data, 0) == '[') {
            Py_ssize_t rb = PyUnicode_FindChar(hp, ']', 0, n, -1);
            start = rb + 1;  /* rfind gives -1 when absent: the whole text */
        } else {
            Py_ssize_t first = PyUnicode_FindChar(hp, ':', 0, n, 1);
            Py_ssize_t last = PyUnicode_FindChar(hp, ':', 0, n, -1);
            if (first >= 0 && first == last)
                start = 0;  /* exactly one ':' */
        }
        colon = start < n ? PyUnicode_FindChar(hp, ':', start, n, 1) : -1;
        if (colon >= 0) {
            Py_ssize_t len = n - colon - 1;
            long port = 0;
            int ok = len >= 1 && len <= 5;
            for (Py_ssize_t i = colon + 1; ok && i < n; i++) {
                Py_UCS4 ch = PyUnicode_READ(kind, data, i);
                if (ch < '0' || ch > '9')
                    ok = 0;
                else
                    port = port * 10 + (long)(ch - '0');
            }
            if (ok)
                return PyLong_FromLong(port);
        }
    }
    PyObject *tr = h[H_VIA_TRANSPORT];
    return PyLong_FromLong(tr != Py_None && (is_str(tr, s_tls) || is_str(tr, s_wss))
                           ? 5061 : 5060);
}

/* METH_FASTCALL: no argument tuple is built per message */
static int check_nargs(const char *name, Py_ssize_t nargs)
{
    if (nargs == 2)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s expected 2 arguments, got %zd", name, nargs);
    return -1;
}

static int check_message(PyObject *msg, PyObject *d)
{
    if (!PyTuple_Check(msg) || PyTuple_GET_SIZE(msg) < H_FIELDS
            || !PyTuple_Check(d) || PyTuple_GET_SIZE(d) < D_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "expected a SipHead and a Datagram");
        return -1;
    }
    return 0;
}

static int sweep(Layer *self, double now);

static int maybe_sweep(Layer *self, PyObject *ts_obj, double *ts)
{
    *ts = PyFloat_AsDouble(ts_obj);
    if (*ts == -1.0 && PyErr_Occurred())
        return -1;
    return *ts >= self->next_sweep ? sweep(self, *ts) : 0;
}

/* the transaction in by_key, borrowed, or NULL (error set or not) */
static Txn *lookup(Layer *self, PyObject *key)
{
    return lookup_items(self, &PyTuple_GET_ITEM(key, 0), PyTuple_GET_SIZE(key), NULL);
}

static PyObject *layer_request(Layer *self, PyObject *const *args, Py_ssize_t nargs)
{
    double ts;
    if (check_nargs("request", nargs) < 0 || check_message(args[0], args[1]) < 0)
        return NULL;
    PyObject *msg = args[0], *d = args[1];
    PyObject **h = &PyTuple_GET_ITEM(msg, 0), **g = &PyTuple_GET_ITEM(d, 0);
    if (maybe_sweep(self, g[D_TS], &ts) < 0)
        return NULL;
    if (h[H_VIA_BRANCH] == Py_None || h[H_CSEQ] == Py_None || !truthy_str(h[H_CALL_ID])) {
        if (count(self, c_missing, 1) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *method = h[H_METHOD];
    int ack = is_str(method, s_ack);
    PyObject *items[7];  /* the key's; a tuple is made only for a new transaction */
    Py_ssize_t n = key_items(h, ack ? s_invite : method, h[H_VIA_BRANCH], h[H_VIA_SENT_BY],
                             items);
    if (n < 0 || ix_check(self) < 0)
        return NULL;
    uint64_t kh, *hp = &kh;  /* the key's digest, kept for ix_add; NULL when none */
    Txn *txn = lookup_items(self, items, n, &hp);
    if (txn == NULL && PyErr_Occurred())
        return NULL;
    if (ack) {
        int non2xx = 0;
        if (txn != NULL && txn->final_status != Py_None) {
            long st = PyLong_AsLong(txn->final_status);
            if (st == -1 && PyErr_Occurred())
                return NULL;
            non2xx = st >= 300;
        }
        if (non2xx)
            Py_SETREF(txn->state, Py_NewRef(s_confirmed));  /* ACK of a failure (17.1.1.3) */
        if (count(self, non2xx ? c_ack_non2xx : c_ack_2xx, 1) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (txn != NULL) {
        txn->retransmissions++;
        if (count(self, c_req_retrans, 1) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *key = tuple_of(items, n);
    if (key == NULL)
        return NULL;
    txn = txn_new(key, msg, d, method);
    if (txn == NULL)
        goto fail;
    if (PyDict_GET_SIZE(self->by_key) >= self->max_transactions) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        if (PyDict_Next(self->by_key, &pos, &k, &v)) {
            Py_INCREF(v);
            Py_INCREF(k);
            ix_remove(self, k);
            int r = PyDict_DelItem(self->by_key, k);
            Py_DECREF(k);
            if (r < 0) {
                Py_DECREF(v);
                goto fail_txn;
            }
            if (is_txn(v))
                unlink_txn((Txn *)v);
            Py_DECREF(v);
            if (count(self, c_evicted, 1) < 0)
                goto fail_txn;
        }
    }
    if (PyDict_SetItem(self->by_key, key, (PyObject *)txn) < 0
            || ix_add(self, key, (PyObject *)txn, hp) < 0)
        goto fail_txn;
    int invite = is_str(method, s_invite);
    if (q_push(invite ? &self->open_invites : &self->open_others,
               ts + (invite ? self->invite_timeout : TIMER_F), key) < 0)
        goto fail_txn;
    if (is_str(method, s_cancel)) {
        items[n - 1] = s_invite;  /* key[:-1] + ("INVITE",) */
        Txn *inv = lookup_items(self, items, n, NULL);
        if (inv == NULL && PyErr_Occurred())
            goto fail_txn;
        if (inv != NULL) {
            Py_SETREF(inv->cancel, Py_NewRef((PyObject *)txn));
            Py_SETREF(txn->invite, Py_NewRef((PyObject *)inv));
        }
    }
    if (h[H_VIA2_BRANCH] != Py_None) {
        PyObject *uitems[7];
        Py_ssize_t un = key_items(h, method, h[H_VIA2_BRANCH], h[H_VIA2_SENT_BY], uitems);
        if (un < 0)
            goto fail_txn;
        Txn *up = lookup_items(self, uitems, un, NULL);
        if (up == NULL && PyErr_Occurred())
            goto fail_txn;
        if (up != NULL && up != txn && up->upstream == Py_None) {
            Py_SETREF(txn->upstream, Py_NewRef((PyObject *)up));
            PyObject *one = PyTuple_Pack(1, (PyObject *)txn);
            PyObject *more = one ? PySequence_Concat(up->downstream, one) : NULL;
            Py_XDECREF(one);
            if (more == NULL)
                goto fail_txn;
            Py_SETREF(up->downstream, more);
            /* over TCP/TLS a relay leaves from an ephemeral port: learn the port its own Via
             * names too (transaction.py says why) */
            PyObject *ep = pair(g[D_SRC], g[D_SPORT]);
            if (ep == NULL || PySet_Add(self->forwarders, ep) < 0) {
                Py_XDECREF(ep);
                goto fail_txn;
            }
            Py_DECREF(ep);
            PyObject *port = sent_by_port(h);
            ep = port ? pair(g[D_SRC], port) : NULL;
            Py_XDECREF(port);
            if (ep == NULL || PySet_Add(self->forwarders, ep) < 0) {
                Py_XDECREF(ep);
                goto fail_txn;
            }
            Py_DECREF(ep);
        }
    }
    Py_DECREF(key);
    return (PyObject *)txn;
fail_txn:
    Py_DECREF(txn);
fail:
    Py_DECREF(key);
    return NULL;
}

static PyObject *layer_response(Layer *self, PyObject *const *args, Py_ssize_t nargs)
{
    double ts;
    if (check_nargs("response", nargs) < 0 || check_message(args[0], args[1]) < 0)
        return NULL;
    PyObject *msg = args[0], *d = args[1];
    PyObject **h = &PyTuple_GET_ITEM(msg, 0), **g = &PyTuple_GET_ITEM(d, 0);
    if (maybe_sweep(self, g[D_TS], &ts) < 0)
        return NULL;
    if (h[H_VIA_BRANCH] == Py_None || h[H_CSEQ] == Py_None) {
        if (count(self, c_missing, 1) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *items[7];
    Py_ssize_t n = key_items(h, h[H_CSEQ_METHOD], h[H_VIA_BRANCH], h[H_VIA_SENT_BY], items);
    if (n < 0 || ix_check(self) < 0)
        return NULL;
    Txn *txn = lookup_items(self, items, n, NULL);
    if (txn == NULL) {
        if (PyErr_Occurred() || count(self, c_orphan, 1) < 0)
            return NULL;  /* its request came before the capture began */
        Py_RETURN_NONE;
    }
    long status = PyLong_AsLong(h[H_STATUS]);
    if (status == -1 && PyErr_Occurred())
        return NULL;
    PyObject *to_tag = h[H_TO_TAG];
    if (status < 200) {
        if (txn->final_status != Py_None) {
            if (count(self, c_late_prov, 1) < 0)
                return NULL;
            return pair((PyObject *)txn, s_retransmission);
        }
        Py_SETREF(txn->state, Py_NewRef(s_proceeding));
        return pair((PyObject *)txn, s_provisional);
    }
    int invite = is_str(txn->method, s_invite);
    if (txn->final_status == Py_None) {
        PyObject *reason = h[H_REASON];
        int has_reason = reason != Py_None ? PyObject_IsTrue(reason) : 0;
        if (has_reason < 0)
            return NULL;
        Py_SETREF(txn->final_status, Py_NewRef(h[H_STATUS]));
        Py_SETREF(txn->final_reason, Py_NewRef(has_reason ? reason : s_empty));
        Py_SETREF(txn->final_ts, Py_NewRef(g[D_TS]));
        Py_SETREF(txn->final_to_tag, Py_NewRef(to_tag));
        Py_SETREF(txn->state, Py_NewRef(invite && status < 300 ? s_terminated : s_completed));
        if (q_push(&self->finished, ts + LINGER, txn->key) < 0)
            return NULL;
        return pair((PyObject *)txn, s_final);
    }
    if (invite && status >= 200 && status < 300) {
        long fs = PyLong_AsLong(txn->final_status);
        if (fs == -1 && PyErr_Occurred())
            return NULL;
        if (fs < 300) {
            int same = PyObject_RichCompareBool(to_tag, txn->final_to_tag, Py_EQ);
            int seen = same ? same : PySequence_Contains(txn->extra_2xx_tags, to_tag);
            if (same < 0 || seen < 0)
                return NULL;
            if (!seen) {
                PyObject *one = PyTuple_Pack(1, to_tag);
                PyObject *more = one ? PySequence_Concat(txn->extra_2xx_tags, one) : NULL;
                Py_XDECREF(one);
                if (more == NULL)
                    return NULL;
                Py_SETREF(txn->extra_2xx_tags, more);
                return pair((PyObject *)txn, s_extra_2xx);
            }
        }
    }
    if (count(self, c_resp_retrans, 1) < 0)
        return NULL;
    return pair((PyObject *)txn, s_retransmission);
}

/* sweep(now) of transaction.py */
static int sweep(Layer *self, double now)
{
    Deadline *front;
    self->next_sweep = now + SWEEP_EVERY;
    if (ix_check(self) < 0)
        return -1;
    while ((front = q_front(&self->finished)) != NULL && front->t < now) {
        PyObject *key = q_pop(&self->finished);
        Txn *txn = lookup(self, key);
        int forget = 0;
        if (txn != NULL && txn->final_ts != Py_None) {
            double fts = PyFloat_AsDouble(txn->final_ts);
            if (fts == -1.0 && PyErr_Occurred()) {
                Py_DECREF(key);
                return -1;
            }
            forget = now - fts > LINGER;
        }
        if (forget) {
            Py_INCREF(txn);
            ix_remove(self, key);
            int r = PyDict_DelItem(self->by_key, key);
            unlink_txn(txn);
            Py_DECREF(txn);
            if (r < 0) {
                Py_DECREF(key);
                return -1;
            }
        } else if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        Py_DECREF(key);
    }
    Queue *queues[2] = {&self->open_invites, &self->open_others};
    for (int i = 0; i < 2; i++) {
        while ((front = q_front(queues[i])) != NULL && front->t < now) {
            PyObject *key = q_pop(queues[i]);
            Txn *txn = lookup(self, key);
            if (txn == NULL && PyErr_Occurred()) {
                Py_DECREF(key);
                return -1;
            }
            if (txn != NULL && txn->final_ts == Py_None) {
                Py_INCREF(txn);
                ix_remove(self, key);
                int r = PyDict_DelItem(self->by_key, key);
                if (r == 0)
                    r = count(self, c_timeout, 1);
                unlink_txn(txn);
                Py_DECREF(txn);
                if (r < 0) {
                    Py_DECREF(key);
                    return -1;
                }
            }
            Py_DECREF(key);
        }
    }
    return 0;
}

static PyObject *layer_sweep(Layer *self, PyObject *now)
{
    double t = PyFloat_AsDouble(now);
    if ((t == -1.0 && PyErr_Occurred()) || sweep(self, t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *layer_close(Layer *self, PyObject *unused)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    long open = 0;
    while (PyDict_Next(self->by_key, &pos, &k, &v))
        if (is_txn(v) && ((Txn *)v)->final_ts == Py_None)
            open++;
    if (count(self, c_open_at_end, open) < 0)
        return NULL;
    pos = 0;
    while (PyDict_Next(self->by_key, &pos, &k, &v))
        if (is_txn(v))
            unlink_txn((Txn *)v);
    ix_clear(self);
    PyDict_Clear(self->by_key);
    Py_RETURN_NONE;
}

static PyMemberDef layer_members[] = {
    {"c", T_OBJECT, offsetof(Layer, c), READONLY, NULL},
    {"by_key", T_OBJECT, offsetof(Layer, by_key), READONLY, NULL},
    {"forwarders", T_OBJECT, offsetof(Layer, forwarders), READONLY,
     "(ip, port) seen relaying a request"},
    {"invite_timeout", T_DOUBLE, offsetof(Layer, invite_timeout), 0, NULL},
    {"max_transactions", T_PYSSIZET, offsetof(Layer, max_transactions), 0, NULL},
    {"next_sweep", T_DOUBLE, offsetof(Layer, next_sweep), 0, "packet time of the next sweep"},
    {NULL},
};

static PyMethodDef layer_methods[] = {
    {"request", (PyCFunction)(void (*)(void))layer_request, METH_FASTCALL,
     "request(msg, d) -> the new Transaction a request opens; None for a retransmission "
     "or an ACK."},
    {"response", (PyCFunction)(void (*)(void))layer_response, METH_FASTCALL,
     "response(msg, d) -> (transaction, 'provisional' | 'final' | 'retransmission' | "
     "'extra_2xx') or None."},
    {"sweep", (PyCFunction)layer_sweep, METH_O,
     "sweep(now): forget finished transactions, time out unanswered ones."},
    {"close", (PyCFunction)layer_close, METH_NOARGS,
     "End of input: count the transactions still waiting for a final reply."},
    {NULL},
};

static PyTypeObject LayerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sip_dissect._txnlayer.TransactionLayer",
    .tp_doc = "TransactionLayer(counters, *, invite_timeout=300.0, max_transactions=200000): "
              "transaction.py's twin.",
    .tp_basicsize = sizeof(Layer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)layer_init,
    .tp_dealloc = (destructor)layer_dealloc,
    .tp_traverse = (traverseproc)layer_traverse,
    .tp_clear = (inquiry)layer_clear,
    .tp_members = layer_members,
    .tp_methods = layer_methods,
};

/* ---------------------------------------------------------------- SignallingAdd */

/* Signalling.add (signalling.py), statement for statement: per SIP message, the work of that
 * method without its bytecode. It runs only over this module's TransactionLayer (the Python
 * one gets the Python add), and calls the dialog layer, the accountant and the sink as the
 * Python method does, so that policy stays in Python, once. */
typedef struct {
    PyObject_HEAD
    Layer *layer;
    PyObject *dialogs, *accountant, *proxies, *sink, *scan_first, *scan_py;
    int early_media;  /* the fields above: N_SA_OBJECTS object pointers from layer on */
    Py_ssize_t messages;
    vectorcallfunc vectorcall;
} SigAdd;

static PyObject *s_next_sweep, *s_sweep, *s_initial_invite, *s_find, *s_bye, *s_provisional_m,
    *s_final_m, *s_on_final, *s_on_early_media, *s_holds, *s_last_activity, *s_confirmed_tag,
    *s_strip, *s_strip_chars, *s_udp, *s_bye_method, *s_zero, *c_keepalive, *c_bad_length,
    *c_length_mismatch, *c_forked_2xx, *kw_sent_by_proxy;

#define N_SA_OBJECTS 7
#define SA_FIELDS(a) ((PyObject **)&(a)->layer)

static int sa_traverse(SigAdd *self, visitproc visit, void *arg)
{
    for (int i = 0; i < N_SA_OBJECTS; i++)
        Py_VISIT(SA_FIELDS(self)[i]);
    return 0;
}

static int sa_clear(SigAdd *self)
{
    for (int i = 0; i < N_SA_OBJECTS; i++)
        Py_CLEAR(SA_FIELDS(self)[i]);
    return 0;
}

static void sa_dealloc(SigAdd *self)
{
    PyObject_GC_UnTrack(self);
    sa_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* obj.name(*args): a new reference, or NULL */
static PyObject *call_method(PyObject *obj, PyObject *name, PyObject *const *args, size_t n)
{
    PyObject *argv[6] = {obj};
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, argv, (n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* self.proxies.holds(endpoint): 1, 0 or -1 */
static int holds(SigAdd *self, PyObject *endpoint)
{
    PyObject *r = call_method(self->proxies, s_holds, &endpoint, 1);
    if (r == NULL)
        return -1;
    int yes = PyObject_IsTrue(r);
    Py_DECREF(r);
    return yes;
}

/* for rec in records: self.sink(rec); steals `records` */
static int sink_all(SigAdd *self, PyObject *records)
{
    if (records == NULL)
        return -1;
    PyObject *it = PyObject_GetIter(records), *rec;
    Py_DECREF(records);
    if (it == NULL)
        return -1;
    while ((rec = PyIter_Next(it)) != NULL) {
        PyObject *r = PyObject_Vectorcall(self->sink, &rec, 1, NULL);
        Py_DECREF(rec);
        if (r == NULL) {
            Py_DECREF(it);
            return -1;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* the Call of an in-dialog request, whichever side sent it (dialogs.find), new reference */
static PyObject *find_call(SigAdd *self, Txn *t)
{
    PyObject *args[3] = {t->callid, t->from_tag, t->to_tag};
    return call_method(self->dialogs, s_find, args, 3);
}

static int sa_request(SigAdd *self, PyObject *msg, PyObject *d, PyObject *ts)
{
    PyObject *found = layer_request(self->layer, (PyObject *[]){msg, d}, 2);
    if (found == NULL || found == Py_None) {
        Py_XDECREF(found);
        return found == NULL ? -1 : 0;
    }
    Txn *t = (Txn *)found;
    PyObject *r = NULL, *call = NULL;
    int rc = -1;
    if (is_initial_invite(t)) {
        if (t->upstream == Py_None) {
            int proxy = holds(self, t->src);
            if (proxy < 0)
                goto done;
            if (!proxy) {
                if ((call = call_method(self->dialogs, s_initial_invite, &found, 1)) == NULL)
                    goto done;
                Py_XSETREF(t->call, Py_NewRef(call));
            }
        }
    } else if (t->upstream == Py_None) {
        int bye = PyObject_RichCompareBool(t->method, s_bye_method, Py_EQ);
        if (bye < 0)
            goto done;
        if (bye) {
            if ((call = find_call(self, t)) == NULL)
                goto done;
            if (call != Py_None) {
                Py_XSETREF(t->call, Py_NewRef(call));
                int proxy = holds(self, t->src);
                if (proxy < 0)
                    goto done;
                PyObject *argv[4] = {self->dialogs, call, found, proxy ? Py_True : Py_False};
                r = PyObject_VectorcallMethod(s_bye, argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                              kw_sent_by_proxy);
                if (r == NULL)
                    goto done;
            }
        } else {
            int tagged = PyObject_IsTrue(t->to_tag);
            if (tagged < 0)
                goto done;
            if (tagged) {
                if ((call = find_call(self, t)) == NULL)
                    goto done;
                if (call != Py_None && PyObject_SetAttr(call, s_last_activity, ts) < 0)
                    goto done;
            }
        }
    }
    rc = 0;
done:
    Py_XDECREF(r);
    Py_XDECREF(call);
    Py_DECREF(found);
    return rc;
}

static int sa_response(SigAdd *self, PyObject *msg, PyObject *d, PyObject *ts)
{
    PyObject *found = layer_response(self->layer, (PyObject *[]){msg, d}, 2);
    if (found == NULL || found == Py_None) {
        Py_XDECREF(found);
        return found == NULL ? -1 : 0;
    }
    PyObject **h = &PyTuple_GET_ITEM(msg, 0);
    PyObject *txn = PyTuple_GET_ITEM(found, 0), *kind = PyTuple_GET_ITEM(found, 1);
    Txn *t = (Txn *)txn;
    PyObject *call = Py_NewRef(t->call), *r = NULL;
    int rc = -1;
    if (is_str(kind, s_provisional)) {
        if (call != Py_None && is_str(t->method, s_invite)) {
            PyObject *args[5] = {call, txn, h[H_STATUS], h[H_TO_TAG], ts};
            if ((r = call_method(self->dialogs, s_provisional_m, args, 5)) == NULL)
                goto done;
            if (self->early_media) {
                int reason = PyObject_IsTrue(h[H_REASON]);  /* msg.reason or "" */
                if (reason < 0)
                    goto done;
                PyObject *eargs[5] = {txn, h[H_STATUS], reason ? h[H_REASON] : s_empty, ts,
                                      h[H_TO_TAG]};
                if (sink_all(self, call_method(self->accountant, s_on_early_media, eargs, 5)) < 0)
                    goto done;
            }
        }
    } else if (is_str(kind, s_final)) {
        PyObject *tag = call != Py_None ? PyObject_GetAttr(call, s_confirmed_tag)
                                        : Py_NewRef(s_empty);
        if (tag == NULL)
            goto done;
        PyObject *args[2] = {txn, tag};
        int sunk = sink_all(self, call_method(self->accountant, s_on_final, args, 2));
        Py_DECREF(tag);
        if (sunk < 0)
            goto done;
        if (call != Py_None && is_str(t->method, s_invite)) {
            PyObject *fargs[2] = {call, txn};
            if ((r = call_method(self->dialogs, s_final_m, fargs, 2)) == NULL)
                goto done;
        }
    } else if (is_str(kind, s_extra_2xx)) {
        if (count(self->layer, c_forked_2xx, 1) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(r);
    Py_DECREF(call);
    Py_DECREF(found);
    return rc;
}

/* the malformed message's counter: its reason, or sip.keepalive when only whitespace */
static int count_malformed(SigAdd *self, PyObject *payload, PyObject *reason)
{
    PyObject *rest = PyObject_CallMethodOneArg(payload, s_strip, s_strip_chars);
    if (rest == NULL)
        return -1;
    int some = PyObject_IsTrue(rest);
    Py_DECREF(rest);
    return some < 0 ? -1 : count(self->layer, some ? reason : c_keepalive, 1);
}

/* Over UDP a wrong Content-Length is only counted (signalling.py says why) */
static int check_length(SigAdd *self, PyObject **h, PyObject *transport)
{
    PyObject *length = h[H_CONTENT_LENGTH];
    if (length == Py_None)
        return 0;
    int udp = PyObject_RichCompareBool(transport, s_udp, Py_EQ);
    if (udp <= 0)
        return udp;
    int negative = PyObject_RichCompareBool(length, s_zero, Py_LT);
    if (negative)
        return negative < 0 ? -1 : count(self->layer, c_bad_length, 1);
    Py_ssize_t n = PyObject_Size(h[H_BODY]);
    PyObject *body_len = n < 0 ? NULL : PyLong_FromSsize_t(n);
    if (body_len == NULL)
        return -1;
    int differ = PyObject_RichCompareBool(length, body_len, Py_NE);
    Py_DECREF(body_len);
    return differ > 0 ? count(self->layer, c_length_mismatch, 1) : differ;
}

static PyObject *sa_vectorcall(SigAdd *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "add() takes one Datagram");
        return NULL;
    }
    PyObject *d = args[0];
    if (!PyTuple_Check(d) || PyTuple_GET_SIZE(d) < D_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "add() takes one Datagram");
        return NULL;
    }
    PyObject *payload = PyTuple_GET_ITEM(d, D_PAYLOAD), *ts = PyTuple_GET_ITEM(d, D_TS);
    PyObject *msg = PyObject_Vectorcall(self->scan_first, &payload, 1, NULL);
    int handed = msg == NULL ? -1 : PyObject_IsTrue(msg);  /* scan_native(p) or scan_py(p) */
    if (handed == 0) {
        Py_SETREF(msg, PyObject_Vectorcall(self->scan_py, &payload, 1, NULL));
        handed = msg == NULL ? -1 : 1;
    }
    if (handed < 0) {
        Py_XDECREF(msg);
        return NULL;
    }
    int rc = -1;
    if (Py_IS_TYPE(msg, &PyUnicode_Type)) {  /* malformed: the reason is a counter name */
        rc = count_malformed(self, payload, msg);
        goto done;
    }
    if (!PyTuple_Check(msg) || PyTuple_GET_SIZE(msg) < H_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "the scanner did not return a SipHead");
        goto done;
    }
    self->messages++;
    PyObject **h = &PyTuple_GET_ITEM(msg, 0);
    PyObject *next = PyObject_GetAttr(self->dialogs, s_next_sweep), *r;
    int due = next == NULL ? -1 : PyObject_RichCompareBool(ts, next, Py_GE);
    Py_XDECREF(next);
    if (due < 0 || (due && (r = call_method(self->dialogs, s_sweep, &ts, 1)) == NULL))
        goto done;
    if (due)
        Py_DECREF(r);
    int anomalies = PyObject_IsTrue(h[H_ANOMALIES]);
    if (anomalies < 0)
        goto done;
    if (anomalies) {
        PyObject *it = PyObject_GetIter(h[H_ANOMALIES]), *a;
        if (it == NULL)
            goto done;
        while ((a = PyIter_Next(it)) != NULL) {
            int c = count(self->layer, a, 1);
            Py_DECREF(a);
            if (c < 0)
                break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto done;
    }
    if (check_length(self, h, PyTuple_GET_ITEM(d, D_TRANSPORT)) < 0)
        goto done;
    rc = h[H_METHOD] != Py_None ? sa_request(self, msg, d, ts) : sa_response(self, msg, d, ts);
done:
    Py_DECREF(msg);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *sa_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *names[] = {"layer", "dialogs", "accountant", "proxies", "sink", "scan_first",
                            "scan_py", "early_media", NULL};
    PyObject *layer, *dialogs, *accountant, *proxies, *sink, *scan_first, *scan_py;
    int early_media;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OOOOOOp:SignallingAdd", names, &LayerType,
                                     &layer, &dialogs, &accountant, &proxies, &sink,
                                     &scan_first, &scan_py, &early_media))
        return NULL;
    SigAdd *self = (SigAdd *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->layer = (Layer *)Py_NewRef(layer);
    self->dialogs = Py_NewRef(dialogs);
    self->accountant = Py_NewRef(accountant);
    self->proxies = Py_NewRef(proxies);
    self->sink = Py_NewRef(sink);
    self->scan_first = Py_NewRef(scan_first);
    self->scan_py = Py_NewRef(scan_py);
    self->early_media = early_media;
    self->vectorcall = (vectorcallfunc)sa_vectorcall;
    return (PyObject *)self;
}

static PyMemberDef sa_members[] = {
    {"messages", T_PYSSIZET, offsetof(SigAdd, messages), READONLY, "SIP messages added"},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(SigAdd, vectorcall), READONLY},
    {NULL},
};

static PyTypeObject SigAddType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sip_dissect._txnlayer.SignallingAdd",
    .tp_doc = "SignallingAdd(layer, dialogs, accountant, proxies, sink, scan_first, scan_py, "
              "early_media): Signalling.add's twin, called with one Datagram.",
    .tp_basicsize = sizeof(SigAdd),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = sa_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(SigAdd, vectorcall),
    .tp_dealloc = (destructor)sa_dealloc,
    .tp_traverse = (traverseproc)sa_traverse,
    .tp_clear = (inquiry)sa_clear,
    .tp_members = sa_members,
};

/* ---------------------------------------------------------------- module */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_txnlayer",
    "Native twin of sip_dissect.transaction: Transaction and TransactionLayer.", -1, NULL,
};

static int intern_all(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_invite, "INVITE"}, {&s_ack, "ACK"}, {&s_cancel, "CANCEL"},
        {&s_cookie, "z9hG4bK"}, {&s_rfc2543, "rfc2543"}, {&s_empty, ""}, {&s_tls, "TLS"},
        {&s_wss, "WSS"}, {&s_calling, "CALLING"}, {&s_trying, "TRYING"},
        {&s_proceeding, "PROCEEDING"}, {&s_completed, "COMPLETED"},
        {&s_confirmed, "CONFIRMED"}, {&s_terminated, "TERMINATED"},
        {&s_provisional, "provisional"}, {&s_final, "final"},
        {&s_retransmission, "retransmission"}, {&s_extra_2xx, "extra_2xx"},
        {&c_missing, "sip.missing_mandatory_header"}, {&c_ack_non2xx, "sip.ack_non2xx"},
        {&c_ack_2xx, "sip.ack_2xx"}, {&c_req_retrans, "sip.request_retransmission"},
        {&c_evicted, "state.transaction_evicted"}, {&c_orphan, "state.orphan_response"},
        {&c_late_prov, "state.late_provisional"},
        {&c_resp_retrans, "sip.response_retransmission"},
        {&c_timeout, "state.transaction_timeout"},
        {&c_open_at_end, "state.transaction_open_at_end"},
        {&s_getitem_name, "__getitem__"}, {&s_setitem_name, "__setitem__"},
        {&s_next_sweep, "next_sweep"}, {&s_sweep, "sweep"},
        {&s_initial_invite, "initial_invite"}, {&s_find, "find"}, {&s_bye, "bye"},
        {&s_provisional_m, "provisional"}, {&s_final_m, "final"}, {&s_on_final, "on_final"},
        {&s_on_early_media, "on_early_media"}, {&s_holds, "holds"},
        {&s_last_activity, "last_activity"}, {&s_confirmed_tag, "confirmed_tag"},
        {&s_strip, "strip"}, {&s_udp, "udp"}, {&s_bye_method, "BYE"},
        {&c_keepalive, "sip.keepalive"}, {&c_bad_length, "sip.bad_content_length"},
        {&c_length_mismatch, "sip.content_length_mismatch"},
        {&c_forked_2xx, "sip.forked_2xx"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (*names[i].slot == NULL
                && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    if (s_strip_chars == NULL
            && (s_strip_chars = PyBytes_FromStringAndSize(" \t\r\n\0", 5)) == NULL)
        return -1;
    if (s_zero == NULL && (s_zero = PyLong_FromLong(0)) == NULL)
        return -1;
    if (kw_sent_by_proxy == NULL
            && (kw_sent_by_proxy = Py_BuildValue("(s)", "sent_by_proxy")) == NULL)
        return -1;
    dict_getitem = _PyType_Lookup(&PyDict_Type, s_getitem_name);  /* borrowed: dict is immortal */
    dict_setitem = _PyType_Lookup(&PyDict_Type, s_setitem_name);
    if (dict_getitem == NULL || dict_setitem == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dict has no __getitem__ or __setitem__");
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__txnlayer(void)
{
    if (intern_all() < 0 || PyType_Ready(&TxnType) < 0 || PyType_Ready(&LayerType) < 0
            || PyType_Ready(&SigAddType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Transaction", (PyObject *)&TxnType) < 0
            || PyModule_AddObjectRef(m, "TransactionLayer", (PyObject *)&LayerType) < 0
            || PyModule_AddObjectRef(m, "SignallingAdd", (PyObject *)&SigAddType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
