/* base/siphash: SipHash-1-3, a keyed 64-bit hash (Aumasson and Bernstein), for hash tables whose keys come
 * from the network (cache keys, client addresses). Without the key an attacker cannot predict which keys
 * collide, so chains stay short whatever it sends. 1-3 (one compression round, three finalisation rounds) is
 * the variant CPython and Rust's HashMap use for the same purpose: fast on short inputs, still keyed.
 * Pure functions, no state: any thread. */
#ifndef CG_SIPHASH_H
#define CG_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct cg_siphash_key {
    uint64_t k0, k1;
};

/* A fresh random key from getrandom(2). Early in boot, with no entropy yet, it falls back to the clock and
 * addresses: keys still spread, but are then not flood-proof. */
void cg_siphash_key_random(struct cg_siphash_key *key);

/* SipHash-1-3 of len bytes at data (data may be NULL when len is 0). */
uint64_t cg_siphash13(const struct cg_siphash_key *key, const void *data, size_t len);

#endif
