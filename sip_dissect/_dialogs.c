/* Native twin of sip_dissect/dialog.py: Call and DialogLayer (RFC 3261 section 12).
 *
 * The same states, totals, counters and on_end calls, statement for statement, so that the
 * signalling, accounting and CDR code cannot tell which one runs. Call has the Python class's
 * attributes, read-only but for `last_activity` (the signalling layer refreshes it) and `uris`
 * (invite_uris' cache); DialogLayer has initial_invite(), find(), provisional(), final(),
 * bye(), sweep(), close(), calls, next_sweep and totals (a new dict per read). Transactions
 * are read through their attributes, so either transaction layer can feed it. dialog.py is
 * the reference; the signalling runs this one with the C transaction layer and the C add, and
 * tests/test_native_transactions.py and test_native_dialogs.py compare the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "counters.h"  /* native/: counters[key] += n */

static PyObject *s_init, *s_early, *s_confirmed, *s_terminated, *s_empty, *s_expired, *s_open,
    *s_cancelled, *s_rejected, *s_completed, *s_proxy, *s_caller, *s_callee;
static PyObject *a_callid, *a_from_tag, *a_created, *a_final_status, *a_final_ts,
    *a_final_to_tag, *a_final_reason, *a_cancel, *a_request, *a_from_value, *a_to_value, *a_uri;
static PyObject *c_evicted, *c_expired;
static PyObject *i_180, *i_183, *i_300, *i_401, *i_407, *i_one, *i_zero;
static PyObject *request_uris;  /* uri.request_uris, given by init() */

/* ---------------------------------------------------------------- Call */

typedef struct {
    PyObject_HEAD
    PyObject *callid, *caller_tag, *created, *state, *callee_tags, *confirmed_tag, *ring_time,
        *answer_time, *end_time, *final_code, *final_reason, *ended_by, *end_reason,
        *last_activity, *invite, *challenges, *uris;
} Call;
#define N_CALL_FIELDS 17
#define CALL_FIELDS(c) (&(c)->callid)

static PyTypeObject CallType;

static int call_traverse(Call *self, visitproc visit, void *arg)
{
    for (int i = 0; i < N_CALL_FIELDS; i++)
        Py_VISIT(CALL_FIELDS(self)[i]);
    return 0;
}

static int call_clear(Call *self)
{
    for (int i = 0; i < N_CALL_FIELDS; i++)
        Py_CLEAR(CALL_FIELDS(self)[i]);
    return 0;
}

static void call_dealloc(Call *self)
{
    PyObject_GC_UnTrack(self);
    call_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Call(invite): a new call from its initial INVITE transaction */
static PyObject *new_call(PyObject *invite)
{
    PyObject *callid = PyObject_GetAttr(invite, a_callid);
    PyObject *tag = callid ? PyObject_GetAttr(invite, a_from_tag) : NULL;
    PyObject *created = tag ? PyObject_GetAttr(invite, a_created) : NULL;
    PyObject *tags = created ? PyList_New(0) : NULL;
    Call *c = tags ? PyObject_GC_New(Call, &CallType) : NULL;
    if (c == NULL) {
        Py_XDECREF(callid);
        Py_XDECREF(tag);
        Py_XDECREF(created);
        Py_XDECREF(tags);
        return NULL;
    }
    c->callid = callid;
    c->caller_tag = tag;
    c->created = created;
    c->state = Py_NewRef(s_init);
    c->callee_tags = tags;  /* early dialogs (forks) */
    c->confirmed_tag = Py_NewRef(s_empty);
    c->ring_time = Py_NewRef(Py_None);
    c->answer_time = Py_NewRef(Py_None);
    c->end_time = Py_NewRef(Py_None);
    c->final_code = Py_NewRef(Py_None);
    c->final_reason = Py_NewRef(s_empty);
    c->ended_by = Py_NewRef(s_empty);
    c->end_reason = Py_NewRef(s_empty);
    c->last_activity = Py_NewRef(created);
    c->invite = Py_NewRef(invite);
    c->challenges = Py_NewRef(i_zero);
    c->uris = Py_NewRef(Py_None);
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

static PyObject *call_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *invite;
    static char *names[] = {"invite", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:Call", names, &invite))
        return NULL;
    return new_call(invite);
}

/* (request, $fU, $fd, $tU, $rU, $rd) of the INVITE, kept while the INVITE's request is the
 * same object (dialog.py's Call.invite_uris) */
static PyObject *call_invite_uris(Call *self, PyObject *unused)
{
    if (request_uris == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_dialogs.init(request_uris) was not called");
        return NULL;
    }
    PyObject *req = PyObject_GetAttr(self->invite, a_request);
    if (req == NULL)
        return NULL;
    PyObject *uris = self->uris;
    if (uris != NULL && uris != Py_None) {
        PyObject *first = PySequence_GetItem(uris, 0);
        if (first == NULL) {
            Py_DECREF(req);
            return NULL;
        }
        Py_DECREF(first);  /* compared by identity only */
        if (first == req) {
            Py_DECREF(req);
            return Py_NewRef(uris);
        }
    }
    PyObject *from = PyObject_GetAttr(req, a_from_value);
    PyObject *to = from ? PyObject_GetAttr(req, a_to_value) : NULL;
    PyObject *ruri = to ? PyObject_GetAttr(req, a_uri) : NULL;
    PyObject *parts = ruri ? PyObject_Vectorcall(request_uris, (PyObject *[]){from, to, ruri},
                                                 3, NULL) : NULL;
    Py_XDECREF(from);
    Py_XDECREF(to);
    Py_XDECREF(ruri);
    PyObject *fast = parts ? PySequence_Fast(parts, "request_uris() gave no sequence") : NULL;
    Py_XDECREF(parts);
    if (fast == NULL) {
        Py_DECREF(req);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    uris = PyTuple_New(n + 1);
    if (uris != NULL) {
        PyTuple_SET_ITEM(uris, 0, Py_NewRef(req));
        for (Py_ssize_t i = 0; i < n; i++)
            PyTuple_SET_ITEM(uris, i + 1, Py_NewRef(PySequence_Fast_GET_ITEM(fast, i)));
        Py_XSETREF(self->uris, Py_NewRef(uris));
    }
    Py_DECREF(fast);
    Py_DECREF(req);
    return uris;
}

/* Read-only but for the two fields set from outside the layer: the C code relies on the
 * others being present (a deleted member would be NULL). T_OBJECT_EX, as the Python twin's
 * __slots__: CPython specialises loads of these from the CDR and accounting code. */
#define M(name) {#name, T_OBJECT_EX, offsetof(Call, name), READONLY, NULL}
static PyMemberDef call_members[] = {
    M(callid), M(caller_tag), M(created), M(state), M(callee_tags), M(confirmed_tag),
    M(ring_time), M(answer_time), M(end_time), M(final_code), M(final_reason), M(ended_by),
    M(end_reason), M(invite), M(challenges),
    {"last_activity", T_OBJECT_EX, offsetof(Call, last_activity), 0,
     "packet time of the call's last message; expiry counts from it"},
    {"uris", T_OBJECT_EX, offsetof(Call, uris), 0, "invite_uris()'s cache"},
    {NULL},
};
#undef M

static PyMethodDef call_methods[] = {
    {"invite_uris", (PyCFunction)call_invite_uris, METH_NOARGS,
     "(request, $fU, $fd, $tU, $rU, $rd) of the INVITE, request-URI as received; parsed once "
     "per request."},
    {NULL},
};

static PyTypeObject CallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sip_dissect._dialogs.Call",
    .tp_doc = "Call(invite): one call as the proxy's upstream side saw it (dialog.py's twin).",
    .tp_basicsize = sizeof(Call),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = call_new,
    .tp_dealloc = (destructor)call_dealloc,
    .tp_traverse = (traverseproc)call_traverse,
    .tp_clear = (inquiry)call_clear,
    .tp_members = call_members,
    .tp_methods = call_methods,
};

/* a Call argument, or NULL with TypeError */
static Call *as_call(PyObject *o)
{
    if (Py_IS_TYPE(o, &CallType))
        return (Call *)o;
    PyErr_Format(PyExc_TypeError, "expected a sip_dissect._dialogs.Call, not %.100s",
                 Py_TYPE(o)->tp_name);
    return NULL;
}

/* a last_activity that is there (deleted from Python: AttributeError, as in the twin) */
static PyObject *last_activity(Call *c)
{
    if (c->last_activity == NULL)
        PyErr_SetString(PyExc_AttributeError, "last_activity");
    return c->last_activity;
}

/* call.state == name: the layer stores its own interned names, so identity settles it */
static int state_is(Call *c, PyObject *name)
{
    return c->state == name || PyUnicode_Compare(c->state, name) == 0;
}

/* ---------------------------------------------------------------- DialogLayer */

typedef struct {
    PyObject_HEAD
    PyObject *c, *calls, *on_end;
    double dialog_timeout, next_sweep;
    Py_ssize_t max_calls;
    Py_ssize_t calls_total, answered, failed, challenged;
} Layer;

static int layer_traverse(Layer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->c);
    Py_VISIT(self->calls);
    Py_VISIT(self->on_end);
    return 0;
}

static int layer_clear(Layer *self)
{
    Py_CLEAR(self->c);
    Py_CLEAR(self->calls);
    Py_CLEAR(self->on_end);
    return 0;
}

static void layer_dealloc(Layer *self)
{
    PyObject_GC_UnTrack(self);
    layer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *layer_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *names[] = {"counters", "dialog_timeout", "max_calls", "on_end", NULL};
    PyObject *counters, *on_end = Py_None;
    double timeout = 7200.0;
    Py_ssize_t max_calls = 200000;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$dnO:DialogLayer", names, &counters,
                                     &timeout, &max_calls, &on_end))
        return NULL;
    if (max_calls < 1) {
        PyErr_SetString(PyExc_ValueError, "max_calls must be at least 1");
        return NULL;
    }
    Layer *self = (Layer *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->c = Py_NewRef(counters);
    self->on_end = Py_NewRef(on_end);
    self->dialog_timeout = timeout;
    self->max_calls = max_calls;
    if ((self->calls = PyDict_New()) == NULL) {  /* oldest first: evicted first */
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* self.c[name] += 1 */
static int count(Layer *self, PyObject *name)
{
    return counters_add(self->c, name, 1);
}

/* d.pop(key, None) as *out (a new reference, or NULL when absent): 1 found, 0 absent, -1 */
static int dict_pop(PyObject *d, PyObject *key, PyObject **out)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    *out = NULL;
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(v);
    if (PyDict_DelItem(d, key) < 0) {
        Py_DECREF(v);
        return -1;
    }
    *out = v;
    return 1;
}

/* the layer's _end: 0 or -1 */
static int end_call(Layer *self, Call *c, PyObject *ts, PyObject *reason, PyObject *by)
{
    Py_SETREF(c->state, Py_NewRef(s_terminated));
    Py_SETREF(c->end_time, Py_NewRef(ts));
    Py_SETREF(c->end_reason, Py_NewRef(reason));
    Py_SETREF(c->ended_by, Py_NewRef(by));
    PyObject *key = PyTuple_Pack(2, c->callid, c->caller_tag);
    if (key == NULL)
        return -1;
    PyObject *gone;  /* calls.pop(key, None) */
    int rc = dict_pop(self->calls, key, &gone);
    Py_DECREF(key);
    if (rc < 0)
        return -1;
    Py_XDECREF(gone);
    if (self->on_end == Py_None)
        return 0;
    PyObject *r = PyObject_Vectorcall(self->on_end, (PyObject **)&c, 1, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* evict the oldest call to make room (dialog.py's initial_invite) */
static int evict_oldest(Layer *self)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    if (!PyDict_Next(self->calls, &pos, &key, &value))
        return 0;
    key = Py_NewRef(key);
    PyObject *old;
    int rc = dict_pop(self->calls, key, &old);
    Py_DECREF(key);
    if (rc <= 0)
        return rc;
    Call *c = as_call(old);
    rc = c == NULL || count(self, c_evicted) < 0 || last_activity(c) == NULL ? -1
         : end_call(self, c, c->last_activity, s_expired, s_empty);
    Py_DECREF(old);
    return rc;
}

static PyObject *layer_initial_invite(Layer *self, PyObject *txn)
{
    PyObject *callid = PyObject_GetAttr(txn, a_callid);
    PyObject *tag = callid ? PyObject_GetAttr(txn, a_from_tag) : NULL;
    PyObject *key = tag ? PyTuple_Pack(2, callid, tag) : NULL;
    Py_XDECREF(callid);
    Py_XDECREF(tag);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(self->calls, key), *result = NULL;
    Call *c = NULL;
    if (found == NULL && PyErr_Occurred())
        goto done;
    if (found != NULL && (c = as_call(found)) == NULL)
        goto done;
    if (c == NULL || state_is(c, s_terminated)) {
        if (PyDict_GET_SIZE(self->calls) >= self->max_calls && evict_oldest(self) < 0)
            goto done;
        PyObject *call = new_call(txn);
        if (call == NULL)
            goto done;
        if (PyDict_SetItem(self->calls, key, call) < 0) {
            Py_DECREF(call);
            goto done;
        }
        self->calls_total++;
        result = call;
    } else {  /* re-sent after a challenge: the same call, from the new INVITE */
        PyObject *created = PyObject_GetAttr(txn, a_created);
        if (created == NULL)
            goto done;
        Py_SETREF(c->invite, Py_NewRef(txn));
        Py_XSETREF(c->last_activity, created);
        result = Py_NewRef(found);
    }
done:
    Py_DECREF(key);
    return result;
}

/* calls.get((callid, tag)), borrowed; NULL: absent or error */
static PyObject *get_call(Layer *self, PyObject *callid, PyObject *tag)
{
    PyObject *key = PyTuple_Pack(2, callid, tag);
    if (key == NULL)
        return NULL;
    PyObject *call = PyDict_GetItemWithError(self->calls, key);
    Py_DECREF(key);
    return call;
}

static PyObject *layer_find(Layer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "find() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *call = get_call(self, args[0], args[1]);
    if (call == NULL && !PyErr_Occurred())
        call = get_call(self, args[0], args[2]);
    if (call == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return Py_NewRef(call);
}

static PyObject *layer_provisional(Layer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "provisional() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    Call *c = as_call(args[0]);
    PyObject *status = args[2], *to_tag = args[3], *ts = args[4];
    if (c == NULL)
        return NULL;
    Py_XSETREF(c->last_activity, Py_NewRef(ts));
    if (c->ring_time == Py_None) {
        int ringing = PyObject_RichCompareBool(status, i_180, Py_EQ);
        if (ringing == 0)
            ringing = PyObject_RichCompareBool(status, i_183, Py_EQ);
        if (ringing < 0)
            return NULL;
        if (ringing)
            Py_SETREF(c->ring_time, Py_NewRef(ts));
    }
    int tagged = PyObject_IsTrue(to_tag);
    if (tagged < 0)
        return NULL;
    if (tagged && (state_is(c, s_init) || state_is(c, s_early))) {
        int known = PySequence_Contains(c->callee_tags, to_tag);
        if (known < 0 || (!known && PyList_Append(c->callee_tags, to_tag) < 0))
            return NULL;
        Py_SETREF(c->state, Py_NewRef(s_early));
    }
    Py_RETURN_NONE;
}

/* the attributes final() reads, new references; -1 on error */
static int final_of(PyObject *txn, PyObject **status, PyObject **ts, PyObject **cancel)
{
    *status = PyObject_GetAttr(txn, a_final_status);
    *ts = *status ? PyObject_GetAttr(txn, a_final_ts) : NULL;
    *cancel = *ts ? PyObject_GetAttr(txn, a_cancel) : NULL;
    if (*cancel != NULL)
        return 0;
    Py_CLEAR(*status);
    Py_CLEAR(*ts);
    return -1;
}

/* final_code and final_reason from the transaction's final reply */
static int set_final(Call *c, PyObject *txn, PyObject *status)
{
    PyObject *reason = PyObject_GetAttr(txn, a_final_reason);
    if (reason == NULL)
        return -1;
    Py_SETREF(c->final_code, Py_NewRef(status));
    Py_SETREF(c->final_reason, reason);
    return 0;
}

static PyObject *layer_final(Layer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "final() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Call *c = as_call(args[0]);
    PyObject *txn = args[1], *status, *ts, *cancel;
    if (c == NULL || final_of(txn, &status, &ts, &cancel) < 0)
        return NULL;
    int rc = -1, answered, challenge = 0;
    Py_XSETREF(c->last_activity, Py_NewRef(ts));
    if ((answered = PyObject_RichCompareBool(status, i_300, Py_LT)) < 0)
        goto done;
    if (answered) {
        if (!state_is(c, s_confirmed)) {
            PyObject *tag = PyObject_GetAttr(txn, a_final_to_tag);
            if (tag == NULL)
                goto done;
            Py_SETREF(c->state, Py_NewRef(s_confirmed));
            Py_SETREF(c->answer_time, Py_NewRef(ts));
            Py_SETREF(c->confirmed_tag, tag);
            if (set_final(c, txn, status) < 0)
                goto done;
            self->answered++;
        }
        rc = 0;
        goto done;
    }
    if (cancel == Py_None) {  /* status in CHALLENGES and txn.cancel is None */
        challenge = PyObject_RichCompareBool(status, i_401, Py_EQ);
        if (challenge == 0)
            challenge = PyObject_RichCompareBool(status, i_407, Py_EQ);
        if (challenge < 0)
            goto done;
    }
    if (challenge) {  /* the caller will try again with credentials */
        PyObject *more = PyNumber_Add(c->challenges, i_one);
        if (more == NULL)
            goto done;
        Py_SETREF(c->challenges, more);
        self->challenged++;
    } else if (!state_is(c, s_confirmed)) {
        if (set_final(c, txn, status) < 0)
            goto done;
        self->failed++;
        if (end_call(self, c, ts, cancel != Py_None ? s_cancelled : s_rejected, s_empty) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_DECREF(status);
    Py_DECREF(ts);
    Py_DECREF(cancel);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* bye(call, txn, sent_by_proxy): positional or keyword, as dialog.py's */
static PyObject *layer_bye(Layer *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw != 3 || nargs < 2 || (nkw == 1 && PyUnicode_CompareWithASCIIString(
            PyTuple_GET_ITEM(kwnames, 0), "sent_by_proxy") != 0)) {
        PyErr_SetString(PyExc_TypeError, "bye() takes call, txn and sent_by_proxy");
        return NULL;
    }
    Call *c = as_call(args[0]);
    PyObject *txn = args[1];
    if (c == NULL)
        return NULL;
    if (state_is(c, s_terminated))
        Py_RETURN_NONE;
    int proxy = PyObject_IsTrue(args[2]);
    if (proxy < 0)
        return NULL;
    PyObject *by = s_proxy;
    if (!proxy) {
        PyObject *tag = PyObject_GetAttr(txn, a_from_tag);
        int caller = tag ? PyObject_RichCompareBool(tag, c->caller_tag, Py_EQ) : -1;
        Py_XDECREF(tag);
        if (caller < 0)
            return NULL;
        by = caller ? s_caller : s_callee;
    }
    PyObject *created = PyObject_GetAttr(txn, a_created);
    if (created == NULL)
        return NULL;
    int rc = end_call(self, c, created, s_completed, by);
    Py_DECREF(created);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* end each call of `calls` (a list) as `reason`; ts NULL: at its last activity */
static int end_each(Layer *self, PyObject *calls, PyObject *ts, PyObject *reason,
                    PyObject *counter)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(calls); i++) {
        Call *c = as_call(PyList_GET_ITEM(calls, i));
        if (c == NULL || (counter != NULL && count(self, counter) < 0))
            return -1;
        PyObject *when = ts != NULL ? ts : last_activity(c);
        if (when == NULL)
            return -1;
        Py_INCREF(when);  /* end_call may drop the call's own reference to it */
        int rc = end_call(self, c, when, reason, s_empty);
        Py_DECREF(when);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static PyObject *layer_sweep(Layer *self, PyObject *now_obj)
{
    double now = PyFloat_AsDouble(now_obj);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    self->next_sweep = now + 60.0;
    PyObject *idle = PyList_New(0);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (idle != NULL && PyDict_Next(self->calls, &pos, &key, &value)) {
        Call *c = as_call(value);
        PyObject *last = c ? last_activity(c) : NULL;
        double at = last ? PyFloat_AsDouble(last) : -1.0;
        if ((last == NULL || (at == -1.0 && PyErr_Occurred()))
                || (now - at > self->dialog_timeout && PyList_Append(idle, value) < 0))
            Py_CLEAR(idle);
    }
    if (idle == NULL)
        return NULL;
    int rc = end_each(self, idle, NULL, s_expired, c_expired);
    Py_DECREF(idle);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *layer_close(Layer *self, PyObject *unused)
{
    PyObject *open = PyDict_Values(self->calls);
    if (open == NULL)
        return NULL;
    int rc = end_each(self, open, Py_None, s_open, NULL);
    Py_DECREF(open);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *layer_totals(Layer *self, void *unused)
{
    return Py_BuildValue("{snsnsnsn}", "calls", self->calls_total, "answered", self->answered,
                         "failed", self->failed, "challenged", self->challenged);
}

static PyMemberDef layer_members[] = {
    {"c", T_OBJECT, offsetof(Layer, c), READONLY, "the counters"},
    {"calls", T_OBJECT, offsetof(Layer, calls), READONLY,
     "open calls by (Call-ID, caller's From tag), oldest first"},
    {"on_end", T_OBJECT, offsetof(Layer, on_end), READONLY, "called with each finished call"},
    {"dialog_timeout", T_DOUBLE, offsetof(Layer, dialog_timeout), 0, NULL},
    {"max_calls", T_PYSSIZET, offsetof(Layer, max_calls), READONLY, NULL},
    {"next_sweep", T_DOUBLE, offsetof(Layer, next_sweep), 0,
     "packet time of the next look for expired calls"},
    {NULL},
};

static PyGetSetDef layer_getset[] = {
    {"totals", (getter)layer_totals, NULL, "calls, answered, failed, challenged (a new dict)",
     NULL},
    {NULL},
};

#define FAST(name) (PyCFunction)(void (*)(void))layer_##name, METH_FASTCALL
static PyMethodDef layer_methods[] = {
    {"initial_invite", (PyCFunction)layer_initial_invite, METH_O,
     "An accounted initial INVITE: a new call, or the same call re-sent after a challenge."},
    {"find", FAST(find), "find(callid, tag_a, tag_b): the call of an in-dialog request."},
    {"provisional", FAST(provisional),
     "provisional(call, txn, status, to_tag, ts): a 1xx with a To tag creates an early dialog."},
    {"final", FAST(final), "final(call, txn): the INVITE's final reply."},
    {"bye", (PyCFunction)(void (*)(void))layer_bye, METH_FASTCALL | METH_KEYWORDS,
     "bye(call, txn, sent_by_proxy): a BYE ends the dialog, whichever side sends it."},
    {"sweep", (PyCFunction)layer_sweep, METH_O, "sweep(now): expire calls idle for dialog_timeout."},
    {"close", (PyCFunction)layer_close, METH_NOARGS,
     "End of input: calls still going are reported open."},
    {NULL},
};
#undef FAST

static PyTypeObject LayerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sip_dissect._dialogs.DialogLayer",
    .tp_doc = "DialogLayer(counters, *, dialog_timeout=7200.0, max_calls=200000, on_end=None):"
              " dialog.py's twin.",
    .tp_basicsize = sizeof(Layer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = layer_new,
    .tp_dealloc = (destructor)layer_dealloc,
    .tp_traverse = (traverseproc)layer_traverse,
    .tp_clear = (inquiry)layer_clear,
    .tp_members = layer_members,
    .tp_getset = layer_getset,
    .tp_methods = layer_methods,
};

/* ---------------------------------------------------------------- module */

static PyObject *init(PyObject *self, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "init(request_uris): a callable");
        return NULL;
    }
    Py_XSETREF(request_uris, Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"init", init, METH_O, "init(request_uris): what Call.invite_uris() parses with."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dialogs",
    "Native twin of sip_dissect.dialog: Call and DialogLayer.", -1, module_methods,
};

static int intern_all(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_init, "INIT"}, {&s_early, "EARLY"}, {&s_confirmed, "CONFIRMED"},
        {&s_terminated, "TERMINATED"}, {&s_empty, ""}, {&s_expired, "expired"},
        {&s_open, "open"}, {&s_cancelled, "cancelled"}, {&s_rejected, "rejected"},
        {&s_completed, "completed"}, {&s_proxy, "proxy"}, {&s_caller, "caller"},
        {&s_callee, "callee"}, {&a_callid, "callid"}, {&a_from_tag, "from_tag"},
        {&a_created, "created"}, {&a_final_status, "final_status"}, {&a_final_ts, "final_ts"},
        {&a_final_to_tag, "final_to_tag"}, {&a_final_reason, "final_reason"},
        {&a_cancel, "cancel"}, {&a_request, "request"}, {&a_from_value, "from_value"},
        {&a_to_value, "to_value"}, {&a_uri, "uri"}, {&c_evicted, "state.dialog_evicted"},
        {&c_expired, "state.dialog_expired"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    struct { PyObject **slot; long value; } ints[] = {
        {&i_180, 180}, {&i_183, 183}, {&i_300, 300}, {&i_401, 401}, {&i_407, 407},
        {&i_one, 1}, {&i_zero, 0},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if ((*ints[i].slot = PyLong_FromLong(ints[i].value)) == NULL)
            return -1;
    return 0;
}

PyMODINIT_FUNC PyInit__dialogs(void)
{
    if (intern_all() < 0 || PyType_Ready(&CallType) < 0 || PyType_Ready(&LayerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Call", (PyObject *)&CallType) < 0
            || PyModule_AddObjectRef(m, "DialogLayer", (PyObject *)&LayerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
