/* proxy/cache: the CoAP-aware response cache (RFC 7252 §5.6/§5.9, RFC 8075 §6-7) with LRU bounds and a
 * single-flight registry. Thread-safe: one mutex inside, held only for table operations, never across I/O.
 * The clock is a parameter (monotonic ms), so tests never sleep. */
#ifndef PX_CACHE_H
#define PX_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/translate.h"

#define PX_CACHE_KEY_MAX (CO_OPTBUF_MAX + 64)
#define PX_CACHE_RECENT 1024 /* slots remembering recent invalidations */

struct px_cache;
struct px_cache_entry;

/* Counters for the metrics endpoint. */
struct px_cache_stats {
    uint64_t hits, misses, revalidated, stores, evictions, invalidations, not_stored_too_large;
    size_t entries, bytes;
};

/* ---- pure helpers (no lock, no clock) ---- */

/* Builds the cache key: upstream index, method code, every request option that is part of the cache key
 * (all but NoCacheKey options per RFC 7252 §5.4.6 and the ETag/If-Match/If-None-Match/Observe/Block options
 * the cache interprets itself), and for FETCH the Content-Format and payload. Uri-Path and Uri-Query are
 * already percent-decoded by translate, so "%7E" and "~" give the same key. Returns the key length, 0 if it
 * does not fit. The resource part (upstream + Uri-Path + Uri-Query) is a prefix of the key: *resource_len
 * tells its length. */
size_t px_cache_key(size_t upstream, uint8_t code, const struct co_optset *opts, const uint8_t *payload,
                    size_t payload_len, uint8_t *out, size_t cap, size_t *resource_len);

/* ---- the cache ---- */

/* max_entries >= 1, max_bytes >= 1024. Bodies larger than max_bytes / 8 are never stored. NULL on OOM. */
struct px_cache *px_cache_create(size_t max_entries, size_t max_bytes);
void px_cache_destroy(
    struct px_cache *cache); /* NULL ok; entries still referenced stay valid until released */

/* Looks key up. Returns a referenced entry (release it) or NULL on a miss. *fresh tells whether its age is
 * still below its Max-Age at now_ms. A hit moves the entry to the LRU head. */
struct px_cache_entry *px_cache_lookup(struct px_cache *cache, const uint8_t *key, size_t key_len,
                                       uint64_t now_ms, bool *fresh);

/* Stores a response (code, its options, payload copied) under key, replacing any older entry for the key.
 * resource_len as returned by px_cache_key. Evicts LRU entries until both bounds hold. Returns a referenced
 * entry, or NULL when not stored (not cacheable, Max-Age 0, body too large, OOM). */
struct px_cache_entry *px_cache_store(struct px_cache *cache, const uint8_t *key, size_t key_len,
                                      size_t resource_len, uint8_t code, const struct co_optset *opts,
                                      const uint8_t *payload, size_t payload_len, uint64_t now_ms);

/* The invalidation epoch now: take it before sending a request whose answer may be stored. */
uint64_t px_cache_epoch(struct px_cache *cache);

/* px_cache_store, except that nothing is stored (NULL) when the key's resource was invalidated after epoch
 * since: an answer fetched before a PUT/POST/DELETE must not be stored after it. */
struct px_cache_entry *px_cache_store_since(struct px_cache *cache, const uint8_t *key, size_t key_len,
                                            size_t resource_len, uint8_t code, const struct co_optset *opts,
                                            const uint8_t *payload, size_t payload_len, uint64_t now_ms,
                                            uint64_t since);

/* A 2.03 Valid answer to a revalidation: the entry becomes fresh again with the new Max-Age (from opts,
 * default 60) from now_ms. */
void px_cache_refresh(struct px_cache *cache, struct px_cache_entry *entry, const struct co_optset *opts,
                      uint64_t now_ms);

/* Drops every entry whose resource part (upstream + Uri-Path + Uri-Query) equals resource[0..len), whatever
 * its Accept or method. Used after unsafe methods and for a 2.01's Location target. Returns how many. */
size_t px_cache_invalidate(struct px_cache *cache, const uint8_t *resource, size_t len);

void px_cache_stats(struct px_cache *cache, struct px_cache_stats *out);

/* ---- entries (immutable once stored, except freshness; safe to read without the lock while referenced) ----
 */
void px_cache_entry_ref(struct px_cache_entry *e);
void px_cache_entry_release(struct px_cache_entry *e); /* frees when the last reference goes */
uint8_t px_cache_entry_code(const struct px_cache_entry *e);
/* A cut-down set (Content-Format, ETag, Max-Age, Location-*) allocated to its used size: read it through
 * co_optset_find/co_opt_value, never copy it by value. Max-Age is the stored one; use _remaining() for HTTP.
 */
const struct co_optset *px_cache_entry_opts(const struct px_cache_entry *e);
const uint8_t *px_cache_entry_payload(const struct px_cache_entry *e, size_t *len);
/* Whole seconds since stored or last refreshed (the HTTP Age), and the remaining freshness
 * max(0, Max-Age - Age): never negative, never above the stored Max-Age. */
uint32_t px_cache_entry_age(struct px_cache_entry *e, uint64_t now_ms);
uint32_t px_cache_entry_remaining(struct px_cache_entry *e, uint64_t now_ms);
/* The freshness lifetime in seconds: the stored Max-Age, or the one of the last 2.03 that refreshed it. */
uint32_t px_cache_entry_max_age(struct px_cache_entry *e);
/* The stored ETag (0 length when none). */
const uint8_t *px_cache_entry_etag(const struct px_cache_entry *e, size_t *len);

/* ---- the user slot: one opaque pointer per entry for the HTTP layer (a prebuilt response) ---- */
/* Frees a user slot when its entry is freed (any thread). Set once, before the first store. */
void px_cache_set_user_free(struct px_cache *cache, void (*user_free)(void *user));
/* Locks the entry's slot (a spinlock: hold it briefly) and returns its pointer (NULL at first). *linked
 * tells whether the entry is still in the cache: only then may a slot that references the entry be set,
 * because the cache clears the slot when it lets the entry go. */
void *px_cache_entry_user_lock(struct px_cache_entry *e, bool *linked);
/* Sets the slot to user and unlocks it. */
void px_cache_entry_user_unlock(struct px_cache_entry *e, void *user);

/* ---- single flight ---- */
/* A waiter is owned by the caller; px_cache_flight_join links it in. */
struct px_cache_waiter {
    struct px_cache_waiter *next;
    void (*wake)(struct px_cache_waiter *w, void *result); /* called once by whoever finishes the flight */
};

/* Joins the flight for key. Returns true when the caller is the leader (no flight was running: it must
 * fetch and then call px_cache_flight_finish); false when w was queued behind a running flight. */
bool px_cache_flight_join(struct px_cache *cache, const uint8_t *key, size_t key_len,
                          struct px_cache_waiter *w);

/* Ends the flight for key: every queued waiter (not the leader) gets wake(w, result), outside the lock,
 * in arrival order. Returns the number woken. */
size_t px_cache_flight_finish(struct px_cache *cache, const uint8_t *key, size_t key_len, void *result);

#endif
