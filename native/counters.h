/* counters[key] += n on a probe.counters.Counters (a dict whose missing keys read 0), the
 * one way the accelerators that keep no fast path of their own bump a counter. */
#ifndef SIPPROBE_COUNTERS_H
#define SIPPROBE_COUNTERS_H

#include <Python.h>

static inline int
counters_add(PyObject *counters, PyObject *key, Py_ssize_t n)
{
    PyObject *old = PyObject_GetItem(counters, key);  /* Counters: 0 when missing */
    if (old == NULL)
        return -1;
    PyObject *add = PyLong_FromSsize_t(n);
    PyObject *sum = add ? PyNumber_Add(old, add) : NULL;
    Py_DECREF(old);
    Py_XDECREF(add);
    int rc = sum ? PyObject_SetItem(counters, key, sum) : -1;
    Py_XDECREF(sum);
    return rc;
}

#endif
