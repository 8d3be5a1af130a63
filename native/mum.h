/* The 64-bit multiply-and-fold mixer the accelerators hash raw bytes with (their own tables,
 * where siphash over fresh Python strings cost more than the lookups it served). */
#ifndef SIPPROBE_MUM_H
#define SIPPROBE_MUM_H

#include <stdint.h>

static inline uint64_t
mum(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t r = a * b;
    return r ^ (r >> 32) ^ (a >> 29);
#endif
}

#endif
