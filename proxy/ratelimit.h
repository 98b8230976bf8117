/* proxy/ratelimit: a token bucket per client address, for answering 429 Too Many Requests with Retry-After.
 *
 * Clients. An IPv4 client is its address. An IPv6 client is its /64: one host, one home or one cloud instance
 * is usually given a whole /64 and can pick any of its 2^64 addresses, so limiting single IPv6 addresses
 * would limit nothing. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an
 * IPv4 peer) is the IPv4 client a.b.c.d. Other families (or addr NULL) are not limited: there is no address
 * to attribute them to, and one shared bucket would let any of them starve the rest.
 *
 * Buckets. Each client's bucket holds up to burst tokens, starts full and refills at per_ip_rps tokens per
 * second; a request takes one. It is kept as one timestamp (GCRA: the instant the bucket will be full again),
 * in nanoseconds, so no refill rounding accumulates. The clock is a parameter (monotonic ms), so tests never
 * sleep; calls from several threads may present slightly out-of-order times, which can only refuse a request
 * a little early, never grant more than burst + rate * elapsed.
 *
 * Memory is bounded by max_clients whatever the traffic: the table is allocated once at creation
 * (at most 40 bytes per client) and px_rl_take never allocates. Slots are found by SipHash-1-3 with a random
 * key (base/siphash): addresses come from the network, and nobody can aim at one chain or one stripe. When
 * the table is full, a new client takes the slot of:
 *   1. a client whose bucket is full again, looking at the 8 least recently seen: such a client is
 *      indistinguishable from a new one, so forgetting it loses nothing;
 *   2. otherwise the least recently seen client.
 * A new client is never refused because the table is full (fail open). Trade-off: a client is seen whenever
 * it asks, granted or refused, so a busy client (an attacker hammering while refused) stays at the recent end
 * and a flood of new addresses evicts the idle and the flood's own older entries first. To get its drained
 * bucket reset, a client must stay silent while at least a stripe's worth of new clients (max_clients /
 * stripes) arrive, and each of those already got a full bucket of its own: an eviction never grants more than
 * the flood itself already had. The alternative, refusing new clients while the table is full of unrefilled
 * buckets, would let a flood of addresses lock everybody else out. Size max_clients for the concurrent client
 * count.
 *
 * Threads. px_rl_take may be called from any number of threads at once (every HTTP thread, per request). A
 * table of 512 clients or more is split into up to 32 stripes (at least 256 clients each) chosen by hash,
 * each with its own mutex held for one lookup, so threads rarely wait; the bound and the eviction order above
 * then hold per stripe. Smaller tables are one stripe, so eviction order is exact. The struct px_rl and every
 * bucket belong to the limiter; callers keep no pointer into it. px_rl_create and px_rl_destroy belong to the
 * owner: destroy only once no thread can call take any more. */
#ifndef PX_RATELIMIT_H
#define PX_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct px_rl;

/* per_ip_rps in (0, 1e9] tokens per second, burst >= 1, max_clients in [1, 2^31]; burst / per_ip_rps must be
 * under 146 years. NULL when a parameter is out of range or memory runs out. */
struct px_rl *px_rl_create(double per_ip_rps, unsigned burst, size_t max_clients);

/* NULL ok. */
void px_rl_destroy(struct px_rl *rl);

/* Takes one token from the bucket of addr's client at now_ms (monotonic ms, below 2^63 ns). Returns true when
 * the request may go on (*retry_after_s = 0), false when the bucket is empty: *retry_after_s is then the
 * whole seconds, rounded up and at least 1, until a token is there (the Retry-After of a 429). retry_after_s
 * may be NULL. A refused request takes nothing. */
bool px_rl_take(struct px_rl *rl, const struct sockaddr *addr, uint64_t now_ms, unsigned *retry_after_s);

/* How many clients the table holds now (<= max_clients), for metrics and tests. */
size_t px_rl_clients(struct px_rl *rl);

#endif
