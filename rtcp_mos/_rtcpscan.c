/* Native twin of rtcp_mos/rtcp.py's parse_compound_py, for the common case.
 *
 * parse(payload) -> RtcpCompound | None. The compounds endpoints send every few seconds (RFC
 * 3550 section 6.1: an SR or RR first, then SDES, maybe a BYE) parsed into the same records
 * parse_compound_py builds. Anything else gives None and Python decides: a packet that is not
 * version 2, a length past the datagram, the padding bit, a first packet other than SR/RR
 * (reduced size), APP, XR, RTPFB/PSFB, unknown types, a truncated block, chunk or reason,
 * bytes after the last packet (SRTCP's trailer among them), non-bytes input. So the result
 * never carries an anomaly. tests/test_native_rtcp.py compares the two on every capture and
 * on mutated compounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* the NamedTuple classes of rtcp.py (init) */
static PyTypeObject *sender_info_type, *report_block_type, *report_type, *sdes_chunk_type,
    *bye_type, *compound_type;
static PyObject *str_sr, *str_rr;  /* "SR", "RR" */
static PyObject *empty_tuple;      /* () */

#define PT_SR 200
#define PT_RR 201
#define PT_SDES 202
#define PT_BYE 203

static inline uint32_t u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* A NamedTuple instance of `tp` from `n` new references (stolen, also on failure); NULL
 * with an exception set when one of them is NULL or the allocation fails. */
static PyObject *record(PyTypeObject *tp, Py_ssize_t n, PyObject **items)
{
    PyObject *res = NULL;
    Py_ssize_t i;
    for (i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    res = tp->tp_alloc(tp, n);
    if (res == NULL)
        goto fail;
    for (i = 0; i < n; i++)
        PyTuple_SET_ITEM(res, i, items[i]);
    return res;
fail:
    for (i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

/* Outcome of one packet: appended, Python must decide, or an exception */
#define OK 0
#define DECLINE 1
#define ERROR (-1)

/* record(tp, n, items) appended to `out`: OK, or ERROR with an exception set */
static int append_record(PyObject *out, PyTypeObject *tp, Py_ssize_t n, PyObject **items)
{
    PyObject *rec = record(tp, n, items);
    if (rec == NULL)
        return ERROR;
    int rc = PyList_Append(out, rec);
    Py_DECREF(rec);
    return rc ? ERROR : OK;
}

/* SR or RR (RFC 3550 sections 6.4.1, 6.4.2), as rtcp.py's _report; bytes after the blocks
 * are a profile-specific extension, ignored there too. */
static int report(const unsigned char *buf, int pt, Py_ssize_t p, Py_ssize_t end, int count,
                  PyObject *out)
{
    PyObject *sender = Py_None, *ssrc;
    if (pt == PT_SR) {
        if (p + 24 > end)
            return DECLINE;
        ssrc = PyLong_FromUnsignedLong(u32(buf + p));
        PyObject *f[5];
        for (int i = 0; i < 5; i++)
            f[i] = PyLong_FromUnsignedLong(u32(buf + p + 4 + 4 * i));
        sender = record(sender_info_type, 5, f);
        if (sender == NULL) {
            Py_XDECREF(ssrc);
            return ERROR;
        }
        p += 24;
    } else {
        if (p + 4 > end)
            return DECLINE;
        ssrc = PyLong_FromUnsignedLong(u32(buf + p));
        Py_INCREF(Py_None);
        p += 4;
    }
    if (ssrc == NULL || (count && p + 24 * (Py_ssize_t)count > end)) {
        Py_XDECREF(ssrc);
        Py_DECREF(sender);
        return ssrc == NULL ? ERROR : DECLINE;  /* RC says more blocks than fit */
    }
    PyObject *blocks = count ? PyTuple_New(count) : (Py_INCREF(empty_tuple), empty_tuple);
    if (blocks == NULL) {
        Py_DECREF(ssrc);
        Py_DECREF(sender);
        return ERROR;
    }
    for (int b = 0; b < count; b++, p += 24) {
        uint32_t word = u32(buf + p + 4);
        long lost = word & 0xFFFFFF;
        if (lost & 0x800000)
            lost -= 0x1000000;  /* signed 24 bits */
        PyObject *f[7] = {
            PyLong_FromUnsignedLong(u32(buf + p)), PyLong_FromLong(word >> 24),
            PyLong_FromLong(lost), PyLong_FromUnsignedLong(u32(buf + p + 8)),
            PyLong_FromUnsignedLong(u32(buf + p + 12)), PyLong_FromUnsignedLong(u32(buf + p + 16)),
            PyLong_FromUnsignedLong(u32(buf + p + 20))};
        PyObject *block = record(report_block_type, 7, f);
        if (block == NULL) {
            Py_DECREF(blocks);
            Py_DECREF(ssrc);
            Py_DECREF(sender);
            return ERROR;
        }
        PyTuple_SET_ITEM(blocks, b, block);
    }
    PyObject *str = pt == PT_SR ? str_sr : str_rr;
    Py_INCREF(str);
    return append_record(out, report_type, 4, (PyObject *[]){str, ssrc, sender, blocks});
}

/* One SDES chunk's items up to the null item, as rtcp.py's _sdes; *pp moves past the chunk
 * and its padding. DECLINE where _sdes would note rtcp.truncated_packet. */
static int sdes_chunk(const unsigned char *buf, Py_ssize_t *pp, Py_ssize_t end, PyObject *out)
{
    Py_ssize_t p = *pp;
    if (p + 4 > end)
        return DECLINE;
    uint32_t ssrc = u32(buf + p);
    p += 4;
    PyObject *items = PyList_New(0), *cname = Py_None;
    if (items == NULL)
        return ERROR;
    Py_INCREF(Py_None);
    for (;;) {
        if (p >= end)
            goto decline;  /* no null item before the end */
        int kind = buf[p];
        if (kind == 0) {
            p = (p + 4) & ~(Py_ssize_t)3;  /* the null item and padding up to the next word */
            break;
        }
        if (p + 2 > end || p + 2 + buf[p + 1] > end)
            goto decline;
        Py_ssize_t n = buf[p + 1];
        PyObject *value = PyBytes_FromStringAndSize((const char *)buf + p + 2, n);
        if (value == NULL)
            goto error;
        if (kind == 1) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)buf + p + 2, n, "replace");
            if (text == NULL) {
                Py_DECREF(value);
                goto error;
            }
            Py_SETREF(cname, text);
        }
        PyObject *item = PyTuple_New(2);
        if (item == NULL) {
            Py_DECREF(value);
            goto error;
        }
        PyTuple_SET_ITEM(item, 0, PyLong_FromLong(kind));  /* 1-255: a cached small int */
        PyTuple_SET_ITEM(item, 1, value);
        int rc = PyList_Append(items, item);
        Py_DECREF(item);
        if (rc)
            goto error;
        p += 2 + n;
    }
    PyObject *f[3] = {PyLong_FromUnsignedLong(ssrc), cname, PyList_AsTuple(items)};
    Py_DECREF(items);
    *pp = p;
    return append_record(out, sdes_chunk_type, 3, f);
decline:
    Py_DECREF(items);
    Py_DECREF(cname);
    return DECLINE;
error:
    Py_DECREF(items);
    Py_DECREF(cname);
    return ERROR;
}

/* BYE (RFC 3550 section 6.6), as rtcp.py's _bye: SC SSRCs, then an optional reason. */
static int bye(const unsigned char *buf, Py_ssize_t p, Py_ssize_t end, int count, PyObject *out)
{
    if (p + 4 * (Py_ssize_t)count > end)
        return DECLINE;
    PyObject *ssrcs = PyTuple_New(count);
    if (ssrcs == NULL)
        return ERROR;
    for (int i = 0; i < count; i++) {
        PyObject *v = PyLong_FromUnsignedLong(u32(buf + p + 4 * i));
        if (v == NULL) {
            Py_DECREF(ssrcs);
            return ERROR;
        }
        PyTuple_SET_ITEM(ssrcs, i, v);
    }
    p += 4 * (Py_ssize_t)count;
    PyObject *reason = Py_None;
    if (p < end) {
        Py_ssize_t n = buf[p];
        if (p + 1 + n > end) {
            Py_DECREF(ssrcs);
            return DECLINE;
        }
        reason = PyUnicode_DecodeUTF8((const char *)buf + p + 1, n, "replace");
    } else {
        Py_INCREF(Py_None);
    }
    return append_record(out, bye_type, 2, (PyObject *[]){ssrcs, reason});
}

static PyObject *parse(PyObject *self, PyObject *payload)
{
    if (compound_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_rtcpscan.init() was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(payload))
        Py_RETURN_NONE;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t size = PyBytes_GET_SIZE(payload), pos = 0;
    PyObject *lists[3] = {PyList_New(0), PyList_New(0), PyList_New(0)};  /* reports, sdes, byes */
    PyObject *res = NULL;
    int rc = OK;
    if (!lists[0] || !lists[1] || !lists[2])
        goto done;
    if (size < 4)
        rc = DECLINE;
    while (rc == OK && pos + 4 <= size) {
        int b0 = buf[pos], pt = buf[pos + 1];
        Py_ssize_t end = pos + 4 + 4 * (Py_ssize_t)((buf[pos + 2] << 8) | buf[pos + 3]);
        if ((b0 & 0xC0) != 0x80 || (b0 & 0x20) || end > size
                || (pos == 0 && pt != PT_SR && pt != PT_RR)) {
            rc = DECLINE;
            break;
        }
        Py_ssize_t start = pos + 4;
        int count = b0 & 0x1F;
        if (pt == PT_SR || pt == PT_RR) {
            rc = report(buf, pt, start, end, count, lists[0]);
        } else if (pt == PT_SDES) {
            for (int i = 0; rc == OK && i < count; i++)
                rc = sdes_chunk(buf, &start, end, lists[1]);
        } else if (pt == PT_BYE) {
            rc = bye(buf, start, end, count, lists[2]);
        } else {
            rc = DECLINE;
        }
        pos = end;
    }
    if (rc == OK && pos != size)
        rc = DECLINE;  /* trailing bytes, an SRTCP trailer among them */
    if (rc == DECLINE) {
        res = Py_None;
        Py_INCREF(res);
    } else if (rc == OK) {
        PyObject *f[7] = {PyList_AsTuple(lists[0]), PyList_AsTuple(lists[1]),
                          PyList_AsTuple(lists[2]), empty_tuple, empty_tuple, empty_tuple,
                          Py_False};
        Py_INCREF(empty_tuple);
        Py_INCREF(empty_tuple);
        Py_INCREF(empty_tuple);
        Py_INCREF(Py_False);
        res = record(compound_type, 7, f);
    }
done:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(lists[i]);
    return res;
}

static PyObject *init(PyObject *self, PyObject *args)
{
    PyObject *types[6];
    if (!PyArg_UnpackTuple(args, "init", 6, 6, &types[0], &types[1], &types[2], &types[3],
                           &types[4], &types[5]))
        return NULL;
    for (int i = 0; i < 6; i++) {
        if (!PyType_Check(types[i]) || !PyType_IsSubtype((PyTypeObject *)types[i], &PyTuple_Type)) {
            PyErr_SetString(PyExc_TypeError, "init: six tuple subclasses expected");
            return NULL;
        }
    }
    PyTypeObject **slots[6] = {&sender_info_type, &report_block_type, &report_type,
                               &sdes_chunk_type, &bye_type, &compound_type};
    for (int i = 0; i < 6; i++) {
        Py_INCREF(types[i]);
        Py_XSETREF(*slots[i], (PyTypeObject *)types[i]);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", init, METH_VARARGS,
     "init(SenderInfo, ReportBlock, Report, SdesChunk, Bye, RtcpCompound): the classes "
     "parse() builds."},
    {"parse", parse, METH_O,
     "parse(payload) -> RtcpCompound, or None when rtcp.py's parse_compound_py must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtcpscan",
    "Native RTCP compound parser: the common case of rtcp_mos.rtcp.parse_compound_py.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__rtcpscan(void)
{
    if (str_sr == NULL && (str_sr = PyUnicode_InternFromString("SR")) == NULL)
        return NULL;
    if (str_rr == NULL && (str_rr = PyUnicode_InternFromString("RR")) == NULL)
        return NULL;
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
