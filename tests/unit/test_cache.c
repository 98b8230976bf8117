/* Unit tests for proxy/cache: key normalisation, freshness arithmetic on an injected clock, cacheable codes,
 * LRU bounds, invalidation, refcounted entries and the single-flight registry (also under threads).
 * Option sets are built by local helpers so these tests do not depend on proxy/translate.c. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/cache.h"

#define T0 1000000u /* an arbitrary monotonic start, so "before stored" is representable */

/* ---- helpers ---- */

static void set_add(struct co_optset *set, uint16_t number, const void *value, size_t len)
{
    ck_assert_int_eq(co_optset_add(set, number, value, len), 0);
}

static void set_add_str(struct co_optset *set, uint16_t number, const char *value)
{
    set_add(set, number, value, strlen(value));
}

static void set_add_uint(struct co_optset *set, uint16_t number, uint32_t value)
{
    uint8_t b[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8), (uint8_t)value};
    size_t skip = 0;
    while (skip < 4 && b[skip] == 0) {
        skip++;
    }
    set_add(set, number, b + skip, 4 - skip);
}

/* A request option set for GET /path...?query (path "a/b", query "x=1&y=2"; NULL or "" for none). */
static void request_opts(struct co_optset *set, const char *path, const char *query)
{
    char buf[256];
    co_optset_clear(set);
    const char *lists[2] = {path, query};
    const uint16_t numbers[2] = {CO_OPT_URI_PATH, CO_OPT_URI_QUERY};
    const char *seps[2] = {"/", "&"};
    for (int i = 0; i < 2; i++) {
        if (lists[i] == NULL || lists[i][0] == '\0') {
            continue;
        }
        snprintf(buf, sizeof(buf), "%s", lists[i]);
        char *save = NULL;
        for (char *tok = strtok_r(buf, seps[i], &save); tok != NULL; tok = strtok_r(NULL, seps[i], &save)) {
            set_add_str(set, numbers[i], tok);
        }
    }
}

struct key {
    uint8_t bytes[PX_CACHE_KEY_MAX];
    size_t len, resource_len;
};

static void make_key(struct key *k, size_t upstream, uint8_t code, const struct co_optset *opts,
                     const char *payload)
{
    size_t plen = payload != NULL ? strlen(payload) : 0;
    k->len = px_cache_key(upstream, code, opts, (const uint8_t *)payload, plen, k->bytes, sizeof(k->bytes),
                          &k->resource_len);
    ck_assert_uint_gt(k->len, 0);
}

static bool key_eq(const struct key *a, const struct key *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

/* The option sets path_key() and store() reuse, one per thread: threads free theirs before they end. */
static _Thread_local struct co_optset path_key_set, store_set;

static void thread_sets_fini(void)
{
    co_optset_fini(&path_key_set);
    co_optset_fini(&store_set);
}

/* Key for GET path (no query) on upstream 0, optionally with an Accept. */
static void path_key(struct key *k, const char *path, int accept)
{
    request_opts(&path_key_set, path, NULL);
    if (accept >= 0) {
        set_add_uint(&path_key_set, CO_OPT_ACCEPT, (uint32_t)accept);
    }
    make_key(k, 0, CO_GET, &path_key_set, NULL);
}

static void response_opts(struct co_optset *set, int max_age, const char *etag)
{
    co_optset_clear(set);
    if (etag != NULL) {
        set_add_str(set, CO_OPT_ETAG, etag);
    }
    set_add_uint(set, CO_OPT_CONTENT_FORMAT, 50);
    if (max_age >= 0) {
        set_add_uint(set, CO_OPT_MAX_AGE, (uint32_t)max_age);
    }
}

/* Stores a 2.05 with the given Max-Age and payload under k, returning the caller's reference. */
static struct px_cache_entry *store(struct px_cache *c, const struct key *k, int max_age, const char *payload,
                                    uint64_t now)
{
    response_opts(&store_set, max_age, NULL);
    return px_cache_store(c, k->bytes, k->len, k->resource_len, CO_CODE(2, 5), &store_set,
                          (const uint8_t *)payload, strlen(payload), now);
}

static void store_path(struct px_cache *c, const char *path, const char *payload)
{
    struct key k;
    path_key(&k, path, -1);
    struct px_cache_entry *e = store(c, &k, 60, payload, T0);
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
}

static bool cached(struct px_cache *c, const struct key *k)
{
    struct px_cache_entry *e = px_cache_lookup(c, k->bytes, k->len, T0, NULL);
    px_cache_entry_release(e);
    return e != NULL;
}

static bool path_cached(struct px_cache *c, const char *path, int accept)
{
    struct key k;
    path_key(&k, path, accept);
    return cached(c, &k);
}

static struct px_cache_stats stats_of(struct px_cache *c)
{
    struct px_cache_stats s;
    px_cache_stats(c, &s);
    return s;
}

/* ---- key normalisation ---- */

START_TEST(test_same_options_give_the_same_key)
{
    static struct co_optset a, b; /* reused, never leaked */
    struct key ka, kb;
    request_opts(&a, "sensors/temp", "unit=c");
    request_opts(&b, "sensors/temp", "unit=c");
    make_key(&ka, 3, CO_GET, &a, NULL);
    make_key(&kb, 3, CO_GET, &b, NULL);
    ck_assert(key_eq(&ka, &kb));
}
END_TEST

START_TEST(test_insertion_order_of_different_options_does_not_change_the_key)
{
    static struct co_optset a, b; /* reused, never leaked */
    struct key ka, kb;
    request_opts(&a, "t", "q=1");
    set_add_uint(&a, CO_OPT_ACCEPT, 50);
    co_optset_clear(&b);
    set_add_uint(&b, CO_OPT_ACCEPT, 50);
    set_add_str(&b, CO_OPT_URI_QUERY, "q=1");
    set_add_str(&b, CO_OPT_URI_PATH, "t");
    make_key(&ka, 0, CO_GET, &a, NULL);
    make_key(&kb, 0, CO_GET, &b, NULL);
    ck_assert(key_eq(&ka, &kb));
}
END_TEST

START_TEST(test_path_segments_query_and_upstream_are_distinguished)
{
    struct key base, other;
    path_key(&base, "a/b", -1);
    path_key(&other, "ab", -1);
    ck_assert(!key_eq(&base, &other));
    path_key(&other, "b/a", -1);
    ck_assert(!key_eq(&base, &other));

    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    request_opts(&set, "a", "b");
    make_key(&other, 0, CO_GET, &set, NULL);
    ck_assert(!key_eq(&base, &other));
    request_opts(&set, "a/b", NULL);
    make_key(&other, 1, CO_GET, &set, NULL);
    ck_assert(!key_eq(&base, &other));
}
END_TEST

START_TEST(test_accept_changes_the_key)
{
    struct key none, json, cbor;
    path_key(&none, "temp", -1);
    path_key(&json, "temp", 50);
    path_key(&cbor, "temp", 60);
    ck_assert(!key_eq(&none, &json));
    ck_assert(!key_eq(&json, &cbor));
}
END_TEST

START_TEST(test_etag_conditionals_observe_block_and_size_do_not_change_the_key)
{
    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    struct key plain, decorated;
    request_opts(&set, "temp", NULL);
    make_key(&plain, 0, CO_GET, &set, NULL);

    set_add_str(&set, CO_OPT_IF_MATCH, "m1");
    set_add_str(&set, CO_OPT_ETAG, "e1");
    set_add(&set, CO_OPT_IF_NONE_MATCH, NULL, 0);
    set_add_uint(&set, CO_OPT_OBSERVE, 0);
    set_add_uint(&set, CO_OPT_BLOCK2, 0x16);
    set_add_uint(&set, CO_OPT_BLOCK1, 0x06);
    set_add_uint(&set, CO_OPT_SIZE2, 0);
    set_add_uint(&set, CO_OPT_SIZE1, 100);
    make_key(&decorated, 0, CO_GET, &set, NULL);
    ck_assert(key_eq(&plain, &decorated));
}
END_TEST

START_TEST(test_fetch_payload_changes_the_key_and_get_payload_does_not)
{
    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    struct key a, b;
    request_opts(&set, "query", NULL);
    set_add_uint(&set, CO_OPT_CONTENT_FORMAT, 60);
    make_key(&a, 0, CO_FETCH, &set, "{\"a\":1}");
    make_key(&b, 0, CO_FETCH, &set, "{\"a\":2}");
    ck_assert(!key_eq(&a, &b));
    make_key(&b, 0, CO_FETCH, &set, "{\"a\":1}");
    ck_assert(key_eq(&a, &b));

    make_key(&a, 0, CO_GET, &set, "one");
    make_key(&b, 0, CO_GET, &set, "two");
    ck_assert(key_eq(&a, &b));
}
END_TEST

START_TEST(test_fetch_content_format_changes_the_key)
{
    static struct co_optset json, cbor; /* reused, never leaked */
    struct key a, b;
    request_opts(&json, "query", NULL);
    request_opts(&cbor, "query", NULL);
    set_add_uint(&json, CO_OPT_CONTENT_FORMAT, 50);
    set_add_uint(&cbor, CO_OPT_CONTENT_FORMAT, 60);
    make_key(&a, 0, CO_FETCH, &json, "x");
    make_key(&b, 0, CO_FETCH, &cbor, "x");
    ck_assert(!key_eq(&a, &b));
}
END_TEST

START_TEST(test_resource_part_is_a_prefix_shared_by_methods_and_accept)
{
    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    struct key get, put, json;
    request_opts(&set, "a/b", "x=1");
    make_key(&get, 7, CO_GET, &set, NULL);
    make_key(&put, 7, CO_PUT, &set, NULL);
    set_add_uint(&set, CO_OPT_ACCEPT, 50);
    make_key(&json, 7, CO_GET, &set, NULL);

    ck_assert(!key_eq(&get, &put));
    ck_assert_uint_gt(get.resource_len, 4);
    ck_assert_uint_lt(get.resource_len, get.len);
    ck_assert_uint_eq(get.resource_len, put.resource_len);
    ck_assert_uint_eq(get.resource_len, json.resource_len);
    ck_assert_mem_eq(get.bytes, put.bytes, get.resource_len);
    ck_assert_mem_eq(get.bytes, json.bytes, get.resource_len);
    /* upstream 7, big endian, leads */
    const uint8_t upstream[4] = {0, 0, 0, 7};
    ck_assert_mem_eq(get.bytes, upstream, 4);
}
END_TEST

START_TEST(test_key_that_does_not_fit_returns_zero)
{
    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    uint8_t out[16];
    size_t resource_len = 12345;
    request_opts(&set, "a-rather-long-segment", NULL);
    ck_assert_uint_eq(px_cache_key(0, CO_GET, &set, NULL, 0, out, sizeof(out), &resource_len), 0);
    ck_assert_uint_eq(resource_len, 12345);
    ck_assert_uint_eq(px_cache_key(0, CO_GET, NULL, NULL, 0, out, 3, &resource_len), 0);
    ck_assert_uint_gt(px_cache_key(0, CO_GET, NULL, NULL, 0, out, sizeof(out), &resource_len), 0);
    ck_assert_uint_eq(resource_len, 4);
}
END_TEST

/* ---- freshness ---- */

START_TEST(test_max_age_defaults_to_60_and_is_read_from_the_option)
{
    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    response_opts(&set, -1, NULL);
    ck_assert_uint_eq(co_max_age(&set), 60);
    response_opts(&set, 0, NULL);
    ck_assert_uint_eq(co_max_age(&set), 0);
    co_optset_clear(&set);
    co_optset_add(&set, CO_OPT_MAX_AGE, "\x01\x02\x03\x04\x05", 5);
    ck_assert_uint_eq(co_max_age(&set), 60); /* malformed: ignored, the default applies (RFC 7252 §5.4.1) */
    response_opts(&set, 3600, NULL);
    ck_assert_uint_eq(co_max_age(&set), 3600);
    response_opts(&set, (int)0x7fffffff, NULL);
    ck_assert_uint_eq(co_max_age(&set), 0x7fffffff);
}
END_TEST

START_TEST(test_age_zero_has_the_full_max_age_remaining)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    path_key(&k, "t", -1);
    struct px_cache_entry *e = store(c, &k, 10, "21.5", T0);
    ck_assert_uint_eq(px_cache_entry_age(e, T0), 0);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0), 10);
    ck_assert_uint_eq(px_cache_entry_age(e, T0 + 999), 0);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 999), 10);
    ck_assert_uint_eq(px_cache_entry_age(e, T0 + 1000), 1);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 1000), 9);
    px_cache_entry_release(e);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_entry_is_fresh_until_exactly_max_age_then_stale)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    bool fresh = false;
    path_key(&k, "t", -1);
    px_cache_entry_release(store(c, &k, 10, "21.5", T0));

    struct px_cache_entry *e = px_cache_lookup(c, k.bytes, k.len, T0 + 9999, &fresh);
    ck_assert(fresh);
    ck_assert_uint_eq(px_cache_entry_age(e, T0 + 9999), 9);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 9999), 1);
    px_cache_entry_release(e);

    e = px_cache_lookup(c, k.bytes, k.len, T0 + 10000, &fresh);
    ck_assert_ptr_nonnull(e); /* stale entries are still returned for revalidation */
    ck_assert(!fresh);
    ck_assert_uint_eq(px_cache_entry_age(e, T0 + 10000), 10);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 10000), 0);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 1000000000ull), 0);
    px_cache_entry_release(e);

    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.hits, 1);
    ck_assert_uint_eq(s.misses, 1);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_remaining_never_grows_when_the_clock_reads_before_storage)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    path_key(&k, "t", -1);
    struct px_cache_entry *e = store(c, &k, 5, "x", T0);
    ck_assert_uint_eq(px_cache_entry_age(e, T0 - 5000), 0);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 - 5000), 5);
    uint32_t last = 5;
    for (uint64_t t = T0; t < T0 + 8000; t += 250) {
        uint32_t r = px_cache_entry_remaining(e, t);
        ck_assert_uint_le(r, last);
        ck_assert_uint_le(r, 5);
        last = r;
    }
    ck_assert_uint_eq(last, 0);
    px_cache_entry_release(e);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_refresh_resets_age_and_takes_the_new_max_age)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    static _Thread_local struct co_optset valid; /* reused per thread, never leaked */
    bool fresh = true;
    path_key(&k, "t", -1);
    px_cache_entry_release(store(c, &k, 10, "x", T0));
    struct px_cache_entry *e = px_cache_lookup(c, k.bytes, k.len, T0 + 15000, &fresh);
    ck_assert(!fresh);

    response_opts(&valid, 30, NULL);
    px_cache_refresh(c, e, &valid, T0 + 15000);
    ck_assert_uint_eq(px_cache_entry_age(e, T0 + 15000), 0);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 15000), 30);
    ck_assert_uint_eq(px_cache_entry_remaining(e, T0 + 44999), 1);
    px_cache_entry_release(e);

    e = px_cache_lookup(c, k.bytes, k.len, T0 + 44999, &fresh);
    ck_assert(fresh);
    px_cache_entry_release(e);
    e = px_cache_lookup(c, k.bytes, k.len, T0 + 45000, &fresh);
    ck_assert(!fresh);
    px_cache_entry_release(e);
    ck_assert_uint_eq(stats_of(c).revalidated, 1);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_max_age_zero_is_stored_only_with_an_etag)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    static _Thread_local struct co_optset resp; /* reused per thread, never leaked */
    bool fresh = true;
    path_key(&k, "t", -1);
    response_opts(&resp, 0, NULL);
    ck_assert_ptr_null(px_cache_store(c, k.bytes, k.len, k.resource_len, CO_CODE(2, 5), &resp, NULL, 0, T0));

    response_opts(&resp, 0, "v1");
    struct px_cache_entry *e =
        px_cache_store(c, k.bytes, k.len, k.resource_len, CO_CODE(2, 5), &resp, (const uint8_t *)"b", 1, T0);
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
    e = px_cache_lookup(c, k.bytes, k.len, T0, &fresh);
    ck_assert(!fresh);
    size_t len = 0;
    const uint8_t *etag = px_cache_entry_etag(e, &len);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(etag, "v1", 2);
    px_cache_entry_release(e);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_entry_keeps_code_payload_and_response_options)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    static _Thread_local struct co_optset resp; /* reused per thread, never leaked */
    path_key(&k, "t", -1);
    response_opts(&resp, 20, "tag");
    set_add_uint(&resp, CO_OPT_OBSERVE, 7); /* not kept: the cache does not store notifications' state */
    struct px_cache_entry *e = px_cache_store(c, k.bytes, k.len, k.resource_len, CO_CODE(4, 4), &resp,
                                              (const uint8_t *)"gone", 4, T0);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(px_cache_entry_code(e), CO_CODE(4, 4));
    size_t len = 0;
    ck_assert_mem_eq(px_cache_entry_payload(e, &len), "gone", 4);
    ck_assert_uint_eq(len, 4);

    const struct co_optset *opts = px_cache_entry_opts(e);
    ck_assert_uint_eq(opts->count, 3);
    ck_assert_uint_eq(opts->opt[0].number, CO_OPT_ETAG);
    ck_assert_mem_eq(co_opt_value(opts, &opts->opt[0]), "tag", 3);
    ck_assert_uint_eq(opts->opt[1].number, CO_OPT_CONTENT_FORMAT);
    ck_assert_uint_eq(opts->opt[2].number, CO_OPT_MAX_AGE);
    ck_assert_uint_eq(co_max_age(opts), 20);
    px_cache_entry_release(e);
    px_cache_destroy(c);
}
END_TEST

/* ---- cacheable codes ---- */

static const uint8_t cacheable_codes[] = {
    CO_CODE(2, 3), CO_CODE(2, 5), CO_CODE(4, 0), CO_CODE(4, 1),  CO_CODE(4, 2),  CO_CODE(4, 3),
    CO_CODE(4, 4), CO_CODE(4, 5), CO_CODE(4, 6), CO_CODE(4, 12), CO_CODE(4, 13), CO_CODE(4, 15),
    CO_CODE(5, 0), CO_CODE(5, 1), CO_CODE(5, 2), CO_CODE(5, 3),  CO_CODE(5, 4),  CO_CODE(5, 5),
    CO_CODE(4, 9), CO_CODE(4, 22), CO_CODE(4, 29), /* RFC 8132, RFC 8516: cacheable like every 4.xx */
};

/* RFC 7252 §5.9: an unknown 4.xx or 5.xx is read as 4.00 or 5.00, which are cacheable; 4.08 is block-wise
 * only (never an answer). */
static bool is_unknown_error(uint8_t code)
{
    unsigned cls = CO_CODE_CLASS(code);
    return (cls == 4 || cls == 5) && code != CO_CODE(4, 8);
}

static bool in_cacheable_table(uint8_t code)
{
    for (size_t i = 0; i < sizeof(cacheable_codes); i++) {
        if (cacheable_codes[i] == code) {
            return true;
        }
    }
    return false;
}

START_TEST(test_exactly_the_rfc_7252_cacheable_codes_are_cacheable)
{
    for (unsigned code = 0; code < 256; code++) {
        ck_assert_msg(co_code_cacheable((uint8_t)code) ==
                          (in_cacheable_table((uint8_t)code) || is_unknown_error((uint8_t)code)),
                      "code %u.%02u", code >> 5, code & 0x1f);
    }
}
END_TEST

START_TEST(test_created_deleted_changed_and_unknown_codes_are_not_cacheable)
{
    static const uint8_t never[] = {CO_CODE(2, 1),  CO_CODE(2, 2), CO_CODE(2, 4), CO_CODE(2, 6),
                                    CO_CODE(2, 31), CO_CODE(4, 8), CO_CODE(0, 1), CO_CODE(1, 0)};
    for (size_t i = 0; i < sizeof(never); i++) {
        ck_assert_msg(!co_code_cacheable(never[i]), "code %u.%02u", never[i] >> 5, never[i] & 0x1f);
    }
}
END_TEST

START_TEST(test_store_refuses_uncacheable_codes_and_bare_2_03)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    static _Thread_local struct co_optset resp; /* reused per thread, never leaked */
    path_key(&k, "t", -1);
    response_opts(&resp, 60, "e");
    const uint8_t codes[] = {CO_CODE(2, 1), CO_CODE(2, 4), CO_CODE(2, 6), CO_CODE(2, 3)};
    for (size_t i = 0; i < sizeof(codes); i++) {
        ck_assert_ptr_null(px_cache_store(c, k.bytes, k.len, k.resource_len, codes[i], &resp, NULL, 0, T0));
    }
    ck_assert_uint_eq(stats_of(c).entries, 0);
    px_cache_destroy(c);
}
END_TEST

/* ---- bounds ---- */

START_TEST(test_lru_by_count_evicts_the_least_recently_used)
{
    struct px_cache *c = px_cache_create(3, 1 << 20);
    store_path(c, "a", "1");
    store_path(c, "b", "2");
    store_path(c, "c", "3");
    ck_assert(path_cached(c, "a", -1)); /* a is now the most recently used; b the least */
    store_path(c, "d", "4");
    ck_assert(!path_cached(c, "b", -1));
    ck_assert(path_cached(c, "a", -1));
    ck_assert(path_cached(c, "c", -1));
    ck_assert(path_cached(c, "d", -1));
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.entries, 3);
    ck_assert_uint_eq(s.evictions, 1);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_lru_by_bytes_evicts_the_least_recently_used)
{
    char body[100]; /* small enough to pass the max_bytes / 8 rule with room for 3.5 entries */
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    struct px_cache *probe = px_cache_create(10, 1 << 20);
    store_path(probe, "a", body);
    size_t cost = stats_of(probe).bytes; /* every key below has the same length */
    px_cache_destroy(probe);

    struct px_cache *c = px_cache_create(100, 3 * cost + cost / 2);
    store_path(c, "a", body);
    store_path(c, "b", body);
    store_path(c, "c", body);
    ck_assert(path_cached(c, "a", -1));
    ck_assert(path_cached(c, "b", -1));
    store_path(c, "d", body);
    ck_assert(!path_cached(c, "c", -1));
    ck_assert(path_cached(c, "a", -1));
    ck_assert(path_cached(c, "b", -1));
    ck_assert(path_cached(c, "d", -1));
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.entries, 3);
    ck_assert_uint_eq(s.bytes, 3 * cost);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_oversized_body_is_not_stored)
{
    const size_t max_bytes = 64 * 1024;
    struct px_cache *c = px_cache_create(10, max_bytes);
    struct key k;
    static _Thread_local struct co_optset resp; /* reused per thread, never leaked */
    uint8_t *body = calloc(1, max_bytes);
    path_key(&k, "big", -1);
    response_opts(&resp, 60, NULL);
    struct px_cache_entry *e =
        px_cache_store(c, k.bytes, k.len, k.resource_len, CO_CODE(2, 5), &resp, body, max_bytes / 8 + 1, T0);
    ck_assert_ptr_null(e);
    ck_assert(!cached(c, &k));
    e = px_cache_store(c, k.bytes, k.len, k.resource_len, CO_CODE(2, 5), &resp, body, max_bytes / 8, T0);
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.not_stored_too_large, 1);
    ck_assert_uint_eq(s.entries, 1);
    ck_assert_uint_le(s.bytes, max_bytes);
    free(body);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_storing_the_same_key_replaces_the_old_entry)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    size_t len = 0;
    path_key(&k, "t", -1);
    struct px_cache_entry *old = store(c, &k, 60, "old", T0);
    struct px_cache_entry *fresh = store(c, &k, 60, "newer", T0 + 1);
    ck_assert_ptr_ne(old, fresh);
    ck_assert_mem_eq(px_cache_entry_payload(old, &len), "old", 3); /* reader's reference still valid */
    struct px_cache_entry *hit = px_cache_lookup(c, k.bytes, k.len, T0 + 2, NULL);
    ck_assert_ptr_eq(hit, fresh);
    ck_assert_mem_eq(px_cache_entry_payload(hit, &len), "newer", 5);
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.entries, 1);
    ck_assert_uint_eq(s.stores, 2);
    ck_assert_uint_eq(s.evictions, 0);
    px_cache_entry_release(hit);
    px_cache_entry_release(fresh);
    px_cache_entry_release(old);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_evicted_entry_stays_readable_until_released)
{
    struct px_cache *c = px_cache_create(1, 1 << 20);
    struct key k;
    size_t len = 0;
    path_key(&k, "first", -1);
    struct px_cache_entry *held = store(c, &k, 60, "kept-by-reader", T0);
    store_path(c, "second", "evicts first");
    ck_assert(!cached(c, &k));
    ck_assert_mem_eq(px_cache_entry_payload(held, &len), "kept-by-reader", 14);
    ck_assert_uint_eq(len, 14);
    px_cache_entry_ref(held);
    px_cache_entry_release(held);
    ck_assert_uint_eq(px_cache_entry_remaining(held, T0), 60);
    px_cache_destroy(c); /* the held entry outlives its cache */
    ck_assert_mem_eq(px_cache_entry_payload(held, &len), "kept-by-reader", 14);
    px_cache_entry_release(held);
}
END_TEST

START_TEST(test_ten_thousand_keys_keep_both_bounds)
{
    const size_t max_entries = 1000, max_bytes = 256 * 1024;
    struct px_cache *c = px_cache_create(max_entries, max_bytes);
    char path[32], body[2048];
    memset(body, 'b', sizeof(body));
    for (unsigned i = 0; i < 10000; i++) {
        struct key k;
        snprintf(path, sizeof(path), "k/%u", i);
        path_key(&k, path, -1);
        body[(i * 37) % sizeof(body)] = '\0'; /* sizes vary so both bounds bind at times */
        struct px_cache_entry *e = store(c, &k, 60, body, T0);
        body[(i * 37) % sizeof(body)] = 'b';
        ck_assert_ptr_nonnull(e);
        px_cache_entry_release(e);
        struct px_cache_stats s = stats_of(c);
        ck_assert_uint_le(s.entries, max_entries);
        ck_assert_uint_le(s.bytes, max_bytes);
    }
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.stores, 10000);
    ck_assert_uint_eq(s.stores - s.evictions, s.entries);
    ck_assert_uint_gt(s.entries, 0);
    ck_assert(path_cached(c, "k/9999", -1));
    ck_assert(!path_cached(c, "k/0", -1));
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_count_bound_holds_with_small_bodies)
{
    struct px_cache *c = px_cache_create(1000, 64 * 1024 * 1024);
    char path[32];
    for (unsigned i = 0; i < 10000; i++) {
        snprintf(path, sizeof(path), "n/%u", i);
        store_path(c, path, "v");
    }
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.entries, 1000);
    ck_assert_uint_eq(s.evictions, 9000);
    ck_assert(path_cached(c, "n/9000", -1));
    ck_assert(!path_cached(c, "n/8999", -1));
    px_cache_destroy(c);
}
END_TEST

/* ---- invalidation ---- */

START_TEST(test_invalidate_drops_every_variant_of_a_resource_and_nothing_else)
{
    struct px_cache *c = px_cache_create(100, 1 << 20);
    struct key plain, json, cbor, sub, sibling, queried, other_upstream;
    static _Thread_local struct co_optset set; /* reused per thread, never leaked */
    path_key(&plain, "a/b", -1);
    path_key(&json, "a/b", 50);
    path_key(&cbor, "a/b", 60);
    path_key(&sub, "a/b/c", -1);
    path_key(&sibling, "a/bc", -1);
    request_opts(&set, "a/b", "x=1");
    make_key(&queried, 0, CO_GET, &set, NULL);
    request_opts(&set, "a/b", NULL);
    make_key(&other_upstream, 1, CO_GET, &set, NULL);
    const struct key *all[] = {&plain, &json, &cbor, &sub, &sibling, &queried, &other_upstream};
    for (size_t i = 0; i < 7; i++) {
        px_cache_entry_release(store(c, all[i], 60, "v", T0));
    }

    struct key put;
    make_key(&put, 0, CO_PUT, &set, "new value");
    ck_assert_uint_eq(px_cache_invalidate(c, put.bytes, put.resource_len), 3);
    ck_assert(!cached(c, &plain) && !cached(c, &json) && !cached(c, &cbor));
    for (size_t i = 3; i < 7; i++) {
        ck_assert(cached(c, all[i]));
    }
    ck_assert_uint_eq(px_cache_invalidate(c, put.bytes, put.resource_len), 0);
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_eq(s.invalidations, 3);
    ck_assert_uint_eq(s.entries, 4);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_an_answer_fetched_before_an_invalidation_is_not_stored_after_it)
{
    struct px_cache *c = px_cache_create(100, 1 << 20);
    struct key k, other;
    static _Thread_local struct co_optset resp; /* reused per thread, never leaked */
    path_key(&k, "a/b", -1);
    path_key(&other, "x/y", -1);
    response_opts(&resp, 60, NULL);

    uint64_t before = px_cache_epoch(c);
    ck_assert_uint_eq(px_cache_invalidate(c, k.bytes, k.resource_len), 0); /* a PUT to a/b lands meanwhile */
    ck_assert_uint_gt(px_cache_epoch(c), before);
    ck_assert_ptr_null(px_cache_store_since(c, k.bytes, k.len, k.resource_len, CO_CODE(2, 5), &resp,
                                            (const uint8_t *)"old", 3, T0, before));
    ck_assert(!cached(c, &k));
    /* Another resource is not affected, and a fetch that started after the PUT is stored. */
    struct px_cache_entry *e =
        px_cache_store_since(c, other.bytes, other.len, other.resource_len, CO_CODE(2, 5), &resp,
                             (const uint8_t *)"o", 1, T0, before);
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
    e = px_cache_store_since(c, k.bytes, k.len, k.resource_len, CO_CODE(2, 5), &resp, (const uint8_t *)"new",
                             3, T0, px_cache_epoch(c));
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
    ck_assert(cached(c, &k));
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_invalidate_scales_with_the_resource_not_the_cache)
{
    struct px_cache *c = px_cache_create(20000, 64 * 1024 * 1024);
    char path[32];
    for (unsigned i = 0; i < 10000; i++) {
        snprintf(path, sizeof(path), "r/%u", i);
        store_path(c, path, "v");
    }
    struct key k;
    path_key(&k, "r/1234", 50);
    px_cache_entry_release(store(c, &k, 60, "json", T0));
    for (unsigned i = 0; i < 10000; i++) { /* 10^4 invalidations of 10^4 entries: fast only if indexed */
        snprintf(path, sizeof(path), "r/%u", i);
        path_key(&k, path, -1);
        ck_assert_uint_eq(px_cache_invalidate(c, k.bytes, k.resource_len), i == 1234 ? 2 : 1);
    }
    ck_assert_uint_eq(stats_of(c).entries, 0);
    ck_assert_uint_eq(stats_of(c).bytes, 0);
    px_cache_destroy(c);
}
END_TEST

/* ---- single flight ---- */

struct test_waiter {
    struct px_cache_waiter w;
    int id;
    int *order;
    size_t *n;
    void *result;
    int woken;
};

static void record_wake(struct px_cache_waiter *w, void *result)
{
    struct test_waiter *t = (struct test_waiter *)w;
    t->order[(*t->n)++] = t->id;
    t->result = result;
    t->woken++;
}

START_TEST(test_first_join_leads_and_others_queue)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key a, b;
    int order[4];
    size_t n = 0;
    struct test_waiter w[3];
    path_key(&a, "a", -1);
    path_key(&b, "b", -1);
    for (int i = 0; i < 3; i++) {
        w[i] = (struct test_waiter){.w.wake = record_wake, .id = i, .order = order, .n = &n};
    }
    ck_assert(px_cache_flight_join(c, a.bytes, a.len, &w[0].w));
    ck_assert(!px_cache_flight_join(c, a.bytes, a.len, &w[1].w));
    ck_assert(px_cache_flight_join(c, b.bytes, b.len, &w[2].w)); /* another key flies on its own */
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(px_cache_flight_finish(c, b.bytes, b.len, NULL), 0);
    ck_assert_uint_eq(px_cache_flight_finish(c, a.bytes, a.len, NULL), 1);
    ck_assert_int_eq(w[0].woken, 0); /* the leader is never woken */
    ck_assert_int_eq(w[1].woken, 1);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_finish_wakes_all_waiters_in_order_exactly_once)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    int order[8];
    size_t n = 0;
    int result = 42;
    struct test_waiter w[6];
    path_key(&k, "cold", -1);
    for (int i = 0; i < 6; i++) {
        w[i] = (struct test_waiter){.w.wake = record_wake, .id = i, .order = order, .n = &n};
        ck_assert(px_cache_flight_join(c, k.bytes, k.len, &w[i].w) == (i == 0));
    }
    ck_assert_uint_eq(px_cache_flight_finish(c, k.bytes, k.len, &result), 5);
    ck_assert_uint_eq(n, 5);
    for (int i = 1; i < 6; i++) {
        ck_assert_int_eq(order[i - 1], i);
        ck_assert_int_eq(w[i].woken, 1);
        ck_assert_ptr_eq(w[i].result, &result);
    }
    ck_assert_uint_eq(px_cache_flight_finish(c, k.bytes, k.len, &result), 0);
    ck_assert_uint_eq(n, 5);
    /* the flight is over: the next request leads a new one */
    ck_assert(px_cache_flight_join(c, k.bytes, k.len, &w[1].w));
    ck_assert_uint_eq(px_cache_flight_finish(c, k.bytes, k.len, NULL), 0);
    px_cache_destroy(c);
}
END_TEST

START_TEST(test_destroy_frees_unfinished_flights)
{
    struct px_cache *c = px_cache_create(10, 1 << 20);
    struct key k;
    char path[32];
    struct px_cache_waiter w = {.wake = NULL};
    for (int i = 0; i < 300; i++) { /* enough to grow the flight table */
        snprintf(path, sizeof(path), "f/%d", i);
        path_key(&k, path, -1);
        ck_assert(px_cache_flight_join(c, k.bytes, k.len, &w));
    }
    path_key(&k, "f/7", -1);
    ck_assert_uint_eq(px_cache_flight_finish(c, k.bytes, k.len, NULL), 0);
    px_cache_destroy(c);
}
END_TEST

#define THREADS 8
#define CYCLES 1000
#define KEYS 3

struct flight_test {
    struct px_cache *cache;
    struct key keys[KEYS];
    atomic_int wakes[THREADS * CYCLES];
    atomic_int leaders[THREADS * CYCLES];
    atomic_size_t woken_by_finish;
};

struct mt_waiter {
    struct px_cache_waiter w;
    struct flight_test *ft;
    int id;
    atomic_bool done;
    void *result;
};

static void mt_wake(struct px_cache_waiter *w, void *result)
{
    struct mt_waiter *m = (struct mt_waiter *)w;
    atomic_fetch_add(&m->ft->wakes[m->id], 1);
    m->result = result;
    atomic_store(&m->done, true); /* last touch: the waiter's thread may reuse it from here on */
}

struct flight_thread {
    struct flight_test *ft;
    int t;
};

static void *flight_worker(void *arg)
{
    struct flight_thread *ctx = arg;
    struct flight_test *ft = ctx->ft;
    for (int i = 0; i < CYCLES; i++) {
        int id = ctx->t * CYCLES + i;
        const struct key *k = &ft->keys[(ctx->t + i) % KEYS];
        struct mt_waiter m = {.w.wake = mt_wake, .ft = ft, .id = id};
        if (px_cache_flight_join(ft->cache, k->bytes, k->len, &m.w)) {
            atomic_store(&ft->leaders[id], 1);
            sched_yield(); /* let others pile up behind this flight */
            size_t n = px_cache_flight_finish(ft->cache, k->bytes, k->len, &ft->leaders[id]);
            atomic_fetch_add(&ft->woken_by_finish, n);
            continue;
        }
        while (!atomic_load(&m.done)) {
            sched_yield();
        }
        if (m.result == NULL) {
            return (void *)1;
        }
    }
    return NULL;
}

START_TEST(test_concurrent_flights_wake_each_waiter_exactly_once)
{
    struct flight_test *ft = calloc(1, sizeof(*ft));
    pthread_t th[THREADS];
    struct flight_thread ctx[THREADS];
    ft->cache = px_cache_create(10, 1 << 20);
    for (int i = 0; i < KEYS; i++) {
        char path[32];
        snprintf(path, sizeof(path), "k%d", i);
        path_key(&ft->keys[i], path, -1);
    }
    for (int t = 0; t < THREADS; t++) {
        ctx[t] = (struct flight_thread){.ft = ft, .t = t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, flight_worker, &ctx[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        void *ret = NULL;
        pthread_join(th[t], &ret);
        ck_assert_ptr_null(ret);
    }
    size_t waiters = 0, leaders = 0;
    for (int id = 0; id < THREADS * CYCLES; id++) {
        int led = atomic_load(&ft->leaders[id]), woke = atomic_load(&ft->wakes[id]);
        ck_assert_int_eq(led + woke, 1); /* a leader is never woken; a waiter exactly once */
        leaders += (size_t)led;
        waiters += (size_t)woke;
    }
    ck_assert_uint_eq(atomic_load(&ft->woken_by_finish), waiters);
    ck_assert_uint_eq(leaders + waiters, THREADS * CYCLES);
    ck_assert_uint_gt(leaders, 0);
    px_cache_destroy(ft->cache);
    free(ft);
}
END_TEST

/* ---- concurrent use of the table ---- */

struct table_thread {
    struct px_cache *cache;
    int t;
};

static void *table_worker(void *arg)
{
    struct table_thread *ctx = arg;
    char path[32];
    size_t len = 0;
    for (int i = 0; i < 2000; i++) {
        struct key k;
        snprintf(path, sizeof(path), "p/%d", (i * 7 + ctx->t) % 40);
        path_key(&k, path, -1);
        struct px_cache_entry *e = px_cache_lookup(ctx->cache, k.bytes, k.len, T0 + (uint64_t)i, NULL);
        if (e == NULL) {
            e = store(ctx->cache, &k, 1 + i % 3, path, T0 + (uint64_t)i);
        } else if (i % 5 == 0) {
            px_cache_refresh(ctx->cache, e, NULL, T0 + (uint64_t)i);
        }
        if (e != NULL) {
            const uint8_t *payload = px_cache_entry_payload(e, &len);
            if (len != strlen(path) || memcmp(payload, path, len) != 0) {
                px_cache_entry_release(e);
                thread_sets_fini();
                return (void *)1; /* an entry's payload must match its key */
            }
        }
        px_cache_entry_release(e);
        if (i % 11 == 0) {
            px_cache_invalidate(ctx->cache, k.bytes, k.resource_len);
        }
    }
    thread_sets_fini();
    return NULL;
}

START_TEST(test_concurrent_store_lookup_and_invalidate_keep_entries_consistent)
{
    struct px_cache *c = px_cache_create(16, 1 << 20);
    pthread_t th[4];
    struct table_thread ctx[4];
    for (int t = 0; t < 4; t++) {
        ctx[t] = (struct table_thread){.cache = c, .t = t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, table_worker, &ctx[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        void *ret = NULL;
        pthread_join(th[t], &ret);
        ck_assert_ptr_null(ret);
    }
    struct px_cache_stats s = stats_of(c);
    ck_assert_uint_le(s.entries, 16);
    ck_assert_uint_gt(s.stores, 0);
    ck_assert_uint_le(s.entries + s.evictions + s.invalidations, s.stores); /* the rest were replaced */
    px_cache_destroy(c);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *key = tcase_create("key");
    tcase_add_test(key, test_same_options_give_the_same_key);
    tcase_add_test(key, test_insertion_order_of_different_options_does_not_change_the_key);
    tcase_add_test(key, test_path_segments_query_and_upstream_are_distinguished);
    tcase_add_test(key, test_accept_changes_the_key);
    tcase_add_test(key, test_etag_conditionals_observe_block_and_size_do_not_change_the_key);
    tcase_add_test(key, test_fetch_payload_changes_the_key_and_get_payload_does_not);
    tcase_add_test(key, test_fetch_content_format_changes_the_key);
    tcase_add_test(key, test_resource_part_is_a_prefix_shared_by_methods_and_accept);
    tcase_add_test(key, test_key_that_does_not_fit_returns_zero);
    suite_add_tcase(s, key);

    TCase *fresh = tcase_create("freshness");
    tcase_add_test(fresh, test_max_age_defaults_to_60_and_is_read_from_the_option);
    tcase_add_test(fresh, test_age_zero_has_the_full_max_age_remaining);
    tcase_add_test(fresh, test_entry_is_fresh_until_exactly_max_age_then_stale);
    tcase_add_test(fresh, test_remaining_never_grows_when_the_clock_reads_before_storage);
    tcase_add_test(fresh, test_refresh_resets_age_and_takes_the_new_max_age);
    tcase_add_test(fresh, test_max_age_zero_is_stored_only_with_an_etag);
    tcase_add_test(fresh, test_entry_keeps_code_payload_and_response_options);
    suite_add_tcase(s, fresh);

    TCase *codes = tcase_create("cacheable codes");
    tcase_add_test(codes, test_exactly_the_rfc_7252_cacheable_codes_are_cacheable);
    tcase_add_test(codes, test_created_deleted_changed_and_unknown_codes_are_not_cacheable);
    tcase_add_test(codes, test_store_refuses_uncacheable_codes_and_bare_2_03);
    suite_add_tcase(s, codes);

    TCase *bounds = tcase_create("bounds");
    tcase_set_timeout(bounds, 60);
    tcase_add_test(bounds, test_lru_by_count_evicts_the_least_recently_used);
    tcase_add_test(bounds, test_lru_by_bytes_evicts_the_least_recently_used);
    tcase_add_test(bounds, test_oversized_body_is_not_stored);
    tcase_add_test(bounds, test_storing_the_same_key_replaces_the_old_entry);
    tcase_add_test(bounds, test_evicted_entry_stays_readable_until_released);
    tcase_add_test(bounds, test_ten_thousand_keys_keep_both_bounds);
    tcase_add_test(bounds, test_count_bound_holds_with_small_bodies);
    suite_add_tcase(s, bounds);

    TCase *inval = tcase_create("invalidation");
    tcase_set_timeout(inval, 60);
    tcase_add_test(inval, test_invalidate_drops_every_variant_of_a_resource_and_nothing_else);
    tcase_add_test(inval, test_invalidate_scales_with_the_resource_not_the_cache);
    tcase_add_test(inval, test_an_answer_fetched_before_an_invalidation_is_not_stored_after_it);
    suite_add_tcase(s, inval);

    TCase *flight = tcase_create("single flight");
    tcase_set_timeout(flight, 120);
    tcase_add_test(flight, test_first_join_leads_and_others_queue);
    tcase_add_test(flight, test_finish_wakes_all_waiters_in_order_exactly_once);
    tcase_add_test(flight, test_destroy_frees_unfinished_flights);
    tcase_add_test(flight, test_concurrent_flights_wake_each_waiter_exactly_once);
    tcase_add_test(flight, test_concurrent_store_lookup_and_invalidate_keep_entries_consistent);
    suite_add_tcase(s, flight);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cache_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
