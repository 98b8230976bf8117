/* Unit tests for the JSON log (base/log): string escaping (control bytes, quotes, invalid UTF-8), the object
 * builder's bounds, text lines turned into JSON, the sinks (stderr, stdout) and their drops, and the access
 * line and request id of gateway/access. Every JSON line is parsed back with jansson. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "gateway/access.h"

static const char *jq(const char *s, size_t len, size_t cap)
{
    static char out[1024];
    size_t n = cg_json_quote(out, cap, s, len);
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

#define JQ(lit) jq(lit, sizeof(lit) - 1, 1024)

/* Parses text as one JSON value and returns it (the caller decrefs), failing the test when invalid. */
static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    ck_assert_msg(v != NULL, "not JSON (%s at %d): %s", err.text, err.position, text);
    return v;
}

START_TEST(test_json_quotes_and_backslashes)
{
    ck_assert_str_eq(JQ("plain"), "\"plain\"");
    ck_assert_str_eq(JQ("a\"b\\c"), "\"a\\\"b\\\\c\"");
    ck_assert_str_eq(JQ(""), "\"\"");
}
END_TEST

START_TEST(test_json_control_bytes)
{
    ck_assert_str_eq(JQ("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
    ck_assert_str_eq(JQ("\x01\x1f\x7f"), "\"\\u0001\\u001f\\u007f\"");
    ck_assert_str_eq(jq("a\0b", 3, 1024), "\"a\\u0000b\"");
}
END_TEST

START_TEST(test_json_valid_utf8_passes)
{
    ck_assert_str_eq(JQ("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
                     "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    ck_assert_str_eq(JQ("\xe2\x80\xa8\xe2\x80\xa9"), "\"\\u2028\\u2029\""); /* line separators */
}
END_TEST

START_TEST(test_json_invalid_utf8_is_replaced)
{
    ck_assert_str_eq(JQ("\xff"), "\"\\ufffd\"");
    ck_assert_str_eq(JQ("a\xc3"), "\"a\\ufffd\"");                                /* cut short */
    ck_assert_str_eq(JQ("\xc0\xaf"), "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
    ck_assert_str_eq(JQ("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"");            /* overlong, three bytes */
    ck_assert_str_eq(JQ("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");            /* a surrogate */
    ck_assert_str_eq(JQ("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* above U+10FFFF */
    ck_assert_str_eq(JQ("\x80x"), "\"\\ufffdx\"");
}
END_TEST

START_TEST(test_json_truncates_at_a_whole_character)
{
    ck_assert_str_eq(jq("abcdef", 6, 6), "\"abc\"");
    ck_assert_str_eq(jq("ab\n", 3, 6), "\"ab\"");     /* \n does not fit after ab */
    ck_assert_str_eq(jq("a\xc3\xa9", 3, 5), "\"a\""); /* nor half of é */
    ck_assert_str_eq(jq("\x01", 1, 8), "\"\"");       /* nor half of \u0001 */
}
END_TEST

START_TEST(test_every_byte_gives_valid_json)
{
    char all[256], out[256 * 6 + 3];
    for (int i = 0; i < 256; i++) {
        all[i] = (char)i;
    }
    cg_json_quote(out, sizeof(out), all, sizeof(all));
    json_t *v = parse(out);
    ck_assert(json_is_string(v));
    json_decref(v);
}
END_TEST

START_TEST(test_object_builder_keeps_the_object_closed)
{
    char buf[64];
    struct cg_json j;
    cg_json_begin(&j, buf, sizeof(buf));
    cg_json_str(&j, "a", "x", 1);
    cg_json_int(&j, "n", -12);
    cg_json_str(&j, "none", NULL, 0);
    cg_json_raw(&j, "ms", "1.250");
    size_t len = cg_json_end(&j);
    ck_assert_str_eq(buf, "{\"a\":\"x\",\"n\":-12,\"none\":null,\"ms\":1.250}");
    ck_assert_uint_eq(len, strlen(buf));

    /* A value too long for the buffer is cut, and the members after it are left out: still one object. */
    char big[300];
    memset(big, '"', sizeof(big));
    cg_json_begin(&j, buf, sizeof(buf));
    cg_json_str(&j, "path", big, sizeof(big));
    cg_json_int(&j, "status", 200);
    len = cg_json_end(&j);
    ck_assert_uint_lt(len, sizeof(buf) - 1); /* room for the newline */
    json_t *v = parse(buf);
    ck_assert(json_is_object(v));
    ck_assert(json_is_string(json_object_get(v, "path")));
    json_decref(v);
}
END_TEST

START_TEST(test_text_pairs_become_members)
{
    char buf[512];
    struct cg_json j;
    static const char text[] = "event=nack nack=icmp upstream=\"no\\\"body\" path=\"/x\\xff\\n\" free text";
    cg_json_begin(&j, buf, sizeof(buf));
    cg_json_kv(&j, text, strlen(text));
    cg_json_end(&j);
    json_t *v = parse(buf);
    ck_assert_str_eq(json_string_value(json_object_get(v, "event")), "nack");
    ck_assert_str_eq(json_string_value(json_object_get(v, "nack")), "icmp");
    ck_assert_str_eq(json_string_value(json_object_get(v, "upstream")), "no\"body");
    ck_assert_str_eq(json_string_value(json_object_get(v, "path")), "/x\xef\xbf\xbd\n"); /* \xff: U+FFFD */
    ck_assert_str_eq(json_string_value(json_object_get(v, "text")), "free text");
    json_decref(v);

    /* A broken escape stays as it is written. */
    static const char odd[] = "a=\"\\x4\" b=\"\\x41\\q\" c=\"open";
    cg_json_begin(&j, buf, sizeof(buf));
    cg_json_kv(&j, odd, strlen(odd));
    cg_json_end(&j);
    v = parse(buf);
    ck_assert_str_eq(json_string_value(json_object_get(v, "a")), "x4");
    ck_assert_str_eq(json_string_value(json_object_get(v, "b")), "Aq");
    ck_assert_str_eq(json_string_value(json_object_get(v, "c")), "open");
    json_decref(v);
}
END_TEST

/* ---- the sinks ---- */

static int err_pipe[2], out_pipe[2];

static void sinks_open(void)
{
    ck_assert_int_eq(pipe(err_pipe), 0);
    ck_assert_int_eq(pipe(out_pipe), 0);
    cg_log_set_fd(err_pipe[1]);
    cg_log_set_out_fd(out_pipe[1]);
}

static char *read_all(int fd)
{
    static char got[65536];
    fcntl(fd, F_SETFL, O_NONBLOCK);
    ssize_t n = read(fd, got, sizeof(got) - 1);
    got[n > 0 ? n : 0] = '\0';
    return got;
}

START_TEST(test_json_lines_on_stderr)
{
    sinks_open();
    cg_log_set_format(CG_LOG_JSON);
    cg_log_write(CG_LOG_WARN, "client", "event=timeout upstream=\"s\" ms=%d", 5000);
    cg_log_write(CG_LOG_INFO, "coap", "msg=%s", "\"created \\x01 session\"");
    char *got = read_all(err_pipe[0]);
    char *second = strchr(got, '\n');
    ck_assert_ptr_nonnull(second);
    *second++ = '\0';
    json_t *a = parse(got), *b = parse(second);
    ck_assert_str_eq(json_string_value(json_object_get(a, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(a, "mod")), "client");
    ck_assert_str_eq(json_string_value(json_object_get(a, "event")), "timeout");
    ck_assert_str_eq(json_string_value(json_object_get(a, "ms")), "5000");
    const char *ts = json_string_value(json_object_get(a, "ts"));
    ck_assert_msg(ts != NULL && strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z', "ts %s",
                  ts);
    ck_assert_str_eq(json_string_value(json_object_get(b, "msg")), "created \x01 session");
    json_decref(a);
    json_decref(b);
    ck_assert_str_eq(read_all(out_pipe[0]), ""); /* nothing on stdout but the access log */
}
END_TEST

START_TEST(test_text_stays_the_default)
{
    sinks_open();
    cg_log_write(CG_LOG_INFO, "main", "event=started");
    char *got = read_all(err_pipe[0]);
    ck_assert_msg(strncmp(got, "ts=", 3) == 0 && strstr(got, "Z level=info mod=main event=started\n") != NULL,
                  "%s", got);
}
END_TEST

START_TEST(test_stdout_lines_are_buffered_and_flushed)
{
    sinks_open();
    ck_assert_int_eq(cg_log_start_buffering(), 0);
    cg_log_stdout("{\"a\":1}", 7);
    cg_log_stdout("{\"a\":2}", 7);
    cg_log_stop_buffering();
    ck_assert_str_eq(read_all(out_pipe[0]), "{\"a\":1}\n{\"a\":2}\n");
}
END_TEST

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* A stdout nobody reads: its lines are dropped and counted at once, and stderr goes on undisturbed. */
START_TEST(test_stuck_stdout_drops_and_spares_stderr)
{
    static const char page[4096];
    struct timespec t0;
    char line[200];

    signal(SIGPIPE, SIG_IGN);
    sinks_open();
    fcntl(out_pipe[1], F_SETFL, O_NONBLOCK);
    while (write(out_pipe[1], page, sizeof(page)) > 0) {
    }
    ck_assert_int_eq(errno, EAGAIN);
    fcntl(out_pipe[1], F_SETFL, 0);
    ck_assert_int_eq(cg_log_start_buffering(), 0);
    uint64_t before = cg_log_dropped();
    memset(line, 'x', sizeof(line));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 2000; i++) {
        cg_log_stdout(line, sizeof(line));
    }
    ck_assert_int_lt(elapsed_ms(&t0), 500);
    ck_assert_uint_ge(cg_log_dropped() - before, 2000 - 2 * 65536 / 201);
    cg_log_write(CG_LOG_ERROR, "test", "event=still_here");
    /* stderr's own flusher writes it though stdout is stuck. */
    char *got = "";
    for (int i = 0; i < 100 && strstr(got, "event=still_here") == NULL; i++) {
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
        got = read_all(err_pipe[0]);
    }
    ck_assert_ptr_nonnull(strstr(got, "event=still_here"));
    close(out_pipe[0]); /* EPIPE: stop gives up on stdout at once */
    cg_log_stop_buffering();
}
END_TEST

/* ---- the access line and the request id ---- */

START_TEST(test_request_id_rules)
{
    char max[GW_REQUEST_ID_MAX + 2];
    memset(max, 'a', sizeof(max));
    ck_assert(gw_request_id_valid("abc-123", 7));
    ck_assert(gw_request_id_valid("!~\"\\{}", 6)); /* every printable ASCII byte but space */
    ck_assert(gw_request_id_valid(max, GW_REQUEST_ID_MAX));
    ck_assert(!gw_request_id_valid(max, GW_REQUEST_ID_MAX + 1));
    ck_assert(!gw_request_id_valid("", 0));
    ck_assert(!gw_request_id_valid(NULL, 0));
    ck_assert(!gw_request_id_valid("a b", 3));
    ck_assert(!gw_request_id_valid("a\tb", 3));
    ck_assert(!gw_request_id_valid("a\x7f", 2));
    ck_assert(!gw_request_id_valid("caf\xc3\xa9", 5));
}
END_TEST

START_TEST(test_new_request_ids_are_hex_and_differ)
{
    char a[33], b[33];
    gw_request_id_new(a);
    for (int i = 0; i < 100; i++) {
        gw_request_id_new(b);
        ck_assert_str_ne(a, b);
    }
    ck_assert_uint_eq(strlen(b), 32);
    ck_assert_uint_eq(strspn(b, "0123456789abcdef"), 32);
    ck_assert(gw_request_id_valid(b, 32));
}
END_TEST

static const struct gw_access hostile = {
    .request_id = "id\"with\\quotes",
    .remote = "::1",
    .method = "GET",
    .path = "/api/\x01\xff\"x",
    .query = "q=\n1",
    .status = 504,
    .upstream = "dev",
    .coap_code = 0,
    .cache = "MISS",
    .bytes = 128,
    .duration_us = 1500250,
};

START_TEST(test_access_json_members)
{
    char line[8192];
    size_t len = gw_access_json(line, sizeof(line), "2026-12-02T01:02:03.456Z", &hostile);
    ck_assert_uint_eq(len, strlen(line));
    ck_assert_ptr_null(strchr(line, '\n'));
    json_t *v = parse(line);
    ck_assert_uint_eq(json_object_size(v), 11);
    ck_assert_str_eq(json_string_value(json_object_get(v, "ts")), "2026-12-02T01:02:03.456Z");
    ck_assert_str_eq(json_string_value(json_object_get(v, "request_id")), "id\"with\\quotes");
    ck_assert_str_eq(json_string_value(json_object_get(v, "remote")), "::1");
    ck_assert_str_eq(json_string_value(json_object_get(v, "method")), "GET");
    ck_assert_str_eq(json_string_value(json_object_get(v, "path")), "/api/\x01\xef\xbf\xbd\"x?q=\n1");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "status")), 504);
    ck_assert_str_eq(json_string_value(json_object_get(v, "upstream")), "dev");
    ck_assert(json_is_null(json_object_get(v, "coap_code")));
    ck_assert_str_eq(json_string_value(json_object_get(v, "cache")), "MISS");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "bytes")), 128);
    ck_assert(json_is_real(json_object_get(v, "duration_ms")));
    ck_assert_double_eq_tol(json_real_value(json_object_get(v, "duration_ms")), 1500.25, 1e-9);
    json_decref(v);
}
END_TEST

START_TEST(test_access_json_of_a_huge_target_is_whole)
{
    char line[8192], *path = malloc(70000);
    memset(path, '\x01', 69999);
    path[69999] = '\0';
    struct gw_access a = hostile;
    a.path = path;
    a.coap_code = 0x84; /* 4.04 */
    a.bytes = -1;
    gw_access_json(line, sizeof(line), "2026-12-02T01:02:03.456Z", &a);
    json_t *v = parse(line);
    ck_assert_uint_eq(json_object_size(v), 11); /* the path is cut; nothing after it is lost */
    ck_assert_str_eq(json_string_value(json_object_get(v, "coap_code")), "4.04");
    ck_assert(json_is_null(json_object_get(v, "bytes")));
    ck_assert_str_eq(json_string_value(json_object_get(v, "cache")), "MISS");
    json_decref(v);
    free(path);
}
END_TEST

START_TEST(test_access_text_escapes_client_values)
{
    char line[2048];
    gw_access_text(line, sizeof(line), &hostile);
    ck_assert_str_eq(line,
                     "event=access method=GET path=\"/api/\\x01\\xff\\\"x\" status=504 upstream=dev coap=- "
                     "cache=MISS ms=1500.25 request_id=\"id\\\"with\\\\quotes\"");
    struct gw_access plain = {.request_id = "0123abcd", .method = "GET", .path = "/api/x", .status = 200};
    gw_access_text(line, sizeof(line), &plain);
    ck_assert_str_eq(line, "event=access method=GET path=/api/x status=200 upstream=- coap=- cache=- ms=0.00 "
                           "request_id=0123abcd");
}
END_TEST

static Suite *logjson_suite(void)
{
    Suite *s = suite_create("logjson");
    TCase *tc = tcase_create("escaping");
    tcase_add_test(tc, test_json_quotes_and_backslashes);
    tcase_add_test(tc, test_json_control_bytes);
    tcase_add_test(tc, test_json_valid_utf8_passes);
    tcase_add_test(tc, test_json_invalid_utf8_is_replaced);
    tcase_add_test(tc, test_json_truncates_at_a_whole_character);
    tcase_add_test(tc, test_every_byte_gives_valid_json);
    suite_add_tcase(s, tc);
    tc = tcase_create("lines");
    tcase_add_test(tc, test_object_builder_keeps_the_object_closed);
    tcase_add_test(tc, test_text_pairs_become_members);
    tcase_add_test(tc, test_json_lines_on_stderr);
    tcase_add_test(tc, test_text_stays_the_default);
    suite_add_tcase(s, tc);
    tc = tcase_create("sinks");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_stdout_lines_are_buffered_and_flushed);
    tcase_add_test(tc, test_stuck_stdout_drops_and_spares_stderr);
    suite_add_tcase(s, tc);
    tc = tcase_create("access");
    tcase_add_test(tc, test_request_id_rules);
    tcase_add_test(tc, test_new_request_ids_are_hex_and_differ);
    tcase_add_test(tc, test_access_json_members);
    tcase_add_test(tc, test_access_json_of_a_huge_target_is_whole);
    tcase_add_test(tc, test_access_text_escapes_client_values);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(logjson_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
