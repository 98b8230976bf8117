/* Unit tests for config/: every field's parsing, defaults and the exact "FILE: field: reason" messages.
 * JSON in these tests is written with single quotes for readability; json() turns them into double quotes. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg.h"

#define NAME "t.json"

/* Copies s into buf with every ' replaced by ". */
static const char *json(const char *s, char *buf, size_t len)
{
    size_t i = 0;

    for (; s[i] != '\0' && i + 1 < len; i++) {
        buf[i] = s[i] == '\'' ? '"' : s[i];
    }
    buf[i] = '\0';
    return buf;
}

/* Parses the single-quoted text; on success returns the config, else NULL with msg = formatted error. */
static struct cfg *parse(const char *text, enum cfg_status *st, char *msg, size_t len)
{
    char buf[4096];
    struct cfg_error err;
    struct cfg *cfg = (struct cfg *)0x1;

    json(text, buf, sizeof(buf));
    *st = cfg_parse(buf, strlen(buf), NAME, &cfg, &err);
    msg[0] = '\0';
    if (*st != CFG_OK) {
        ck_assert_ptr_null(cfg);
        cfg_error_format(&err, msg, len);
    } else {
        ck_assert_ptr_nonnull(cfg);
    }
    return cfg;
}

/* Parses text, which must be valid. */
static struct cfg *parse_ok(const char *text)
{
    char msg[512];
    enum cfg_status st;
    struct cfg *cfg = parse(text, &st, msg, sizeof(msg));

    ck_assert_msg(st == CFG_OK, "expected a valid config, got: %s", msg);
    return cfg;
}

/* Asserts that text is rejected with exactly the given status and formatted message. */
#define ck_assert_rejected_as(text, status, expected)                                                        \
    do {                                                                                                     \
        char msg_[512];                                                                                      \
        enum cfg_status st_;                                                                                 \
        struct cfg *cfg_ = parse((text), &st_, msg_, sizeof(msg_));                                          \
        cfg_free(cfg_);                                                                                      \
        ck_assert_int_eq(st_, (status));                                                                     \
        ck_assert_str_eq(msg_, (expected));                                                                  \
    } while (0)

#define ck_assert_rejected(text, expected) ck_assert_rejected_as((text), CFG_ERR_INVALID, (expected))

/* An upstream "s" and one route to it, with a hole for one more upstream field. */
#define UPSTREAM(fields) "{'upstreams': {'s': {'uri': 'coap://h' " fields "}}}"
#define ROUTE(fields)                                                                                        \
    "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/', 'upstream': 's' " fields "}]}"
#define URI(uri) "{'upstreams': {'s': {'uri': '" uri "'}}}"

/* ---- valid configurations ---- */

static const char full_config[] =
    "{'listen': '0.0.0.0:8081',"
    " 'upstreams': {"
    "   'sensors': {'uri': 'coap://192.0.2.10:5684/base/v%201', 'timeout_ms': 2500, 'max_inflight': 4,"
    "               'queue_limit': 0, 'type': 'non'},"
    "   'lamp': {'uri': 'coap://[2001:db8::1]'}},"
    " 'routes': ["
    "   {'prefix': '/api/', 'upstream': 'sensors', 'methods': ['GET', 'PUT', 'POST', 'DELETE'], 'cache': "
    "false},"
    "   {'prefix': '/lamp/', 'upstream': 'lamp'}],"
    " 'forward_proxy': {'enabled': false, 'prefix': '/proxy/', 'allow': ['127.0.0.0/8', '::1/128']},"
    " 'cache': {'enabled': false, 'max_entries': 5, 'max_bytes': 2048},"
    " 'demo_server': {'enabled': true, 'listen': '127.0.0.1:5690'},"
    " 'limits': {'max_connections': 100, 'max_body_bytes': 0, 'connection_timeout_s': 5},"
    " 'log': {'level': 'debug', 'access_log': false}}";

START_TEST(test_full_config_sets_every_field)
{
    struct cfg *cfg = parse_ok(full_config);
    const struct cfg_upstream *u = &cfg->upstreams[0];

    ck_assert_str_eq(cfg->listen.host, "0.0.0.0");
    ck_assert_uint_eq(cfg->listen.port, 8081);
    ck_assert_uint_eq(cfg->upstreams_len, 2);
    ck_assert_str_eq(u->name, "sensors");
    ck_assert_str_eq(u->uri, "coap://192.0.2.10:5684/base/v%201");
    ck_assert_str_eq(u->peer.host, "192.0.2.10");
    ck_assert_uint_eq(u->peer.port, 5684);
    ck_assert_uint_eq(u->base_path_len, 2);
    ck_assert_str_eq(u->base_path[0], "base");
    ck_assert_str_eq(u->base_path[1], "v 1");
    ck_assert_uint_eq(u->timeout_ms, 2500);
    ck_assert_uint_eq(u->max_inflight, 4);
    ck_assert_uint_eq(u->queue_limit, 0);
    ck_assert_int_eq(u->type, CFG_MSG_NON);
    ck_assert_str_eq(cfg->upstreams[1].name, "lamp");
    ck_assert_str_eq(cfg->upstreams[1].peer.host, "2001:db8::1");
    ck_assert_uint_eq(cfg->upstreams[1].peer.port, 5683);
    ck_assert_uint_eq(cfg->routes_len, 2);
    ck_assert_str_eq(cfg->routes[0].prefix, "/api/");
    ck_assert_uint_eq(cfg->routes[0].upstream, 0);
    ck_assert_uint_eq(cfg->routes[0].methods,
                      CFG_METHOD_GET | CFG_METHOD_PUT | CFG_METHOD_POST | CFG_METHOD_DELETE);
    ck_assert(!cfg->routes[0].cache);
    ck_assert_str_eq(cfg->routes[1].prefix, "/lamp/");
    ck_assert_uint_eq(cfg->routes[1].upstream, 1);
    ck_assert(!cfg->forward_proxy.enabled);
    ck_assert_str_eq(cfg->forward_proxy.prefix, "/proxy/");
    ck_assert_uint_eq(cfg->forward_proxy.allow_len, 2);
    ck_assert(!cfg->cache.enabled);
    ck_assert_uint_eq(cfg->cache.max_entries, 5);
    ck_assert_uint_eq(cfg->cache.max_bytes, 2048);
    ck_assert(cfg->demo.enabled);
    ck_assert_str_eq(cfg->demo.listen.host, "127.0.0.1");
    ck_assert_uint_eq(cfg->demo.listen.port, 5690);
    ck_assert_uint_eq(cfg->limits.max_connections, 100);
    ck_assert_uint_eq(cfg->limits.max_body_bytes, 0);
    ck_assert_uint_eq(cfg->limits.connection_timeout_s, 5);
    ck_assert_int_eq(cfg->log.level, 3);
    ck_assert(!cfg->log.access_log);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_empty_object_gives_documented_defaults)
{
    struct cfg *cfg = parse_ok("{}");

    ck_assert_str_eq(cfg->listen.host, "127.0.0.1");
    ck_assert_uint_eq(cfg->listen.port, 8080);
    ck_assert_uint_eq(cfg->upstreams_len, 0);
    ck_assert_uint_eq(cfg->routes_len, 0);
    ck_assert(!cfg->forward_proxy.enabled);
    ck_assert_str_eq(cfg->forward_proxy.prefix, "/hc/");
    ck_assert_uint_eq(cfg->forward_proxy.allow_len, 0);
    ck_assert(cfg->cache.enabled);
    ck_assert_uint_eq(cfg->cache.max_entries, 10000);
    ck_assert_uint_eq(cfg->cache.max_bytes, 67108864);
    ck_assert(!cfg->demo.enabled);
    ck_assert_str_eq(cfg->demo.listen.host, "127.0.0.1");
    ck_assert_uint_eq(cfg->demo.listen.port, 5683);
    ck_assert_uint_eq(cfg->limits.max_connections, 10000);
    ck_assert_uint_eq(cfg->limits.max_body_bytes, 1048576);
    ck_assert_uint_eq(cfg->limits.connection_timeout_s, 30);
    ck_assert_uint_eq(cfg->limits.header_timeout_s, 10);
    ck_assert_uint_eq(cfg->limits.body_timeout_s, 60);
    ck_assert_uint_eq(cfg->limits.max_subscribers, 1000);
    ck_assert_uint_eq(cfg->limits.max_subscribers_per_resource, 100);
    ck_assert_uint_eq(cfg->limits.sse_keepalive_s, 15);
    ck_assert_uint_eq(cfg->limits.longpoll_timeout_s, 30);
    ck_assert_int_eq(cfg->log.level, 2);
    ck_assert(cfg->log.access_log);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_empty_sections_keep_defaults)
{
    struct cfg *cfg = parse_ok("{'upstreams': {}, 'routes': [], 'forward_proxy': {'allow': []}, 'cache': {},"
                               " 'demo_server': {}, 'limits': {}, 'log': {}}");

    ck_assert_uint_eq(cfg->upstreams_len, 0);
    ck_assert_uint_eq(cfg->routes_len, 0);
    ck_assert_uint_eq(cfg->forward_proxy.allow_len, 0);
    ck_assert(cfg->cache.enabled);
    ck_assert(!cfg->demo.enabled);
    ck_assert_int_eq(cfg->log.level, 2);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_upstream_and_route_defaults)
{
    struct cfg *cfg =
        parse_ok("{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/', 'upstream': 's'}]}");

    ck_assert_str_eq(cfg->upstreams[0].peer.host, "h");
    ck_assert_uint_eq(cfg->upstreams[0].peer.port, 5683);
    ck_assert_uint_eq(cfg->upstreams[0].base_path_len, 0);
    ck_assert_uint_eq(cfg->upstreams[0].timeout_ms, 5000);
    ck_assert_uint_eq(cfg->upstreams[0].max_inflight, 1);
    ck_assert_uint_eq(cfg->upstreams[0].queue_limit, 64);
    ck_assert_int_eq(cfg->upstreams[0].type, CFG_MSG_CON);
    ck_assert_str_eq(cfg->routes[0].prefix, "/");
    ck_assert_uint_eq(cfg->routes[0].methods, CFG_METHOD_ALL);
    ck_assert(cfg->routes[0].cache);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_default_config_routes_api_to_the_demo_server)
{
    struct cfg *cfg = cfg_default();

    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(cfg->listen.host, "127.0.0.1");
    ck_assert_uint_eq(cfg->listen.port, 8080);
    ck_assert(cfg->demo.enabled);
    ck_assert_str_eq(cfg->demo.listen.host, "127.0.0.1");
    ck_assert_uint_eq(cfg->demo.listen.port, 5683);
    ck_assert_uint_eq(cfg->upstreams_len, 1);
    ck_assert_str_eq(cfg->upstreams[0].name, "demo");
    ck_assert_str_eq(cfg->upstreams[0].peer.host, "127.0.0.1");
    ck_assert_uint_eq(cfg->upstreams[0].peer.port, 5683);
    ck_assert_uint_eq(cfg->upstreams[0].base_path_len, 0);
    ck_assert_uint_eq(cfg->routes_len, 1);
    ck_assert_str_eq(cfg->routes[0].prefix, "/api/");
    ck_assert_uint_eq(cfg->routes[0].upstream, 0);
    ck_assert_uint_eq(cfg->routes[0].methods, CFG_METHOD_ALL);
    ck_assert(cfg->cache.enabled);
    ck_assert(!cfg->forward_proxy.enabled);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_upstreams_keep_file_order)
{
    struct cfg *cfg =
        parse_ok("{'upstreams': {'zeta': {'uri': 'coap://z'}, 'alpha': {'uri': 'coap://a'},"
                 " 'mid': {'uri': 'coap://m'}}, 'routes': [{'prefix': '/m/', 'upstream': 'mid'}]}");

    ck_assert_str_eq(cfg->upstreams[0].name, "zeta");
    ck_assert_str_eq(cfg->upstreams[1].name, "alpha");
    ck_assert_str_eq(cfg->upstreams[2].name, "mid");
    ck_assert_uint_eq(cfg->routes[0].upstream, 2);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_free_of_null_does_nothing)
{
    cfg_free(NULL);
}
END_TEST

/* ---- JSON syntax ---- */

START_TEST(test_syntax_error_reports_line_and_column)
{
    ck_assert_rejected_as("{\n  'listen': '127.0.0.1:80',\n  'log' {}\n}", CFG_ERR_SYNTAX,
                          "t.json:3:9: ':' expected near '{'");
    ck_assert_rejected_as("{'a': 1} x", CFG_ERR_SYNTAX, "t.json:1:10: end of file expected near 'x'");
}
END_TEST

START_TEST(test_duplicate_key_is_a_syntax_error)
{
    ck_assert_rejected_as("{'log': {}, 'log': {}}", CFG_ERR_SYNTAX,
                          "t.json:1:17: duplicate object key near '\"log\"'");
}
END_TEST

START_TEST(test_empty_or_truncated_text_is_a_syntax_error)
{
    ck_assert_rejected_as("", CFG_ERR_SYNTAX, "t.json:1:1: unexpected token near end of file");
    ck_assert_rejected_as("{\n", CFG_ERR_SYNTAX, "t.json:2:1: string or '}' expected near end of file");
}
END_TEST

START_TEST(test_top_level_must_be_an_object)
{
    ck_assert_rejected("[]", "t.json: the top level must be a JSON object");
    ck_assert_rejected("42", "t.json: the top level must be a JSON object");
    ck_assert_rejected("'x'", "t.json: the top level must be a JSON object");
}
END_TEST

/* ---- unknown fields ---- */

START_TEST(test_unknown_field_is_rejected_at_top_level)
{
    ck_assert_rejected("{'listen': '127.0.0.1:80', 'listn': 'x'}", "t.json: listn: unknown field");
    ck_assert_rejected("{'upstream': {}}", "t.json: upstream: unknown field");
}
END_TEST

START_TEST(test_overlong_field_path_is_cut_visibly)
{
    char key[201];
    char text[256];
    char expected[256];

    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(text, sizeof(text), "{'%s': 1}", key);
    snprintf(expected, sizeof(expected), "t.json: %.124s...: unknown field", key);
    ck_assert_rejected(text, expected);
}
END_TEST

START_TEST(test_unknown_field_is_rejected_in_upstream)
{
    ck_assert_rejected(UPSTREAM(", 'timeot_ms': 5"), "t.json: upstreams.s.timeot_ms: unknown field");
}
END_TEST

START_TEST(test_unknown_field_is_rejected_in_route)
{
    ck_assert_rejected(ROUTE(", 'cachee': true"), "t.json: routes[0].cachee: unknown field");
}
END_TEST

START_TEST(test_unknown_field_is_rejected_in_every_section)
{
    ck_assert_rejected("{'forward_proxy': {'alow': []}}", "t.json: forward_proxy.alow: unknown field");
    ck_assert_rejected("{'cache': {'max_entry': 1}}", "t.json: cache.max_entry: unknown field");
    ck_assert_rejected("{'demo_server': {'port': 1}}", "t.json: demo_server.port: unknown field");
    ck_assert_rejected("{'limits': {'max_body': 1}}", "t.json: limits.max_body: unknown field");
    ck_assert_rejected("{'log': {'lvl': 'info'}}", "t.json: log.lvl: unknown field");
}
END_TEST

START_TEST(test_unknown_top_level_field_is_reported_before_other_errors)
{
    ck_assert_rejected("{'listen': 'bad', 'extra': 1}", "t.json: extra: unknown field");
    ck_assert_rejected("{'log': {'level': 'loud'}, 'listen': 'bad'}",
                       "t.json: listen: missing port (expected HOST:PORT or [IPV6]:PORT)");
    ck_assert_rejected("{'cache': {'max_entries': 0}, 'routes': 1}", "t.json: routes: must be an array");
}
END_TEST

/* ---- types ---- */

START_TEST(test_integer_fields_reject_reals_strings_and_booleans)
{
    ck_assert_rejected(UPSTREAM(", 'timeout_ms': 5000.0"),
                       "t.json: upstreams.s.timeout_ms: must be an integer");
    ck_assert_rejected(UPSTREAM(", 'timeout_ms': '5000'"),
                       "t.json: upstreams.s.timeout_ms: must be an integer");
    ck_assert_rejected(UPSTREAM(", 'max_inflight': true"),
                       "t.json: upstreams.s.max_inflight: must be an integer");
    ck_assert_rejected("{'cache': {'max_bytes': null}}", "t.json: cache.max_bytes: must be an integer");
    ck_assert_rejected("{'limits': {'max_body_bytes': [1]}}",
                       "t.json: limits.max_body_bytes: must be an integer");
}
END_TEST

START_TEST(test_boolean_fields_reject_numbers_strings_and_null)
{
    ck_assert_rejected("{'cache': {'enabled': 1}}",
                       "t.json: cache.enabled: must be a boolean (true or false)");
    ck_assert_rejected("{'demo_server': {'enabled': 'true'}}",
                       "t.json: demo_server.enabled: must be a boolean (true or false)");
    ck_assert_rejected("{'log': {'access_log': null}}",
                       "t.json: log.access_log: must be a boolean (true or false)");
    ck_assert_rejected(ROUTE(", 'cache': 0"), "t.json: routes[0].cache: must be a boolean (true or false)");
    ck_assert_rejected("{'forward_proxy': {'enabled': 'no'}}",
                       "t.json: forward_proxy.enabled: must be a boolean (true or false)");
}
END_TEST

START_TEST(test_string_fields_reject_other_types)
{
    ck_assert_rejected("{'listen': 8080}", "t.json: listen: must be a string");
    ck_assert_rejected("{'upstreams': {'s': {'uri': 5}}}", "t.json: upstreams.s.uri: must be a string");
    ck_assert_rejected(UPSTREAM(", 'type': 1"), "t.json: upstreams.s.type: must be a string");
    ck_assert_rejected("{'log': {'level': 2}}", "t.json: log.level: must be a string");
    ck_assert_rejected("{'demo_server': {'listen': null}}", "t.json: demo_server.listen: must be a string");
}
END_TEST

START_TEST(test_sections_must_have_the_right_container_type)
{
    ck_assert_rejected("{'upstreams': []}", "t.json: upstreams: must be an object");
    ck_assert_rejected("{'upstreams': {'s': 'coap://h'}}", "t.json: upstreams.s: must be an object");
    ck_assert_rejected("{'routes': {}}", "t.json: routes: must be an array");
    ck_assert_rejected("{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': ['/a/']}",
                       "t.json: routes[0]: must be an object");
    ck_assert_rejected("{'cache': true}", "t.json: cache: must be an object");
    ck_assert_rejected("{'forward_proxy': []}", "t.json: forward_proxy: must be an object");
    ck_assert_rejected("{'demo_server': 1}", "t.json: demo_server: must be an object");
    ck_assert_rejected("{'limits': null}", "t.json: limits: must be an object");
    ck_assert_rejected("{'log': 'info'}", "t.json: log: must be an object");
}
END_TEST

/* ---- ranges ---- */

START_TEST(test_upstream_ranges_are_inclusive)
{
    struct cfg *cfg = parse_ok(UPSTREAM(", 'timeout_ms': 1, 'max_inflight': 1024, 'queue_limit': 1000000"));
    ck_assert_uint_eq(cfg->upstreams[0].timeout_ms, 1);
    ck_assert_uint_eq(cfg->upstreams[0].max_inflight, 1024);
    ck_assert_uint_eq(cfg->upstreams[0].queue_limit, 1000000);
    cfg_free(cfg);
    cfg = parse_ok(UPSTREAM(", 'timeout_ms': 600000, 'max_inflight': 1, 'queue_limit': 0"));
    ck_assert_uint_eq(cfg->upstreams[0].timeout_ms, 600000);
    cfg_free(cfg);

    ck_assert_rejected(UPSTREAM(", 'timeout_ms': 0"),
                       "t.json: upstreams.s.timeout_ms: must be between 1 and 600000");
    ck_assert_rejected(UPSTREAM(", 'timeout_ms': 600001"),
                       "t.json: upstreams.s.timeout_ms: must be between 1 and 600000");
    ck_assert_rejected(UPSTREAM(", 'max_inflight': 0"),
                       "t.json: upstreams.s.max_inflight: must be between 1 and 1024");
    ck_assert_rejected(UPSTREAM(", 'max_inflight': 1025"),
                       "t.json: upstreams.s.max_inflight: must be between 1 and 1024");
    ck_assert_rejected(UPSTREAM(", 'queue_limit': -1"),
                       "t.json: upstreams.s.queue_limit: must be between 0 and 1000000");
    ck_assert_rejected(UPSTREAM(", 'queue_limit': 1000001"),
                       "t.json: upstreams.s.queue_limit: must be between 0 and 1000000");
    ck_assert_rejected(UPSTREAM(", 'timeout_ms': 9223372036854775807"),
                       "t.json: upstreams.s.timeout_ms: must be between 1 and 600000");
}
END_TEST

START_TEST(test_cache_ranges_are_inclusive)
{
    struct cfg *cfg = parse_ok("{'cache': {'max_entries': 1, 'max_bytes': 1024}}");
    ck_assert_uint_eq(cfg->cache.max_entries, 1);
    ck_assert_uint_eq(cfg->cache.max_bytes, 1024);
    cfg_free(cfg);
    cfg = parse_ok("{'cache': {'max_entries': 100000000, 'max_bytes': 1099511627776}}");
    ck_assert_uint_eq(cfg->cache.max_entries, 100000000);
    ck_assert_uint_eq(cfg->cache.max_bytes, (size_t)1 << 40);
    cfg_free(cfg);

    ck_assert_rejected("{'cache': {'max_entries': 0}}",
                       "t.json: cache.max_entries: must be between 1 and 100000000");
    ck_assert_rejected("{'cache': {'max_entries': 100000001}}",
                       "t.json: cache.max_entries: must be between 1 and 100000000");
    ck_assert_rejected("{'cache': {'max_bytes': 1023}}",
                       "t.json: cache.max_bytes: must be between 1024 and 1099511627776");
    ck_assert_rejected("{'cache': {'max_bytes': 1099511627777}}",
                       "t.json: cache.max_bytes: must be between 1024 and 1099511627776");
}
END_TEST

START_TEST(test_shutdown_grace_defaults_to_10_s_and_is_checked)
{
    struct cfg *cfg = parse_ok("{}");
    ck_assert_uint_eq(cfg->shutdown_grace_s, 10);
    cfg_free(cfg);
    cfg = parse_ok("{'shutdown_grace_s': 1}");
    ck_assert_uint_eq(cfg->shutdown_grace_s, 1);
    cfg_free(cfg);
    ck_assert_rejected("{'shutdown_grace_s': 0}", "t.json: shutdown_grace_s: must be between 1 and 3600");
    ck_assert_rejected("{'shutdown_grace_s': 3601}", "t.json: shutdown_grace_s: must be between 1 and 3600");
}
END_TEST

START_TEST(test_limits_ranges_are_inclusive)
{
    struct cfg *cfg =
        parse_ok("{'limits': {'max_connections': 1, 'max_body_bytes': 0, 'connection_timeout_s': 1}}");
    ck_assert_uint_eq(cfg->limits.max_connections, 1);
    ck_assert_uint_eq(cfg->limits.max_body_bytes, 0);
    ck_assert_uint_eq(cfg->limits.connection_timeout_s, 1);
    cfg_free(cfg);
    cfg = parse_ok("{'limits': {'max_connections': 1000000, 'max_body_bytes': 1073741824,"
                   " 'connection_timeout_s': 86400}}");
    ck_assert_uint_eq(cfg->limits.max_connections, 1000000);
    ck_assert_uint_eq(cfg->limits.max_body_bytes, 1073741824);
    ck_assert_uint_eq(cfg->limits.connection_timeout_s, 86400);
    cfg_free(cfg);

    ck_assert_rejected("{'limits': {'max_connections': 0}}",
                       "t.json: limits.max_connections: must be between 1 and 1000000");
    ck_assert_rejected("{'limits': {'max_connections': 1000001}}",
                       "t.json: limits.max_connections: must be between 1 and 1000000");
    ck_assert_rejected("{'limits': {'max_body_bytes': -1}}",
                       "t.json: limits.max_body_bytes: must be between 0 and 1073741824");
    ck_assert_rejected("{'limits': {'max_body_bytes': 1073741825}}",
                       "t.json: limits.max_body_bytes: must be between 0 and 1073741824");
    ck_assert_rejected("{'limits': {'connection_timeout_s': 0}}",
                       "t.json: limits.connection_timeout_s: must be between 1 and 86400");
    ck_assert_rejected("{'limits': {'connection_timeout_s': 86401}}",
                       "t.json: limits.connection_timeout_s: must be between 1 and 86400");
    ck_assert_rejected("{'limits': {'header_timeout_s': 0}}",
                       "t.json: limits.header_timeout_s: must be between 1 and 3600");
    ck_assert_rejected("{'limits': {'header_timeout_s': 3601}}",
                       "t.json: limits.header_timeout_s: must be between 1 and 3600");
    ck_assert_rejected("{'limits': {'body_timeout_s': 0}}",
                       "t.json: limits.body_timeout_s: must be between 1 and 86400");
    ck_assert_rejected("{'limits': {'body_timeout_s': 86401}}",
                       "t.json: limits.body_timeout_s: must be between 1 and 86400");
    ck_assert_rejected("{'limits': {'max_subscribers': 0}}",
                       "t.json: limits.max_subscribers: must be between 1 and 1000000");
    ck_assert_rejected("{'limits': {'max_subscribers_per_resource': 1000001}}",
                       "t.json: limits.max_subscribers_per_resource: must be between 1 and 1000000");
    ck_assert_rejected("{'limits': {'sse_keepalive_s': 0}}",
                       "t.json: limits.sse_keepalive_s: must be between 1 and 3600");
    ck_assert_rejected("{'limits': {'longpoll_timeout_s': 3601}}",
                       "t.json: limits.longpoll_timeout_s: must be between 1 and 3600");
    cfg =
        parse_ok("{'limits': {'max_subscribers': 5, 'max_subscribers_per_resource': 2, 'sse_keepalive_s': 1,"
                 " 'longpoll_timeout_s': 3600}}");
    ck_assert_uint_eq(cfg->limits.max_subscribers, 5);
    ck_assert_uint_eq(cfg->limits.max_subscribers_per_resource, 2);
    ck_assert_uint_eq(cfg->limits.sse_keepalive_s, 1);
    ck_assert_uint_eq(cfg->limits.longpoll_timeout_s, 3600);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_log_levels_map_to_numbers)
{
    static const char *const texts[] = {"{'log': {'level': 'error'}}", "{'log': {'level': 'warn'}}",
                                        "{'log': {'level': 'info'}}", "{'log': {'level': 'debug'}}"};

    for (int i = 0; i < 4; i++) {
        struct cfg *cfg = parse_ok(texts[i]);
        ck_assert_int_eq(cfg->log.level, i);
        cfg_free(cfg);
    }
    ck_assert_rejected("{'log': {'level': 'INFO'}}",
                       "t.json: log.level: must be one of error, warn, info, debug");
    ck_assert_rejected("{'log': {'level': 'warning'}}",
                       "t.json: log.level: must be one of error, warn, info, debug");
}
END_TEST

/* ---- addresses ---- */

START_TEST(test_endpoint_parse_accepts_ipv4_ipv6_and_names)
{
    struct cfg_endpoint ep;
    char reason[128];

    ck_assert_int_eq(cfg_endpoint_parse("1.2.3.4:80", &ep, reason, sizeof(reason)), 0);
    ck_assert_str_eq(ep.host, "1.2.3.4");
    ck_assert_uint_eq(ep.port, 80);
    ck_assert_int_eq(cfg_endpoint_parse("[::1]:65535", &ep, reason, sizeof(reason)), 0);
    ck_assert_str_eq(ep.host, "::1");
    ck_assert_uint_eq(ep.port, 65535);
    ck_assert_int_eq(cfg_endpoint_parse("[2001:db8::a:b]:1", &ep, reason, sizeof(reason)), 0);
    ck_assert_str_eq(ep.host, "2001:db8::a:b");
    ck_assert_uint_eq(ep.port, 1);
    ck_assert_int_eq(cfg_endpoint_parse("localhost:8080", &ep, reason, sizeof(reason)), 0);
    ck_assert_str_eq(ep.host, "localhost");
    ck_assert_int_eq(cfg_endpoint_parse("gw-1.example.org:5683", &ep, NULL, 0), 0);
    ck_assert_str_eq(ep.host, "gw-1.example.org");
    ck_assert_uint_eq(ep.port, 5683);
}
END_TEST

/* Asserts that text is not an endpoint, for the given reason, and that out is left alone. */
#define ck_assert_bad_endpoint(text, expected)                                                               \
    do {                                                                                                     \
        struct cfg_endpoint ep_ = {"untouched", 9};                                                          \
        char reason_[128] = "";                                                                              \
        ck_assert_int_eq(cfg_endpoint_parse((text), &ep_, reason_, sizeof(reason_)), -1);                    \
        ck_assert_str_eq(reason_, (expected));                                                               \
        ck_assert_str_eq(ep_.host, "untouched");                                                             \
    } while (0)

START_TEST(test_endpoint_parse_rejects_bad_addresses)
{
    ck_assert_bad_endpoint("localhost", "missing port (expected HOST:PORT or [IPV6]:PORT)");
    ck_assert_bad_endpoint("[::1]", "missing port (expected HOST:PORT or [IPV6]:PORT)");
    ck_assert_bad_endpoint("1.2.3.4:", "missing port after ':'");
    ck_assert_bad_endpoint("1.2.3.4:0", "port must be a number between 1 and 65535");
    ck_assert_bad_endpoint("1.2.3.4:65536", "port must be a number between 1 and 65535");
    ck_assert_bad_endpoint("1.2.3.4:99999999999999999999", "port must be a number between 1 and 65535");
    ck_assert_bad_endpoint("1.2.3.4:http", "port must be a number between 1 and 65535");
    ck_assert_bad_endpoint("1.2.3.4:-1", "port must be a number between 1 and 65535");
    ck_assert_bad_endpoint(":80", "missing host");
    ck_assert_bad_endpoint("", "missing host");
    ck_assert_bad_endpoint("::1:80", "an IPv6 address must be in brackets, e.g. [::1]:8080");
    ck_assert_bad_endpoint("999.1.1.1:80", "invalid IPv4 address");
    ck_assert_bad_endpoint("1.2.3:80", "invalid IPv4 address");
    ck_assert_bad_endpoint("[1.2.3.4]:80", "invalid IPv6 address");
    ck_assert_bad_endpoint("[::1:80", "missing ']' after the IPv6 address");
    ck_assert_bad_endpoint("[::1]80", "unexpected text after ']' (expected :PORT)");
    ck_assert_bad_endpoint("my_host:80", "invalid host name (letters, digits, '-' and '.' only)");
    ck_assert_bad_endpoint("-host:80", "invalid host name (letters, digits, '-' and '.' only)");
    ck_assert_bad_endpoint("a..b:80", "invalid host name (letters, digits, '-' and '.' only)");
    ck_assert_bad_endpoint("local host:80", "invalid host name (letters, digits, '-' and '.' only)");
    ck_assert_int_eq(cfg_endpoint_parse(NULL, &(struct cfg_endpoint){{0}, 0}, NULL, 0), -1);
}
END_TEST

START_TEST(test_bad_listen_address_is_rejected)
{
    ck_assert_rejected("{'listen': '127.0.0.1'}",
                       "t.json: listen: missing port (expected HOST:PORT or [IPV6]:PORT)");
    ck_assert_rejected("{'listen': '127.0.0.1:0'}",
                       "t.json: listen: port must be a number between 1 and 65535");
    ck_assert_rejected("{'listen': '::1:8080'}",
                       "t.json: listen: an IPv6 address must be in brackets, e.g. [::1]:8080");
    ck_assert_rejected("{'demo_server': {'listen': '127.0.0.1:70000'}}",
                       "t.json: demo_server.listen: port must be a number between 1 and 65535");

    struct cfg *cfg = parse_ok("{'listen': '[::]:8080', 'demo_server': {'listen': 'localhost:5684'}}");
    ck_assert_str_eq(cfg->listen.host, "::");
    ck_assert_str_eq(cfg->demo.listen.host, "localhost");
    ck_assert_uint_eq(cfg->demo.listen.port, 5684);
    cfg_free(cfg);
}
END_TEST

/* ---- upstreams ---- */

START_TEST(test_uri_host_and_port_are_split)
{
    struct cfg *cfg =
        parse_ok("{'upstreams': {'a': {'uri': 'coap://192.0.2.1:1'}, 'b': {'uri': 'coap://[::1]:65535'},"
                 " 'c': {'uri': 'coap://sensor-7.local'}, 'd': {'uri': 'COAP://[fe80::1]/'}}}");

    ck_assert_str_eq(cfg->upstreams[0].peer.host, "192.0.2.1");
    ck_assert_uint_eq(cfg->upstreams[0].peer.port, 1);
    ck_assert_str_eq(cfg->upstreams[1].peer.host, "::1");
    ck_assert_uint_eq(cfg->upstreams[1].peer.port, 65535);
    ck_assert_str_eq(cfg->upstreams[2].peer.host, "sensor-7.local");
    ck_assert_uint_eq(cfg->upstreams[2].peer.port, 5683);
    ck_assert_str_eq(cfg->upstreams[3].peer.host, "fe80::1");
    ck_assert_uint_eq(cfg->upstreams[3].peer.port, 5683);
    ck_assert_str_eq(cfg->upstreams[3].uri, "COAP://[fe80::1]/");
    cfg_free(cfg);
}
END_TEST

START_TEST(test_uri_base_path_is_split_and_percent_decoded)
{
    struct cfg *cfg = parse_ok("{'upstreams': {'a': {'uri': 'coap://h/a/b'}, 'b': {'uri': 'coap://h/'},"
                               " 'c': {'uri': 'coap://h'}, 'd': {'uri': 'coap://h:1/x%20y/c%2Fd/%C3%A9/'},"
                               " 'e': {'uri': 'coap://h/a:b@c;d=e'}}}");

    ck_assert_uint_eq(cfg->upstreams[0].base_path_len, 2);
    ck_assert_str_eq(cfg->upstreams[0].base_path[0], "a");
    ck_assert_str_eq(cfg->upstreams[0].base_path[1], "b");
    ck_assert_uint_eq(cfg->upstreams[1].base_path_len, 0);
    ck_assert_uint_eq(cfg->upstreams[2].base_path_len, 0);
    ck_assert_uint_eq(cfg->upstreams[3].base_path_len, 3);
    ck_assert_str_eq(cfg->upstreams[3].base_path[0], "x y");
    ck_assert_str_eq(cfg->upstreams[3].base_path[1], "c/d");
    ck_assert_str_eq(cfg->upstreams[3].base_path[2], "\xc3\xa9");
    ck_assert_uint_eq(cfg->upstreams[4].base_path_len, 1);
    ck_assert_str_eq(cfg->upstreams[4].base_path[0], "a:b@c;d=e");
    cfg_free(cfg);
}
END_TEST

START_TEST(test_uri_schemes_other_than_coap_are_rejected)
{
    ck_assert_rejected(
        URI("coap+tcp://h"),
        "t.json: upstreams.s.uri: scheme coap+tcp is not supported (only coap:// and coaps://)");
    ck_assert_rejected(
        URI("coap+ws://h"),
        "t.json: upstreams.s.uri: scheme coap+ws is not supported (only coap:// and coaps://)");
    ck_assert_rejected(URI("coapss://h"),
                       "t.json: upstreams.s.uri: scheme coapss is not supported (only coap:// and coaps://)");
    ck_assert_rejected(URI("http://h"),
                       "t.json: upstreams.s.uri: scheme http is not supported (only coap:// and coaps://)");
    ck_assert_rejected(URI("192.0.2.1:5683"),
                       "t.json: upstreams.s.uri: must be a coap:// URI, e.g. \"coap://192.0.2.10:5683\"");
    ck_assert_rejected(URI("coap:/h"),
                       "t.json: upstreams.s.uri: must be a coap:// URI, e.g. \"coap://192.0.2.10:5683\"");
    ck_assert_rejected(URI(""),
                       "t.json: upstreams.s.uri: must be a coap:// URI, e.g. \"coap://192.0.2.10:5683\"");
    ck_assert_rejected(URI("://h"),
                       "t.json: upstreams.s.uri: must be a coap:// URI, e.g. \"coap://192.0.2.10:5683\"");
}
END_TEST

START_TEST(test_uri_with_bad_host_or_port_is_rejected)
{
    ck_assert_rejected(URI("coap://"), "t.json: upstreams.s.uri: missing host");
    ck_assert_rejected(URI("coap:///a"), "t.json: upstreams.s.uri: missing host");
    ck_assert_rejected(URI("coap://:5683"), "t.json: upstreams.s.uri: missing host");
    ck_assert_rejected(URI("coap://h:0"),
                       "t.json: upstreams.s.uri: port must be a number between 1 and 65535");
    ck_assert_rejected(URI("coap://h:65536/a"),
                       "t.json: upstreams.s.uri: port must be a number between 1 and 65535");
    ck_assert_rejected(URI("coap://h:/a"), "t.json: upstreams.s.uri: missing port after ':'");
    ck_assert_rejected(URI("coap://::1/a"),
                       "t.json: upstreams.s.uri: an IPv6 address must be in brackets, e.g. [::1]:8080");
    ck_assert_rejected(URI("coap://[::g]"), "t.json: upstreams.s.uri: invalid IPv6 address");
    ck_assert_rejected(URI("coap://300.1.1.1"), "t.json: upstreams.s.uri: invalid IPv4 address");
    ck_assert_rejected(URI("coap://bad_host"),
                       "t.json: upstreams.s.uri: invalid host name (letters, digits, '-' and '.' only)");
}
END_TEST

START_TEST(test_uri_with_query_fragment_or_userinfo_is_rejected)
{
    ck_assert_rejected(URI("coap://h/a?b=1"), "t.json: upstreams.s.uri: a query (?...) is not allowed");
    ck_assert_rejected(URI("coap://h?b=1"), "t.json: upstreams.s.uri: a query (?...) is not allowed");
    ck_assert_rejected(URI("coap://h/a#top"), "t.json: upstreams.s.uri: a fragment (#...) is not allowed");
    ck_assert_rejected(URI("coap://user@h/"), "t.json: upstreams.s.uri: userinfo (user@) is not allowed");
}
END_TEST

START_TEST(test_uri_with_bad_path_is_rejected)
{
    ck_assert_rejected(URI("coap://h/a%zz"), "t.json: upstreams.s.uri: invalid percent-encoding in the path");
    ck_assert_rejected(URI("coap://h/a%2"), "t.json: upstreams.s.uri: invalid percent-encoding in the path");
    ck_assert_rejected(URI("coap://h/a%00b"), "t.json: upstreams.s.uri: %00 is not allowed in the path");
    ck_assert_rejected(URI("coap://h/a//b"), "t.json: upstreams.s.uri: empty segment (//) in the path");
    ck_assert_rejected(URI("coap://h/a/../b"),
                       "t.json: upstreams.s.uri: '.' and '..' segments are not allowed in the path");
    ck_assert_rejected(URI("coap://h/a b"),
                       "t.json: upstreams.s.uri: byte 0x20 is not allowed in the path (percent-encode it)");
    ck_assert_rejected(
        URI("coap://h/a[b]"),
        "t.json: upstreams.s.uri: character '[' is not allowed in the path (percent-encode it)");
}
END_TEST

/* s, n times over, into out (which holds at least n * strlen(s) + 1 bytes). */
static char *repeat(char *out, const char *s, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(out, s);
    }
    return out;
}

START_TEST(test_a_base_path_segment_over_255_bytes_after_decoding_is_rejected)
{
    char seg[1024];
    char text[1200];

    snprintf(text, sizeof(text), URI("coap://h/a/%s"), repeat(seg, "x", 255));
    cfg_free(parse_ok(text));
    snprintf(text, sizeof(text), URI("coap://h/a/%s"), repeat(seg, "%41", 255)); /* 765 bytes encoded */
    cfg_free(parse_ok(text));
    snprintf(text, sizeof(text), URI("coap://h/a/%s/b"), repeat(seg, "x", 300));
    ck_assert_rejected(
        text, "t.json: upstreams.s.uri: path segment 2 is 300 bytes after decoding; a Uri-Path option holds "
              "at most 255");
    snprintf(text, sizeof(text), URI("coap://h/%s"), repeat(seg, "%C3%A9", 128)); /* 2 bytes each */
    ck_assert_rejected(
        text, "t.json: upstreams.s.uri: path segment 1 is 256 bytes after decoding; a Uri-Path option holds "
              "at most 255");
}
END_TEST

START_TEST(test_a_base_path_that_leaves_no_room_for_the_request_is_rejected)
{
    char path[1100];
    char text[1200];
    char seg[256];

    snprintf(text, sizeof(text), URI("coap://h%s"), repeat(path, "/a", 32));
    cfg_free(parse_ok(text));
    snprintf(text, sizeof(text), URI("coap://h%s/"), repeat(path, "/a", 33));
    ck_assert_rejected(text, "t.json: upstreams.s.uri: the base path has 33 segments; at most 32, to leave "
                             "room for the request's own path and options");
    /* Three of 255 bytes take 3 * (2 + 255) = 771 bytes; with one of 251 (2 + 251) that is 1024. */
    repeat(seg, "x", 255);
    snprintf(text, sizeof(text), URI("coap://h/%s/%s/%s/%.251s"), seg, seg, seg, seg);
    cfg_free(parse_ok(text));
    snprintf(text, sizeof(text), URI("coap://h/%s/%s/%s/%.252s"), seg, seg, seg, seg);
    ck_assert_rejected(text,
                       "t.json: upstreams.s.uri: the base path takes 1025 bytes as Uri-Path options; at "
                       "most 1024, to leave room for the request's own path and options");
}
END_TEST

START_TEST(test_upstream_uri_is_required)
{
    ck_assert_rejected("{'upstreams': {'s': {}}}", "t.json: upstreams.s.uri: missing required field");
    ck_assert_rejected("{'upstreams': {'s': {'timeout_ms': 0}}}",
                       "t.json: upstreams.s.uri: missing required field");
}
END_TEST

START_TEST(test_upstream_names_are_checked)
{
    char name64[65];
    char text[256];

    ck_assert_rejected("{'upstreams': {'my sensor': {'uri': 'coap://h'}}}",
                       "t.json: upstreams.my sensor: invalid upstream name (1 to 64 of A-Z a-z 0-9 _ -)");
    ck_assert_rejected("{'upstreams': {'': {'uri': 'coap://h'}}}",
                       "t.json: upstreams.: invalid upstream name (1 to 64 of A-Z a-z 0-9 _ -)");
    ck_assert_rejected("{'upstreams': {'a.b': {'uri': 'coap://h'}}}",
                       "t.json: upstreams.a.b: invalid upstream name (1 to 64 of A-Z a-z 0-9 _ -)");
    memset(name64, 'n', 64);
    name64[64] = '\0';
    snprintf(text, sizeof(text), "{'upstreams': {'%s': {'uri': 'coap://h'}, 'A_z-9': {'uri': 'coap://h'}}}",
             name64);
    cfg_free(parse_ok(text));
    snprintf(text, sizeof(text), "{'upstreams': {'%sn': {'uri': 'coap://h'}}}", name64);
    ck_assert_rejected(text,
                       "t.json: upstreams.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn: "
                       "invalid upstream name (1 to 64 of A-Z a-z 0-9 _ -)");
}
END_TEST

START_TEST(test_upstream_type_must_be_con_or_non)
{
    struct cfg *cfg = parse_ok(UPSTREAM(", 'type': 'con'"));
    ck_assert_int_eq(cfg->upstreams[0].type, CFG_MSG_CON);
    cfg_free(cfg);
    ck_assert_rejected(UPSTREAM(", 'type': 'CON'"), "t.json: upstreams.s.type: must be \"con\" or \"non\"");
    ck_assert_rejected(UPSTREAM(", 'type': 'ack'"), "t.json: upstreams.s.type: must be \"con\" or \"non\"");
}
END_TEST

START_TEST(test_routes_need_at_least_one_upstream)
{
    ck_assert_rejected("{'routes': [{'prefix': '/a/', 'upstream': 's'}]}",
                       "t.json: upstreams: at least one upstream is required when routes are defined");
    ck_assert_rejected("{'upstreams': {}, 'routes': [{'prefix': '/a/', 'upstream': 's'}]}",
                       "t.json: upstreams: at least one upstream is required when routes are defined");
    cfg_free(parse_ok("{'upstreams': {}, 'routes': []}"));
}
END_TEST

/* ---- routes ---- */

START_TEST(test_route_to_missing_upstream_is_rejected)
{
    ck_assert_rejected(
        "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/', 'upstream': 's'},"
        " {'prefix': '/b/', 'upstream': 'x'}]}",
        "t.json: routes[1].upstream: no upstream named \"x\"");
    ck_assert_rejected(
        "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/', 'upstream': 'S'}]}",
        "t.json: routes[0].upstream: no upstream named \"S\"");
}
END_TEST

START_TEST(test_duplicate_prefix_is_rejected)
{
    ck_assert_rejected(
        "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/', 'upstream': 's'},"
        " {'prefix': '/b/', 'upstream': 's'}, {'prefix': '/a/', 'upstream': 's'}]}",
        "t.json: routes[2].prefix: duplicate prefix \"/a/\" (also routes[0])");
}
END_TEST

#define PREFIX(p)                                                                                            \
    "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '" p "', 'upstream': 's'}]}"

START_TEST(test_bad_prefix_is_rejected)
{
    ck_assert_rejected(PREFIX("api/"), "t.json: routes[0].prefix: must start with '/'");
    ck_assert_rejected(PREFIX(""), "t.json: routes[0].prefix: must start with '/'");
    ck_assert_rejected(PREFIX("/api"), "t.json: routes[0].prefix: must end with '/', e.g. \"/api/\"");
    ck_assert_rejected(PREFIX("/a?b/"), "t.json: routes[0].prefix: must not contain '?', '%' or '#'");
    ck_assert_rejected(PREFIX("/a%20b/"), "t.json: routes[0].prefix: must not contain '?', '%' or '#'");
    ck_assert_rejected(PREFIX("/a#/"), "t.json: routes[0].prefix: must not contain '?', '%' or '#'");
    ck_assert_rejected(PREFIX("/a b/"),
                       "t.json: routes[0].prefix: must not contain spaces or control characters");
    ck_assert_rejected(PREFIX("/a//"), "t.json: routes[0].prefix: must not contain an empty segment (//)");
    ck_assert_rejected(
        PREFIX("/healthz/"),
        "t.json: routes[0].prefix: must not be or start with an admin path (/healthz, /readyz, /metrics)");
    ck_assert_rejected(
        PREFIX("/readyz/x/"),
        "t.json: routes[0].prefix: must not be or start with an admin path (/healthz, /readyz, /metrics)");
    ck_assert_rejected(
        PREFIX("/metrics/"),
        "t.json: routes[0].prefix: must not be or start with an admin path (/healthz, /readyz, /metrics)");
    ck_assert_rejected(
        "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': 1, 'upstream': 's'}]}",
        "t.json: routes[0].prefix: must be a string");
    cfg_free(parse_ok(PREFIX("/api/v1/")));
}
END_TEST

START_TEST(test_a_prefix_with_a_dot_segment_is_rejected)
{
    static const char *const bad[] = {"/a/../b/", "/./", "/../", "/a/./", "/../a/"};
    char text[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), PREFIX("%s"), bad[i]);
        ck_assert_rejected(text,
                           "t.json: routes[0].prefix: must not contain a '.' or '..' segment (a normalised "
                           "request path never has one)");
    }
    ck_assert_rejected("{'forward_proxy': {'prefix': '/hc/../'}}",
                       "t.json: forward_proxy.prefix: must not contain a '.' or '..' segment (a normalised "
                       "request path never has one)");
    cfg_free(parse_ok(PREFIX("/.well-known/")));
    cfg_free(parse_ok(PREFIX("/a.b/.../..c/")));
}
END_TEST

START_TEST(test_route_prefix_and_upstream_are_required)
{
    ck_assert_rejected("{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'upstream': 's'}]}",
                       "t.json: routes[0].prefix: missing required field");
    ck_assert_rejected("{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/'}]}",
                       "t.json: routes[0].upstream: missing required field");
}
END_TEST

START_TEST(test_methods_become_bits)
{
    struct cfg *cfg = parse_ok(ROUTE(", 'methods': ['GET']"));
    ck_assert_uint_eq(cfg->routes[0].methods, CFG_METHOD_GET);
    cfg_free(cfg);
    cfg = parse_ok(ROUTE(", 'methods': ['FETCH', 'PATCH', 'IPATCH']"));
    ck_assert_uint_eq(cfg->routes[0].methods, CFG_METHOD_FETCH | CFG_METHOD_PATCH | CFG_METHOD_IPATCH);
    cfg_free(cfg);
    cfg = parse_ok(ROUTE(", 'methods': ['iPATCH', 'DELETE', 'PUT', 'POST', 'GET', 'FETCH', 'PATCH']"));
    ck_assert_uint_eq(cfg->routes[0].methods, CFG_METHOD_ALL);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_bad_methods_are_rejected)
{
    ck_assert_rejected(ROUTE(", 'methods': []"), "t.json: routes[0].methods: must not be empty");
    ck_assert_rejected(ROUTE(", 'methods': 'GET'"),
                       "t.json: routes[0].methods: must be an array of method names");
    ck_assert_rejected(ROUTE(", 'methods': ['GET', 'get']"),
                       "t.json: routes[0].methods[1]: unknown method \"get\" "
                       "(known: GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH)");
    ck_assert_rejected(ROUTE(", 'methods': ['OPTIONS']"),
                       "t.json: routes[0].methods[0]: unknown method \"OPTIONS\" "
                       "(known: GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH)");
    ck_assert_rejected(ROUTE(", 'methods': ['HEAD']"),
                       "t.json: routes[0].methods[0]: HEAD is implied by GET; list GET instead");
    ck_assert_rejected(ROUTE(", 'methods': ['GET', 'PUT', 'GET']"),
                       "t.json: routes[0].methods[2]: duplicate method \"GET\"");
    ck_assert_rejected(ROUTE(", 'methods': ['iPATCH', 'IPATCH']"),
                       "t.json: routes[0].methods[1]: duplicate method \"IPATCH\"");
    ck_assert_rejected(ROUTE(", 'methods': ['GET', 1]"), "t.json: routes[0].methods[1]: must be a string");
}
END_TEST

/* ---- forward proxy ---- */

START_TEST(test_forward_proxy_enabled_needs_allow_rules)
{
    ck_assert_rejected("{'forward_proxy': {'enabled': true}}",
                       "t.json: forward_proxy.enabled: needs forward_proxy.allow: the targets it may reach (closed by "
                       "default, RFC 8075 §11)");
    ck_assert_rejected("{'forward_proxy': {'enabled': true, 'allow': []}}",
                       "t.json: forward_proxy.enabled: needs forward_proxy.allow: the targets it may reach (closed by "
                       "default, RFC 8075 §11)");
    struct cfg *cfg = parse_ok("{'forward_proxy': {'enabled': true, 'prefix': '/hc/', 'allow': ['127.0.0.2/32']}}");
    ck_assert(cfg->forward_proxy.enabled);
    ck_assert_uint_eq(cfg->forward_proxy.timeout_ms, 5000);
    cfg_free(cfg);
    cfg = parse_ok("{'forward_proxy': {'enabled': false}}");
    ck_assert(!cfg->forward_proxy.enabled);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_forward_proxy_allow_parses_target_rules)
{
    static const uint8_t loopback6[16] = {[15] = 1};
    struct cfg *cfg = parse_ok("{'forward_proxy': {'allow': ['127.0.0.0/8', '[::1]:5683', '10.1.2.3:*',"
                               " '0.0.0.0/0', '2001:db8::/32']}}");
    const struct cg_addr_rule *a = cfg->forward_proxy.allow;

    ck_assert_uint_eq(cfg->forward_proxy.allow_len, 5);
    ck_assert_int_eq(a[0].family, AF_INET);
    ck_assert_uint_eq(a[0].len, 8);
    ck_assert_uint_eq(a[0].addr[0], 127);
    ck_assert_uint_eq(a[0].port, 0);
    ck_assert_int_eq(a[1].family, AF_INET6);
    ck_assert_uint_eq(a[1].len, 128);
    ck_assert_mem_eq(a[1].addr, loopback6, 16);
    ck_assert_uint_eq(a[1].port, 5683);
    ck_assert_int_eq(a[2].family, AF_INET);
    ck_assert_uint_eq(a[2].len, 32);
    ck_assert_uint_eq(a[2].addr[3], 3);
    ck_assert_uint_eq(a[3].len, 0);
    ck_assert_int_eq(a[4].family, AF_INET6);
    ck_assert_uint_eq(a[4].len, 32);
    cfg_free(cfg);
}
END_TEST

#define ALLOW(c) "{'forward_proxy': {'allow': ['127.0.0.0/8', '" c "']}}"

START_TEST(test_bad_target_rule_is_rejected_with_its_element)
{
    static const char *const bad[] = {"localhost", "/8", "10.0.0/8", "10.0.0.0/33", "::/129", "10.0.0.0/",
                                      "127.0.0.1/8", "::1/64", "10.0.0.1:0", "10.0.0.1:70000"};
    char expected[160];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[160];
        enum cfg_status st;
        char msg[512];
        snprintf(text, sizeof(text), ALLOW("%s"), bad[i]);
        cfg_free(parse(text, &st, msg, sizeof(msg)));
        ck_assert_int_eq(st, CFG_ERR_INVALID);
        snprintf(expected, sizeof(expected), "t.json: forward_proxy.allow[1]: invalid target rule \"%s\": ", bad[i]);
        ck_assert_msg(strncmp(msg, expected, strlen(expected)) == 0, "%s", msg);
    }
    ck_assert_rejected("{'forward_proxy': {'allow': [8]}}", "t.json: forward_proxy.allow[0]: must be a string");
    ck_assert_rejected("{'forward_proxy': {'allow': '127.0.0.0/8'}}",
                       "t.json: forward_proxy.allow: must be an array of address rules");
}
END_TEST

START_TEST(test_forward_proxy_prefix_is_validated)
{
    ck_assert_rejected("{'forward_proxy': {'prefix': 'hc/'}}",
                       "t.json: forward_proxy.prefix: must start with '/'");
    ck_assert_rejected("{'forward_proxy': {'prefix': '/metrics/'}}",
                       "t.json: forward_proxy.prefix: must not be or start with an admin path (/healthz, "
                       "/readyz, /metrics)");
    ck_assert_rejected("{'forward_proxy': {'prefix': 7}}", "t.json: forward_proxy.prefix: must be a string");
}
END_TEST

/* ---- files ---- */

/* Writes text to a new temporary file whose name goes into path. */
static void write_temp(const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/coapgw-test-XXXXXX", getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

START_TEST(test_load_reads_a_real_file)
{
    char path[512];
    char text[4096];
    struct cfg_error err;
    struct cfg *cfg = NULL;

    write_temp(json(full_config, text, sizeof(text)), path, sizeof(path));
    ck_assert_int_eq(cfg_load(path, &cfg, &err), CFG_OK);
    unlink(path);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(cfg->upstreams[0].name, "sensors");
    ck_assert_str_eq(cfg->routes[1].prefix, "/lamp/");
    ck_assert(cfg->demo.enabled);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_load_of_missing_file_is_an_io_error)
{
    struct cfg_error err;
    struct cfg *cfg = (struct cfg *)0x1;
    char msg[512];

    ck_assert_int_eq(cfg_load("/nonexistent/coapgw.json", &cfg, &err), CFG_ERR_IO);
    ck_assert_ptr_null(cfg);
    cfg_error_format(&err, msg, sizeof(msg));
    ck_assert_str_eq(msg, "/nonexistent/coapgw.json: cannot read: No such file or directory");
}
END_TEST

START_TEST(test_load_of_a_directory_is_an_io_error)
{
    char dir[] = "/tmp/coapgw-test-dir-XXXXXX";
    struct cfg_error err;
    struct cfg *cfg = NULL;
    char msg[512];
    char expected[512];

    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(cfg_load(dir, &cfg, &err), CFG_ERR_IO);
    rmdir(dir);
    ck_assert_ptr_null(cfg);
    cfg_error_format(&err, msg, sizeof(msg));
    snprintf(expected, sizeof(expected), "%s: cannot read: not a regular file", dir);
    ck_assert_str_eq(msg, expected);
}
END_TEST

/* A FIFO with no writer would block open() for ever: --check-config must answer at once. */
START_TEST(test_load_of_a_fifo_is_refused_without_blocking)
{
    char dir[] = "/tmp/coapgw-test-fifo-XXXXXX";
    char path[64];
    struct cfg_error err;
    struct cfg *cfg = NULL;
    char msg[512];

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/gw.json", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(cfg_load(path, &cfg, &err), CFG_ERR_IO);
    unlink(path);
    rmdir(dir);
    cfg_error_format(&err, msg, sizeof(msg));
    ck_assert_ptr_nonnull(strstr(msg, "gw.json: cannot read: not a regular file"));
}
END_TEST

START_TEST(test_load_names_the_file_in_errors)
{
    char path[512];
    char msg[1024];
    char expected[1024];
    struct cfg_error err;
    struct cfg *cfg = NULL;

    write_temp("{\n  \"log\": {\"level\": \"info\"},\n  \"cache\": {\"max_entries\": 0}\n}\n", path,
               sizeof(path));
    ck_assert_int_eq(cfg_load(path, &cfg, &err), CFG_ERR_INVALID);
    cfg_error_format(&err, msg, sizeof(msg));
    snprintf(expected, sizeof(expected), "%s: cache.max_entries: must be between 1 and 100000000", path);
    ck_assert_str_eq(msg, expected);
    unlink(path);

    write_temp("{\n  \"log\": {\"level\": \"info\"},\n  \"cache\": {\"max_entries\": 0,}\n}\n", path,
               sizeof(path));
    ck_assert_int_eq(cfg_load(path, &cfg, &err), CFG_ERR_SYNTAX);
    ck_assert_int_eq(err.line, 3);
    cfg_error_format(&err, msg, sizeof(msg));
    snprintf(expected, sizeof(expected), "%s:3:30: string or '}' expected near '}'", path);
    ck_assert_str_eq(msg, expected);
    unlink(path);
    ck_assert_ptr_null(cfg);
}
END_TEST

START_TEST(test_error_argument_is_optional)
{
    struct cfg *cfg = NULL;

    ck_assert_int_eq(cfg_parse("{\"x\": 1}", 8, NAME, &cfg, NULL), CFG_ERR_INVALID);
    ck_assert_ptr_null(cfg);
    ck_assert_int_eq(cfg_parse("{", 1, NAME, &cfg, NULL), CFG_ERR_SYNTAX);
    ck_assert_int_eq(cfg_load("/nonexistent/x.json", &cfg, NULL), CFG_ERR_IO);
}
END_TEST

START_TEST(test_text_is_bounded_by_its_length)
{
    struct cfg *cfg = NULL;
    struct cfg_error err;

    ck_assert_int_eq(cfg_parse("{}garbage", 2, NAME, &cfg, &err), CFG_OK);
    cfg_free(cfg);
}
END_TEST

/* ---- formatting helpers ---- */

START_TEST(test_methods_format_lists_head_with_get)
{
    char buf[128];

    cfg_methods_format(CFG_METHOD_ALL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "GET, HEAD, POST, PUT, DELETE, FETCH, PATCH, iPATCH");
    cfg_methods_format(CFG_METHOD_GET, buf, sizeof(buf));
    ck_assert_str_eq(buf, "GET, HEAD");
    cfg_methods_format(CFG_METHOD_PUT | CFG_METHOD_DELETE, buf, sizeof(buf));
    ck_assert_str_eq(buf, "PUT, DELETE");
    cfg_methods_format(CFG_METHOD_IPATCH, buf, sizeof(buf));
    ck_assert_str_eq(buf, "iPATCH");
    cfg_methods_format(0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_methods_format_never_overflows)
{
    char buf[12];

    memset(buf, 'x', sizeof(buf));
    cfg_methods_format(CFG_METHOD_ALL, buf, 8);
    ck_assert_uint_lt(strlen(buf), 8);
    ck_assert_int_eq(buf[8], 'x');
    cfg_methods_format(CFG_METHOD_ALL, buf, 0);
    ck_assert_int_eq(buf[8], 'x');
}
END_TEST

START_TEST(test_method_names_match_the_rfcs)
{
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_GET), "GET");
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_POST), "POST");
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_PUT), "PUT");
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_DELETE), "DELETE");
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_FETCH), "FETCH");
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_PATCH), "PATCH");
    ck_assert_str_eq(cfg_method_name(CFG_METHOD_IPATCH), "iPATCH");
}
END_TEST

START_TEST(test_every_status_has_a_message)
{
    ck_assert_str_eq(cfg_strerror(CFG_OK), "ok");
    ck_assert_str_eq(cfg_strerror(CFG_ERR_IO), "cannot read the configuration file");
    ck_assert_str_eq(cfg_strerror(CFG_ERR_SYNTAX), "JSON syntax error in the configuration");
    ck_assert_str_eq(cfg_strerror(CFG_ERR_INVALID), "invalid configuration");
    ck_assert_str_eq(cfg_strerror(CFG_ERR_NOMEM), "out of memory");
}
END_TEST

START_TEST(test_error_format_has_three_shapes)
{
    struct cfg_error err = {.file = "c.json", .field = "log.level", .reason = "bad"};
    char buf[128];

    cfg_error_format(&err, buf, sizeof(buf));
    ck_assert_str_eq(buf, "c.json: log.level: bad");
    err.line = 4;
    err.column = 2;
    err.field[0] = '\0';
    cfg_error_format(&err, buf, sizeof(buf));
    ck_assert_str_eq(buf, "c.json:4:2: bad");
    err.line = 0;
    cfg_error_format(&err, buf, sizeof(buf));
    ck_assert_str_eq(buf, "c.json: bad");
    cfg_error_format(&err, buf, 5);
    ck_assert_str_eq(buf, "c.js");
}
END_TEST

/* ---- the reference table ---- */

/* The table as cfg_reference_write() prints it, in a new string. */
static char *reference(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(cfg_reference_write(f), 0);
    ck_assert_int_eq(fclose(f), 0);
    return text;
}

/* Leaf fields of the schema: a new one must show in the README table (and this number). */
#define FIELDS 57

START_TEST(test_reference_table_has_one_line_per_field)
{
    char *text = reference();
    size_t lines = 0;

    for (const char *c = text; *c != '\0'; c++) {
        lines += *c == '\n';
    }
    ck_assert_uint_eq(lines, 2 + FIELDS);
    ck_assert_ptr_eq(strstr(text, "| field | meaning | default |\n|---|---|---|\n"), text);
    ck_assert_ptr_null(strstr(text, "``"));
    free(text);
}
END_TEST

START_TEST(test_reference_table_takes_ranges_and_defaults_from_the_rows)
{
    char *text = reference();

    ck_assert_ptr_nonnull(strstr(text,
                                 "| `upstreams.NAME.timeout_ms` | deadline for the whole exchange, queueing "
                                 "included; then 504 (1..600000) | `5000` |\n"));
    ck_assert_ptr_nonnull(strstr(text, "| `cache.max_bytes` | hard bound on the bytes the cache holds "
                                       "(1024..1099511627776) | `67108864` |\n"));
    ck_assert_ptr_nonnull(strstr(text,
                                 "| `upstreams.NAME.type` | `con` (confirmable, retransmitted) or `non` | "
                                 "`con` |\n"));
    ck_assert_ptr_nonnull(strstr(text, "| `routes[].upstream` | name of an upstream | required |\n"));
    ck_assert_ptr_nonnull(strstr(text, "| `listen` | HTTP address, `HOST:PORT` or `[V6]:PORT` | "
                                       "`127.0.0.1:8080` |\n"));
    free(text);
}
END_TEST

/* A config with the documented field set to an object, a wrong type for every field: each segment of the
 * path ("routes[].cors.max_age_s", "upstreams.NAME.uri") opens an object, "[]" an array element, NAME a
 * named element; a route needs an upstream to refer to. */
static void config_with(const char *path, char *buf, size_t len)
{
    char open[256] = "", close[64] = "";
    char seg[64];
    size_t used = 0, depth = 0;

    for (const char *p = path; *p != '\0';) {
        size_t n = strcspn(p, ".");
        snprintf(seg, sizeof(seg), "%.*s", (int)n, p);
        p += n + (p[n] == '.');
        if (strcmp(seg, "NAME") == 0) {
            used += (size_t)snprintf(open + used, sizeof(open) - used, "{'s': ");
            close[depth++] = '}';
            continue;
        }
        size_t sl = strlen(seg);
        bool list = sl > 2 && strcmp(seg + sl - 2, "[]") == 0;
        used += (size_t)snprintf(open + used, sizeof(open) - used, "{'%.*s': %s", (int)(list ? sl - 2 : sl),
                                 seg, list ? "[" : "");
        close[depth++] = '}';
        if (list) {
            close[depth++] = ']';
        }
    }
    used += (size_t)snprintf(open + used, sizeof(open) - used, "{}");
    while (depth > 0 && used < sizeof(open) - 1) {
        open[used++] = close[--depth];
    }
    open[used] = '\0';
    if (strncmp(path, "routes[]", 8) == 0) {
        snprintf(buf, len, "{'upstreams': {'s': {'uri': 'coap://h'}}, %s", open + 1);
    } else {
        snprintf(buf, len, "%s", open);
    }
}

START_TEST(test_every_field_in_the_reference_table_is_known)
{
    char *text = reference();
    size_t fields = 0;

    for (const char *line = strstr(text, "\n| `"); line != NULL; line = strstr(line + 1, "\n| `")) {
        char path[128];
        char config[512];
        char msg[512];
        enum cfg_status st;

        ck_assert_int_eq(sscanf(line, "\n| `%127[^`]`", path), 1);
        config_with(path, config, sizeof(config));
        cfg_free(parse(config, &st, msg, sizeof(msg)));
        ck_assert_msg(st == CFG_ERR_INVALID, "%s: %s", config, msg);
        ck_assert_msg(strstr(msg, "unknown field") == NULL, "%s: %s", path, msg);
        fields++;
    }
    ck_assert_uint_eq(fields, FIELDS);
    free(text);
}
END_TEST

#define CORS(x)                                                                                              \
    "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/', 'upstream': 's', "               \
    "'cors': " x "}]}"

START_TEST(test_cors_origins_headers_and_max_age_are_read)
{
    enum cfg_status st;
    char msg[512];
    struct cfg *cfg = parse(CORS("{'allow_origins': ['https://app.example', 'http://x:8080'],"
                                 " 'allow_headers': ['Content-Type', 'Authorization']}"),
                            &st, msg, sizeof(msg));
    ck_assert_int_eq(st, CFG_OK);
    const struct cfg_cors *c = &cfg->routes[0].cors;
    ck_assert_uint_eq(c->allow_origins.len, 2);
    ck_assert_str_eq(c->allow_origins.v[1], "http://x:8080");
    ck_assert(!c->any_origin);
    ck_assert_uint_eq(c->allow_headers.len, 2);
    ck_assert_uint_eq(c->max_age_s, 600); /* the default comes with the section */
    cfg_free(cfg);
    cfg = parse(CORS("{'allow_origins': ['*'], 'max_age_s': 0}"), &st, msg, sizeof(msg));
    ck_assert(cfg->routes[0].cors.any_origin);
    ck_assert_uint_eq(cfg->routes[0].cors.max_age_s, 0);
    cfg_free(cfg);
}
END_TEST

START_TEST(test_bad_cors_values_are_rejected_with_the_element)
{
    ck_assert_rejected(CORS("{'allow_origins': ['https://app.example/']}"),
                       "t.json: routes[0].cors.allow_origins[0]: an origin has no path, query, fragment or "
                       "spaces (e.g. \"https://app.example:8443\")");
    ck_assert_rejected(CORS("{'allow_origins': ['app.example']}"),
                       "t.json: routes[0].cors.allow_origins[0]: must be \"*\" or an origin such as "
                       "\"https://app.example\" (scheme://host[:port])");
    ck_assert_rejected(CORS("{'allow_origins': [3]}"),
                       "t.json: routes[0].cors.allow_origins[0]: must be a string");
    ck_assert_rejected(
        CORS("{'allow_headers': ['X Bad']}"),
        "t.json: routes[0].cors.allow_headers[0]: must be a header field name (letters, digits "
        "and !#$%&'*+-.^_`|~)");
    ck_assert_rejected(CORS("{'max_age_s': 86401}"),
                       "t.json: routes[0].cors.max_age_s: must be between 0 and 86400");
    ck_assert_rejected(CORS("{'origins': []}"), "t.json: routes[0].cors.origins: unknown field");
}
END_TEST

START_TEST(test_rate_limit_and_new_limits_are_read)
{
    enum cfg_status st;
    char msg[512];
    struct cfg *cfg = parse("{'rate_limit': {'per_ip_rps': 100, 'burst': 200}, 'limits': {"
                            "'max_connections_per_ip': 8, 'max_header_bytes': 4096, 'max_uri_bytes': 512,"
                            " 'max_inflight_total': 10}}",
                            &st, msg, sizeof(msg));
    ck_assert_int_eq(st, CFG_OK);
    ck_assert_uint_eq(cfg->rate_limit.per_ip_rps, 100);
    ck_assert_uint_eq(cfg->rate_limit.burst, 200);
    ck_assert_uint_eq(cfg->limits.max_connections_per_ip, 8);
    ck_assert_uint_eq(cfg->limits.max_header_bytes, 4096);
    ck_assert_uint_eq(cfg->limits.max_uri_bytes, 512);
    ck_assert_uint_eq(cfg->limits.max_inflight_total, 10);
    cfg_free(cfg);
    ck_assert_rejected("{'limits': {'max_uri_bytes': 15}}",
                       "t.json: limits.max_uri_bytes: must be between 16 and 65536");
}
END_TEST

/* Loads a config file written to a fresh folder beside a tokens file of the given mode. */
static enum cfg_status load_with_tokens(const char *config, mode_t mode, char *msg, size_t len, char *dir)
{
    char path[160];
    struct cfg *cfg = NULL;
    struct cfg_error err;

    snprintf(dir, 64, "/tmp/coapgw-cfg-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tokens.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("t0k3n\n", f);
    fclose(f);
    chmod(path, mode);
    snprintf(path, sizeof(path), "%s/gw.json", dir);
    f = fopen(path, "w");
    char buf[1024];
    json(config, buf, sizeof(buf));
    fputs(buf, f);
    fclose(f);
    enum cfg_status st = cfg_load(path, &cfg, &err);
    msg[0] = '\0';
    if (st != CFG_OK) {
        cfg_error_format(&err, msg, len);
    }
    cfg_free(cfg);
    return st;
}

static void remove_dir(const char *dir)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/tokens.txt", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/gw.json", dir);
    unlink(path);
    rmdir(dir);
}

#define AUTH(x)                                                                                              \
    "{'upstreams': {'s': {'uri': 'coap://h'}}, 'routes': [{'prefix': '/a/', 'upstream': 's', "               \
    "'auth': " x "}]}"

START_TEST(test_a_private_tokens_file_next_to_the_config_is_loaded)
{
    char dir[64], msg[512];
    ck_assert_int_eq(load_with_tokens(AUTH("{'type': 'bearer', 'tokens_file': 'tokens.txt'}"), 0600, msg,
                                      sizeof(msg), dir),
                     CFG_OK);
    remove_dir(dir);
    ck_assert_int_eq(load_with_tokens("{'admin': {'auth': {'type': 'bearer', 'tokens_file': 'tokens.txt'}}}",
                                      0400, msg, sizeof(msg), dir),
                     CFG_OK);
    remove_dir(dir);
}
END_TEST

START_TEST(test_a_readable_or_missing_secret_file_is_a_config_error)
{
    char dir[64], msg[512], want[512];
    ck_assert_int_eq(load_with_tokens(AUTH("{'type': 'bearer', 'tokens_file': 'tokens.txt'}"), 0644, msg,
                                      sizeof(msg), dir),
                     CFG_ERR_INVALID);
    snprintf(
        want, sizeof(want),
        "%s/gw.json: routes[0].auth.tokens_file: %s/tokens.txt: is readable by group or others; chmod 600 it",
        dir, dir);
    ck_assert_str_eq(msg, want);
    remove_dir(dir);
    ck_assert_int_eq(
        load_with_tokens(AUTH("{'type': 'api_key', 'keys_file': 'nope.txt'}"), 0600, msg, sizeof(msg), dir),
        CFG_ERR_INVALID);
    ck_assert_msg(strstr(msg, "routes[0].auth.keys_file: ") != NULL && strstr(msg, "/nope.txt: ") != NULL,
                  "%s", msg);
    remove_dir(dir);
}
END_TEST

START_TEST(test_auth_fields_must_fit_the_type)
{
    ck_assert_rejected(AUTH("{'type': 'bearer'}"),
                       "t.json: routes[0].auth.tokens_file: missing required field");
    ck_assert_rejected(AUTH("{'type': 'api_key', 'tokens_file': 'x'}"),
                       "t.json: routes[0].auth.tokens_file: is for type \"bearer\"; an api_key route takes "
                       "keys_file");
    ck_assert_rejected(AUTH("{'type': 'bearer', 'keys_file': 'x'}"),
                       "t.json: routes[0].auth.keys_file: is for type \"api_key\"; a bearer route takes "
                       "tokens_file");
    ck_assert_rejected(AUTH("{'type': 'basic'}"),
                       "t.json: routes[0].auth.type: must be \"none\", \"bearer\" or \"api_key\"");
    ck_assert_rejected(AUTH("{'tokens_file': 'x'}"), "t.json: routes[0].auth.type: missing required field");
    ck_assert_rejected(AUTH("{'type': 'bearer', 'token_file': 'x'}"),
                       "t.json: routes[0].auth.token_file: unknown field");
}
END_TEST

/* ---- DTLS (coaps://) ---- */

/* A folder with a PSK key file, a CA, a client certificate and its key (modes as given), and a config file
 * gw.json holding config; the config loaded from it. */
struct dtls_dir {
    char dir[64];
    char msg[512];
};

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static enum cfg_status load_dtls(struct dtls_dir *d, const char *config, mode_t key_mode, struct cfg **out)
{
    char path[160], buf[1024];
    struct cfg_error err;
    struct cfg *cfg = NULL;

    snprintf(d->dir, sizeof(d->dir), "/tmp/coapgw-cfg-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->dir));
    write_file(d->dir, "psk.key", "s3cret\n", key_mode);
    write_file(d->dir, "hex.key", "6162ff\r\n", key_mode);
    write_file(d->dir, "gw.key", "-----BEGIN PRIVATE KEY-----\n", key_mode);
    write_file(d->dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    write_file(d->dir, "gw.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    json(config, buf, sizeof(buf));
    write_file(d->dir, "gw.json", buf, 0644);
    snprintf(path, sizeof(path), "%s/gw.json", d->dir);
    enum cfg_status st = cfg_load(path, &cfg, &err);
    d->msg[0] = '\0';
    if (st != CFG_OK) {
        cfg_error_format(&err, d->msg, sizeof(d->msg));
    }
    if (out != NULL) {
        *out = cfg;
    } else {
        cfg_free(cfg);
    }
    return st;
}

static void dtls_dir_remove(const struct dtls_dir *d)
{
    static const char *const names[] = {"psk.key", "hex.key", "gw.key", "ca.pem", "gw.pem", "gw.json"};
    char path[160];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", d->dir, names[i]);
        unlink(path);
    }
    rmdir(d->dir);
}

/* The message expected from load_dtls, with each "DIR" standing for the folder. */
static void ck_dtls_msg(const struct dtls_dir *d, const char *expected)
{
    char want[512];
    size_t used = 0;

    for (const char *p = expected; *p != '\0' && used + sizeof(d->dir) < sizeof(want);) {
        if (strncmp(p, "DIR", 3) == 0) {
            used += (size_t)snprintf(want + used, sizeof(want) - used, "%s", d->dir);
            p += 3;
        } else {
            want[used++] = *p++;
        }
    }
    want[used] = '\0';
    ck_assert_str_eq(d->msg, want);
}

#define DTLS(uri, x) "{'upstreams': {'s': {'uri': '" uri "', " x "}}}"
#define PSK(x) "'psk': {'identity': 'gw', " x "}"
#define PKI(x) "'pki': {'ca_file': 'ca.pem'" x "}"

START_TEST(test_coaps_with_a_psk_reads_the_key_and_defaults_to_port_5684)
{
    struct dtls_dir d;
    struct cfg *cfg;

    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PSK("'key_file': 'psk.key'")), 0600, &cfg), CFG_OK);
    const struct cfg_upstream *u = &cfg->upstreams[0];
    ck_assert(u->secure);
    ck_assert_int_eq(u->dtls, CFG_DTLS_PSK);
    ck_assert_uint_eq(u->peer.port, 5684);
    ck_assert_str_eq(u->psk.identity, "gw");
    ck_assert_uint_eq(u->psk.key.len, 6);
    ck_assert_mem_eq(u->psk.key.bytes, "s3cret", 6);
    ck_assert_ptr_nonnull(strstr(u->psk.key_file, d.dir)); /* resolved against the config's folder */
    cfg_free(cfg);
    dtls_dir_remove(&d);

    ck_assert_int_eq(
        load_dtls(&d, DTLS("COAPS://h:7", PSK("'key_file': 'hex.key', 'key_hex': true")), 0400, &cfg),
        CFG_OK);
    ck_assert_uint_eq(cfg->upstreams[0].peer.port, 7);
    ck_assert_uint_eq(cfg->upstreams[0].psk.key.len, 3);
    ck_assert_mem_eq(cfg->upstreams[0].psk.key.bytes, "ab\xff", 3);
    cfg_free(cfg);
    dtls_dir_remove(&d);
}
END_TEST

START_TEST(test_coaps_with_pki_resolves_the_files)
{
    struct dtls_dir d;
    struct cfg *cfg;
    char want[160];

    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PKI(", 'cert': 'gw.pem', 'key': 'gw.key'")), 0600, &cfg),
                     CFG_OK);
    const struct cfg_upstream *u = &cfg->upstreams[0];
    ck_assert_int_eq(u->dtls, CFG_DTLS_PKI);
    snprintf(want, sizeof(want), "%s/ca.pem", d.dir);
    ck_assert_str_eq(u->pki.ca_file, want);
    snprintf(want, sizeof(want), "%s/gw.pem", d.dir);
    ck_assert_str_eq(u->pki.cert, want);
    snprintf(want, sizeof(want), "%s/gw.key", d.dir);
    ck_assert_str_eq(u->pki.key, want);
    cfg_free(cfg);
    dtls_dir_remove(&d);

    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PKI("")), 0600, &cfg), CFG_OK);
    ck_assert_ptr_null(cfg->upstreams[0].pki.cert);
    ck_assert_ptr_null(cfg->upstreams[0].pki.key);
    cfg_free(cfg);
    dtls_dir_remove(&d);
}
END_TEST

START_TEST(test_coaps_needs_exactly_one_of_psk_and_pki)
{
    struct dtls_dir d;

    ck_assert_rejected(URI("coaps://h"),
                       "t.json: upstreams.s.uri: a coaps:// upstream needs DTLS credentials: psk or pki");
    ck_assert_rejected(DTLS("coap://h", PSK("'key_file': 'psk.key'")),
                       "t.json: upstreams.s.psk: is only for a coaps:// upstream");
    ck_assert_rejected(DTLS("coap://h", PKI("")), "t.json: upstreams.s.pki: is only for a coaps:// upstream");
    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PSK("'key_file': 'psk.key'") ", " PKI("")), 0600, NULL),
                     CFG_ERR_INVALID);
    ck_dtls_msg(&d, "DIR/gw.json: upstreams.s.pki: psk and pki exclude each other; give one");
    dtls_dir_remove(&d);
}
END_TEST

START_TEST(test_bad_psk_sections_are_rejected)
{
    struct dtls_dir d;

    ck_assert_rejected(DTLS("coaps://h", "'psk': {'key_file': 'k'}"),
                       "t.json: upstreams.s.psk.identity: missing required field");
    ck_assert_rejected(DTLS("coaps://h", "'psk': {'identity': 'gw'}"),
                       "t.json: upstreams.s.psk.key_file: missing required field");
    ck_assert_rejected(DTLS("coaps://h", "'psk': {'identity': '', 'key_file': 'k'}"),
                       "t.json: upstreams.s.psk.identity: must be 1 to 64 bytes long");
    ck_assert_rejected(DTLS("coaps://h", "'psk': {'identity': '"
                                         "12345678901234567890123456789012345678901234567890123456789012345"
                                         "', 'key_file': 'k'}"),
                       "t.json: upstreams.s.psk.identity: must be 1 to 64 bytes long");
    ck_assert_rejected(DTLS("coaps://h", PSK("'keyfile': 'k'")),
                       "t.json: upstreams.s.psk.keyfile: unknown field");
    ck_assert_rejected(DTLS("coaps://h", "'psk': 'gw:key'"), "t.json: upstreams.s.psk: must be an object");

    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PSK("'key_file': 'psk.key'")), 0640, NULL),
                     CFG_ERR_INVALID);
    ck_dtls_msg(&d, "DIR/gw.json: upstreams.s.psk.key_file: DIR/psk.key: is readable by group or others; "
                    "chmod 600 it");
    dtls_dir_remove(&d);
    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PSK("'key_file': 'nope.key'")), 0600, NULL),
                     CFG_ERR_INVALID);
    ck_assert_msg(strstr(d.msg, "upstreams.s.psk.key_file: ") != NULL && strstr(d.msg, "/nope.key: ") != NULL,
                  "%s", d.msg);
    dtls_dir_remove(&d);
    /* "s3cret" is not hex: the key is refused, and the reason quotes none of it. */
    ck_assert_int_eq(
        load_dtls(&d, DTLS("coaps://h", PSK("'key_file': 'psk.key', 'key_hex': true")), 0600, NULL),
        CFG_ERR_INVALID);
    ck_assert_msg(strstr(d.msg, "upstreams.s.psk.key_file: ") != NULL && strstr(d.msg, "s3cret") == NULL,
                  "%s", d.msg);
    dtls_dir_remove(&d);
}
END_TEST

START_TEST(test_bad_pki_sections_are_rejected)
{
    struct dtls_dir d;

    ck_assert_rejected(DTLS("coaps://h", "'pki': {}"),
                       "t.json: upstreams.s.pki.ca_file: missing required field");
    ck_assert_rejected(
        DTLS("coaps://h", PKI(", 'cert': 'gw.pem'")),
        "t.json: upstreams.s.pki.key: cert and key go together (a client certificate needs both)");
    ck_assert_rejected(
        DTLS("coaps://h", PKI(", 'key': 'gw.key'")),
        "t.json: upstreams.s.pki.cert: cert and key go together (a client certificate needs both)");
    ck_assert_rejected(DTLS("coaps://h", PKI(", 'verify': false")),
                       "t.json: upstreams.s.pki.verify: unknown field");

    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PKI(", 'cert': 'gw.pem', 'key': 'gw.key'")), 0604, NULL),
                     CFG_ERR_INVALID);
    ck_dtls_msg(&d,
                "DIR/gw.json: upstreams.s.pki.key: DIR/gw.key: is readable by group or others; chmod 600 it");
    dtls_dir_remove(&d);
    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", "'pki': {'ca_file': 'nope.pem'}"), 0600, NULL),
                     CFG_ERR_INVALID);
    ck_dtls_msg(&d,
                "DIR/gw.json: upstreams.s.pki.ca_file: DIR/nope.pem: cannot read: No such file or directory");
    dtls_dir_remove(&d);
    ck_assert_int_eq(load_dtls(&d, DTLS("coaps://h", PKI(", 'cert': 'no.pem', 'key': 'gw.key'")), 0600, NULL),
                     CFG_ERR_INVALID);
    ck_dtls_msg(&d, "DIR/gw.json: upstreams.s.pki.cert: DIR/no.pem: cannot read: No such file or directory");
    dtls_dir_remove(&d);
}
END_TEST

static void add(Suite *s, const char *name, const TTest *const *tests)
{
    TCase *tc = tcase_create(name);

    for (size_t i = 0; tests[i] != NULL; i++) {
        tcase_add_test(tc, tests[i]);
    }
    suite_add_tcase(s, tc);
}

/* Health, resolution and observation settings (proxy/client): defaults, 0 meaning "no pings", ranges. */
START_TEST(test_upstream_health_settings_have_defaults_and_ranges)
{
    struct cfg *cfg = parse_ok(UPSTREAM(""));
    ck_assert(!cfg->upstreams[0].required);
    ck_assert_uint_eq(cfg->upstreams[0].ping_interval_s, 30);
    ck_assert_uint_eq(cfg->upstreams[0].resolve_interval_s, 60);
    ck_assert_uint_eq(cfg->limits.max_observations_per_upstream, 64);
    cfg_free(cfg);
    cfg = parse_ok(UPSTREAM(", 'required': true, 'ping_interval_s': 0, 'resolve_interval_s': 1"));
    ck_assert(cfg->upstreams[0].required);
    ck_assert_uint_eq(cfg->upstreams[0].ping_interval_s, 0);
    ck_assert_uint_eq(cfg->upstreams[0].resolve_interval_s, 1);
    cfg_free(cfg);
    ck_assert_rejected(UPSTREAM(", 'resolve_interval_s': 0"),
                       "t.json: upstreams.s.resolve_interval_s: must be between 1 and 86400");
    ck_assert_rejected(UPSTREAM(", 'ping_interval_s': 86401"),
                       "t.json: upstreams.s.ping_interval_s: must be between 0 and 86400");
    ck_assert_rejected("{'limits': {'max_observations_per_upstream': 0}}",
                       "t.json: limits.max_observations_per_upstream: must be between 1 and 100000");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");

    add(s, "valid",
        (const TTest *const[]){test_full_config_sets_every_field, test_empty_object_gives_documented_defaults,
                               test_empty_sections_keep_defaults, test_upstream_and_route_defaults,
                               test_default_config_routes_api_to_the_demo_server,
                               test_upstreams_keep_file_order, test_free_of_null_does_nothing, NULL});
    add(s, "syntax",
        (const TTest *const[]){
            test_syntax_error_reports_line_and_column, test_duplicate_key_is_a_syntax_error,
            test_empty_or_truncated_text_is_a_syntax_error, test_top_level_must_be_an_object, NULL});
    add(s, "unknown fields",
        (const TTest *const[]){
            test_unknown_field_is_rejected_at_top_level, test_overlong_field_path_is_cut_visibly,
            test_unknown_field_is_rejected_in_upstream, test_unknown_field_is_rejected_in_route,
            test_unknown_field_is_rejected_in_every_section,
            test_unknown_top_level_field_is_reported_before_other_errors, NULL});
    add(s, "types",
        (const TTest *const[]){test_integer_fields_reject_reals_strings_and_booleans,
                               test_boolean_fields_reject_numbers_strings_and_null,
                               test_string_fields_reject_other_types,
                               test_sections_must_have_the_right_container_type, NULL});
    add(s, "ranges",
        (const TTest *const[]){test_upstream_ranges_are_inclusive, test_cache_ranges_are_inclusive,
                               test_limits_ranges_are_inclusive, test_log_levels_map_to_numbers,
                               test_shutdown_grace_defaults_to_10_s_and_is_checked, NULL});
    add(s, "addresses",
        (const TTest *const[]){test_endpoint_parse_accepts_ipv4_ipv6_and_names,
                               test_endpoint_parse_rejects_bad_addresses, test_bad_listen_address_is_rejected,
                               NULL});
    add(s, "upstreams",
        (const TTest *const[]){
            test_uri_host_and_port_are_split, test_uri_base_path_is_split_and_percent_decoded,
            test_uri_schemes_other_than_coap_are_rejected, test_uri_with_bad_host_or_port_is_rejected,
            test_uri_with_query_fragment_or_userinfo_is_rejected, test_uri_with_bad_path_is_rejected,
            test_a_base_path_segment_over_255_bytes_after_decoding_is_rejected,
            test_a_base_path_that_leaves_no_room_for_the_request_is_rejected, test_upstream_uri_is_required,
            test_upstream_names_are_checked, test_upstream_type_must_be_con_or_non,
            test_routes_need_at_least_one_upstream, NULL});
    add(s, "routes",
        (const TTest *const[]){test_route_to_missing_upstream_is_rejected, test_duplicate_prefix_is_rejected,
                               test_bad_prefix_is_rejected, test_a_prefix_with_a_dot_segment_is_rejected,
                               test_route_prefix_and_upstream_are_required, test_methods_become_bits,
                               test_bad_methods_are_rejected, NULL});
    add(s, "security",
        (const TTest *const[]){test_cors_origins_headers_and_max_age_are_read,
                               test_bad_cors_values_are_rejected_with_the_element,
                               test_rate_limit_and_new_limits_are_read,
                               test_a_private_tokens_file_next_to_the_config_is_loaded,
                               test_a_readable_or_missing_secret_file_is_a_config_error,
                               test_auth_fields_must_fit_the_type, NULL});
    add(s, "dtls",
        (const TTest *const[]){test_coaps_with_a_psk_reads_the_key_and_defaults_to_port_5684,
                               test_coaps_with_pki_resolves_the_files,
                               test_coaps_needs_exactly_one_of_psk_and_pki,
                               test_bad_psk_sections_are_rejected, test_bad_pki_sections_are_rejected, NULL});
    add(s, "forward proxy",
        (const TTest *const[]){test_forward_proxy_enabled_needs_allow_rules, test_forward_proxy_allow_parses_target_rules,
                               test_bad_target_rule_is_rejected_with_its_element, test_forward_proxy_prefix_is_validated, NULL});
    add(s, "files",
        (const TTest *const[]){test_load_reads_a_real_file, test_load_of_missing_file_is_an_io_error,
                               test_load_of_a_directory_is_an_io_error,
                               test_load_of_a_fifo_is_refused_without_blocking,
                               test_load_names_the_file_in_errors, test_error_argument_is_optional,
                               test_text_is_bounded_by_its_length, NULL});
    add(s, "formatting",
        (const TTest *const[]){test_methods_format_lists_head_with_get, test_methods_format_never_overflows,
                               test_method_names_match_the_rfcs, test_every_status_has_a_message,
                               test_error_format_has_three_shapes, NULL});
    add(s, "reference",
        (const TTest *const[]){test_reference_table_has_one_line_per_field,
                               test_reference_table_takes_ranges_and_defaults_from_the_rows,
                               test_every_field_in_the_reference_table_is_known, NULL});
    add(s, "health", (const TTest *const[]){test_upstream_health_settings_have_defaults_and_ranges, NULL});
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
