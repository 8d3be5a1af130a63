/* Native twin of sip_dissect/scan.py's scan_py, for the common case.
 *
 * scan(payload) -> SipHead | str | None. One pass over the start line and the header block:
 * each '\n' of the header block is a candidate header line (message.py's _HOT_HEADER); the
 * hot headers' values are checked to be printable ASCII (TAB allowed), so that Python's
 * str.strip/split/upper/lower and re's \s agree with the ASCII rules used here. Anything
 * else (non-ASCII or control characters in what is read, folded lines, no CRLF CRLF,
 * a start line the regex rejects, non-bytes input) gives None: scan_py decides. The tests
 * (tests/test_native_scan.py) compare the two on every capture and on mutated messages.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mum.h"  /* native/: the byte-hash mixer */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define N_FIELDS 20

static PyObject *sip_head_type;  /* the SipHead NamedTuple class (init) */
static PyObject *reason_empty;   /* "sip.empty" */

/* character classes */
#define C_TOKEN 1   /* RFC 3261 token (message.py _TOKEN) */
#define C_CTRL 2    /* \x00-\x1f except TAB, and \x7f */
#define C_HIGH 4    /* >= 0x80 */
#define C_WS 8      /* space, TAB */
#define C_BWS 16    /* bytes.strip() whitespace: space \t \n \r \x0b \x0c */
#define C_PEND 32   /* ends a parameter value: ';', space, TAB */
#define C_COMMA 64  /* ',' (ends a tag value too) */
static unsigned char cls[256];
static unsigned char lower[256];

static void init_tables(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                || (c && strchr("-.!%*_+`'~", c)))
            k |= C_TOKEN;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            k |= C_CTRL;
        if (c >= 0x80)
            k |= C_HIGH;
        if (c == ' ' || c == '\t')
            k |= C_WS;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0b || c == 0x0c)
            k |= C_BWS;
        if (c == ';' || c == ' ' || c == '\t')
            k |= C_PEND;
        if (c == ',')
            k |= C_COMMA;
        cls[c] = k;
        lower[c] = (unsigned char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
}

#define IS_WS(c) ((c) == ' ' || (c) == '\t')

typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
    int set;
} span;

/* The end of a header value: the first byte from v on that is a control character other
 * than TAB (CR or LF for a clean value) or >= 0x80. Eight bytes at a time while they are all
 * printable ASCII; bytes objects end with a NUL, which stops the byte loop at e. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static const unsigned char *value_end(const unsigned char *v, const unsigned char *e)
{
#ifdef __SSE2__
    /* sixteen at a time where SSE2 is (every x86-64): a signed compare flags < 0x20 and
     * >= 0x80 at once (TAB excepted), and the mask gives the position of the first one */
    const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f),
                  tab = _mm_set1_epi8('\t');
    while (e - v >= 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)v);
        __m128i low = _mm_andnot_si128(_mm_cmpeq_epi8(w, tab), _mm_cmplt_epi8(w, space));
        int m = _mm_movemask_epi8(_mm_or_si128(low, _mm_cmpeq_epi8(w, del)));
        if (m)
            return v + __builtin_ctz((unsigned)m);
        v += 16;
    }
#endif
    while (e - v >= 8) {
        uint64_t w, x;
        memcpy(&w, v, 8);
        x = w ^ (ONES * 0x7f);  /* a zero byte where w has DEL */
        /* any byte < 0x20, >= 0x80 or == 0x7f */
        if ((((w - ONES * 0x20) & ~w) | w | ((x - ONES) & ~x)) & HIGHS)
            break;
        v += 8;
    }
    while (!(cls[*v] & (C_CTRL | C_HIGH)))
        v++;
    return v;
}

/* ASCII str of p[0:n] (the caller checked the bytes are < 0x80); mode 1 lower, 2 upper */
static PyObject *mkstr(const unsigned char *p, Py_ssize_t n, int mode)
{
    PyObject *s = PyUnicode_New(n, 127);
    if (s == NULL || n == 0)
        return s;
    unsigned char *d = PyUnicode_1BYTE_DATA(s);
    if (mode == 0) {
        memcpy(d, p, n);
    } else if (mode == 1) {
        for (Py_ssize_t i = 0; i < n; i++)
            d[i] = lower[p[i]];
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = p[i];
            d[i] = (c >= 'a' && c <= 'z') ? c - 32 : c;
        }
    }
    return s;
}

/* Methods, reason phrases and transports repeat: their str objects are kept in a small
 * direct-mapped cache (equal strings, so sharing them changes no result). They are interned:
 * then "INVITE" is the very object of the layers' "INVITE" constants, and their comparisons
 * (method == "INVITE", in Python or C) end at the identity test. */
#define CACHE_SLOTS 64
#define CACHE_MAX 16
static struct {
    Py_ssize_t n;
    unsigned char b[CACHE_MAX];
    PyObject *s;
} cache[CACHE_SLOTS];

static PyObject *cached_str(const unsigned char *p, Py_ssize_t n, int mode)
{
    unsigned char buf[CACHE_MAX];
    if (n == 0 || n > CACHE_MAX)
        return mkstr(p, n, mode);
    if (mode == 2) {
        for (Py_ssize_t i = 0; i < n; i++)
            buf[i] = (p[i] >= 'a' && p[i] <= 'z') ? p[i] - 32 : p[i];
        p = buf;
    }
    unsigned h = ((unsigned)p[0] * 31u + (unsigned)p[n - 1] * 7u + (unsigned)n) % CACHE_SLOTS;
    if (cache[h].s != NULL && cache[h].n == n && memcmp(cache[h].b, p, n) == 0) {
        Py_INCREF(cache[h].s);
        return cache[h].s;
    }
    PyObject *s = mkstr(p, n, 0);
    if (s == NULL)
        return NULL;
    PyUnicode_InternInPlace(&s);
    Py_INCREF(s);
    Py_XSETREF(cache[h].s, s);
    cache[h].n = n;
    memcpy(cache[h].b, p, n);
    return s;
}

/* Some values repeat from message to message and are the keys of the layers' dicts: a call's
 * Call-ID and tags, a host's Via sent-by. Their str objects are kept in a small direct-mapped
 * cache: the messages of a call share one, which saves its allocation, and the dialog layer
 * hashes it once (a str caches its hash) instead of once per message. Equal strings, so
 * sharing them changes no result. (Caching URIs, From/To and branches as well saved less than
 * the memory a cache big enough for them costs.) */
#define VCACHE_SLOTS 4096  /* a power of two */
#define VCACHE_MAX 256
static struct {
    uint64_t h;
    PyObject *s;
} vcache[VCACHE_SLOTS];


/* a slot hash from the length and up to 24 bytes (start, middle, end): a collision only
 * costs a memcmp and a miss */
static uint64_t vhash(const unsigned char *p, size_t n)
{
    uint64_t a = 0, b = 0, c = 0;
    if (n >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + (n - 8) / 2, 8);
        memcpy(&c, p + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, p, 4);
        memcpy(&y, p + n - 4, 4);
        a = x, c = y;
    } else {
        a = (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1];
    }
    return mum(a ^ 0xa0761d6478bd642fULL ^ n, b ^ 0xe7037ed1a0b428dbULL) ^ mum(c, 0x8ebc6af09c88c6e3ULL);
}

/* mkstr(p, n, mode) through the cache (modes 0 and 1) */
static PyObject *value_str(const unsigned char *p, Py_ssize_t n, int mode)
{
    unsigned char buf[VCACHE_MAX];
    if (n == 0 || n > VCACHE_MAX || mode > 1)
        return mkstr(p, n, mode);
    if (mode == 1) {
        for (Py_ssize_t i = 0; i < n; i++)
            buf[i] = lower[p[i]];
        p = buf;
    }
    uint64_t h = vhash(p, (size_t)n);
    PyObject **slot = &vcache[h & (VCACHE_SLOTS - 1)].s;
    if (*slot != NULL && vcache[h & (VCACHE_SLOTS - 1)].h == h
            && PyUnicode_GET_LENGTH(*slot) == n && memcmp(PyUnicode_1BYTE_DATA(*slot), p, n) == 0)
        return Py_NewRef(*slot);
    PyObject *s = mkstr(p, n, 0);
    if (s == NULL)
        return NULL;
    Py_XSETREF(*slot, Py_NewRef(s));
    vcache[h & (VCACHE_SLOTS - 1)].h = h;
    return s;
}

/* int(status), 100-999 kept (ints are immutable: sharing one is invisible) */
static PyObject *statuses[1000];

static PyObject *status_int(int status)
{
    if (status < 100)  /* small ints are shared by Python itself */
        return PyLong_FromLong(status);
    if (statuses[status] == NULL && (statuses[status] = PyLong_FromLong(status)) == NULL)
        return NULL;
    return Py_NewRef(statuses[status]);
}

/* case-insensitive ASCII compare of p[0:n] with a lower-case literal */
static int ieq(const unsigned char *p, const char *lit, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (lower[p[i]] != (unsigned char)lit[i])
            return 0;
    return 1;
}

enum { H_NONE, H_VIA, H_CALLID, H_CSEQ, H_FROM, H_TO, H_CLEN };

/* Which hot header (full or compact name) starts at s, e: end of data. The name must be
 * followed by [ \t:] (the regex's "[ \t]*:" after it). */
static int hot_name(const unsigned char *s, const unsigned char *e, const unsigned char **after)
{
    Py_ssize_t avail = e - s;
    int h = H_NONE;
    Py_ssize_t len = 0;
    if (avail < 2)
        return H_NONE;
    unsigned char c1 = s[1];
    int one = (c1 == ':' || IS_WS(c1));
    switch (lower[s[0]]) {
    case 'v':
        if (one) { h = H_VIA; len = 1; }
        else if (avail >= 4 && ieq(s + 1, "ia", 2)) { h = H_VIA; len = 3; }
        break;
    case 'i':
        if (one) { h = H_CALLID; len = 1; }
        break;
    case 'l':
        if (one) { h = H_CLEN; len = 1; }
        break;
    case 'f':
        if (one) { h = H_FROM; len = 1; }
        else if (avail >= 5 && ieq(s + 1, "rom", 3)) { h = H_FROM; len = 4; }
        break;
    case 't':
        if (one) { h = H_TO; len = 1; }
        else if (avail >= 3 && lower[s[1]] == 'o') { h = H_TO; len = 2; }
        break;
    case 'c':
        if (avail >= 5 && ieq(s + 1, "seq", 3)) { h = H_CSEQ; len = 4; }
        else if (avail >= 8 && ieq(s + 1, "all-id", 6)) { h = H_CALLID; len = 7; }
        else if (avail >= 15 && ieq(s + 1, "ontent-length", 13)) { h = H_CLEN; len = 14; }
        break;
    default:
        return H_NONE;
    }
    if (h == H_NONE)
        return H_NONE;
    const unsigned char *q = s + len;
    while (q < e && IS_WS(*q))
        q++;
    if (q >= e || *q != ':')
        return H_NONE;
    *after = q + 1;
    return h;
}

/* The first byte from r on whose class has a bit of `stop` (C_PEND, C_PEND | C_COMMA), or e.
 * Sixteen bytes at a time where SSE2 is: branches and sent-bys are tens of bytes. */
static const unsigned char *param_end(const unsigned char *r, const unsigned char *e,
                                      unsigned char stop)
{
#ifdef __SSE2__
    const __m128i semi = _mm_set1_epi8(';'), sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'),
                  comma = _mm_set1_epi8((stop & C_COMMA) ? ',' : ';');
    while (e - r >= 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)r);
        int m = _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(w, semi), _mm_cmpeq_epi8(w, sp)),
            _mm_or_si128(_mm_cmpeq_epi8(w, tab), _mm_cmpeq_epi8(w, comma))));
        if (m)
            return r + __builtin_ctz((unsigned)m);
        r += 16;
    }
#endif
    while (r < e && !(cls[*r] & stop))
        r++;
    return r;
}

/* The value of the first ;\s*NAME\s*=\s*VALUE parameter in [q, e), as the regexes of via.py
 * (branch: [^;\s]*, may be empty) and uri.py (tag: [^;,\s]+) find it; *out untouched when
 * there is none. */
static void find_param(const unsigned char *q, const unsigned char *e, const char *name,
                       Py_ssize_t len, int comma_ends, int empty_ok, span *out)
{
    for (; q < e && (q = memchr(q, ';', e - q)) != NULL; q++) {
        const unsigned char *r = q + 1, *t;
        while (r < e && IS_WS(*r)) r++;
        if (e - r < len || !ieq(r, name, len))
            continue;
        r += len;
        while (r < e && IS_WS(*r)) r++;
        if (r >= e || *r != '=')
            continue;
        r++;
        while (r < e && IS_WS(*r)) r++;
        t = r;
        unsigned char stop = comma_ends ? C_PEND | C_COMMA : C_PEND;
        r = param_end(r, e, stop);
        if (r == t && !empty_ok)
            continue;
        out->p = t;
        out->n = r - t;
        return;
    }
}

/* parse_via's regex on one stripped Via part. Returns 0 when it does not match. */
typedef struct {
    span transport, sent_by, branch;
} via_t;

static int parse_via(const unsigned char *p, Py_ssize_t n, via_t *v)
{
    const unsigned char *q = p, *e = p + n, *t;
    if (n < 3 || !ieq(q, "sip", 3))
        return 0;
    q += 3;
    while (q < e && IS_WS(*q)) q++;
    if (q >= e || *q != '/') return 0;
    q++;
    while (q < e && IS_WS(*q)) q++;
    t = q;
    while (q < e && *q != '/' && !IS_WS(*q)) q++;
    if (q == t) return 0;
    while (q < e && IS_WS(*q)) q++;
    if (q >= e || *q != '/') return 0;
    q++;
    while (q < e && IS_WS(*q)) q++;
    t = q;
    q = param_end(q, e, C_PEND);
    if (q == t) return 0;
    v->transport.p = t;
    v->transport.n = q - t;
    t = q;
    while (q < e && IS_WS(*q)) q++;
    if (q == t) return 0;
    t = q;
    q = param_end(q, e, C_PEND);
    if (q == t) return 0;
    v->sent_by.p = t;
    v->sent_by.n = q - t;
    while (q < e && IS_WS(*q)) q++;
    v->branch.p = q;
    v->branch.n = 0;
    if (q == e)
        return 1;
    if (*q != ';')
        return 0;
    /* ;\s*branch\s*=\s*([^;\s]*), first match in the params */
    find_param(q, e, "branch", 6, 0, 1, &v->branch);
    return 1;
}

/* tag_of: params after the last '>' (or the whole value), ;\s*tag\s*=\s*([^;,\s]+) */
static span tag_of(span value)
{
    span out = {value.p, 0, 1};
    const unsigned char *q = value.p, *e = value.p + value.n;
    const unsigned char *g = memrchr(value.p, '>', value.n);
    if (g != NULL)
        q = g + 1;
    find_param(q, e, "tag", 3, 1, 0, &out);
    return out;
}

/* does via.py _NEXT_VIA (a comma, then optional space, SIP, optional space, a slash) match
 * at the comma q[-1]? */
static int next_via_at(const unsigned char *q, const unsigned char *e)
{
    while (q < e && IS_WS(*q)) q++;
    if (e - q < 3 || !ieq(q, "sip", 3))
        return 0;
    q += 3;
    while (q < e && IS_WS(*q)) q++;
    return q < e && *q == '/';
}

static PyObject *str_or_none(span s, int mode)
{
    if (!s.set)
        Py_RETURN_NONE;
    return mkstr(s.p, s.n, mode);
}

static PyObject *value_or_none(span s)
{
    if (!s.set)
        Py_RETURN_NONE;
    return value_str(s.p, s.n, 0);
}

static PyObject *cached_or_none(span s)
{
    if (!s.set)
        Py_RETURN_NONE;
    return cached_str(s.p, s.n, 0);
}

static PyObject *scan(PyObject *self, PyObject *arg)
{
    if (sip_head_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_sipscan.init(SipHead) was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(arg))
        Py_RETURN_NONE;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t len = PyBytes_GET_SIZE(arg);
    const unsigned char *e = data + len, *q, *t;

    /* parse(): `not data.strip()` */
    for (q = data; q < e && (cls[*q] & C_BWS); q++)
        ;
    if (q == e) {
        Py_INCREF(reason_empty);
        return reason_empty;
    }

    /* message.py _START_LINE, exactly; anything it rejects is handed back */
    span method = {0}, uri = {0}, reason = {0};
    int status = -1;
    const unsigned char *line_end;
    if (len >= 12 && memcmp(data, "SIP/2.0 ", 8) == 0) {
        q = data + 8;
        if (!(q[0] >= '0' && q[0] <= '9' && q[1] >= '0' && q[1] <= '9'
              && q[2] >= '0' && q[2] <= '9' && q[3] == ' '))
            Py_RETURN_NONE;
        status = (q[0] - '0') * 100 + (q[1] - '0') * 10 + (q[2] - '0');
        q += 4;
        t = q;
        while (q < e && !(cls[*q] & (C_CTRL | C_HIGH)))
            q++;
        if (q >= e || (*q != '\r' && *q != '\n'))
            Py_RETURN_NONE;  /* control or non-ASCII character, or no line end */
        reason.p = t;
        reason.n = q - t;
        reason.set = 1;
        line_end = q;
    } else {
        q = data;
        while (q < e && (cls[*q] & C_TOKEN))
            q++;
        if (q == data || q >= e || *q != ' ')
            Py_RETURN_NONE;
        method.p = data;
        method.n = q - data;
        method.set = 1;
        t = ++q;
        while (q < e && *q != ' ' && !(cls[*q] & (C_CTRL | C_HIGH)))
            q++;
        if (q == t || e - q < 9 || memcmp(q, " SIP/2.0", 8) != 0
                || (q[8] != '\r' && q[8] != '\n'))
            Py_RETURN_NONE;
        uri.p = t;
        uri.n = q - t;
        uri.set = 1;
        line_end = q + 8;
    }

    /* header block: every '\n' before the first CRLF CRLF starts a candidate line */
    span callid = {0}, cseq = {0}, from = {0}, to = {0}, clen = {0};
    span via1 = {0}, via2 = {0};
    Py_ssize_t via_count = 0;
    const unsigned char *head_end = NULL;
    q = line_end;
    for (;;) {
        const unsigned char *nl = memchr(q, '\n', e - q);
        if (nl == NULL)
            Py_RETURN_NONE;  /* no CRLF CRLF: bare LF or no blank line */
        if (nl > data && nl[-1] == '\r' && e - nl >= 3 && nl[1] == '\r' && nl[2] == '\n') {
            head_end = nl - 1;
            break;
        }
        const unsigned char *s = nl + 1;
        q = s;
        if (s >= e)
            continue;  /* memchr finds nothing next */
        if (IS_WS(*s))
            Py_RETURN_NONE;  /* folded line */
        const unsigned char *v;
        int h = hot_name(s, e, &v);
        if (h == H_NONE)
            continue;
        span *slot;
        switch (h) {
        case H_CALLID: slot = &callid; break;
        case H_CSEQ: slot = &cseq; break;
        case H_FROM: slot = &from; break;
        case H_TO: slot = &to; break;
        case H_CLEN: slot = &clen; break;
        default: slot = NULL;
        }
        if (slot != NULL && slot->set)
            continue;  /* first value wins */
        /* the value, up to CR or LF; printable ASCII and TAB only */
        while (v < e && IS_WS(*v)) v++;
        t = v;
        v = value_end(v, e);
        if (v < e && *v != '\r' && *v != '\n')
            Py_RETURN_NONE;
        q = v;
        while (v > t && IS_WS(v[-1])) v--;
        span value = {t, v - t, 1};
        if (slot != NULL) {
            *slot = value;
            continue;
        }
        /* Via: split_vias */
        const unsigned char *ve = value.p + value.n, *part = value.p;
        if (memchr(value.p, ',', value.n) == NULL) {
            if (++via_count == 1) via1 = value;
            else if (via_count == 2) via2 = value;
            continue;
        }
        for (const unsigned char *c = value.p; c <= ve; c++) {
            if (c < ve && !(*c == ',' && next_via_at(c + 1, ve)))
                continue;
            const unsigned char *a = part, *b = c;
            while (a < b && IS_WS(*a)) a++;
            while (b > a && IS_WS(b[-1])) b--;
            part = c + 1;
            if (a == b)
                continue;
            span sp = {a, b - a, 1};
            if (++via_count == 1) via1 = sp;
            else if (via_count == 2) via2 = sp;
        }
    }

    /* CSeq: value.split() into exactly two, an ASCII number of at most 10 digits <= 2**32-1 */
    span cseq_method = {0};
    unsigned long long cseq_num = 0;
    if (cseq.set && cseq.n) {
        const unsigned char *c = cseq.p, *ce = cseq.p + cseq.n;
        t = c;
        while (c < ce && !IS_WS(*c)) c++;
        const unsigned char *n_end = c;
        while (c < ce && IS_WS(*c)) c++;
        const unsigned char *m = c;
        while (c < ce && !IS_WS(*c)) c++;
        const unsigned char *m_end = c;
        while (c < ce && IS_WS(*c)) c++;
        int ok = m < m_end && c == ce && n_end - t <= 10;
        for (const unsigned char *d = t; ok && d < n_end; d++) {
            if (*d < '0' || *d > '9') ok = 0;
            else cseq_num = cseq_num * 10 + (*d - '0');
        }
        if (ok && cseq_num <= 0xFFFFFFFFULL) {
            cseq_method.p = m;
            cseq_method.n = m_end - m;
            cseq_method.set = 1;
        }
    }
    long long content_length = -1;
    if (clen.set && clen.n && clen.n <= 10) {
        content_length = 0;
        for (Py_ssize_t i = 0; i < clen.n; i++) {
            unsigned char d = clen.p[i];
            if (d < '0' || d > '9') { content_length = -1; break; }
            content_length = content_length * 10 + (d - '0');
        }
    }
    via_t top, second;
    int top_ok = via_count >= 1 && parse_via(via1.p, via1.n, &top);
    int second_ok = via_count >= 2 && parse_via(via2.p, via2.n, &second);

    /* the SipHead */
    PyObject *f[N_FIELDS];
    f[0] = cached_or_none(method);
    f[1] = str_or_none(uri, 0);
    if (status >= 0) f[2] = status_int(status);
    else { f[2] = Py_None; Py_INCREF(Py_None); }
    f[3] = cached_or_none(reason);
    f[4] = value_or_none(callid);
    if (cseq_method.set) {
        f[5] = PyLong_FromUnsignedLongLong(cseq_num);
        f[6] = cached_str(cseq_method.p, cseq_method.n, 0);
    } else {
        f[5] = Py_None; Py_INCREF(Py_None);
        f[6] = Py_None; Py_INCREF(Py_None);
    }
    f[7] = str_or_none(from, 0);
    f[8] = from.set ? value_or_none(tag_of(from)) : PyUnicode_New(0, 0);
    f[9] = str_or_none(to, 0);
    f[10] = to.set ? value_or_none(tag_of(to)) : PyUnicode_New(0, 0);
    f[11] = PyLong_FromSsize_t(via_count);
    if (top_ok) {
        f[12] = cached_str(top.transport.p, top.transport.n, 2);
        f[13] = value_str(top.sent_by.p, top.sent_by.n, 1);
        f[14] = mkstr(top.branch.p, top.branch.n, 0);
    } else {
        f[12] = Py_None; f[13] = Py_None; f[14] = Py_None;
        Py_INCREF(Py_None); Py_INCREF(Py_None); Py_INCREF(Py_None);
    }
    if (second_ok) {
        f[15] = value_str(second.sent_by.p, second.sent_by.n, 1);
        f[16] = mkstr(second.branch.p, second.branch.n, 0);
    } else {
        f[15] = Py_None; f[16] = Py_None;
        Py_INCREF(Py_None); Py_INCREF(Py_None);
    }
    if (clen.set) f[17] = PyLong_FromLongLong(content_length);
    else { f[17] = Py_None; Py_INCREF(Py_None); }
    head_end += 4;
    f[18] = PyBytes_FromStringAndSize((const char *)head_end, e - head_end);
    f[19] = PyTuple_New(0);  /* the shared empty tuple: untracked (and never a cycle) */

    PyTypeObject *tp = (PyTypeObject *)sip_head_type;
    PyObject *res = NULL;
    int i;
    for (i = 0; i < N_FIELDS; i++)
        if (f[i] == NULL)
            goto fail;
    res = tp->tp_alloc(tp, N_FIELDS);
    if (res == NULL)
        goto fail;
    for (i = 0; i < N_FIELDS; i++)
        PyTuple_SET_ITEM(res, i, f[i]);
    /* str, int, bytes, None and the shared empty tuple (f[19]): no reference cycle can go
     * through a SipHead, and the collector need not walk the many a replay keeps alive */
    PyObject_GC_UnTrack(res);
    return res;
fail:
    for (i = 0; i < N_FIELDS; i++)
        Py_XDECREF(f[i]);
    return NULL;
}

/* -- URIs: the common case of sip_dissect/uri.py's _name_addr_uri_py and _uri_parts_py --
 *
 * Both take only exact str objects whose characters are all printable ASCII or TAB: then
 * str.strip() removes just spaces and TABs, .lower() and re's IGNORECASE are the ASCII ones,
 * and every slice is a byte range. Anything else gives None: the Python twin decides.
 * uri_parts handles the sip:, sips: and tel: schemes only (case-insensitive) and "";
 * any other scheme, or none, is handed back too. tests/test_native_uri.py compares the twins.
 */
static PyObject *uri_parts_type;  /* the UriParts NamedTuple class (init_uri) */

/* the characters of s when it is an exact str of printable ASCII and TAB only, else NULL */
static const unsigned char *clean_ascii(PyObject *s, Py_ssize_t *n)
{
    if (!PyUnicode_CheckExact(s))
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        PyErr_Clear();
        return NULL;
    }
#endif
    if (!PyUnicode_IS_ASCII(s))
        return NULL;
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t len = PyUnicode_GET_LENGTH(s), i = 0;
    for (; len - i >= 8; i += 8) {  /* ASCII already: no control byte, eight at a time */
        uint64_t w, x;
        memcpy(&w, p + i, 8);
        x = w ^ (ONES * 0x7f);
        if ((((w - ONES * 0x20) & ~w) | ((x - ONES) & ~x)) & HIGHS)
            break;  /* a byte < 0x20 (maybe TAB) or DEL: byte by byte */
    }
    for (; i < len; i++)
        if (cls[p[i]] & C_CTRL)
            return NULL;
    *n = len;
    return p;
}

/* The URI span of a name-addr/addr-spec value p[0:n] (clean ASCII): inside <> when present,
 * else up to the first ';'; stripped. 0: a display name without <> (malformed), no URI. */
static int name_addr_span(const unsigned char *p, Py_ssize_t n, span *uri)
{
    const unsigned char *a, *b, *e = p + n;
    uri->p = p;
    uri->n = 0;
    if (n == 0)
        return 1;
    const unsigned char *lt = memchr(p, '<', n);
    if (lt != NULL) {
        a = lt + 1;
        b = memchr(a, '>', e - a);
        if (b == NULL)
            b = e;
    } else if (p[0] == '"') {
        return 0;
    } else {
        a = p;
        b = memchr(p, ';', n);
        if (b == NULL)
            b = e;
    }
    while (a < b && IS_WS(*a)) a++;  /* .strip(): only ' ' and TAB can be there */
    while (b > a && IS_WS(b[-1])) b--;
    uri->p = a;
    uri->n = b - a;
    return 1;
}

/* name_addr_uri(value) -> str | None */
static PyObject *name_addr_uri(PyObject *self, PyObject *value)
{
    Py_ssize_t n;
    span uri;
    if (value == Py_None)
        return PyUnicode_New(0, 0);
    const unsigned char *p = clean_ascii(value, &n);
    if (p == NULL)
        Py_RETURN_NONE;
    if (!name_addr_span(p, n, &uri))
        return PyUnicode_New(0, 0);
    return mkstr(uri.p, uri.n, 0);
}

/* User, host and port (-1: none) of the sip:, sips: or tel: URI p[0:n] (clean ASCII; n == 0:
 * all empty). 0: another scheme, which uri.py's _uri_parts_py decides. */
static int uri_span_parts(const unsigned char *p, Py_ssize_t n, span *user, span *host,
                          long *port_num)
{
    const unsigned char *q, *e, *c;
    int tel = 0;
    if (n == 0)
        q = p;
    else if (n >= 4 && ieq(p, "sip:", 4))
        q = p + 4;
    else if (n >= 5 && ieq(p, "sips:", 5))
        q = p + 5;
    else if (n >= 4 && ieq(p, "tel:", 4)) {
        q = p + 4;
        tel = 1;
    } else
        return 0;
    /* .partition(";")[0].partition("?")[0] */
    for (e = q; e < p + n && *e != ';' && *e != '?'; e++)
        ;
    span port = {q, 0, 1};
    *user = *host = port;
    if (tel) {
        user->n = e - q;
    } else {
        const unsigned char *hp = q, *at = memrchr(q, '@', e - q);
        if (at != NULL) {
            c = memchr(q, ':', at - q);  /* drop a password */
            user->n = (c != NULL ? c : at) - q;
            hp = at + 1;
        }
        host->p = hp;
        if (hp < e && *hp == '[') {
            c = memchr(hp, ']', e - hp);
            if (c != NULL) {
                host->n = c + 1 - hp;
                if (c + 1 < e && c[1] == ':') {
                    port.p = c + 2;
                    port.n = e - port.p;
                }
            } else {
                host->n = e - hp;
            }
        } else {
            c = memchr(hp, ':', e - hp);
            host->n = (c != NULL ? c : e) - hp;
            if (c != NULL) {
                port.p = c + 1;
                port.n = e - port.p;
            }
        }
    }
    *port_num = -1;
    if (port.n >= 1 && port.n <= 5) {
        long v = 0;
        for (Py_ssize_t i = 0; i < port.n; i++) {
            unsigned char d = port.p[i];
            if (d < '0' || d > '9')
                return 1;
            v = v * 10 + (d - '0');
        }
        *port_num = v;
    }
    return 1;
}

/* uri_parts(uri) -> UriParts | None */
static PyObject *uri_parts(PyObject *self, PyObject *uri)
{
    if (uri_parts_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_sipscan.init_uri(UriParts) was not called");
        return NULL;
    }
    Py_ssize_t n;
    span user, host;
    long port_num;
    const unsigned char *p = clean_ascii(uri, &n);
    if (p == NULL || !uri_span_parts(p, n, &user, &host, &port_num))
        Py_RETURN_NONE;
    PyObject *f[3];
    f[0] = mkstr(user.p, user.n, 0);
    f[1] = mkstr(host.p, host.n, 0);
    if (port_num >= 0) f[2] = PyLong_FromLong(port_num);
    else { f[2] = Py_None; Py_INCREF(Py_None); }
    PyTypeObject *tp = (PyTypeObject *)uri_parts_type;
    PyObject *res = NULL;
    int i;
    for (i = 0; i < 3; i++)
        if (f[i] == NULL)
            goto fail;
    res = tp->tp_alloc(tp, 3);
    if (res == NULL)
        goto fail;
    for (i = 0; i < 3; i++)
        PyTuple_SET_ITEM(res, i, f[i]);
    PyObject_GC_UnTrack(res);  /* two str and an int or None: never in a cycle */
    return res;
fail:
    for (i = 0; i < 3; i++)
        Py_XDECREF(f[i]);
    return NULL;
}

/* User and host of a From/To value (None: as ""), or 0 when Python must decide */
static int header_user_host(PyObject *value, span *user, span *host)
{
    Py_ssize_t n = 0;
    const unsigned char *p = (const unsigned char *)"";
    span uri;
    long port;
    if (value != Py_None && (p = clean_ascii(value, &n)) == NULL)
        return 0;
    if (!name_addr_span(p, n, &uri))
        uri.n = 0;  /* no URI: all parts empty */
    return uri_span_parts(uri.p, uri.n, user, host, &port);
}

/* request_uris(from_value, to_value, ruri) -> ($fU, $fd, $tU, $rU, $rd) | None: uri.py's
 * request_uris without the five intermediate objects; None when any part is not for C */
static PyObject *request_uris(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "request_uris() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    span fu, fd, tu, td, ru, rd;
    Py_ssize_t n = 0;
    long port;
    const unsigned char *p = (const unsigned char *)"";
    if (!header_user_host(args[0], &fu, &fd) || !header_user_host(args[1], &tu, &td))
        Py_RETURN_NONE;
    if (args[2] != Py_None && (p = clean_ascii(args[2], &n)) == NULL)
        Py_RETURN_NONE;
    if (!uri_span_parts(p, n, &ru, &rd, &port))
        Py_RETURN_NONE;
    span parts[5] = {fu, fd, tu, ru, rd};
    PyObject *res = PyTuple_New(5);
    if (res == NULL)
        return NULL;
    for (int i = 0; i < 5; i++) {
        PyObject *s = mkstr(parts[i].p, parts[i].n, 0);
        if (s == NULL) {
            Py_DECREF(res);
            return NULL;
        }
        PyTuple_SET_ITEM(res, i, s);
    }
    PyObject_GC_UnTrack(res);  /* five str: never in a cycle */
    return res;
}

/* Keep cls_obj in *slot when it is a NamedTuple class (a tuple subclass) of n fields. */
static PyObject *set_namedtuple(PyObject **slot, PyObject *cls_obj, Py_ssize_t want,
                                const char *name)
{
    if (!PyType_Check(cls_obj) || !PyType_IsSubtype((PyTypeObject *)cls_obj, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "expected the %s NamedTuple class", name);
        return NULL;
    }
    PyObject *fields = PyObject_GetAttrString(cls_obj, "_fields");
    if (fields == NULL)
        return NULL;
    Py_ssize_t n = PyObject_Length(fields);
    Py_DECREF(fields);
    if (n < 0)
        return NULL;
    if (n != want) {
        PyErr_Format(PyExc_TypeError, "%s has %zd fields, _sipscan fills %zd", name, n, want);
        return NULL;
    }
    Py_INCREF(cls_obj);
    Py_XSETREF(*slot, cls_obj);
    Py_RETURN_NONE;
}

static PyObject *init(PyObject *self, PyObject *cls_obj)
{
    return set_namedtuple(&sip_head_type, cls_obj, N_FIELDS, "SipHead");
}

static PyObject *init_uri(PyObject *self, PyObject *cls_obj)
{
    return set_namedtuple(&uri_parts_type, cls_obj, 3, "UriParts");
}

static PyMethodDef methods[] = {
    {"init", init, METH_O, "init(SipHead): the NamedTuple class scan() returns."},
    {"scan", scan, METH_O,
     "scan(payload) -> SipHead, a sip.* reason, or None when scan_py must decide."},
    {"init_uri", init_uri, METH_O, "init_uri(UriParts): the NamedTuple class uri_parts() returns."},
    {"uri_parts", uri_parts, METH_O,
     "uri_parts(uri) -> UriParts, or None when uri.py's _uri_parts_py must decide."},
    {"request_uris", (PyCFunction)(void (*)(void))request_uris, METH_FASTCALL,
     "request_uris(from_value, to_value, ruri) -> ($fU, $fd, $tU, $rU, $rd), or None when "
     "uri.py's request_uris must decide."},
    {"name_addr_uri", name_addr_uri, METH_O,
     "name_addr_uri(value) -> str, or None when uri.py's _name_addr_uri_py must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sipscan",
    "Native SIP scanner and URI parser: the common case of sip_dissect.scan.scan_py and of "
    "sip_dissect.uri's name_addr_uri and uri_parts.", -1, methods,
};

PyMODINIT_FUNC PyInit__sipscan(void)
{
    init_tables();
    if (reason_empty == NULL) {
        reason_empty = PyUnicode_InternFromString("sip.empty");
        if (reason_empty == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
