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
static PyObject *empty_tuple;    /* () */
static PyObject *small_ints[256];  /* 0-255, Python's own: a load, not a call, per int */

/* character classes */
#define C_TOKEN 1   /* RFC 3261 token (message.py _TOKEN) */
#define C_CTRL 2    /* \x00-\x1f except TAB, and \x7f */
#define C_HIGH 4    /* >= 0x80 */
#define C_WS 8      /* space, TAB */
#define C_BWS 16    /* bytes.strip() whitespace: space \t \n \r \x0b \x0c */
#define C_PEND 32   /* ends a parameter value: ';', space, TAB */
#define C_COMMA 64  /* ',' (ends a tag value too) */
#define C_HOT1 128  /* starts a hot header name: v i l f t c, either case */
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
        if (c && strchr("vilftcVILFTC", c))
            k |= C_HOT1;
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
#ifdef __SSE2__
/* sixteen at a time where SSE2 is (every x86-64): a signed compare flags < 0x20 and >= 0x80
 * at once (TAB excepted); the mask of those and DEL */
static inline __m128i unclean16(__m128i w)
{
    __m128i low = _mm_andnot_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('\t')),
                                   _mm_cmplt_epi8(w, _mm_set1_epi8(0x20)));
    return _mm_or_si128(low, _mm_cmpeq_epi8(w, _mm_set1_epi8(0x7f)));
}
#endif

static const unsigned char *value_end(const unsigned char *v, const unsigned char *e)
{
#ifdef __SSE2__
    while (e - v >= 16) {
        int m = _mm_movemask_epi8(unclean16(_mm_loadu_si128((const __m128i *)v)));
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

/* The end of a request-URI: the first space, control character but TAB, or byte >= 0x80 */
static const unsigned char *uri_end(const unsigned char *v, const unsigned char *e)
{
#ifdef __SSE2__
    while (e - v >= 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)v);
        int m = _mm_movemask_epi8(_mm_or_si128(unclean16(w),
                                               _mm_cmpeq_epi8(w, _mm_set1_epi8(' '))));
        if (m)
            return v + __builtin_ctz((unsigned)m);
        v += 16;
    }
#endif
    while (v < e && *v != ' ' && !(cls[*v] & (C_CTRL | C_HIGH)))
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

/* Some values repeat from message to message: a call's Call-ID and tags, a host's Via
 * sent-by (the keys of the layers' dicts), the From and To values of a call, the branch of a
 * transaction. Their str objects are kept in small direct-mapped caches: the messages of a
 * call share one, which saves its allocation and freeing, and the dialog layer hashes a key
 * once (a str caches its hash) instead of once per message. Equal strings, so sharing them
 * changes no result. The keys have a cache of their own, so that the longer-lived of them
 * (a call's Call-ID until its BYE) are not pushed out by the rest. (Request-URIs are not
 * cached: a call's requests rarely repeat theirs.) */
#define VCACHE_SLOTS 4096  /* a power of two */
#define VCACHE_MAX 256
typedef struct {
    uint64_t h;
    PyObject *s;
    PyObject *tag;  /* texts: the tag of a From or To value, NULL for a branch */
} vslot;
static vslot keys[VCACHE_SLOTS];   /* Call-IDs, tags, sent-bys */
static vslot texts[VCACHE_SLOTS];  /* From and To values with their tags, branches */

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

/* does p[0:n] (ASCII) hold an upper-case letter? Eight bytes at a time: for b < 0x80,
 * b + 0x3f has its high bit set from 'A' on, b + 0x25 from '[' on */
static int has_upper(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if ((w + ONES * 0x3f) & ~(w + ONES * 0x25) & HIGHS)
            return 1;
    }
    for (; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            return 1;
    return 0;
}

/* the slot of p[0:n] in cache when it holds that string, else NULL; *h: the hash */
static vslot *cache_hit(vslot *cache, const unsigned char *p, Py_ssize_t n, uint64_t *h)
{
    *h = vhash(p, (size_t)n);
    vslot *slot = &cache[*h & (VCACHE_SLOTS - 1)];
    if (slot->s != NULL && slot->h == *h && PyUnicode_GET_LENGTH(slot->s) == n
            && memcmp(PyUnicode_1BYTE_DATA(slot->s), p, n) == 0)
        return slot;
    return NULL;
}

/* mkstr(p, n, mode) through a cache (modes 0 and 1) */
static PyObject *value_str(vslot *cache, const unsigned char *p, Py_ssize_t n, int mode)
{
    unsigned char buf[VCACHE_MAX];
    if (n == 0 || n > VCACHE_MAX || mode > 1)
        return mkstr(p, n, mode);
    if (mode == 1 && has_upper(p, n)) {  /* host names and addresses are mostly lower case */
        for (Py_ssize_t i = 0; i < n; i++)
            buf[i] = lower[p[i]];
        p = buf;
    }
    uint64_t h;
    vslot *slot = cache_hit(cache, p, n, &h);
    if (slot != NULL)
        return Py_NewRef(slot->s);
    PyObject *s = mkstr(p, n, 0);
    if (s == NULL)
        return NULL;
    slot = &cache[h & (VCACHE_SLOTS - 1)];
    Py_XSETREF(slot->s, Py_NewRef(s));
    Py_CLEAR(slot->tag);
    slot->h = h;
    return s;
}

/* int(status), 100-999 kept (ints are immutable: sharing one is invisible) */
static PyObject *statuses[1000];

static PyObject *status_int(int status)
{
    if (status < 100)  /* small ints are shared by Python itself */
        return Py_NewRef(small_ints[status]);
    if (statuses[status] == NULL && (statuses[status] = PyLong_FromLong(status)) == NULL)
        return NULL;
    return Py_NewRef(statuses[status]);
}

/* CSeq numbers and Content-Lengths repeat across a transaction's messages (a call's CSeq is
 * often above Python's small ints, an SDP body's length always): their int objects are kept
 * in a small direct-mapped cache by value */
#define ICACHE_SLOTS 1024  /* a power of two */
static struct {
    unsigned long long v;
    PyObject *o;
} icache[ICACHE_SLOTS];

static PyObject *cached_int(unsigned long long v)
{
    if (v < 256)  /* small ints are shared by Python itself */
        return Py_NewRef(small_ints[v]);
    unsigned i = (unsigned)(v ^ (v >> 10)) & (ICACHE_SLOTS - 1);
    if (icache[i].o != NULL && icache[i].v == v)
        return Py_NewRef(icache[i].o);
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (o == NULL)
        return NULL;
    Py_XSETREF(icache[i].o, Py_NewRef(o));
    icache[i].v = v;
    return o;
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

/* An ASCII literal of up to 8 bytes to compare a word with, letters in either case: a letter
 * b matches 'x' when (b | 0x20) == 'x'; other bytes must be equal (CR | 0x20 is '-'). */
typedef struct {
    uint64_t want, fold, keep;
} word_t;

static word_t W_TO, W_VIA, W_FROM, W_CSEQ, W_CALL_ID, W_CONTENT_, W_T_LENGTH, W_SIP_2_0_;

/* a parameter name, and the word of its usual spelling, "name=" */
typedef struct {
    const char *name;
    Py_ssize_t len;
    word_t eq;
} param_t;

static param_t P_TAG = {"tag", 3}, P_BRANCH = {"branch", 6};

static void make_word(word_t *w, const char *lit)
{
    size_t n = strlen(lit);
    w->want = w->fold = w->keep = 0;
    for (size_t i = 0; i < n && i < 8; i++) {
        unsigned char c = (unsigned char)lit[i];
        w->want |= (uint64_t)c << (8 * i);
        if (c >= 'a' && c <= 'z')
            w->fold |= (uint64_t)0x20 << (8 * i);
        w->keep |= (uint64_t)0xff << (8 * i);
    }
}

static int word_is(const unsigned char *p, const word_t *w)  /* 8 readable bytes at p */
{
    uint64_t x;
    memcpy(&x, p, 8);
    return ((x | w->fold) & w->keep) == w->want;
}

static void init_words(void)
{
    make_word(&W_TO, "to");
    make_word(&W_VIA, "via");
    make_word(&W_FROM, "from");
    make_word(&W_CSEQ, "cseq");
    make_word(&W_CALL_ID, "call-id");
    make_word(&W_CONTENT_, "content-");
    make_word(&W_T_LENGTH, "t-length");  /* bytes 6-13 of content-length */
    make_word(&W_SIP_2_0_, "sip/2.0/");
    make_word(&P_TAG.eq, "tag=");
    make_word(&P_BRANCH.eq, "branch=");
}

/* the index of the first ':', space or TAB in the 16 bytes at n, 16 when none */
static int name_len(const unsigned char *n)
{
#ifdef __SSE2__
    __m128i w = _mm_loadu_si128((const __m128i *)n);
    int m = _mm_movemask_epi8(_mm_or_si128(
        _mm_cmpeq_epi8(w, _mm_set1_epi8(':')),
        _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8(' ')), _mm_cmpeq_epi8(w, _mm_set1_epi8('\t')))));
    return m ? __builtin_ctz((unsigned)m) : 16;
#else
    int i = 0;
    while (i < 16 && n[i] != ':' && !IS_WS(n[i]))
        i++;
    return i;
#endif
}

/* Which hot header (full or compact name) starts at s, e: end of data. The name must be
 * followed by [ \t:] (the regex's "[ \t]*:" after it): so its length is that of the text
 * before the first of those, and the longest, content-length, has 14. */
static int hot_name(const unsigned char *s, const unsigned char *e, const unsigned char **after)
{
    unsigned char pad[16];
    const unsigned char *n = s;
    if (!(cls[*s] & C_HOT1))  /* Max-Forwards, Allow, User-Agent... */
        return H_NONE;
    if (e - s < 16) {  /* the end of the data is near: the bytes there, NULs after */
        memset(pad, 0, sizeof(pad));
        memcpy(pad, s, e - s);
        n = pad;
    }
    int len = name_len(n), h = H_NONE;
    switch (len) {
    case 1:
        switch (lower[n[0]]) {
        case 'v': h = H_VIA; break;
        case 'i': h = H_CALLID; break;
        case 'l': h = H_CLEN; break;
        case 'f': h = H_FROM; break;
        case 't': h = H_TO; break;
        }
        break;
    case 2: if (word_is(n, &W_TO)) h = H_TO; break;
    case 3: if (word_is(n, &W_VIA)) h = H_VIA; break;
    case 4:
        if (word_is(n, &W_FROM)) h = H_FROM;
        else if (word_is(n, &W_CSEQ)) h = H_CSEQ;
        break;
    case 7: if (word_is(n, &W_CALL_ID)) h = H_CALLID; break;
    case 14:
        if (word_is(n, &W_CONTENT_) && word_is(n + 6, &W_T_LENGTH)) h = H_CLEN;
        break;
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
 * Sixteen bytes at a time where SSE2 is (branches and sent-bys are tens of bytes), reading
 * on past e up to lim, the end of the data, rather than finishing the value byte by byte. */
static const unsigned char *param_end(const unsigned char *r, const unsigned char *e,
                                      const unsigned char *lim, unsigned char stop)
{
#ifdef __SSE2__
    const __m128i semi = _mm_set1_epi8(';'), sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'),
                  comma = _mm_set1_epi8((stop & C_COMMA) ? ',' : ';');
    while (lim - r >= 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)r);
        int m = _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(w, semi), _mm_cmpeq_epi8(w, sp)),
            _mm_or_si128(_mm_cmpeq_epi8(w, tab), _mm_cmpeq_epi8(w, comma))));
        if (m) {
            r += __builtin_ctz((unsigned)m);
            return r < e ? r : e;
        }
        r += 16;
        if (r >= e)
            return e;
    }
#endif
    while (r < e && !(cls[*r] & stop))
        r++;
    return r;
}

/* The value of the first ;\s*NAME\s*=\s*VALUE parameter in [q, e), as the regexes of via.py
 * (branch: [^;\s]*, may be empty) and uri.py (tag: [^;,\s]+) find it; *out untouched when
 * there is none. */
static void find_param(const unsigned char *q, const unsigned char *e, const unsigned char *lim,
                       const param_t *name, int comma_ends, int empty_ok, span *out)
{
    Py_ssize_t len = name->len;
    for (; q < e && (*q == ';' || (q = memchr(q, ';', e - q)) != NULL); q++) {
        const unsigned char *r = q + 1, *t;
        if (e - r > len && lim - r >= 8 && word_is(r, &name->eq)) {
            r += len + 1;  /* ;name= as usually written */
        } else {
            while (r < e && IS_WS(*r)) r++;
            if (e - r < len || !ieq(r, name->name, len))
                continue;
            r += len;
            while (r < e && IS_WS(*r)) r++;
            if (r >= e || *r != '=')
                continue;
            r++;
        }
        while (r < e && IS_WS(*r)) r++;
        t = r;
        unsigned char stop = comma_ends ? C_PEND | C_COMMA : C_PEND;
        r = param_end(r, e, lim, stop);
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

static int parse_via(const unsigned char *p, Py_ssize_t n, const unsigned char *lim, via_t *v)
{
    const unsigned char *q = p, *e = p + n, *t;
    if (n > 8 && lim - p >= 8 && word_is(p, &W_SIP_2_0_)) {
        q += 8;  /* SIP/2.0/ as usually written */
    } else {
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
    }
    while (q < e && IS_WS(*q)) q++;
    t = q;
    q = param_end(q, e, lim, C_PEND);
    if (q == t) return 0;
    v->transport.p = t;
    v->transport.n = q - t;
    t = q;
    while (q < e && IS_WS(*q)) q++;
    if (q == t) return 0;
    t = q;
    q = param_end(q, e, lim, C_PEND);
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
    find_param(q, e, lim, &P_BRANCH, 0, 1, &v->branch);
    return 1;
}

/* tag_of: params after the last '>' (or the whole value), ;\s*tag\s*=\s*([^;,\s]+) */
static span tag_of(span value, const unsigned char *lim)
{
    span out = {value.p, 0, 1};
    const unsigned char *q = value.p, *e = value.p + value.n;
    const unsigned char *g = memrchr(value.p, '>', value.n);
    if (g != NULL)
        q = g + 1;
    find_param(q, e, lim, &P_TAG, 1, 0, &out);
    return out;
}

/* A From or To header: its value (None when absent) in *value, its tag ("" when none) in *tag.
 * The tag is the value's: a value found in the texts cache comes with it. NULLs when an
 * allocation failed. */
static void name_addr(span v, const unsigned char *lim, PyObject **value, PyObject **tag)
{
    uint64_t h = 0;
    vslot *slot = NULL;
    if (!v.set) {
        *value = Py_NewRef(Py_None);
        *tag = PyUnicode_New(0, 0);
        return;
    }
    int cached = v.n > 0 && v.n <= VCACHE_MAX;
    if (cached && (slot = cache_hit(texts, v.p, v.n, &h)) != NULL && slot->tag != NULL) {
        *value = Py_NewRef(slot->s);
        *tag = Py_NewRef(slot->tag);
        return;
    }
    span t = tag_of(v, lim);
    *value = mkstr(v.p, v.n, 0);
    *tag = value_str(keys, t.p, t.n, 0);
    if (cached && *value != NULL && *tag != NULL) {
        slot = &texts[h & (VCACHE_SLOTS - 1)];
        Py_XSETREF(slot->s, Py_NewRef(*value));
        Py_XSETREF(slot->tag, Py_NewRef(*tag));
        slot->h = h;
    }
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

static PyObject *value_or_none(vslot *cache, span s)
{
    if (!s.set)
        Py_RETURN_NONE;
    return value_str(cache, s.p, s.n, 0);
}

static PyObject *cached_or_none(span s)
{
    if (!s.set)
        Py_RETURN_NONE;
    return cached_str(s.p, s.n, 0);
}

/* The last SipHead returned. When it comes back to the next scan() with no reference but this
 * one, nothing can see it any more: it is refilled and returned again instead of being freed
 * and another allocated (as zip() reuses its result tuple). Per message that is most of a
 * record's allocation and deallocation; the values in it are new as ever. */
static PyObject *last_head;

/* A SipHead of the N_FIELDS new references in f (stolen), or NULL when one of them is NULL
 * (a failed allocation, whose error is set). */
static PyObject *new_head(PyObject **f)
{
    PyTypeObject *tp = (PyTypeObject *)sip_head_type;
    PyObject *res = last_head;
    int i, missing = 0;
    if (res != NULL && Py_REFCNT(res) == 1 && Py_TYPE(res) == tp) {
        Py_INCREF(res);
    } else {
        /* not tracked (see below), and its items are all set next: no zeroing */
        res = (PyObject *)PyObject_GC_NewVar(PyTupleObject, tp, N_FIELDS);
        if (res == NULL) {
            for (i = 0; i < N_FIELDS; i++)
                Py_XDECREF(f[i]);
            return NULL;
        }
        memset(&PyTuple_GET_ITEM(res, 0), 0, N_FIELDS * sizeof(PyObject *));
        Py_XSETREF(last_head, Py_NewRef(res));
    }
    PyObject **items = &PyTuple_GET_ITEM(res, 0);
    for (i = 0; i < N_FIELDS; i++) {
        PyObject *old = items[i];
        items[i] = f[i];
        missing |= f[i] == NULL;
        Py_XDECREF(old);  /* str, int, bytes, None, (): no code runs */
    }
    if (missing) {  /* a record with holes: the error is returned, the record dropped */
        Py_DECREF(res);
        Py_CLEAR(last_head);
        return NULL;
    }
    /* str, int, bytes, None and the shared empty tuple: no reference cycle can go through a
     * SipHead, and the collector need not walk the many a replay keeps alive */
    return res;
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
        q = uri_end(q, e);
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
    const unsigned char *head_end = NULL, *next_nl = NULL;
    q = line_end;
    for (;;) {
        /* (bytes objects end with a NUL: nl[1] can be read) */
        const unsigned char *nl = next_nl != NULL ? next_nl : memchr(q, '\n', e - q);
        next_nl = NULL;
        if (nl == NULL)
            Py_RETURN_NONE;  /* no CRLF CRLF: bare LF or no blank line */
        if (nl[1] == '\r' && e - nl >= 3 && nl[2] == '\n' && nl > data && nl[-1] == '\r') {
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
        if (v < e)  /* the line's end is here: no search for it */
            next_nl = *v == '\n' ? v : v[1] == '\n' ? v + 1 : NULL;
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

    /* CSeq: value.split() into exactly two, an ASCII number of at most 10 digits <= 2**32-1
     * (the value is stripped: it starts and ends with neither space nor TAB) */
    span cseq_method = {0};
    unsigned long long cseq_num = 0;
    if (cseq.set && cseq.n) {
        const unsigned char *c = cseq.p, *ce = cseq.p + cseq.n;
        while (c < ce && *c >= '0' && *c <= '9')
            cseq_num = cseq_num * 10 + (*c++ - '0');
        int ok = c > cseq.p && c - cseq.p <= 10 && c < ce && IS_WS(*c);
        while (c < ce && IS_WS(*c)) c++;
        const unsigned char *m = c;
        while (c < ce && !IS_WS(*c)) c++;
        if (ok && c == ce && cseq_num <= 0xFFFFFFFFULL) {
            cseq_method.p = m;
            cseq_method.n = c - m;
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
    int top_ok = via_count >= 1 && parse_via(via1.p, via1.n, e, &top);
    int second_ok = via_count >= 2 && parse_via(via2.p, via2.n, e, &second);

    /* the SipHead */
    PyObject *f[N_FIELDS];
    f[0] = cached_or_none(method);
    f[1] = str_or_none(uri, 0);
    if (status >= 0) f[2] = status_int(status);
    else { f[2] = Py_None; Py_INCREF(Py_None); }
    f[3] = cached_or_none(reason);
    f[4] = value_or_none(keys, callid);
    if (cseq_method.set) {
        f[5] = cached_int(cseq_num);
        f[6] = cached_str(cseq_method.p, cseq_method.n, 0);
    } else {
        f[5] = Py_None; Py_INCREF(Py_None);
        f[6] = Py_None; Py_INCREF(Py_None);
    }
    name_addr(from, e, &f[7], &f[8]);
    name_addr(to, e, &f[9], &f[10]);
    f[11] = via_count < 256 ? Py_NewRef(small_ints[via_count]) : PyLong_FromSsize_t(via_count);
    if (top_ok) {
        f[12] = cached_str(top.transport.p, top.transport.n, 2);
        f[13] = value_str(keys, top.sent_by.p, top.sent_by.n, 1);
        f[14] = value_str(texts, top.branch.p, top.branch.n, 0);
    } else {
        f[12] = Py_None; f[13] = Py_None; f[14] = Py_None;
        Py_INCREF(Py_None); Py_INCREF(Py_None); Py_INCREF(Py_None);
    }
    if (second_ok) {
        f[15] = value_str(keys, second.sent_by.p, second.sent_by.n, 1);
        f[16] = value_str(texts, second.branch.p, second.branch.n, 0);
    } else {
        f[15] = Py_None; f[16] = Py_None;
        Py_INCREF(Py_None); Py_INCREF(Py_None);
    }
    if (clen.set) f[17] = content_length >= 0 ? cached_int((unsigned long long)content_length)
                                             : PyLong_FromLong(-1);
    else { f[17] = Py_None; Py_INCREF(Py_None); }
    head_end += 4;
    f[18] = PyBytes_FromStringAndSize((const char *)head_end, e - head_end);
    f[19] = Py_NewRef(empty_tuple);  /* untracked (and never a cycle) */

    return new_head(f);
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
    init_words();
    if (reason_empty == NULL) {
        reason_empty = PyUnicode_InternFromString("sip.empty");
        if (reason_empty == NULL)
            return NULL;
    }
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    for (int i = 0; i < 256; i++)
        if (small_ints[i] == NULL && (small_ints[i] = PyLong_FromLong(i)) == NULL)
            return NULL;
    return PyModule_Create(&module);
}
