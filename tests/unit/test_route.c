/* Unit tests for proxy/route: longest-prefix matching on segment boundaries, method bits, admin paths. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/route.h"

static struct cfg_route routes[] = {
    {.prefix = "/api/", .upstream = 0, .methods = CFG_METHOD_GET | CFG_METHOD_PUT, .cache = true},
    {.prefix = "/api/v2/", .upstream = 1, .methods = CFG_METHOD_ALL, .cache = true},
    {.prefix = "/", .upstream = 2, .methods = CFG_METHOD_GET, .cache = false},
};

static struct cfg config = {.routes = routes, .routes_len = 3};

static const struct cfg_route *match(const char *path, const char **rest)
{
    return px_route_match(&config, path, strlen(path), rest);
}

START_TEST(test_longest_prefix_wins)
{
    const char *rest = NULL;
    ck_assert_ptr_eq(match("/api/v2/x", &rest), &routes[1]);
    ck_assert_str_eq(rest, "x");
    ck_assert_ptr_eq(match("/api/v1/x", &rest), &routes[0]);
    ck_assert_str_eq(rest, "v1/x");
}
END_TEST

START_TEST(test_prefix_without_trailing_slash_matches_with_empty_rest)
{
    const char *rest = NULL;
    ck_assert_ptr_eq(match("/api", &rest), &routes[0]);
    ck_assert_str_eq(rest, "");
    ck_assert_ptr_eq(match("/api/", &rest), &routes[0]);
    ck_assert_str_eq(rest, "");
    ck_assert_ptr_eq(match("/api/v2", &rest), &routes[1]);
    ck_assert_str_eq(rest, "");
}
END_TEST

START_TEST(test_prefix_matches_only_on_segment_boundaries)
{
    const char *rest = NULL;
    /* "/apix" is not under "/api/": it falls through to the catch-all "/". */
    ck_assert_ptr_eq(match("/apix", &rest), &routes[2]);
    ck_assert_str_eq(rest, "apix");
}
END_TEST

START_TEST(test_no_route_without_catch_all)
{
    struct cfg one = {.routes = routes, .routes_len = 1};
    const char *rest = "untouched";
    ck_assert_ptr_null(px_route_match(&one, "/other", 6, &rest));
    ck_assert_str_eq(rest, "untouched");
    ck_assert_ptr_null(px_route_match(&one, "/ap", 3, &rest));
}
END_TEST

START_TEST(test_percent_encoded_prefix_is_not_the_prefix)
{
    struct cfg one = {.routes = routes, .routes_len = 1};
    const char *rest = NULL;
    ck_assert_ptr_null(px_route_match(&one, "/%61pi/x", 8, &rest));
}
END_TEST

START_TEST(test_method_bits)
{
    ck_assert_uint_eq(px_route_method_bit("GET"), CFG_METHOD_GET);
    ck_assert_uint_eq(px_route_method_bit("HEAD"), CFG_METHOD_GET);
    ck_assert_uint_eq(px_route_method_bit("iPATCH"), CFG_METHOD_IPATCH);
    ck_assert_uint_eq(px_route_method_bit("DELETE"), CFG_METHOD_DELETE);
    ck_assert_uint_eq(px_route_method_bit("get"), 0);
    ck_assert_uint_eq(px_route_method_bit("OPTIONS"), 0);
}
END_TEST

START_TEST(test_admin_paths_are_exact)
{
    ck_assert(px_route_is_admin("/healthz", 8));
    ck_assert(px_route_is_admin("/readyz", 7));
    ck_assert(px_route_is_admin("/metrics", 8));
    ck_assert(!px_route_is_admin("/healthz/", 9));
    ck_assert(!px_route_is_admin("/api/healthz", 12));
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("matching");
    tcase_add_test(tc, test_longest_prefix_wins);
    tcase_add_test(tc, test_prefix_without_trailing_slash_matches_with_empty_rest);
    tcase_add_test(tc, test_prefix_matches_only_on_segment_boundaries);
    tcase_add_test(tc, test_no_route_without_catch_all);
    tcase_add_test(tc, test_percent_encoded_prefix_is_not_the_prefix);
    suite_add_tcase(s, tc);
    tc = tcase_create("methods");
    tcase_add_test(tc, test_method_bits);
    tcase_add_test(tc, test_admin_paths_are_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(route_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
