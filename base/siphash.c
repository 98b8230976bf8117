/* base/siphash: SipHash-1-3 as specified in "SipHash: a fast short-input PRF" (2012), §2, with one
 * compression and three finalisation rounds. Words are read little-endian byte by byte, so the result does
 * not depend on the host's byte order or on the input's alignment. */
#include "base/siphash.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

struct sip_state {
    uint64_t v0, v1, v2, v3;
};

static inline void sip_round(struct sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13) ^ s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16) ^ s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21) ^ s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17) ^ s->v2;
    s->v2 = rotl(s->v2, 32);
}

/* One message word: c = 1 compression round. */
static inline void sip_compress(struct sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    s->v0 ^= m;
}

/* Reads n <= 8 bytes as a little-endian word. */
static inline uint64_t read_le(const uint8_t *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = n; i > 0; i--) {
        w = (w << 8) | p[i - 1];
    }
    return w;
}

uint64_t cg_siphash13(const struct cg_siphash_key *key, const void *data, size_t len)
{
    const uint8_t *p = data;
    struct sip_state s = {
        key->k0 ^ 0x736f6d6570736575ULL, /* "somepseudorandomlygeneratedbytes" */
        key->k1 ^ 0x646f72616e646f6dULL,
        key->k0 ^ 0x6c7967656e657261ULL,
        key->k1 ^ 0x7465646279746573ULL,
    };
    size_t whole = len & ~(size_t)7;

    for (size_t i = 0; i < whole; i += 8) {
        sip_compress(&s, read_le(p + i, 8));
    }
    /* The last word carries the remaining bytes and the length's low byte in its top byte. */
    sip_compress(&s, read_le(p + whole, len - whole) | (uint64_t)(len & 0xff) << 56);
    s.v2 ^= 0xff;
    for (int i = 0; i < 3; i++) {
        sip_round(&s);
    }
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

void cg_siphash_key_random(struct cg_siphash_key *key)
{
    uint64_t k[2];

    if (getrandom(k, sizeof(k), GRND_NONBLOCK) == (ssize_t)sizeof(k)) {
        key->k0 = k[0];
        key->k1 = k[1];
        return;
    }
    /* No entropy yet: mix what differs between runs and processes through the hash itself. */
    struct timespec mono, real;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &real);
    uint64_t mix[4] = {(uint64_t)mono.tv_sec << 30 ^ (uint64_t)mono.tv_nsec,
                       (uint64_t)real.tv_sec << 30 ^ (uint64_t)real.tv_nsec, (uint64_t)getpid(),
                       (uint64_t)(uintptr_t)key ^ (uint64_t)(uintptr_t)&mono};
    struct cg_siphash_key fixed = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    key->k0 = cg_siphash13(&fixed, mix, sizeof(mix));
    mix[0] = ~mix[0];
    key->k1 = cg_siphash13(&fixed, mix, sizeof(mix));
}
