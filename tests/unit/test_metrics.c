/* Unit tests for base/metrics: histogram buckets, series keyed by name, and the Prometheus text format's
 * escaping and histogram samples. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"

static const char *escape(const char *s, size_t cap)
{
    static char out[256];
    size_t n = cg_prom_escape(out, cap, s, strlen(s));
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

START_TEST(test_label_values_are_escaped)
{
    ck_assert_str_eq(escape("/api/", 256), "/api/");
    ck_assert_str_eq(escape("a\"b\\c\nd", 256), "a\\\"b\\\\c\\nd");
    ck_assert_str_eq(escape("caf\xc3\xa9", 256), "caf\xc3\xa9"); /* UTF-8 stays as it is */
}
END_TEST

START_TEST(test_escape_truncates_at_a_whole_escape)
{
    ck_assert_str_eq(escape("ab\"", 4), "ab"); /* \" does not fit after ab */
    ck_assert_str_eq(escape("ab\"", 5), "ab\\\"");
    ck_assert_str_eq(escape("abc", 1), "");
}
END_TEST

START_TEST(test_observations_land_in_their_bucket)
{
    struct cg_hist h = {0};
    cg_hist_observe(&h, 0);       /* le 0.0005 */
    cg_hist_observe(&h, 500);     /* le 0.0005: bounds are inclusive */
    cg_hist_observe(&h, 501);     /* le 0.001 */
    cg_hist_observe(&h, 3000000); /* le 5 */
    cg_hist_observe(&h, 61000000);
    ck_assert_uint_eq(atomic_load(&h.bucket[0]), 2);
    ck_assert_uint_eq(atomic_load(&h.bucket[1]), 1);
    ck_assert_uint_eq(atomic_load(&h.bucket[12]), 1);
    ck_assert_uint_eq(atomic_load(&h.bucket[CG_HIST_BUCKETS]), 1); /* +Inf */
    ck_assert_uint_eq(atomic_load(&h.sum_us), 500 + 501 + 3000000 + 61000000);
}
END_TEST

static char *text_of(struct cg_buf *b)
{
    cg_buf_append(b, "", 1, 1u << 24);
    return (char *)b->p;
}

START_TEST(test_histogram_samples_are_cumulative)
{
    struct cg_hist h = {0};
    struct cg_buf b = CG_BUF_INIT;

    cg_hist_observe(&h, 400);
    cg_hist_observe(&h, 2000);
    cg_hist_observe(&h, 70000000);
    cg_prom_hist(&b, "x_seconds", "route=\"/a/\"", &h);
    char *t = text_of(&b);
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{route=\"/a/\",le=\"0.0005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{route=\"/a/\",le=\"0.001\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{route=\"/a/\",le=\"0.0025\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{route=\"/a/\",le=\"60\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{route=\"/a/\",le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_sum{route=\"/a/\"} 70.002400\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_count{route=\"/a/\"} 3\n"));
    cg_buf_free(&b);
}
END_TEST

START_TEST(test_histogram_without_labels)
{
    struct cg_hist h = {0};
    struct cg_buf b = CG_BUF_INIT;

    cg_prom_hist(&b, "y", "", &h);
    char *t = text_of(&b);
    ck_assert_ptr_nonnull(strstr(t, "y_bucket{le=\"+Inf\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "y_sum 0.000000\ny_count 0\n"));
    cg_buf_free(&b);
}
END_TEST

struct pair {
    atomic_uint_fast64_t a, b;
};

START_TEST(test_a_key_always_finds_its_series)
{
    static struct cg_keyed set = CG_KEYED_INIT(sizeof(struct pair));
    struct pair *p = cg_keyed_get(&set, "/api/", 5);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(atomic_load(&p->a), 0); /* new series start at zero */
    atomic_fetch_add(&p->a, 3);
    struct pair *q = cg_keyed_get(&set, "/other/", 7);
    ck_assert_ptr_ne(p, q);
    ck_assert_ptr_eq(cg_keyed_get(&set, "/api/", 5), p);
    ck_assert_uint_eq(atomic_load(&p->a), 3);
    ck_assert_uint_eq(cg_keyed_count(&set), 2);
    const char *key;
    ck_assert_ptr_eq(cg_keyed_at(&set, 0, &key), p); /* in creation order */
    ck_assert_str_eq(key, "/api/");
    ck_assert_ptr_eq(cg_keyed_at(&set, 1, &key), q);
    ck_assert_str_eq(key, "/other/");
}
END_TEST

START_TEST(test_a_full_set_counts_the_rest_as_other)
{
    static struct cg_keyed set = CG_KEYED_INIT(sizeof(struct pair));
    char key[32];
    void *first = NULL;

    for (int i = 0; i < CG_KEYED_MAX - 1; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        void *s = cg_keyed_get(&set, key, strlen(key));
        ck_assert_ptr_nonnull(s);
        first = first != NULL ? first : s;
    }
    void *other = cg_keyed_get(&set, "one-too-many", 12);
    ck_assert_ptr_eq(cg_keyed_get(&set, "and-another", 11), other);
    ck_assert_ptr_eq(cg_keyed_get(&set, "k0", 2), first); /* the old keys still find theirs */
    ck_assert_uint_eq(cg_keyed_count(&set), CG_KEYED_MAX);
    const char *name;
    ck_assert_ptr_eq(cg_keyed_at(&set, CG_KEYED_MAX - 1, &name), other);
    ck_assert_str_eq(name, CG_KEYED_OTHER);
}
END_TEST

/* Threads race to create the same keys: each key gets one series, and no increment is lost. */
static struct cg_keyed race_set = CG_KEYED_INIT(sizeof(struct pair));
enum { RACE_THREADS = 4, RACE_KEYS = 64, RACE_ROUNDS = 200 };

static void *race(void *arg)
{
    char key[16];
    (void)arg;
    for (int r = 0; r < RACE_ROUNDS; r++) {
        for (int k = 0; k < RACE_KEYS; k++) {
            snprintf(key, sizeof(key), "/r%d/", k);
            struct pair *p = cg_keyed_get(&race_set, key, strlen(key));
            atomic_fetch_add_explicit(&p->a, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

START_TEST(test_racing_threads_share_one_series_per_key)
{
    pthread_t t[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&t[i], NULL, race, NULL), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    ck_assert_uint_eq(cg_keyed_count(&race_set), RACE_KEYS);
    for (size_t i = 0; i < RACE_KEYS; i++) {
        const char *key;
        struct pair *p = cg_keyed_at(&race_set, i, &key);
        ck_assert_uint_eq(atomic_load(&p->a), RACE_THREADS * RACE_ROUNDS);
        ck_assert_ptr_eq(cg_keyed_get(&race_set, key, strlen(key)), p);
    }
}
END_TEST

START_TEST(test_family_head)
{
    struct cg_buf b = CG_BUF_INIT;
    cg_prom_head(&b, "a_total", "counter", "Things.");
    ck_assert_str_eq(text_of(&b), "# HELP a_total Things.\n# TYPE a_total counter\n");
    cg_buf_free(&b);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("prometheus text");
    tcase_add_test(tc, test_label_values_are_escaped);
    tcase_add_test(tc, test_escape_truncates_at_a_whole_escape);
    tcase_add_test(tc, test_histogram_samples_are_cumulative);
    tcase_add_test(tc, test_histogram_without_labels);
    tcase_add_test(tc, test_family_head);
    suite_add_tcase(s, tc);
    tc = tcase_create("histograms");
    tcase_add_test(tc, test_observations_land_in_their_bucket);
    suite_add_tcase(s, tc);
    tc = tcase_create("keyed series");
    tcase_add_test(tc, test_a_key_always_finds_its_series);
    tcase_add_test(tc, test_a_full_set_counts_the_rest_as_other);
    tcase_add_test(tc, test_racing_threads_share_one_series_per_key);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
