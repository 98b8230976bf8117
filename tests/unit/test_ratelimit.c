/* Unit tests for proxy/ratelimit: the bucket arithmetic on an injected clock (burst, refill, Retry-After),
 * who counts as one client (IPv4, IPv6 /64, IPv4-mapped), the memory bound and the eviction order under
 * floods of addresses, and the token count under threads. No test sleeps: time is a parameter. */
#include <arpa/inet.h>
#include <check.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxy/ratelimit.h"

#define T0 1000000u /* an arbitrary monotonic start */

/* ---- helpers ---- */

/* Any textual IPv4 or IPv6 address as the sockaddr a front end would hand over. */
struct addr {
    struct sockaddr_storage ss;
};

static const struct sockaddr *addr_of(struct addr *a, const char *text)
{
    memset(a, 0, sizeof(*a));
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(40000);
    } else {
        ck_assert_int_eq(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(40001);
    }
    return (const struct sockaddr *)&a->ss;
}

/* The n-th of many distinct IPv4 addresses (10.x.y.z) or IPv6 /64s (2001:db8:x:y::1). */
static const struct sockaddr *nth_v4(struct addr *a, uint32_t n)
{
    char text[32];
    snprintf(text, sizeof(text), "10.%u.%u.%u", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    return addr_of(a, text);
}

static const struct sockaddr *nth_v6(struct addr *a, uint32_t n)
{
    char text[64];
    snprintf(text, sizeof(text), "2001:db8:%x:%x::1", n >> 16, n & 0xffff);
    return addr_of(a, text);
}

/* Takes until refused at now_ms; returns how many were granted. */
static unsigned drain(struct px_rl *rl, const struct sockaddr *sa, uint64_t now_ms)
{
    unsigned n = 0;
    while (px_rl_take(rl, sa, now_ms, NULL)) {
        n++;
        ck_assert_uint_lt(n, 1000000);
    }
    return n;
}

static struct px_rl *create_ok(double rps, unsigned burst, size_t max_clients)
{
    struct px_rl *rl = px_rl_create(rps, burst, max_clients);
    ck_assert_ptr_nonnull(rl);
    return rl;
}

/* ---- the bucket ---- */

START_TEST(test_a_new_client_gets_burst_requests_then_is_refused)
{
    struct px_rl *rl = create_ok(2, 5, 100);
    struct addr a;
    unsigned retry = 99;
    for (int i = 0; i < 5; i++) {
        ck_assert(px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0, &retry));
        ck_assert_uint_eq(retry, 0);
    }
    ck_assert(!px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0, &retry));
    ck_assert_uint_ge(retry, 1);
    ck_assert(!px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0, NULL));
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_a_refused_request_takes_nothing)
{
    struct px_rl *rl = create_ok(1, 1, 100);
    struct addr a;
    ck_assert(px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0, NULL));
    for (int i = 0; i < 100; i++) {
        ck_assert(!px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0 + 999, NULL));
    }
    ck_assert(px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0 + 1000, NULL));
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_the_bucket_refills_at_the_rate)
{
    struct px_rl *rl = create_ok(10, 5, 100); /* a token every 100 ms */
    struct addr a;
    const struct sockaddr *sa = addr_of(&a, "192.0.2.1");
    ck_assert_uint_eq(drain(rl, sa, T0), 5);
    ck_assert(!px_rl_take(rl, sa, T0 + 99, NULL));
    ck_assert(px_rl_take(rl, sa, T0 + 100, NULL));
    ck_assert(!px_rl_take(rl, sa, T0 + 100, NULL));
    ck_assert_uint_eq(drain(rl, sa, T0 + 350), 2); /* 250 ms more: two whole tokens, half of one kept */
    ck_assert_uint_eq(drain(rl, sa, T0 + 400), 1); /* and the half completes at +400 */
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_the_bucket_refills_no_further_than_burst)
{
    struct px_rl *rl = create_ok(10, 5, 100);
    struct addr a;
    const struct sockaddr *sa = addr_of(&a, "192.0.2.1");
    ck_assert_uint_eq(drain(rl, sa, T0), 5);
    ck_assert_uint_eq(drain(rl, sa, T0 + 3600 * 1000), 5);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_fractional_rates_refill_without_drift)
{
    struct px_rl *rl = create_ok(3, 5, 100); /* 333.3 ms per token */
    struct addr a;
    const struct sockaddr *sa = addr_of(&a, "192.0.2.1");
    unsigned granted = 0;
    /* Asked every 5 ms, the bucket is never full after the start, so no token is lost to the cap. */
    for (uint64_t t = 0; t <= 600 * 1000; t += 5) {
        granted += px_rl_take(rl, sa, T0 + t, NULL);
    }
    ck_assert_uint_eq(granted, 5 + 3 * 600); /* the full start, then exactly 3 a second for 600 s */
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_retry_after_is_the_whole_seconds_until_a_token)
{
    struct addr a;
    unsigned retry = 0;

    struct px_rl *slow = create_ok(0.1, 1, 100); /* a token every 10 s */
    const struct sockaddr *sa = addr_of(&a, "192.0.2.1");
    ck_assert(px_rl_take(slow, sa, T0, &retry));
    ck_assert(!px_rl_take(slow, sa, T0, &retry));
    ck_assert_uint_eq(retry, 10);
    ck_assert(!px_rl_take(slow, sa, T0 + 1, &retry));
    ck_assert_uint_eq(retry, 10); /* 9.999 s, rounded up: asking earlier would be refused again */
    ck_assert(!px_rl_take(slow, sa, T0 + 9000, &retry));
    ck_assert_uint_eq(retry, 1);
    ck_assert(!px_rl_take(slow, sa, T0 + 9999, &retry));
    ck_assert_uint_eq(retry, 1);
    ck_assert(px_rl_take(slow, sa, T0 + 10000, &retry));
    ck_assert_uint_eq(retry, 0);
    px_rl_destroy(slow);

    struct px_rl *fast = create_ok(50, 2, 100); /* 20 ms away is still "1 second" for Retry-After */
    ck_assert_uint_eq(drain(fast, sa, T0), 2);
    ck_assert(!px_rl_take(fast, sa, T0, &retry));
    ck_assert_uint_eq(retry, 1);
    px_rl_destroy(fast);
}
END_TEST

/* ---- who is one client ---- */

START_TEST(test_two_clients_have_independent_buckets)
{
    struct px_rl *rl = create_ok(1, 3, 100);
    struct addr a;
    ck_assert_uint_eq(drain(rl, addr_of(&a, "192.0.2.1"), T0), 3);
    ck_assert_uint_eq(drain(rl, addr_of(&a, "192.0.2.2"), T0), 3);
    ck_assert(!px_rl_take(rl, addr_of(&a, "192.0.2.1"), T0, NULL));
    ck_assert_uint_eq(px_rl_clients(rl), 2);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_the_port_does_not_make_another_client)
{
    struct px_rl *rl = create_ok(1, 2, 100);
    struct addr a;
    const struct sockaddr *sa = addr_of(&a, "192.0.2.1");
    ck_assert(px_rl_take(rl, sa, T0, NULL));
    ((struct sockaddr_in *)&a.ss)->sin_port = htons(50000);
    ck_assert(px_rl_take(rl, sa, T0, NULL));
    ((struct sockaddr_in *)&a.ss)->sin_port = htons(50001);
    ck_assert(!px_rl_take(rl, sa, T0, NULL));
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_ipv6_addresses_in_one_64_share_a_bucket)
{
    struct px_rl *rl = create_ok(1, 3, 100);
    struct addr a;
    ck_assert(px_rl_take(rl, addr_of(&a, "2001:db8:1:2::1"), T0, NULL));
    ck_assert(px_rl_take(rl, addr_of(&a, "2001:db8:1:2:ffff:ffff:ffff:ffff"), T0, NULL));
    ck_assert(px_rl_take(rl, addr_of(&a, "2001:db8:1:2:1234:5678:9abc:def0"), T0, NULL));
    ck_assert(!px_rl_take(rl, addr_of(&a, "2001:db8:1:2::99"), T0, NULL));
    ck_assert_uint_eq(px_rl_clients(rl), 1);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_ipv6_addresses_in_different_64s_are_independent)
{
    struct px_rl *rl = create_ok(1, 3, 100);
    struct addr a;
    ck_assert_uint_eq(drain(rl, addr_of(&a, "2001:db8:1:2::1"), T0), 3);
    ck_assert_uint_eq(drain(rl, addr_of(&a, "2001:db8:1:3::1"), T0), 3); /* the next /64 */
    ck_assert_uint_eq(drain(rl, addr_of(&a, "2001:db9:1:2::1"), T0), 3); /* another /32 */
    ck_assert_uint_eq(drain(rl, addr_of(&a, "::1"), T0), 3);             /* loopback is ::/64 */
    ck_assert_uint_eq(drain(rl, addr_of(&a, "0.0.0.0"), T0), 3);         /* IPv4, not ::/64 */
    ck_assert_uint_eq(px_rl_clients(rl), 5);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_an_ipv4_mapped_ipv6_address_is_the_ipv4_client)
{
    struct px_rl *rl = create_ok(1, 4, 100);
    struct addr a;
    ck_assert(px_rl_take(rl, addr_of(&a, "192.0.2.7"), T0, NULL));
    ck_assert(px_rl_take(rl, addr_of(&a, "::ffff:192.0.2.7"), T0, NULL));
    ck_assert(px_rl_take(rl, addr_of(&a, "192.0.2.7"), T0, NULL));
    ck_assert(px_rl_take(rl, addr_of(&a, "::ffff:192.0.2.7"), T0, NULL));
    ck_assert(!px_rl_take(rl, addr_of(&a, "192.0.2.7"), T0, NULL));
    ck_assert(!px_rl_take(rl, addr_of(&a, "::ffff:192.0.2.7"), T0, NULL));
    ck_assert(px_rl_take(rl, addr_of(&a, "::ffff:192.0.2.8"), T0, NULL)); /* its neighbour is not */
    ck_assert_uint_eq(px_rl_clients(rl), 2);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_other_families_and_no_address_are_not_limited)
{
    struct px_rl *rl = create_ok(1, 1, 100);
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/coapgw.sock"};
    unsigned retry = 99;
    for (int i = 0; i < 10; i++) {
        ck_assert(px_rl_take(rl, (const struct sockaddr *)&un, T0, &retry));
        ck_assert_uint_eq(retry, 0);
        ck_assert(px_rl_take(rl, NULL, T0, NULL));
    }
    ck_assert_uint_eq(px_rl_clients(rl), 0);
    px_rl_destroy(rl);
}
END_TEST

/* ---- creation ---- */

START_TEST(test_create_refuses_parameters_out_of_range)
{
    ck_assert_ptr_null(px_rl_create(0, 1, 1));
    ck_assert_ptr_null(px_rl_create(-1, 1, 1));
    ck_assert_ptr_null(px_rl_create(1e10, 1, 1));
    ck_assert_ptr_null(px_rl_create(INFINITY, 1, 1));
    ck_assert_ptr_null(px_rl_create(NAN, 1, 1));
    ck_assert_ptr_null(px_rl_create(1e-300, 1, 1)); /* a token every 10^291 years */
    ck_assert_ptr_null(px_rl_create(1e-9, 5, 1));   /* a full bucket 158 years away */
    ck_assert_ptr_null(px_rl_create(1, 0, 1));
    ck_assert_ptr_null(px_rl_create(1, 1, 0));
    px_rl_destroy(NULL);
    struct px_rl *rl = create_ok(1e9, 1, 1);
    px_rl_destroy(rl);
}
END_TEST

/* ---- bounds and eviction ---- */

START_TEST(test_max_clients_holds_under_100000_distinct_addresses)
{
    const size_t max = 5000; /* several stripes */
    struct px_rl *rl = create_ok(1, 3, max);
    struct addr a;
    for (uint32_t n = 0; n < 100000; n++) {
        /* Every new client is let in (fail open), whether the table is full or not. */
        ck_assert(px_rl_take(rl, n % 2 ? nth_v6(&a, n) : nth_v4(&a, n), T0 + n / 100, NULL));
        if (n % 1000 == 999) {
            ck_assert_uint_le(px_rl_clients(rl), max);
        }
    }
    ck_assert_uint_eq(px_rl_clients(rl), max); /* every stripe filled up to its share, no more */
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_a_refilled_client_is_evicted_before_a_drained_one)
{
    struct px_rl *rl = create_ok(10, 10, 8); /* one stripe of 8, a token every 100 ms */
    struct addr a;
    ck_assert_uint_eq(drain(rl, nth_v4(&a, 0), T0), 10); /* the least recently seen, full again at +1000 */
    for (uint32_t n = 1; n < 8; n++) {
        ck_assert(px_rl_take(rl, nth_v4(&a, n), T0, NULL)); /* full again at +100 */
    }
    ck_assert(px_rl_take(rl, nth_v4(&a, 100), T0 + 200, NULL)); /* a ninth: someone must go */
    ck_assert_uint_eq(px_rl_clients(rl), 8);
    /* Client 0 was the least recently seen but is remembered: 2 tokens back at +200, not a fresh 10. */
    ck_assert_uint_eq(drain(rl, nth_v4(&a, 0), T0 + 200), 2);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_without_a_refilled_client_the_least_recently_seen_is_evicted)
{
    struct px_rl *rl = create_ok(1, 5, 8);
    struct addr a;
    for (uint32_t n = 0; n < 8; n++) {
        ck_assert_uint_eq(drain(rl, nth_v4(&a, n), T0), 5);
    }
    ck_assert(!px_rl_take(rl, nth_v4(&a, 0), T0, NULL)); /* seen again: client 1 is now the oldest */
    ck_assert(px_rl_take(rl, nth_v4(&a, 100), T0, NULL));
    ck_assert(!px_rl_take(rl, nth_v4(&a, 0), T0, NULL)); /* remembered */
    ck_assert_uint_eq(drain(rl, nth_v4(&a, 1), T0), 5);  /* forgotten: a fresh bucket */
    ck_assert_uint_eq(px_rl_clients(rl), 8);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_a_flood_of_new_addresses_does_not_reset_a_busy_client)
{
    struct px_rl *rl = create_ok(1, 5, 1000);
    struct addr a, b;
    const struct sockaddr *attacker = addr_of(&b, "198.51.100.1");
    ck_assert_uint_eq(drain(rl, attacker, T0), 5);
    for (uint32_t n = 0; n < 100000; n++) {
        ck_assert(px_rl_take(rl, nth_v6(&a, n), T0, NULL));
        if (n % 50 == 0) {
            ck_assert(!px_rl_take(rl, attacker, T0, NULL)); /* still asking, so still remembered */
        }
    }
    ck_assert(!px_rl_take(rl, attacker, T0, NULL));
    ck_assert_uint_eq(px_rl_clients(rl), 1000);
    px_rl_destroy(rl);
}
END_TEST

START_TEST(test_a_client_silent_through_a_flood_starts_over)
{
    /* The documented price of failing open: silence while a stripe's worth of new clients arrive forgets a
     * drained bucket. */
    struct px_rl *rl = create_ok(1, 5, 1000);
    struct addr a, b;
    const struct sockaddr *quiet = addr_of(&b, "198.51.100.1");
    ck_assert_uint_eq(drain(rl, quiet, T0), 5);
    for (uint32_t n = 0; n < 2000; n++) {
        ck_assert(px_rl_take(rl, nth_v6(&a, n), T0, NULL));
    }
    ck_assert_uint_eq(drain(rl, quiet, T0), 5);
    px_rl_destroy(rl);
}
END_TEST

/* ---- threads ---- */

#define THREADS 4
#define ITERATIONS 100000
#define CALLS_PER_MS 100 /* shared simulated time advances by one ms per 100 calls of all threads */
#define MT_RATE 100      /* a token every 10 ms */
#define MT_BURST 20

struct mt_shared {
    struct px_rl *rl;
    const struct sockaddr *common;
    atomic_uint_fast64_t ticks;
};

struct mt_worker {
    struct mt_shared *sh;
    struct addr own;
    unsigned granted_common, granted_own;
};

/* Hammers the common client on the shared clock (calls of different threads come slightly out of order, as
 * they do in the gateway) and its own client on its own clock. */
static void *mt_run(void *arg)
{
    struct mt_worker *w = arg;
    const struct sockaddr *own = (const struct sockaddr *)&w->own.ss;
    for (uint64_t i = 0; i < ITERATIONS; i++) {
        uint64_t tick = atomic_fetch_add_explicit(&w->sh->ticks, 1, memory_order_relaxed);
        w->granted_common += px_rl_take(w->sh->rl, w->sh->common, T0 + tick / CALLS_PER_MS, NULL);
        w->granted_own += px_rl_take(w->sh->rl, own, T0 + i / CALLS_PER_MS, NULL);
    }
    return NULL;
}

START_TEST(test_threads_are_granted_burst_plus_rate_times_time)
{
    struct addr common;
    struct mt_shared sh = {create_ok(MT_RATE, MT_BURST, 1000), addr_of(&common, "203.0.113.1"), 0};
    struct mt_worker w[THREADS];
    pthread_t tid[THREADS];

    /* The common client's bucket starts at T0 exactly. */
    unsigned common_total = px_rl_take(sh.rl, sh.common, T0, NULL);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct mt_worker){.sh = &sh};
        nth_v4(&w[i].own, (uint32_t)i + 1);
        ck_assert_int_eq(pthread_create(&tid[i], NULL, mt_run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    }

    const uint64_t common_ms = (uint64_t)THREADS * ITERATIONS / CALLS_PER_MS; /* 4000 ms */
    for (int i = 0; i < THREADS; i++) {
        common_total += w[i].granted_common;
    }
    common_total += drain(sh.rl, sh.common, T0 + common_ms); /* what is left at the end of the window */
    long want = MT_BURST + (long)(MT_RATE * common_ms / 1000);
    ck_assert_int_le(labs((long)common_total - want), 1);

    const uint64_t own_ms = ITERATIONS / CALLS_PER_MS; /* 1000 ms */
    for (int i = 0; i < THREADS; i++) {
        long own = (long)w[i].granted_own + drain(sh.rl, (const struct sockaddr *)&w[i].own.ss, T0 + own_ms);
        ck_assert_int_le(labs(own - (MT_BURST + (long)(MT_RATE * own_ms / 1000))), 1);
    }
    ck_assert_uint_eq(px_rl_clients(sh.rl), 1 + THREADS);
    px_rl_destroy(sh.rl);
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");

    TCase *bucket = tcase_create("bucket");
    tcase_add_test(bucket, test_a_new_client_gets_burst_requests_then_is_refused);
    tcase_add_test(bucket, test_a_refused_request_takes_nothing);
    tcase_add_test(bucket, test_the_bucket_refills_at_the_rate);
    tcase_add_test(bucket, test_the_bucket_refills_no_further_than_burst);
    tcase_add_test(bucket, test_fractional_rates_refill_without_drift);
    tcase_add_test(bucket, test_retry_after_is_the_whole_seconds_until_a_token);
    suite_add_tcase(s, bucket);

    TCase *clients = tcase_create("clients");
    tcase_add_test(clients, test_two_clients_have_independent_buckets);
    tcase_add_test(clients, test_the_port_does_not_make_another_client);
    tcase_add_test(clients, test_ipv6_addresses_in_one_64_share_a_bucket);
    tcase_add_test(clients, test_ipv6_addresses_in_different_64s_are_independent);
    tcase_add_test(clients, test_an_ipv4_mapped_ipv6_address_is_the_ipv4_client);
    tcase_add_test(clients, test_other_families_and_no_address_are_not_limited);
    suite_add_tcase(s, clients);

    TCase *create = tcase_create("create");
    tcase_add_test(create, test_create_refuses_parameters_out_of_range);
    suite_add_tcase(s, create);

    TCase *bounds = tcase_create("bounds");
    tcase_set_timeout(bounds, 60);
    tcase_add_test(bounds, test_max_clients_holds_under_100000_distinct_addresses);
    tcase_add_test(bounds, test_a_refilled_client_is_evicted_before_a_drained_one);
    tcase_add_test(bounds, test_without_a_refilled_client_the_least_recently_seen_is_evicted);
    tcase_add_test(bounds, test_a_flood_of_new_addresses_does_not_reset_a_busy_client);
    tcase_add_test(bounds, test_a_client_silent_through_a_flood_starts_over);
    suite_add_tcase(s, bounds);

    TCase *threads = tcase_create("threads");
    tcase_set_timeout(threads, 120);
    tcase_add_test(threads, test_threads_are_granted_burst_plus_rate_times_time);
    suite_add_tcase(s, threads);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ratelimit_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
