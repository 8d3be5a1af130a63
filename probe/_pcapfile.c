/* Classic pcap files read in place: the file mapped, its records walked without copying,
 * libpcap's own compiled BPF program (pcapy's get_bpf) run on each, and the matching frames
 * handed out in batches laid out as pcapy-ng's next_batch lays them out (data, meta), so that
 * the decoder cannot tell the two apart.
 *
 * Why: libpcap reads a file with two stdio reads per record; on a media-heavy mirror, where
 * the filter drops 99.6 % of the records, that is most of the time of a replay.
 *
 * Only what it is sure of: the four standard magics (micro- and nanosecond, either byte
 * order), version 2.4, Ethernet, Linux cooked (v1, v2) and raw IP (228, 229, 101 -> 12),
 * records no longer than the snapshot length, BPF programs that pass the same checks as
 * libpcap's bpf_validate. A file it does not take raises ValueError at open; a record it does
 * not take (cut, longer than the snapshot) ends the walk with `unsure` set, and the caller
 * goes on with libpcap from that frame, which says what it makes of it.
 * tests/test_pcapfile.py compares the frames of both readers on every capture.
 *
 * Walked ahead (read_ahead): a thread of the reader's own, which never takes the GIL, walks
 * the next batches into buffers of its own while the layers work on the one before; each
 * batch is handed out as a Batch, a read-only buffer that gives its memory back to the reader
 * when freed. The walk and its copies then run on the other core, and the bytes a batch
 * holds are never copied again (measured 2026-12-07: see bench/README.md).
 *
 * BPF semantics: the classic BPF machine (McCanne and Jacobson, 1993) as libpcap 1.9-1.10 runs
 * it on files: a load outside the captured bytes rejects the frame, a division by X = 0
 * rejects it, a shift by X >= 32 gives 0.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SNAPLEN 262144 /* libpcap's max_snaplen_for_dlt for every link type taken here */
#define MAX_INSNS 4096     /* libpcap's BPF_MAXINSNS */
#define MEMWORDS 16
/* pages walked are let go of every this many bytes: the mapping would otherwise count the
 * whole file in the process's resident size (shared page cache, but alarming in `ps`) */
#define RELEASE_EVERY (8u << 20)

/* classic BPF opcodes (pcap/bpf.h) */
#define CLS(c) ((c) & 0x07)
#define B_LD 0x00
#define B_LDX 0x01
#define B_ST 0x02
#define B_STX 0x03
#define B_ALU 0x04
#define B_JMP 0x05
#define B_RET 0x06
#define B_MISC 0x07
#define B_W 0x00
#define B_H 0x08
#define B_B 0x10
#define B_IMM 0x00
#define B_ABS 0x20
#define B_IND 0x40
#define B_MEM 0x60
#define B_LEN 0x80
#define B_MSH 0xa0
#define B_K 0x00
#define B_X 0x08
#define B_A 0x10

typedef struct {
    uint16_t code;
    uint8_t jt, jf;
    uint32_t k;
} Insn;

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }

/* Every instruction run() knows, as (name, opcode): the decoded program holds where each one's
 * code is in run(), which jumps straight to it (GCC's labels as values: one indirect jump per
 * instruction, not a bounds-checked switch). */
#define OPS(X) \
    X(RET_K, B_RET | B_K) X(RET_A, B_RET | B_A) \
    X(LD_W_ABS, B_LD | B_W | B_ABS) X(LD_H_ABS, B_LD | B_H | B_ABS) \
    X(LD_B_ABS, B_LD | B_B | B_ABS) X(LD_W_LEN, B_LD | B_W | B_LEN) \
    X(LDX_W_LEN, B_LDX | B_W | B_LEN) X(LD_W_IND, B_LD | B_W | B_IND) \
    X(LD_H_IND, B_LD | B_H | B_IND) X(LD_B_IND, B_LD | B_B | B_IND) \
    X(LDX_MSH, B_LDX | B_MSH | B_B) X(LD_IMM, B_LD | B_IMM) X(LDX_IMM, B_LDX | B_IMM) \
    X(LD_MEM, B_LD | B_MEM) X(LDX_MEM, B_LDX | B_MEM) X(ST, B_ST) X(STX, B_STX) \
    X(JA, B_JMP | 0x00) X(JEQ_K, B_JMP | 0x10 | B_K) X(JGT_K, B_JMP | 0x20 | B_K) \
    X(JGE_K, B_JMP | 0x30 | B_K) X(JSET_K, B_JMP | 0x40 | B_K) \
    X(JEQ_X, B_JMP | 0x10 | B_X) X(JGT_X, B_JMP | 0x20 | B_X) X(JGE_X, B_JMP | 0x30 | B_X) \
    X(JSET_X, B_JMP | 0x40 | B_X) \
    X(ADD_X, B_ALU | 0x00 | B_X) X(SUB_X, B_ALU | 0x10 | B_X) X(MUL_X, B_ALU | 0x20 | B_X) \
    X(DIV_X, B_ALU | 0x30 | B_X) X(MOD_X, B_ALU | 0x90 | B_X) X(OR_X, B_ALU | 0x40 | B_X) \
    X(AND_X, B_ALU | 0x50 | B_X) X(XOR_X, B_ALU | 0xa0 | B_X) X(LSH_X, B_ALU | 0x60 | B_X) \
    X(RSH_X, B_ALU | 0x70 | B_X) \
    X(ADD_K, B_ALU | 0x00 | B_K) X(SUB_K, B_ALU | 0x10 | B_K) X(MUL_K, B_ALU | 0x20 | B_K) \
    X(DIV_K, B_ALU | 0x30 | B_K) X(MOD_K, B_ALU | 0x90 | B_K) X(OR_K, B_ALU | 0x40 | B_K) \
    X(AND_K, B_ALU | 0x50 | B_K) X(XOR_K, B_ALU | 0xa0 | B_K) X(LSH_K, B_ALU | 0x60 | B_K) \
    X(RSH_K, B_ALU | 0x70 | B_K) X(NEG, B_ALU | 0x80) X(TAX, B_MISC | 0x00) \
    X(TXA, B_MISC | 0x80)

#define AS_ENUM(name, code) OP_##name,
enum { OPS(AS_ENUM) N_OPS };

/* An instruction decoded: where its code is, its constant, its jump targets as indexes */
typedef struct {
    const void *code;  /* the address of its code in run() (direct threading) */
    uint32_t k;
    uint16_t jt, jf;
} Op;

/* OPS index of `code`; -1 for one run() does not know */
static int op_of(uint16_t code)
{
#define AS_CASE(name, c) case c: return OP_##name;
    switch (code) { OPS(AS_CASE) }
    return -1;
}

/* libpcap's bpf_validate: known opcodes, jumps forward inside the program, scratch memory
 * indexes in range, no division by a constant 0, a return at the end. NULL: valid. */
static const char *validate(const Insn *prog, Py_ssize_t n)
{
    if (n < 1 || n > MAX_INSNS)
        return "program length";
    for (Py_ssize_t i = 0; i < n; i++) {
        const Insn *p = &prog[i];
        uint16_t c = p->code;
        if (op_of(c) < 0)
            return "unknown instruction";
        if (CLS(c) == B_JMP) {
            Py_ssize_t rest = n - i - 1;
            if ((c & 0xf0) == 0x00 ? (Py_ssize_t)p->k >= rest : p->jt >= rest || p->jf >= rest)
                return "jump out of the program";
        }
        if ((c == (B_LD | B_MEM) || c == (B_LDX | B_MEM) || c == B_ST || c == B_STX)
            && p->k >= MEMWORDS)
            return "scratch memory index";
        if (CLS(c) == B_ALU && (c & B_X) == 0) {
            unsigned op = c & 0xf0;
            if ((op == 0x30 || op == 0x90) && p->k == 0)
                return "division by zero";
            if ((op == 0x60 || op == 0x70) && p->k >= 32)
                return "shift of 32 or more";
        }
    }
    return CLS(prog[n - 1].code) == B_RET ? NULL : "no return at the end";
}

static const void *const *run_labels;  /* run()'s code of each instruction of OPS */

/* The program's verdict on one frame: 0 rejects. `wirelen`: its length on the wire,
 * `buflen`: the bytes captured. */
static uint32_t run(const Op *prog, const uint8_t *p, uint32_t wirelen, uint32_t buflen)
{
#define AS_LABEL(name, code) [OP_##name] = &&L_##name,
    static const void *const labels[N_OPS] = {OPS(AS_LABEL)};
    if (prog == NULL) {  /* set_program's call: where each instruction's code is */
        run_labels = labels;
        return 0;
    }
    uint32_t A = 0, X = 0, k, mem[MEMWORDS] = {0};
    const Op *pc = prog;
#define NEXT() do { pc++; goto *pc->code; } while (0)
#define JUMP(cond) do { pc = prog + ((cond) ? pc->jt : pc->jf); goto *pc->code; } while (0)
    goto *pc->code;
L_RET_K: return pc->k;
L_RET_A: return A;
L_LD_W_ABS:
    k = pc->k;
    if ((uint64_t)k + 4 > buflen) return 0;
    A = be32(p + k);
    NEXT();
L_LD_H_ABS:
    k = pc->k;
    if ((uint64_t)k + 2 > buflen) return 0;
    A = be16(p + k);
    NEXT();
L_LD_B_ABS:
    k = pc->k;
    if (k >= buflen) return 0;
    A = p[k];
    NEXT();
L_LD_W_LEN: A = wirelen; NEXT();
L_LDX_W_LEN: X = wirelen; NEXT();
L_LD_W_IND:
    if ((uint64_t)pc->k + X + 4 > buflen) return 0;
    A = be32(p + pc->k + X);
    NEXT();
L_LD_H_IND:
    if ((uint64_t)pc->k + X + 2 > buflen) return 0;
    A = be16(p + pc->k + X);
    NEXT();
L_LD_B_IND:
    if ((uint64_t)pc->k + X >= buflen) return 0;
    A = p[pc->k + X];
    NEXT();
L_LDX_MSH:
    k = pc->k;
    if (k >= buflen) return 0;
    X = (uint32_t)(p[k] & 0xf) << 2;
    NEXT();
L_LD_IMM: A = pc->k; NEXT();
L_LDX_IMM: X = pc->k; NEXT();
L_LD_MEM: A = mem[pc->k]; NEXT();
L_LDX_MEM: X = mem[pc->k]; NEXT();
L_ST: mem[pc->k] = A; NEXT();
L_STX: mem[pc->k] = X; NEXT();
L_JA: pc = prog + pc->jt; goto *pc->code;
L_JEQ_K: JUMP(A == pc->k);
L_JGT_K: JUMP(A > pc->k);
L_JGE_K: JUMP(A >= pc->k);
L_JSET_K: JUMP(A & pc->k);
L_JEQ_X: JUMP(A == X);
L_JGT_X: JUMP(A > X);
L_JGE_X: JUMP(A >= X);
L_JSET_X: JUMP(A & X);
L_ADD_X: A += X; NEXT();
L_SUB_X: A -= X; NEXT();
L_MUL_X: A *= X; NEXT();
L_DIV_X: if (X == 0) return 0; A /= X; NEXT();
L_MOD_X: if (X == 0) return 0; A %= X; NEXT();
L_OR_X: A |= X; NEXT();
L_AND_X: A &= X; NEXT();
L_XOR_X: A ^= X; NEXT();
L_LSH_X: A = X < 32 ? A << X : 0; NEXT();
L_RSH_X: A = X < 32 ? A >> X : 0; NEXT();
L_ADD_K: A += pc->k; NEXT();
L_SUB_K: A -= pc->k; NEXT();
L_MUL_K: A *= pc->k; NEXT();
L_DIV_K: A /= pc->k; NEXT();
L_MOD_K: A %= pc->k; NEXT();
L_OR_K: A |= pc->k; NEXT();
L_AND_K: A &= pc->k; NEXT();
L_XOR_K: A ^= pc->k; NEXT();
L_LSH_K: A <<= pc->k; NEXT();
L_RSH_K: A >>= pc->k; NEXT();
L_NEG: A = (uint32_t)0 - A; NEXT();
L_TAX: X = A; NEXT();
L_TXA: A = X; NEXT();
}

/* A file shrunk since the last walk ends where it ends now (fstat before each walk). Shrunk
 * during a walk, the rest of its last page reads as zeros (a record of zeros stops the walk; the
 * frame cut there keeps zeros for its lost bytes) and the pages after it raise SIGBUS: the walk
 * in progress (in this thread: walks run without the GIL) jumps back and ends as a cut file
 * would, without the frames past the new end. Any other SIGBUS goes to the handler that was there before (Python's faulthandler, or
 * the default: the process dies of it as it would have). */
static struct sigaction prev_bus;
static __thread sigjmp_buf bus_jump;
static __thread volatile sig_atomic_t walking;

static void on_bus(int sig, siginfo_t *info, void *ctx)
{
    if (walking)
        siglongjmp(bus_jump, 1);
    if (prev_bus.sa_flags & SA_SIGINFO) {
        if (prev_bus.sa_sigaction != NULL) {
            prev_bus.sa_sigaction(sig, info, ctx);
            return;
        }
    } else if (prev_bus.sa_handler != SIG_DFL && prev_bus.sa_handler != SIG_IGN) {
        prev_bus.sa_handler(sig);
        return;
    }
    sigaction(sig, &prev_bus, NULL);
    raise(sig);
}

/* on_bus in place (again, if something replaced it since): called with the GIL held */
static void catch_bus(void)
{
    struct sigaction now;
    if (sigaction(SIGBUS, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO)
        && now.sa_sigaction == on_bus)
        return;
    struct sigaction ours = {0};
    ours.sa_sigaction = on_bus;
    ours.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&ours.sa_mask);
    sigaction(SIGBUS, &ours, &prev_bus);
}

/* One batch's walk: its output, filled without the GIL */
typedef struct Walk {
    uint8_t *out;           /* the frames' bytes */
    size_t cap;
    uint32_t *meta;
    size_t *ends;           /* each frame's record's end in the file */
    Py_ssize_t want;
    volatile size_t used;   /* volatile: read after a jump back from SIGBUS */
    volatile Py_ssize_t got;
    volatile int nomem;
    /* ahead: the walk's state once this batch was walked, and the queue's link */
    unsigned long long records;
    const char *unsure;
    int last;               /* the walk ended with this batch */
    struct Walk *next;
} Walk;

#define AHEAD_DEPTH 4   /* batches walked ahead of the consumer */
#define AHEAD_SPARE 4   /* freed batches' buffers kept for the next walks */

typedef struct {
    PyObject_HEAD
    const uint8_t *base; /* the mapping (NULL: empty file) */
    size_t size, pos;    /* size: of the file now, at most `mapped` */
    size_t mapped;       /* bytes mapped: the file's size at open */
    int fd, open;        /* open: fd is this reader's */
    size_t released;     /* bytes from the start let go of (madvise) */
    int swapped, nano;
    uint32_t snaplen, linktype;
    Op *prog;            /* decoded; NULL: every frame */
    Py_ssize_t nprog;
    unsigned long long records, frames;
    const char *unsure;  /* why the walk stopped before the end; NULL at the end */
    Walk sync;           /* next_batch's buffers when not walking ahead */
    int busy;            /* a walk is under way (without the GIL) */
    /* read_ahead: the thread, the walked batches not yet handed out (a queue), the buffers of
     * freed batches (spare); all under `lock` */
    int ahead;           /* 1: read_ahead started the thread (joined in stop or dealloc) */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    Walk *queued, *queued_tail, *spare;
    int nqueued, nspare, stop, thread_done, finished, joined, locks;
    volatile int ahead_nomem;
    Py_ssize_t ahead_want;
    unsigned long long seen_records;  /* as of the last batch handed out */
    const char *seen_unsure;
    int skip_size_check; /* tests: walk into a shrunk file's lost pages (the SIGBUS path) */
} Reader;


static void walk_free(Walk *w);
static void stop_ahead(Reader *self, int release);

static inline uint32_t field(const Reader *r, const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return r->swapped ? __builtin_bswap32(v) : v;
}

/* LINKTYPE_* in the file -> DLT_* libpcap reports, for the link types taken here; -1 others.
 * Not BSD loopback (NULL, LOOP): libpcap compiles their filters for the file's byte order,
 * which a program compiled apart from the file does not know. */
static long dlt_of(uint32_t linktype)
{
    switch (linktype) {
    case 1: case 113: case 228: case 229: case 276:
        return (long)linktype;
    case 101:
        return 12; /* LINKTYPE_RAW: DLT_RAW on Linux */
    }
    return -1;
}

static int Reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    PyObject *path_obj;
    static char *kwlist[] = {"path", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&", kwlist, PyUnicode_FSConverter, &path_obj))
        return -1;
    if (self->base != NULL) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_RuntimeError, "a Reader opens one file");
        return -1;
    }
    int fd = open(PyBytes_AS_STRING(path_obj), O_RDONLY | O_CLOEXEC);
    Py_DECREF(path_obj);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        PyErr_SetString(PyExc_ValueError, "not a regular file");
        return -1;
    }
    if ((size_t)st.st_size < 24) {
        close(fd);
        PyErr_SetString(PyExc_ValueError, "shorter than a pcap file header");
        return -1;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->fd = fd;  /* kept: the file's size is checked before each walk */
    self->open = 1;
    madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
    self->base = map;
    self->size = self->mapped = (size_t)st.st_size;
    uint32_t magic;
    memcpy(&magic, self->base, 4);
    const char *why = NULL;
    if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
        self->swapped = 0;
    } else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
        self->swapped = 1;
        magic = __builtin_bswap32(magic);
    } else {
        why = "not a standard pcap magic";
    }
    self->nano = magic == 0xa1b23c4d;
    if (why == NULL) {
        uint16_t major, minor;
        memcpy(&major, self->base + 4, 2);
        memcpy(&minor, self->base + 6, 2);
        if (self->swapped) {
            major = __builtin_bswap16(major);
            minor = __builtin_bswap16(minor);
        }
        self->snaplen = field(self, self->base + 16);
        self->linktype = field(self, self->base + 20);
        if (major != 2 || minor != 4)
            why = "pcap version other than 2.4";
        else if (dlt_of(self->linktype) < 0)
            why = "link type not taken";
    }
    if (why != NULL) {
        PyErr_SetString(PyExc_ValueError, why);
        return -1;  /* dealloc unmaps */
    }
    /* libpcap: a snapshot length of 0 or past the maximum means the maximum */
    if (self->snaplen == 0 || self->snaplen > MAX_SNAPLEN)
        self->snaplen = MAX_SNAPLEN;
    self->pos = 24;
    return 0;
}

static void Reader_dealloc(Reader *self)
{
    /* first: the thread may be walking the mapping (no batch of it is alive: each holds the
     * reader) */
    stop_ahead(self, 0);
    if (self->base != NULL)
        munmap((void *)self->base, self->mapped);
    if (self->open)
        close(self->fd);
    while (self->spare != NULL) {
        Walk *next = self->spare->next;
        walk_free(self->spare);
        PyMem_RawFree(self->spare);
        self->spare = next;
    }
    if (self->locks) {
        pthread_mutex_destroy(&self->lock);
        pthread_cond_destroy(&self->changed);
    }
    PyMem_Free(self->prog);
    walk_free(&self->sync);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Reader_set_program(Reader *self, PyObject *arg)
{
    if (self->busy || self->ahead) {
        PyErr_SetString(PyExc_RuntimeError, "set_program: the reader is in use by another thread");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(arg, "a BPF program is a sequence of (code, jt, jf, k)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Insn *prog = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Insn));
    if (prog == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int code, jt, jf;
        unsigned long k;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "IIIk", &code, &jt, &jf, &k)) {
            PyMem_Free(prog);
            Py_DECREF(seq);
            return NULL;
        }
        if (code > 0xffff || jt > 0xff || jf > 0xff || k > 0xffffffffUL) {
            PyMem_Free(prog);
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "BPF instruction field out of range");
            return NULL;
        }
        prog[i] = (Insn){(uint16_t)code, (uint8_t)jt, (uint8_t)jf, (uint32_t)k};
    }
    Py_DECREF(seq);
    const char *why = validate(prog, n);
    if (why != NULL) {
        PyMem_Free(prog);
        return PyErr_Format(PyExc_ValueError, "BPF program not taken: %s", why);
    }
    if (run_labels == NULL)
        run(NULL, NULL, 0, 0);
    Op *ops = PyMem_Calloc((size_t)n, sizeof(Op));
    if (ops == NULL) {
        PyMem_Free(prog);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const Insn *in = &prog[i];
        ops[i].code = run_labels[op_of(in->code)];
        ops[i].k = in->k;
        if (in->code == (B_JMP | 0x00)) {
            ops[i].jt = ops[i].jf = (uint16_t)(i + 1 + in->k);
        } else {
            ops[i].jt = (uint16_t)(i + 1 + in->jt);
            ops[i].jf = (uint16_t)(i + 1 + in->jf);
        }
    }
    PyMem_Free(prog);
    PyMem_Free(self->prog);
    self->prog = ops;
    self->nprog = n;
    Py_RETURN_NONE;
}

/* Room for `more` bytes at `used` in the batch buffer; 0 on failure (no memory). */
static int reserve(Walk *w, size_t used, size_t more)
{
    if (used + more <= w->cap)
        return 1;
    size_t cap = w->cap ? w->cap : 65536;
    while (cap < used + more)
        cap *= 2;
    uint8_t *out = PyMem_RawRealloc(w->out, cap);
    if (out == NULL)
        return 0;
    w->out = out;
    w->cap = cap;
    return 1;
}

/* Up to w->want matching frames into w->out and w->meta; no Python API (no GIL held). */
static void walk(Reader *self, Walk *w)
{
    size_t pos = self->pos;
    const uint8_t *base = self->base;
    const size_t size = self->size;
    if (sigsetjmp(bus_jump, 0)) {
        /* the bytes of the last page past the new end read as zeros: not frames */
        walking = 0;
        struct stat st;
        size_t now = fstat(self->fd, &st) == 0 ? (size_t)st.st_size : 0;
        Py_ssize_t keep = w->got;
        while (keep > 0 && w->ends[keep - 1] > now)
            keep--;
        w->got = keep;
        w->used = keep ? w->meta[4 * (keep - 1) + 2] + w->meta[4 * (keep - 1) + 3] : 0;
        self->unsure = "the file shrank while it was read";
        return;
    }
    walking = 1;
    while (w->got < w->want && self->unsure == NULL) {
        if (pos == size)
            break;
        if (size - pos < 16) {
            self->unsure = "cut inside a record header";
            break;
        }
        const uint8_t *h = base + pos;
        uint32_t sec = field(self, h), usec = field(self, h + 4), caplen = field(self, h + 8),
                 len = field(self, h + 12);
        if ((sec | usec | caplen | len) == 0) {
            /* what the rest of a page past a shrunk file's end reads as; never a real frame */
            self->unsure = "a record of zeros";
            break;
        }
        if (caplen > self->snaplen) {
            self->unsure = "a record longer than the snapshot length";
            break;
        }
        if (size - pos - 16 < caplen) {
            self->unsure = "cut inside a record";
            break;
        }
        pos += 16 + (size_t)caplen;
        self->pos = pos;
        if (pos - self->released >= RELEASE_EVERY) {
            size_t upto = pos & ~(size_t)(RELEASE_EVERY - 1);  /* page-aligned: a power of 2 */
            madvise((void *)(base + self->released), upto - self->released, MADV_DONTNEED);
            self->released = upto;
        }
        self->records++;
        if (self->prog != NULL && !run(self->prog, h + 16, len, caplen))
            continue;
        size_t used = w->used;
        if (!reserve(w, used, caplen)) {
            w->nomem = 1;
            break;
        }
        memcpy(w->out + used, h + 16, caplen);
        uint32_t *m = w->meta + 4 * w->got;
        m[0] = sec;
        m[1] = self->nano ? usec / 1000 : usec;  /* libpcap scales nanoseconds down so */
        m[2] = (uint32_t)used;
        m[3] = caplen;
        w->ends[w->got] = pos;
        w->used = used + caplen;
        w->got++;
    }
    walking = 0;
}

/* w's arrays for `want` frames (kept while `want` stays); 0: no memory. No GIL needed. */
static int walk_arrays(Walk *w, Py_ssize_t want)
{
    if (w->want == want && w->meta != NULL && w->ends != NULL)
        return 1;
    PyMem_RawFree(w->meta);
    PyMem_RawFree(w->ends);
    w->meta = PyMem_RawMalloc((size_t)want * 16);
    w->ends = PyMem_RawMalloc((size_t)want * sizeof(size_t));
    w->want = want;
    return w->meta != NULL && w->ends != NULL;
}

static void walk_free(Walk *w)
{
    PyMem_RawFree(w->out);
    PyMem_RawFree(w->meta);
    PyMem_RawFree(w->ends);
}

/* a file shrunk since the last walk ends where it ends now */
static void check_size(Reader *self)
{
    struct stat st;
    if (!self->skip_size_check && self->open && fstat(self->fd, &st) == 0
        && (size_t)st.st_size < self->size)
        self->size = (size_t)st.st_size;
}

static PyObject *empty_batch(void)
{
    return Py_BuildValue("(y#y#)", "", (Py_ssize_t)0, "", (Py_ssize_t)0);
}

/* A walked batch back to the reader: kept for the next walk, or freed. GIL held or not. */
static void give_back(Reader *self, Walk *w)
{
    pthread_mutex_lock(&self->lock);
    int keep = self->nspare < AHEAD_SPARE && !self->stop;
    if (keep) {
        w->next = self->spare;
        self->spare = w;
        self->nspare++;
    }
    pthread_mutex_unlock(&self->lock);
    if (!keep) {
        walk_free(w);
        PyMem_RawFree(w);
    }
}

/* The read_ahead thread: batches walked into the queue, at most AHEAD_DEPTH ahead of the
 * consumer, until the walk ends or the reader stops it. No Python API (no GIL). */
static void *walk_ahead(void *arg)
{
    Reader *self = arg;
#ifdef __linux__
    pthread_setname_np(pthread_self(), "sipprobe-read");  /* as `top -H` and gdb show it */
#endif
    sigset_t others;  /* the process's signals are the interpreter's; SIGBUS is the walk's */
    sigfillset(&others);
    sigdelset(&others, SIGBUS);
    pthread_sigmask(SIG_BLOCK, &others, NULL);
    for (;;) {
        pthread_mutex_lock(&self->lock);
        while (!self->stop && self->nqueued >= AHEAD_DEPTH)
            pthread_cond_wait(&self->changed, &self->lock);
        Walk *w = NULL;
        if (!self->stop && self->spare != NULL) {
            w = self->spare;
            self->spare = w->next;
            self->nspare--;
        }
        int stop = self->stop;
        pthread_mutex_unlock(&self->lock);
        if (stop)
            break;
        if (w == NULL)
            w = PyMem_RawCalloc(1, sizeof(Walk));
        if (w == NULL || !walk_arrays(w, self->ahead_want)) {
            if (w != NULL) {
                walk_free(w);
                PyMem_RawFree(w);
            }
            self->ahead_nomem = 1;  /* read by the consumer once thread_done is set */
            break;
        }
        w->got = 0;
        w->used = 0;
        w->nomem = 0;
        w->next = NULL;
        check_size(self);
        walk(self, w);
        w->records = self->records;
        w->unsure = self->unsure;
        w->last = w->got < w->want || w->nomem;
        int last = w->last;
        pthread_mutex_lock(&self->lock);
        if (self->queued_tail != NULL)
            self->queued_tail->next = w;
        else
            self->queued = w;
        self->queued_tail = w;
        self->nqueued++;
        pthread_cond_broadcast(&self->changed);
        pthread_mutex_unlock(&self->lock);
        if (last)
            break;
    }
    pthread_mutex_lock(&self->lock);
    self->thread_done = 1;
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* The thread stopped and joined, the batches it walked and nobody took freed. `release`:
 * the GIL let go while joining (not in dealloc). */
static void stop_ahead(Reader *self, int release)
{
    if (!self->ahead || self->joined)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = 1;
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
    } else {
        pthread_join(self->thread, NULL);
    }
    self->joined = 1;
    self->finished = 1;
    Walk *q = self->queued;
    self->queued = self->queued_tail = NULL;
    self->nqueued = 0;
    while (q != NULL) {
        Walk *next = q->next;
        walk_free(q);
        PyMem_RawFree(q);
        q = next;
    }
}

/* A batch walked ahead: its frames' bytes, a read-only buffer, given back when freed */
typedef struct {
    PyObject_HEAD
    Reader *reader;
    Walk *walk;
} Batch;

static int Batch_getbuffer(Batch *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)self, self->walk->out,
                             (Py_ssize_t)self->walk->used, 1, flags);
}

static Py_ssize_t Batch_length(Batch *self)
{
    return (Py_ssize_t)self->walk->used;
}

/* b[i] and b[i:j] as bytes gives them (slices copied), for the frame-by-frame readers */
static PyObject *Batch_subscript(Batch *self, PyObject *item)
{
    const uint8_t *buf = self->walk->out;
    Py_ssize_t len = (Py_ssize_t)self->walk->used;
    if (PySlice_Check(item)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(item, &start, &stop, &step) < 0)
            return NULL;
        Py_ssize_t n = PySlice_AdjustIndices(len, &start, &stop, step);
        if (step == 1)
            return PyBytes_FromStringAndSize((const char *)buf + start, n);
        PyObject *out = PyBytes_FromStringAndSize(NULL, n);
        if (out == NULL)
            return NULL;
        char *o = PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++, start += step)
            o[i] = (char)buf[start];
        return out;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(item, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0)
        i += len;
    if (i < 0 || i >= len) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return PyLong_FromLong(buf[i]);
}

static void Batch_dealloc(Batch *self)
{
    give_back(self->reader, self->walk);
    Py_DECREF(self->reader);
    PyObject_Free(self);
}

static PyBufferProcs Batch_as_buffer = {(getbufferproc)Batch_getbuffer, NULL};
static PySequenceMethods Batch_as_sequence = {.sq_length = (lenfunc)Batch_length};
static PyMappingMethods Batch_as_mapping = {.mp_length = (lenfunc)Batch_length,
                                            .mp_subscript = (binaryfunc)Batch_subscript};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "probe._pcapfile.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "the frames' bytes of a batch walked ahead: a read-only buffer, indexed and "
               "sliced as bytes",
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_as_buffer = &Batch_as_buffer,
    .tp_as_sequence = &Batch_as_sequence,
    .tp_as_mapping = &Batch_as_mapping,
};

/* next_batch when walking ahead: the oldest batch the thread walked, waited for if need be */
static PyObject *next_ahead(Reader *self)
{
    if (self->finished)
        return empty_batch();
    Walk *w;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    while (self->queued == NULL && !self->thread_done)
        pthread_cond_wait(&self->changed, &self->lock);
    w = self->queued;
    if (w != NULL) {
        self->queued = w->next;
        if (self->queued == NULL)
            self->queued_tail = NULL;
        self->nqueued--;
        pthread_cond_broadcast(&self->changed);
    }
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    if (w == NULL) {
        self->finished = 1;
        if (self->ahead_nomem)
            return PyErr_NoMemory();
        return empty_batch();
    }
    self->seen_records = w->records;
    self->seen_unsure = w->unsure;
    if (w->last)
        self->finished = 1;
    Py_ssize_t got = w->got;
    if (w->nomem || got == 0) {
        int nomem = w->nomem;
        give_back(self, w);
        return nomem ? PyErr_NoMemory() : empty_batch();
    }
    PyObject *m = PyBytes_FromStringAndSize((const char *)w->meta, got * 16);
    Batch *b = m != NULL ? PyObject_New(Batch, &BatchType) : NULL;
    if (b == NULL) {
        Py_XDECREF(m);
        give_back(self, w);
        return NULL;
    }
    Py_INCREF(self);
    b->reader = self;
    b->walk = w;
    self->frames += (unsigned long long)got;
    return Py_BuildValue("(NN)", (PyObject *)b, m);
}

/* n of next_batch(n) and read_ahead(n), at least 1; -1 with an exception set */
static Py_ssize_t batch_size(PyObject *arg)
{
    Py_ssize_t want = PyLong_AsSsize_t(arg);
    if (want == -1 && PyErr_Occurred())
        return -1;
    if (want < 1) {
        PyErr_SetString(PyExc_ValueError, "n must be at least 1");
        return -1;
    }
    return want;
}

/* next_batch(n) -> (data, meta): up to n matching frames; meta holds per frame four native
 * uint32 (seconds, microseconds, offset in data, captured length), as pcapy-ng's. An empty
 * meta: the walk has ended (`unsure` says whether at the end of the file). Walking ahead, the
 * batches are those of read_ahead's n, and data is a Batch. */
static PyObject *Reader_next_batch(Reader *self, PyObject *arg)
{
    Py_ssize_t want = batch_size(arg);
    if (want < 0)
        return NULL;
    if (self->ahead)
        return next_ahead(self);
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "next_batch: the reader is in use by another thread");
        return NULL;
    }
    Walk *w = &self->sync;
    if (!walk_arrays(w, want))
        return PyErr_NoMemory();
    w->got = 0;
    w->used = 0;
    w->nomem = 0;
    check_size(self);
    catch_bus();
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    walk(self, w);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (w->nomem)
        return PyErr_NoMemory();
    Py_ssize_t got = w->got;
    self->frames += (unsigned long long)got;
    PyObject *data = PyBytes_FromStringAndSize((const char *)w->out, (Py_ssize_t)w->used);
    PyObject *m = PyBytes_FromStringAndSize((const char *)w->meta, got * 16);
    if (data == NULL || m == NULL) {
        Py_XDECREF(data);
        Py_XDECREF(m);
        return NULL;
    }
    return Py_BuildValue("(NN)", data, m);
}

/* read_ahead(n): from now on a thread of the reader's own walks batches of n frames ahead */
static PyObject *Reader_read_ahead(Reader *self, PyObject *arg)
{
    Py_ssize_t want = batch_size(arg);
    if (want < 0)
        return NULL;
    if (self->ahead || self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "read_ahead: the reader already walks ahead or is busy");
        return NULL;
    }
    catch_bus();
    if (!self->locks) {
        pthread_mutex_init(&self->lock, NULL);
        pthread_cond_init(&self->changed, NULL);
        self->locks = 1;
    }
    self->ahead_want = want;
    self->ahead = 1;
    int rc = pthread_create(&self->thread, NULL, walk_ahead, self);
    if (rc != 0) {
        self->ahead = 0;
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* stop(): the thread of read_ahead ended (a consumer that stops early); no more batches */
static PyObject *Reader_stop(Reader *self, PyObject *unused)
{
    stop_ahead(self, 1);
    Py_RETURN_NONE;
}

static PyObject *Reader_get_walking_ahead(Reader *self, void *closure)
{
    if (!self->ahead || self->joined)
        Py_RETURN_FALSE;
    pthread_mutex_lock(&self->lock);
    int running = !self->thread_done;
    pthread_mutex_unlock(&self->lock);
    return PyBool_FromLong(running);
}

static PyObject *Reader_get_unsure(Reader *self, void *closure)
{
    const char *unsure = self->ahead ? self->seen_unsure : self->unsure;
    if (unsure == NULL)
        Py_RETURN_NONE;
    return PyUnicode_FromString(unsure);
}

static PyObject *Reader_get_linktype(Reader *self, void *closure)
{
    return PyLong_FromLong(dlt_of(self->linktype));
}

static PyObject *Reader_get_records(Reader *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->ahead ? self->seen_records : self->records);
}

static PyObject *Reader_get_frames(Reader *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->frames);
}

static PyMemberDef Reader_members[] = {
    {"skip_size_check", T_INT, offsetof(Reader, skip_size_check), 0,
     "tests: 1 skips the check of the file's size before each walk"},
    {NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"unsure", (getter)Reader_get_unsure, NULL,
     "why the walk stopped before the end of the file (None: it did not)", NULL},
    {"linktype", (getter)Reader_get_linktype, NULL, "the DLT libpcap reports for the file",
     NULL},
    {"records", (getter)Reader_get_records, NULL,
     "records walked (walking ahead: up to the last batch handed out)", NULL},
    {"walking_ahead", (getter)Reader_get_walking_ahead, NULL,
     "whether the thread of read_ahead is running", NULL},
    {"frames", (getter)Reader_get_frames, NULL, "frames handed out (the filter's matches)",
     NULL},
    {NULL},
};

static PyMethodDef Reader_methods[] = {
    {"set_program", (PyCFunction)Reader_set_program, METH_O,
     "set_program(insns): the BPF program (pcapy BPFProgram.get_bpf()) every frame must pass"},
    {"next_batch", (PyCFunction)Reader_next_batch, METH_O,
     "next_batch(n) -> (data, meta): up to n matching frames, as pcapy-ng's next_batch"},
    {"read_ahead", (PyCFunction)Reader_read_ahead, METH_O,
     "read_ahead(n): a thread of the reader's own walks the next batches of n frames ahead; "
     "next_batch then hands them out, their data as Batch buffers"},
    {"stop", (PyCFunction)Reader_stop, METH_NOARGS,
     "stop(): the thread of read_ahead ended; next_batch gives no more batches"},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "probe._pcapfile.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(path): a classic pcap file mapped and walked in place",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
    .tp_members = Reader_members,
};

static PyObject *py_run(PyObject *mod, PyObject *args)
{
    PyObject *reader;
    Py_buffer frame;
    unsigned int wirelen;
    if (!PyArg_ParseTuple(args, "O!y*I", &ReaderType, &reader, &frame, &wirelen))
        return NULL;
    Reader *r = (Reader *)reader;
    uint32_t v = r->prog == NULL ? 1 : run(r->prog, frame.buf, wirelen, (uint32_t)frame.len);
    PyBuffer_Release(&frame);
    return PyLong_FromUnsignedLong(v);
}

static PyMethodDef module_methods[] = {
    {"run", py_run, METH_VARARGS,
     "run(reader, frame, wirelen) -> the reader's BPF program's verdict on one frame (tests)"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "probe._pcapfile",
    "Classic pcap files mapped and filtered in place (see the comment at the top of the source).",
    -1, module_methods,
};

PyMODINIT_FUNC PyInit__pcapfile(void)
{
    if (PyType_Ready(&ReaderType) < 0 || PyType_Ready(&BatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
