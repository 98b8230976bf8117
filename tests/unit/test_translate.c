/* Unit tests for proxy/translate: each RFC 8075 table is checked row by row, so a failing test names the
 * row. Pure functions only: no sockets, no clock. */
#include "base/pct.h"
#include "proxy/translate.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ==== Helpers ==================================================================================== */

static struct px_coap_request req;
static struct co_optset ropts;
static struct px_http_response resp;
static const char *detail;
static const char *const *base;
static size_t nbase;
static const char *allow;

static void reset(void)
{
    struct co_optset opts = req.opts; /* kept for reuse: the static set is never leaked */
    memset(&req, 0, sizeof(req));
    req.opts = opts;
    co_optset_clear(&req.opts);
    co_optset_clear(&ropts);
    memset(&resp, 0, sizeof(resp));
    detail = NULL;
    base = NULL;
    nbase = 0;
    allow = NULL;
}

static enum px_status to_coap(struct px_http_request in)
{
    return px_request_to_coap(&in, base, nbase, &req, &detail);
}

static enum px_status to_http(uint8_t code, size_t payload_len)
{
    struct px_coap_response in = {code, &ropts, payload_len};
    return px_response_to_http(&in, "/api/", base, nbase, allow, &resp);
}

static bool is_uint_option(uint16_t n)
{
    return n == CO_OPT_CONTENT_FORMAT || n == CO_OPT_ACCEPT || n == CO_OPT_MAX_AGE;
}

/* "11:a 11: 15:x=1 12#50 1:0a1b": text options as text (bytes outside 0x21..0x7e as \xHH), uint options
 * after '#', opaque ones (If-Match, ETag) in hex. */
static const char *dump(const struct co_optset *set)
{
    static char out[CO_OPTBUF_MAX * 4];
    size_t len = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < set->count; i++) {
        const struct co_opt *o = &set->opt[i];
        const uint8_t *v = co_opt_value(set, o);
        len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%u%c", i ? " " : "", o->number,
                                is_uint_option(o->number) ? '#' : ':');
        if (is_uint_option(o->number)) {
            len += (size_t)snprintf(out + len, sizeof(out) - len, "%u", co_opt_uint(v, o->len));
            continue;
        }
        for (size_t j = 0; j < o->len; j++) {
            bool opaque = o->number == CO_OPT_IF_MATCH || o->number == CO_OPT_ETAG;
            bool plain = !opaque && v[j] > 0x20 && v[j] < 0x7f;
            len += (size_t)snprintf(out + len, sizeof(out) - len,
                                    plain    ? "%c"
                                    : opaque ? "%02x"
                                             : "\\x%02x",
                                    v[j]);
        }
    }
    return out;
}

static const char *media(uint16_t cf)
{
    static char buf[96];
    px_format_to_media(cf, buf, sizeof(buf));
    return buf;
}

static int format_of(const char *content_type)
{
    uint16_t cf;
    return px_media_to_format(content_type, &cf) == 0 ? cf : -1;
}

/* The Accept option for a header value: -1 none, -406 for 406 Not Acceptable. */
static int accept_of(const char *accept)
{
    bool has = true;
    uint16_t cf = 0;
    if (px_accept_to_coap(accept, &has, &cf) == PX_ERR_NOT_ACCEPTABLE) {
        return -406;
    }
    return has ? cf : -1;
}

/* ==== Response codes: RFC 8075 §7 Table 2 ========================================================= */

static const struct {
    uint8_t coap;
    bool payload;
    bool allow_known;
    int http;
} table_2[] = {
    {CO_CODE(2, 1), true, false, 201},
    {CO_CODE(2, 1), false, false, 201},
    {CO_CODE(2, 2), true, false, 200},
    {CO_CODE(2, 2), false, false, 204},
    {CO_CODE(2, 3), false, false, 304},
    {CO_CODE(2, 4), true, false, 200},
    {CO_CODE(2, 4), false, false, 204},
    {CO_CODE(2, 5), true, false, 200},
    {CO_CODE(2, 5), false, false, 200},
    {CO_CODE(2, 31), false, false, 0},
    {CO_CODE(4, 0), true, false, 400},
    {CO_CODE(4, 1), true, false, 403},
    {CO_CODE(4, 2), true, false, 500},
    {CO_CODE(4, 3), true, false, 403},
    {CO_CODE(4, 4), true, false, 404},
    {CO_CODE(4, 5), true, false, 400},
    {CO_CODE(4, 5), true, true, 405},
    {CO_CODE(4, 6), true, false, 406},
    {CO_CODE(4, 8), true, false, 0},
    {CO_CODE(4, 12), true, false, 412},
    {CO_CODE(4, 13), true, false, 413},
    {CO_CODE(4, 15), true, false, 415},
    {CO_CODE(5, 0), true, false, 500},
    {CO_CODE(5, 1), true, false, 501},
    {CO_CODE(5, 2), true, false, 502},
    {CO_CODE(5, 3), true, false, 503},
    {CO_CODE(5, 4), true, false, 504},
    {CO_CODE(5, 5), true, false, 502},
    /* later RFCs */
    {CO_CODE(4, 9), true, false, 409},
    {CO_CODE(4, 22), true, false, 422},
    {CO_CODE(4, 29), true, false, 429},
};

START_TEST(test_every_table_2_row_maps_as_rfc_8075_says)
{
    char code[5];
    co_code_format(table_2[_i].coap, code);
    ck_assert_msg(px_code_to_http(table_2[_i].coap, table_2[_i].payload, table_2[_i].allow_known) ==
                      table_2[_i].http,
                  "CoAP %s (payload %d, allow %d) should be HTTP %d", code, table_2[_i].payload,
                  table_2[_i].allow_known, table_2[_i].http);
}
END_TEST

START_TEST(test_coap_2_05_becomes_http_200)
{
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 5), PX_OK);
    ck_assert_int_eq(resp.status, 200);
    ck_assert(resp.send_body);
}
END_TEST

START_TEST(test_coap_2_04_without_payload_becomes_204_without_body)
{
    ck_assert_int_eq(to_http(CO_CODE(2, 4), 0), PX_OK);
    ck_assert_int_eq(resp.status, 204);
    ck_assert(!resp.send_body);
    ck_assert_int_eq(resp.max_age, -1);
}
END_TEST

START_TEST(test_coap_2_03_becomes_304_without_body)
{
    ck_assert_int_eq(to_http(CO_CODE(2, 3), 0), PX_OK);
    ck_assert_int_eq(resp.status, 304);
    ck_assert(!resp.send_body);
}
END_TEST

START_TEST(test_coap_4_05_is_405_with_allow_only_when_known)
{
    ck_assert_int_eq(to_http(CO_CODE(4, 5), 0), PX_OK);
    ck_assert_int_eq(resp.status, 400);
    ck_assert_str_eq(resp.allow, "");
    allow = "GET, PUT";
    ck_assert_int_eq(to_http(CO_CODE(4, 5), 0), PX_OK);
    ck_assert_int_eq(resp.status, 405);
    ck_assert_str_eq(resp.allow, "GET, PUT");
}
END_TEST

START_TEST(test_unknown_codes_map_to_their_class)
{
    ck_assert_int_eq(px_code_to_http(CO_CODE(2, 7), true, false), 200);
    ck_assert_int_eq(px_code_to_http(CO_CODE(4, 31), true, false), 400);
    ck_assert_int_eq(px_code_to_http(CO_CODE(5, 8), true, false), 500);
    ck_assert_int_eq(to_http(CO_CODE(2, 7), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, -1); /* unknown success is never cacheable */
}
END_TEST

START_TEST(test_non_response_codes_are_bad_gateway)
{
    static const uint8_t codes[] = {0,
                                    CO_CODE(0, 1),
                                    CO_CODE(1, 0),
                                    CO_CODE(3, 0),
                                    CO_CODE(6, 0),
                                    CO_CODE(7, 1),
                                    CO_CODE(2, 31),
                                    CO_CODE(4, 8)};
    for (size_t i = 0; i < COUNT(codes); i++) {
        ck_assert_int_eq(to_http(codes[i], 0), PX_ERR_BAD_GATEWAY);
        ck_assert_int_eq(px_code_to_http(codes[i], false, false), 0);
    }
}
END_TEST

START_TEST(test_code_format_is_dotted)
{
    char buf[5];
    co_code_format(CO_CODE(2, 5), buf);
    ck_assert_str_eq(buf, "2.05");
    co_code_format(CO_CODE(7, 31), buf);
    ck_assert_str_eq(buf, "7.31");
    co_code_format(CO_CODE(4, 13), buf);
    ck_assert_str_eq(buf, "4.13");
}
END_TEST

/* ==== Response headers ============================================================================ */

START_TEST(test_max_age_becomes_cache_control_for_cacheable_codes)
{
    co_optset_add_uint(&ropts, CO_OPT_MAX_AGE, 5);
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, 5);
    ck_assert_int_eq(to_http(CO_CODE(4, 4), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, 5);
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, -1);
    ck_assert_int_eq(to_http(CO_CODE(2, 2), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, -1);
}
END_TEST

START_TEST(test_absent_max_age_means_60_seconds)
{
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, 60);
    ck_assert_int_eq(resp.retry_after, -1);
    co_optset_add_uint(&ropts, CO_OPT_MAX_AGE, 0);
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 1), PX_OK);
    ck_assert_int_eq(resp.max_age, 0);
}
END_TEST

START_TEST(test_coap_5_03_retry_after_is_max_age_or_60)
{
    ck_assert_int_eq(to_http(CO_CODE(5, 3), 0), PX_OK);
    ck_assert_int_eq(resp.status, 503);
    ck_assert_int_eq(resp.retry_after, 60);
    co_optset_add_uint(&ropts, CO_OPT_MAX_AGE, 7);
    ck_assert_int_eq(to_http(CO_CODE(5, 3), 0), PX_OK);
    ck_assert_int_eq(resp.retry_after, 7);
    ck_assert_int_eq(to_http(CO_CODE(4, 29), 0), PX_OK);
    ck_assert_int_eq(resp.status, 429);
    ck_assert_int_eq(resp.retry_after, 7);
}
END_TEST

START_TEST(test_content_format_becomes_content_type)
{
    co_optset_add_uint(&ropts, CO_OPT_CONTENT_FORMAT, 50);
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 2), PX_OK);
    ck_assert_str_eq(resp.content_type, "application/json");
}
END_TEST

START_TEST(test_unknown_content_format_becomes_coap_payload)
{
    co_optset_add_uint(&ropts, CO_OPT_CONTENT_FORMAT, 65000);
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 2), PX_OK);
    ck_assert_str_eq(resp.content_type, "application/coap-payload;cf=65000");
}
END_TEST

START_TEST(test_diagnostic_payload_without_format_is_utf8_text)
{
    ck_assert_int_eq(to_http(CO_CODE(4, 0), 9), PX_OK);
    ck_assert_str_eq(resp.content_type, "text/plain; charset=utf-8");
    ck_assert(resp.send_body);
    ck_assert_int_eq(to_http(CO_CODE(5, 0), 9), PX_OK);
    ck_assert_str_eq(resp.content_type, "text/plain; charset=utf-8");
}
END_TEST

START_TEST(test_success_payload_without_format_is_octet_stream)
{
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 3), PX_OK);
    ck_assert_str_eq(resp.content_type, "application/octet-stream");
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 0), PX_OK);
    ck_assert_str_eq(resp.content_type, "");
}
END_TEST

START_TEST(test_etag_becomes_quoted_hex_entity_tag)
{
    static const uint8_t tag[] = {0x0a, 0x1b};
    co_optset_add(&ropts, CO_OPT_ETAG, tag, sizeof(tag));
    ck_assert_int_eq(to_http(CO_CODE(2, 5), 1), PX_OK);
    ck_assert_str_eq(resp.etag, "\"0a1b\"");
    ck_assert_int_eq(to_http(CO_CODE(4, 4), 1), PX_OK);
    ck_assert_str_eq(resp.etag, "");
}
END_TEST

/* ==== Location ==================================================================================== */

static void add_text(struct co_optset *set, uint16_t number, const char *text)
{
    co_optset_add(set, number, text, strlen(text));
}

START_TEST(test_location_path_maps_under_the_route_prefix)
{
    add_text(&ropts, CO_OPT_LOCATION_PATH, "items");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "7");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_int_eq(resp.status, 201);
    ck_assert_str_eq(resp.location, "/api/items/7");
}
END_TEST

START_TEST(test_location_strips_the_upstream_base_path)
{
    static const char *const b[] = {"base", "v1"};
    base = b;
    nbase = 2;
    add_text(&ropts, CO_OPT_LOCATION_PATH, "base");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "v1");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "x");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "/api/x");
}
END_TEST

START_TEST(test_location_outside_the_base_path_is_dropped)
{
    static const char *const b[] = {"base"};
    base = b;
    nbase = 1;
    add_text(&ropts, CO_OPT_LOCATION_PATH, "other");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "x");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "");
}
END_TEST

START_TEST(test_location_segments_are_percent_encoded)
{
    add_text(&ropts, CO_OPT_LOCATION_PATH, "a/b?c%d");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "caf\xc3\xa9 x");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "~k:v@!$&'()*+,;=");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "/api/a%2Fb%3Fc%25d/caf%C3%A9%20x/~k:v@!$&'()*+,;=");
}
END_TEST

START_TEST(test_location_query_items_are_joined_with_ampersand)
{
    add_text(&ropts, CO_OPT_LOCATION_PATH, "r");
    add_text(&ropts, CO_OPT_LOCATION_QUERY, "a=1");
    add_text(&ropts, CO_OPT_LOCATION_QUERY, "b=x&y+z");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "/api/r?a=1&b=x%26y%2Bz");
}
END_TEST

START_TEST(test_location_query_alone_is_a_relative_reference)
{
    add_text(&ropts, CO_OPT_LOCATION_QUERY, "id=3");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "?id=3");
}
END_TEST

START_TEST(test_location_with_dot_segments_is_dropped)
{
    add_text(&ropts, CO_OPT_LOCATION_PATH, "..");
    add_text(&ropts, CO_OPT_LOCATION_PATH, "admin");
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "");
}
END_TEST

START_TEST(test_location_too_long_is_dropped_not_cut)
{
    char seg[201];
    memset(seg, '%', 200);
    seg[200] = '\0';
    for (int i = 0; i < 3; i++) {
        add_text(&ropts, CO_OPT_LOCATION_PATH, seg); /* 600 bytes -> 1800 encoded */
    }
    ck_assert_int_eq(to_http(CO_CODE(2, 1), 0), PX_OK);
    ck_assert_str_eq(resp.location, "");
}
END_TEST

/* ==== Media types ================================================================================= */

static const struct {
    uint16_t cf;
    const char *media;
} registry_sample[] = {
    {0, "text/plain; charset=utf-8"},
    {16, "application/cose; cose-type=\"cose-encrypt0\""},
    {40, "application/link-format"},
    {41, "application/xml"},
    {42, "application/octet-stream"},
    {47, "application/exi"},
    {50, "application/json"},
    {60, "application/cbor"},
    {110, "application/senml+json"},
    {140, "application/yang-data+cbor; id=sid"},
    {280, "application/pkcs7-mime; smime-type=server-generated-key"},
    {432, "application/td+json"},
    {11543, "application/vnd.oma.lwm2m+json"},
    {20000, "text/css"},
};

START_TEST(test_content_formats_have_their_iana_media_types)
{
    ck_assert_str_eq(media(registry_sample[_i].cf), registry_sample[_i].media);
    ck_assert_int_eq(format_of(registry_sample[_i].media), registry_sample[_i].cf);
}
END_TEST

START_TEST(test_every_known_format_round_trips)
{
    for (unsigned cf = 0; cf <= UINT16_MAX; cf++) {
        ck_assert_msg(format_of(media((uint16_t)cf)) == (int)cf, "cf %u (%s) does not round trip", cf,
                      media((uint16_t)cf));
    }
}
END_TEST

START_TEST(test_unknown_format_is_coap_payload_and_maps_back)
{
    ck_assert_str_eq(media(9999), "application/coap-payload;cf=9999");
    ck_assert_int_eq(format_of("application/coap-payload;cf=9999"), 9999);
    ck_assert_int_eq(format_of("Application/COAP-Payload; CF=\"60\""), 60);
    ck_assert_int_eq(format_of("application/coap-payload"), -1);
    ck_assert_int_eq(format_of("application/coap-payload;cf=65536"), -1);
    ck_assert_int_eq(format_of("application/coap-payload;cf=-1"), -1);
}
END_TEST

START_TEST(test_media_type_case_and_whitespace_are_tolerated)
{
    ck_assert_int_eq(format_of("  Application/JSON  "), 50);
    ck_assert_int_eq(format_of("application/json ;charset=utf-8"), 50);
    ck_assert_int_eq(format_of("application/json;;"), 50);
    ck_assert_int_eq(format_of("application/cose;COSE-TYPE=cose-sign1"), 18);
}
END_TEST

START_TEST(test_text_plain_is_mapped_only_as_utf8_or_its_subset_ascii)
{
    ck_assert_int_eq(format_of("text/plain; charset=us-ascii"), 0);
    ck_assert_int_eq(format_of("text/plain; charset=US-ASCII"), 0);
    ck_assert_int_eq(format_of("text/plain; charset=\"ANSI_X3.4-1968\""), 0);
    ck_assert_int_eq(format_of("text/plain; charset=windows-1252"), -1);
    ck_assert_int_eq(format_of("text/plain"), 0);
    ck_assert_int_eq(format_of("text/plain;charset=UTF-8"), 0);
    ck_assert_int_eq(format_of("text/plain; charset=\"utf-8\""), 0);
    ck_assert_int_eq(format_of("text/plain; format=flowed"), 0);
    ck_assert_int_eq(format_of("text/plain; charset=iso-8859-1"), -1);
}
END_TEST

START_TEST(test_distinguishing_parameters_must_match_an_entry)
{
    ck_assert_int_eq(format_of("application/cose"), -1);
    ck_assert_int_eq(format_of("application/cose; cose-type=\"cose-mac0\""), 17);
    ck_assert_int_eq(format_of("application/yang-data+cbor"), 340);
    ck_assert_int_eq(format_of("application/yang-data+cbor; id=name"), 341);
    ck_assert_int_eq(format_of("application/yang-data+cbor; id=other"), -1);
    ck_assert_int_eq(format_of("application/eat+cwt; eat_profile=\"tag:psacertified.org,2023:psa#tfm\""),
                     10003);
}
END_TEST

START_TEST(test_unmappable_or_malformed_media_types_have_no_format)
{
    static const char *const bad[] = {"text/html",
                                      "",
                                      "json",
                                      "application/",
                                      "/json",
                                      "application/json, text/plain",
                                      "application/json; charset",
                                      "application/json; a=\"open"};
    for (size_t i = 0; i < COUNT(bad); i++) {
        ck_assert_msg(format_of(bad[i]) == -1, "\"%s\" should not map", bad[i]);
    }
    ck_assert_int_eq(format_of(NULL), -1);
}
END_TEST

START_TEST(test_format_to_media_does_not_overflow)
{
    char small[8];
    ck_assert_uint_eq(px_format_to_media(50, small, sizeof(small)), 0);
    ck_assert_str_eq(small, "");
    ck_assert_uint_eq(px_format_to_media(50, small, 0), 0);
}
END_TEST

/* ==== Accept ====================================================================================== */

START_TEST(test_absent_or_empty_accept_sends_no_accept)
{
    ck_assert_int_eq(accept_of(NULL), -1);
    ck_assert_int_eq(accept_of(""), -1);
    ck_assert_int_eq(accept_of("  ,  "), -1);
}
END_TEST

START_TEST(test_wildcards_send_no_accept)
{
    ck_assert_int_eq(accept_of("*/*"), -1);
    ck_assert_int_eq(accept_of("application/json, */*;q=0.1"), -1);
    ck_assert_int_eq(accept_of("text/*"), -1);
}
END_TEST

START_TEST(test_browser_accept_sends_no_accept)
{
    ck_assert_int_eq(accept_of("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
                               "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
                     -1);
}
END_TEST

START_TEST(test_highest_q_mappable_type_wins)
{
    ck_assert_int_eq(accept_of("application/json"), 50);
    ck_assert_int_eq(accept_of("application/json;q=0.5, application/cbor;q=0.9"), 60);
    ck_assert_int_eq(accept_of("text/html, application/cbor;q=0.2"), 60);
    ck_assert_int_eq(accept_of("application/cbor;q=0.5;ext=1, application/json;Q=0.50"), 60);
}
END_TEST

START_TEST(test_first_type_wins_on_equal_q)
{
    ck_assert_int_eq(accept_of("application/cbor, application/json"), 60);
    ck_assert_int_eq(accept_of("application/json;q=1.000, application/cbor;q=1"), 50);
}
END_TEST

START_TEST(test_q_zero_entries_are_ignored)
{
    ck_assert_int_eq(accept_of("*/*;q=0, application/json"), 50);
    ck_assert_int_eq(accept_of("application/cbor;q=0, application/json;q=0.001"), 50);
}
END_TEST

START_TEST(test_only_unmappable_types_are_not_acceptable)
{
    ck_assert_int_eq(accept_of("text/html"), -406);
    ck_assert_int_eq(accept_of("text/html, image/avif;q=0.3"), -406);
    ck_assert_int_eq(accept_of("application/json;q=0"), -406);
}
END_TEST

START_TEST(test_malformed_accept_elements_are_skipped)
{
    ck_assert_int_eq(accept_of("json, application/cbor"), 60);
    ck_assert_int_eq(accept_of("application/json;q=2, application/cbor;q=0.1"), 60);
    ck_assert_int_eq(accept_of("application/json;q=0.1234"), -1);
}
END_TEST

START_TEST(test_accept_maps_parameters_and_coap_payload)
{
    ck_assert_int_eq(accept_of("text/plain; charset=utf-8; q=0.8"), 0);
    ck_assert_int_eq(accept_of("application/coap-payload;cf=11050"), 11050);
    ck_assert_int_eq(accept_of("application/eat+cwt; eat_profile=\"tag:psacertified.org,2019:psa#legacy\""),
                     10004);
}
END_TEST

/* ==== Methods ===================================================================================== */

static const struct {
    const char *http;
    enum px_status status;
    uint8_t coap;
    bool head;
} method_rows[] = {
    {"GET", PX_OK, CO_GET, false},
    {"HEAD", PX_OK, CO_GET, true},
    {"POST", PX_OK, CO_POST, false},
    {"PUT", PX_OK, CO_PUT, false},
    {"DELETE", PX_OK, CO_DELETE, false},
    {"FETCH", PX_OK, CO_FETCH, false},
    {"PATCH", PX_OK, CO_PATCH, false},
    {"iPATCH", PX_OK, CO_IPATCH, false},
    {"IPATCH", PX_OK, CO_IPATCH, false},
    {"OPTIONS", PX_ERR_NOT_IMPLEMENTED, 0, false},
    {"TRACE", PX_ERR_NOT_IMPLEMENTED, 0, false},
    {"CONNECT", PX_ERR_NOT_IMPLEMENTED, 0, false},
    {"PROPFIND", PX_ERR_NOT_IMPLEMENTED, 0, false},
    {"get", PX_ERR_NOT_IMPLEMENTED, 0, false},
    {"", PX_ERR_NOT_IMPLEMENTED, 0, false},
};

START_TEST(test_http_methods_map_to_coap_methods)
{
    uint8_t code = 0;
    bool head = true;
    code = co_method_from_http(method_rows[_i].http, &head);
    ck_assert_int_eq(code != 0 ? PX_OK : PX_ERR_NOT_IMPLEMENTED, method_rows[_i].status);
    if (method_rows[_i].status == PX_OK) {
        ck_assert_uint_eq(code, method_rows[_i].coap);
    }
    ck_assert(head == method_rows[_i].head);
    (void)code;
}
END_TEST

START_TEST(test_coap_method_names)
{
    ck_assert_str_eq(co_method_name(CO_GET), "GET");
    ck_assert_str_eq(co_method_name(CO_IPATCH), "iPATCH");
    ck_assert_ptr_null(co_method_name(0));
    ck_assert_ptr_null(co_method_name(CO_CODE(2, 5)));
}
END_TEST

START_TEST(test_options_method_is_501)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "OPTIONS", .rest = ""}),
                     PX_ERR_NOT_IMPLEMENTED);
    ck_assert_ptr_nonnull(detail);
}
END_TEST

START_TEST(test_head_becomes_get_without_body)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "HEAD", .rest = "x", .body_len = 3}), PX_OK);
    ck_assert_uint_eq(req.code, CO_GET);
    ck_assert(req.head);
    ck_assert(!req.has_body);
}
END_TEST

START_TEST(test_body_on_get_or_delete_is_ignored)
{
    ck_assert_int_eq(to_coap((struct px_http_request){
                         .method = "GET", .rest = "x", .content_type = "text/html", .body_len = 3}),
                     PX_OK);
    ck_assert(!req.has_body);
    ck_assert_str_eq(dump(&req.opts), "11:x");
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "DELETE", .rest = "x", .body_len = 3}),
                     PX_OK);
    ck_assert(!req.has_body);
}
END_TEST

/* ==== URI: path =================================================================================== */

static const struct {
    const char *in;
    long out_len;
    const char *out;
} decode_rows[] = {
    {"abc", 3, "abc"}, {"%7E", 1, "~"},    {"%7e", 1, "~"},    {"a%2Fb", 3, "a/b"},
    {"a+b", 3, "a+b"}, {"%25", 1, "%"},    {"", 0, ""},        {"%G1", -1, NULL},
    {"%", -1, NULL},   {"ab%4", -1, NULL}, {"%%41", -1, NULL}, {"%00", 1, "\0"},
};

START_TEST(test_percent_decoding_edge_cases)
{
    uint8_t out[16];
    long n = cg_pct_decode(decode_rows[_i].in, strlen(decode_rows[_i].in), out, sizeof(out));
    ck_assert_msg(n == decode_rows[_i].out_len, "\"%s\" decoded to length %ld", decode_rows[_i].in, n);
    if (n >= 0) {
        ck_assert(memcmp(out, decode_rows[_i].out, (size_t)n) == 0);
    }
}
END_TEST

START_TEST(test_percent_decoding_needs_room)
{
    uint8_t out[2];
    ck_assert_int_eq(cg_pct_decode("abc", 3, out, sizeof(out)), -1);
    ck_assert_int_eq(cg_pct_decode("%41%42", 6, out, sizeof(out)), 2);
}
END_TEST

static const struct {
    const char *rest;
    enum px_status status;
    const char *opts;
} path_rows[] = {
    {"", PX_OK, ""},
    {"a", PX_OK, "11:a"},
    {"a/b", PX_OK, "11:a 11:b"},
    {"a/", PX_OK, "11:a 11:"},
    {"a//b", PX_OK, "11:a 11: 11:b"},
    {"/", PX_OK, "11: 11:"},
    {"a%2Fb", PX_OK, "11:a/b"},
    {"%7Euser", PX_OK, "11:~user"},
    {"caf%C3%A9", PX_OK, "11:caf\\xc3\\xa9"},
    {"a+b", PX_OK, "11:a+b"},
    {"a%20b", PX_OK, "11:a\\x20b"},
    {"%G1", PX_ERR_BAD_REQUEST, ""},
    {"a/b%", PX_ERR_BAD_REQUEST, ""},
    {".", PX_ERR_BAD_REQUEST, ""},
    {"a/../b", PX_ERR_BAD_REQUEST, ""},
    {"a/%2E%2E", PX_ERR_BAD_REQUEST, ""},
    {"a/%2e", PX_ERR_BAD_REQUEST, ""},
    {"...", PX_OK, "11:..."},
    {".hidden", PX_OK, "11:.hidden"},
};

START_TEST(test_path_segments_become_uri_path_options)
{
    enum px_status st = to_coap((struct px_http_request){.method = "GET", .rest = path_rows[_i].rest});
    ck_assert_msg(st == path_rows[_i].status, "\"%s\" gave %s", path_rows[_i].rest, px_strerror(st));
    if (st == PX_OK) {
        ck_assert_str_eq(dump(&req.opts), path_rows[_i].opts);
    } else {
        ck_assert_ptr_nonnull(detail);
    }
}
END_TEST

START_TEST(test_null_path_is_like_empty_path)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET"}), PX_OK);
    ck_assert_uint_eq(req.opts.count, 0);
}
END_TEST

START_TEST(test_base_path_is_prepended)
{
    static const char *const b[] = {"base", "a b"};
    base = b;
    nbase = 2;
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = "x"}), PX_OK);
    ck_assert_str_eq(dump(&req.opts), "11:base 11:a\\x20b 11:x");
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = ""}), PX_OK);
    ck_assert_str_eq(dump(&req.opts), "11:base 11:a\\x20b");
}
END_TEST

START_TEST(test_segment_of_255_bytes_passes_and_256_is_too_long)
{
    char rest[3 * 256 + 1];
    memset(rest, 'a', 255);
    rest[255] = '\0';
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = rest}), PX_OK);
    ck_assert_uint_eq(req.opts.opt[0].len, 255);
    strcat(rest, "a");
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = rest}), PX_ERR_URI_TOO_LONG);
    /* the limit is on decoded bytes: 255 escapes are 765 characters but 255 bytes */
    for (int i = 0; i < 255; i++) {
        memcpy(rest + 3 * i, "%41", 3);
    }
    rest[3 * 255] = '\0';
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = rest}), PX_OK);
}
END_TEST

START_TEST(test_too_many_segments_is_uri_too_long)
{
    char rest[2 * (CO_OPT_MAX + 1)];
    for (int i = 0; i < CO_OPT_MAX + 1; i++) {
        memcpy(rest + 2 * i, "a/", 2);
    }
    rest[2 * CO_OPT_MAX + 1] = '\0'; /* 65 segments */
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = rest}), PX_ERR_URI_TOO_LONG);
    rest[2 * CO_OPT_MAX - 1] = '\0'; /* 64 segments */
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = rest}), PX_OK);
    ck_assert_uint_eq(req.opts.count, CO_OPT_MAX);
}
END_TEST

START_TEST(test_too_long_base_segment_is_uri_too_long)
{
    static char longseg[300];
    static const char *b[1] = {longseg};
    memset(longseg, 'b', 256);
    base = b;
    nbase = 1;
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = ""}), PX_ERR_URI_TOO_LONG);
}
END_TEST

/* ==== URI: query ================================================================================== */

static const struct {
    const char *query;
    enum px_status status;
    const char *opts;
} query_rows[] = {
    {NULL, PX_OK, ""},
    {"", PX_OK, "15:"},
    {"a=1", PX_OK, "15:a=1"},
    {"a=1&b=2", PX_OK, "15:a=1 15:b=2"},
    {"a&&b&", PX_OK, "15:a 15: 15:b 15:"},
    {"q=a+b", PX_OK, "15:q=a+b"},
    {"q=a%2Bb%20c", PX_OK, "15:q=a+b\\x20c"},
    {"x=1%262", PX_OK, "15:x=1&2"},
    {"p=%2F..%2F", PX_OK, "15:p=/../"},
    {"a=%zz", PX_ERR_BAD_REQUEST, ""},
    {"a=%", PX_ERR_BAD_REQUEST, ""},
};

START_TEST(test_query_items_become_uri_query_options)
{
    enum px_status st =
        to_coap((struct px_http_request){.method = "GET", .rest = "", .query = query_rows[_i].query});
    ck_assert_int_eq(st, query_rows[_i].status);
    if (st == PX_OK) {
        ck_assert_str_eq(dump(&req.opts), query_rows[_i].opts);
    }
}
END_TEST

START_TEST(test_query_item_of_256_bytes_is_uri_too_long)
{
    char q[260];
    memset(q, 'q', 256);
    q[256] = '\0';
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = "", .query = q}),
                     PX_ERR_URI_TOO_LONG);
}
END_TEST

/* ==== Request options ============================================================================= */

START_TEST(test_options_are_in_ascending_number_order)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT",
                                                      .rest = "a/b",
                                                      .query = "k=v",
                                                      .content_type = "application/json",
                                                      .accept = "application/cbor",
                                                      .if_match = "\"0a1b\"",
                                                      .if_none_match = "*",
                                                      .body_len = 2}),
                     PX_OK);
    ck_assert_str_eq(dump(&req.opts), "1:0a1b 5: 11:a 11:b 12#50 15:k=v 17#60");
    for (unsigned i = 1; i < req.opts.count; i++) {
        ck_assert_uint_le(req.opts.opt[i - 1].number, req.opts.opt[i].number);
    }
    ck_assert(req.has_body);
    ck_assert_ptr_null(detail);
}
END_TEST

START_TEST(test_text_plain_content_format_0_is_an_empty_option)
{
    ck_assert_int_eq(to_coap((struct px_http_request){
                         .method = "POST", .rest = "", .content_type = "text/plain", .body_len = 1}),
                     PX_OK);
    ck_assert_str_eq(dump(&req.opts), "12#0");
    ck_assert_uint_eq(req.opts.opt[0].len, 0);
}
END_TEST

START_TEST(test_unmappable_content_type_is_415_with_a_reason)
{
    ck_assert_int_eq(to_coap((struct px_http_request){
                         .method = "PUT", .rest = "x", .content_type = "text/html", .body_len = 4}),
                     PX_ERR_UNSUPPORTED_MEDIA);
    ck_assert_ptr_nonnull(detail);
    ck_assert_ptr_nonnull(strstr(detail, "Content-Format"));
    ck_assert_int_eq(px_status_http(PX_ERR_UNSUPPORTED_MEDIA), 415);
}
END_TEST

START_TEST(test_content_type_without_body_is_not_sent)
{
    ck_assert_int_eq(
        to_coap((struct px_http_request){.method = "POST", .rest = "x", .content_type = "text/html"}), PX_OK);
    ck_assert(!req.has_body);
    ck_assert_str_eq(dump(&req.opts), "11:x");
}
END_TEST

START_TEST(test_body_without_content_type_has_no_content_format)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "POST", .rest = "x", .body_len = 5}), PX_OK);
    ck_assert(req.has_body);
    ck_assert_str_eq(dump(&req.opts), "11:x");
}
END_TEST

START_TEST(test_unacceptable_accept_is_406)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = "x", .accept = "text/html"}),
                     PX_ERR_NOT_ACCEPTABLE);
    ck_assert_ptr_nonnull(detail);
}
END_TEST

START_TEST(test_if_match_star_is_an_empty_if_match)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_match = " * "}),
                     PX_OK);
    ck_assert_str_eq(dump(&req.opts), "1: 11:x");
}
END_TEST

START_TEST(test_if_match_list_keeps_only_our_strong_tags)
{
    ck_assert_int_eq(to_coap((struct px_http_request){
                         .method = "PUT", .rest = "x", .if_match = "\"01\", W/\"02\", \"foreign\",\"0304\""}),
                     PX_OK);
    ck_assert_str_eq(dump(&req.opts), "1:01 1:0304 11:x");
}
END_TEST

START_TEST(test_if_match_with_only_foreign_tags_is_412)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_match = "\"xyz\""}),
                     PX_ERR_PRECONDITION_FAILED);
    ck_assert_int_eq(px_status_http(PX_ERR_PRECONDITION_FAILED), 412);
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_match = "W/\"0a\""}),
                     PX_ERR_PRECONDITION_FAILED);
}
END_TEST

START_TEST(test_malformed_if_match_is_400)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_match = "0a1b"}),
                     PX_ERR_BAD_REQUEST);
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_match = "\"0a"}),
                     PX_ERR_BAD_REQUEST);
}
END_TEST

START_TEST(test_checks_answer_in_http_order)
{
    /* a bad URI wins over a bad Content-Type, which wins over a failed precondition */
    ck_assert_int_eq(
        to_coap((struct px_http_request){
            .method = "PUT", .rest = "..", .content_type = "x/y", .if_match = "\"zz\"", .body_len = 1}),
        PX_ERR_BAD_REQUEST);
    ck_assert_int_eq(
        to_coap((struct px_http_request){
            .method = "PUT", .rest = "a", .content_type = "x/y", .if_match = "\"zz\"", .body_len = 1}),
        PX_ERR_UNSUPPORTED_MEDIA);
}
END_TEST

START_TEST(test_if_none_match_star_goes_upstream_on_put_only)
{
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_none_match = "*"}),
                     PX_OK);
    ck_assert_str_eq(dump(&req.opts), "5: 11:x");
    ck_assert_int_eq(to_coap((struct px_http_request){.method = "GET", .rest = "x", .if_none_match = "*"}),
                     PX_OK);
    ck_assert_str_eq(dump(&req.opts), "11:x");
}
END_TEST

START_TEST(test_if_none_match_entity_tag_is_left_to_the_cache)
{
    ck_assert_int_eq(
        to_coap((struct px_http_request){.method = "GET", .rest = "x", .if_none_match = "\"0a1b\""}), PX_OK);
    ck_assert_str_eq(dump(&req.opts), "11:x");
}
END_TEST

START_TEST(test_if_none_match_entity_tags_on_a_changing_method_are_refused_not_dropped)
{
    ck_assert_int_eq(
        to_coap((struct px_http_request){.method = "PUT", .rest = "x", .if_none_match = "\"0a1b\""}),
        PX_ERR_NOT_IMPLEMENTED);
    ck_assert_ptr_nonnull(detail);
    ck_assert_int_eq(
        to_coap((struct px_http_request){.method = "POST", .rest = "x", .if_none_match = "W/\"x\", \"y\""}),
        PX_ERR_NOT_IMPLEMENTED);
}
END_TEST

/* ==== ETag ======================================================================================== */

START_TEST(test_observe_freshness_follows_rfc_7641_section_3_4)
{
    const uint64_t t = 1000000;
    ck_assert(px_observe_is_newer(5, t, 6, t));
    ck_assert(!px_observe_is_newer(6, t, 5, t));       /* reordered: older */
    ck_assert(!px_observe_is_newer(6, t, 6, t));       /* duplicate */
    ck_assert(px_observe_is_newer(0xfffffe, t, 1, t)); /* wrapped around 2^24 */
    ck_assert(!px_observe_is_newer(1, t, 0xfffffe, t));
    ck_assert(px_observe_is_newer(1, t, (1u << 23), t));  /* just under half ahead */
    ck_assert(!px_observe_is_newer(0, t, (1u << 23), t)); /* exactly half: not newer */
    ck_assert(px_observe_is_newer(6, t, 5, t + 128001));  /* 128 s later wins anyway */
    ck_assert(!px_observe_is_newer(6, t, 5, t + 128000));
}
END_TEST

START_TEST(test_etag_round_trips_for_every_length)
{
    uint8_t tag[8] = {0x00, 0xff, 0x22, 0x5c, 0x7f, 0x80, 0x0a, 0x1b}, back[8];
    char text[24];
    for (size_t len = 1; len <= 8; len++) {
        ck_assert_uint_eq(px_etag_format(tag, len, text, sizeof(text)), 2 * len + 2);
        ck_assert_int_eq(px_etag_parse(text, back), (long)len);
        ck_assert(memcmp(tag, back, len) == 0);
    }
    ck_assert_str_eq(text, "\"00ff225c7f800a1b\"");
}
END_TEST

START_TEST(test_etag_format_rejects_bad_lengths_and_small_buffers)
{
    uint8_t tag[9] = {0};
    char text[24];
    ck_assert_uint_eq(px_etag_format(tag, 0, text, sizeof(text)), 0);
    ck_assert_str_eq(text, "");
    ck_assert_uint_eq(px_etag_format(tag, 9, text, sizeof(text)), 0);
    ck_assert_uint_eq(px_etag_format(tag, 2, text, 6), 0);
    ck_assert_uint_eq(px_etag_format(tag, 2, text, 7), 6);
}
END_TEST

START_TEST(test_etag_parse_accepts_only_our_tags)
{
    static const char *const foreign[] = {
        "W/\"0a\"", "0a", "\"\"", "\"0\"", "\"0A\"", "\"0g\"", "\"0a1b2c3d4e5f6a7b8c\"", "\"0a", "*", ""};
    uint8_t out[8];
    for (size_t i = 0; i < COUNT(foreign); i++) {
        ck_assert_msg(px_etag_parse(foreign[i], out) == -1, "%s parsed", foreign[i]);
    }
    ck_assert_int_eq(px_etag_parse(" \"0a\"\t", out), 1);
    ck_assert_int_eq(px_etag_parse(NULL, out), -1);
}
END_TEST

/* ==== Outcomes and problem+json =================================================================== */

static const struct {
    enum px_status status;
    int http;
    const char *slug;
} outcome_rows[] = {
    {PX_OK, 200, "ok"},
    {PX_ERR_BAD_REQUEST, 400, "bad-request"},
    {PX_ERR_NO_ROUTE, 404, "no-route"},
    {PX_ERR_METHOD_NOT_ALLOWED, 405, "method-not-allowed"},
    {PX_ERR_NOT_ACCEPTABLE, 406, "not-acceptable"},
    {PX_ERR_TOO_LARGE, 413, "content-too-large"},
    {PX_ERR_URI_TOO_LONG, 414, "uri-too-long"},
    {PX_ERR_UNSUPPORTED_MEDIA, 415, "unsupported-media-type"},
    {PX_ERR_INTERNAL, 500, "internal-error"},
    {PX_ERR_NOT_IMPLEMENTED, 501, "not-implemented"},
    {PX_ERR_BAD_GATEWAY, 502, "upstream-error"},
    {PX_ERR_UNAVAILABLE, 503, "service-unavailable"},
    {PX_ERR_TIMEOUT, 504, "upstream-timeout"},
    {PX_ERR_PRECONDITION_FAILED, 412, "precondition-failed"},
};

START_TEST(test_each_outcome_has_status_title_and_slug)
{
    ck_assert_int_eq(px_status_http(outcome_rows[_i].status), outcome_rows[_i].http);
    ck_assert_str_eq(px_status_slug(outcome_rows[_i].status), outcome_rows[_i].slug);
    ck_assert_ptr_nonnull(px_strerror(outcome_rows[_i].status));
    ck_assert_ptr_null(strpbrk(px_strerror(outcome_rows[_i].status), "\"\\"));
    ck_assert_str_ne(px_http_reason(outcome_rows[_i].http), "");
}
END_TEST

START_TEST(test_timeout_title_and_reason_phrases)
{
    ck_assert_str_eq(px_strerror(PX_ERR_TIMEOUT), "Upstream Timeout");
    ck_assert_str_eq(px_http_reason(504), "Gateway Timeout");
    ck_assert_str_eq(px_http_reason(204), "No Content");
    ck_assert_str_eq(px_http_reason(299), "");
    ck_assert_str_eq(px_status_slug((enum px_status)999), "internal-error");
}
END_TEST

START_TEST(test_problem_json_has_type_title_status_detail)
{
    char buf[512];
    size_t n = px_problem_json(buf, sizeof(buf), PX_ERR_TIMEOUT, "sensors did not answer in 5000 ms");
    ck_assert_str_eq(buf, "{\"type\":\"urn:coapgw:problem:upstream-timeout\",\"title\":\"Upstream Timeout\","
                          "\"status\":504,\"detail\":\"sensors did not answer in 5000 ms\"}");
    ck_assert_uint_eq(n, strlen(buf));
    px_problem_json(buf, sizeof(buf), PX_ERR_NO_ROUTE, NULL);
    ck_assert_str_eq(buf, "{\"type\":\"urn:coapgw:problem:no-route\",\"title\":\"No Route\",\"status\":404}");
}
END_TEST

START_TEST(test_problem_json_escapes_quotes_backslashes_and_controls)
{
    char buf[512];
    px_problem_json(buf, sizeof(buf), PX_ERR_BAD_GATEWAY, "say \"hi\"\\\n\t\x01 caf\xc3\xa9 \xff!");
    ck_assert_ptr_nonnull(strstr(buf, "\"detail\":\"say \\\"hi\\\"\\\\\\u000a\\u0009\\u0001 caf\xc3\xa9 "
                                      "\\ufffd!\"}"));
}
END_TEST

START_TEST(test_problem_json_truncates_detail_and_stays_valid)
{
    char buf[128], big[400];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    size_t n = px_problem_json(buf, sizeof(buf), PX_ERR_BAD_GATEWAY, big);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_uint_lt(n, sizeof(buf));
    ck_assert_str_eq(buf + n - 2, "\"}");
    ck_assert(buf[n - 3] == '"' && buf[n - 4] == '\\'); /* the last escape is whole */
}
END_TEST

START_TEST(test_problem_json_does_not_cut_utf8_characters)
{
    char buf[110], big[200] = "";
    for (int i = 0; i < 60; i++) {
        strcat(big, "\xc3\xa9");
    }
    size_t n = px_problem_json(buf, sizeof(buf), PX_ERR_TIMEOUT, big);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_str_eq(buf + n - 4, "\xc3\xa9\"}");
}
END_TEST

START_TEST(test_problem_json_in_64_bytes_is_minimal_but_valid)
{
    char buf[64];
    px_problem_json(buf, sizeof(buf), PX_ERR_UNSUPPORTED_MEDIA, "x");
    ck_assert_str_eq(buf, "{\"status\":415}");
}
END_TEST

/* ==== Option sets ================================================================================= */

START_TEST(test_optset_is_full_at_64_options)
{
    static struct co_optset set;
    co_optset_clear(&set);
    for (int i = 0; i < CO_OPT_MAX; i++) {
        ck_assert_int_eq(co_optset_add(&set, CO_OPT_URI_PATH, "a", 1), 0);
    }
    ck_assert_int_eq(co_optset_add(&set, CO_OPT_URI_PATH, "a", 1), -1);
    ck_assert_uint_eq(set.count, CO_OPT_MAX);
}
END_TEST

START_TEST(test_optset_is_full_at_8192_bytes)
{
    static uint8_t big[CO_OPTBUF_MAX];
    static struct co_optset set;
    co_optset_clear(&set);
    ck_assert_int_eq(co_optset_add(&set, 60, big, CO_OPTBUF_MAX - 1), 0);
    ck_assert_int_eq(co_optset_add(&set, 60, big, 2), -1);
    ck_assert_int_eq(co_optset_add(&set, 60, big, 1), 0);
    ck_assert_int_eq(co_optset_add(&set, 60, NULL, 0), 0);
    ck_assert_uint_eq(set.used, CO_OPTBUF_MAX);
}
END_TEST

START_TEST(test_uint_options_use_the_minimal_encoding)
{
    static struct co_optset set;
    co_optset_clear(&set);
    co_optset_add_uint(&set, CO_OPT_MAX_AGE, 0);
    co_optset_add_uint(&set, CO_OPT_MAX_AGE, 255);
    co_optset_add_uint(&set, CO_OPT_MAX_AGE, 256);
    co_optset_add_uint(&set, CO_OPT_MAX_AGE, 0x01000000);
    ck_assert_uint_eq(set.opt[0].len, 0);
    ck_assert_uint_eq(set.opt[1].len, 1);
    ck_assert_uint_eq(set.opt[2].len, 2);
    ck_assert_uint_eq(set.opt[3].len, 4);
    ck_assert_uint_eq(co_opt_uint(co_opt_value(&set, &set.opt[3]), 4), 0x01000000);
    ck_assert_uint_eq(co_opt_uint((const uint8_t *)"\1\2\3\4\5", 5), UINT32_MAX);
}
END_TEST

START_TEST(test_find_walks_options_of_one_number)
{
    static struct co_optset set;
    co_optset_clear(&set);
    add_text(&set, CO_OPT_URI_PATH, "a");
    add_text(&set, CO_OPT_URI_QUERY, "q");
    add_text(&set, CO_OPT_URI_PATH, "b");
    const struct co_opt *o = co_optset_find(&set, CO_OPT_URI_PATH, 0);
    ck_assert_int_eq(co_opt_value(&set, o)[0], 'a');
    o = co_optset_find(&set, CO_OPT_URI_PATH, (unsigned)(o - set.opt) + 1);
    ck_assert_int_eq(co_opt_value(&set, o)[0], 'b');
    ck_assert_ptr_null(co_optset_find(&set, CO_OPT_URI_PATH, (unsigned)(o - set.opt) + 1));
    ck_assert_ptr_null(co_optset_find(&set, CO_OPT_ACCEPT, 0));
}
END_TEST

/* ==== Suite ======================================================================================= */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, reset, NULL);
    return tc;
}

static Suite *translate_suite(void)
{
    Suite *s = suite_create("translate");
    TCase *tc = tcase("response codes");
    tcase_add_loop_test(tc, test_every_table_2_row_maps_as_rfc_8075_says, 0, (int)COUNT(table_2));
    tcase_add_test(tc, test_coap_2_05_becomes_http_200);
    tcase_add_test(tc, test_coap_2_04_without_payload_becomes_204_without_body);
    tcase_add_test(tc, test_coap_2_03_becomes_304_without_body);
    tcase_add_test(tc, test_coap_4_05_is_405_with_allow_only_when_known);
    tcase_add_test(tc, test_unknown_codes_map_to_their_class);
    tcase_add_test(tc, test_non_response_codes_are_bad_gateway);
    tcase_add_test(tc, test_code_format_is_dotted);
    suite_add_tcase(s, tc);

    tc = tcase("response headers");
    tcase_add_test(tc, test_max_age_becomes_cache_control_for_cacheable_codes);
    tcase_add_test(tc, test_absent_max_age_means_60_seconds);
    tcase_add_test(tc, test_coap_5_03_retry_after_is_max_age_or_60);
    tcase_add_test(tc, test_content_format_becomes_content_type);
    tcase_add_test(tc, test_unknown_content_format_becomes_coap_payload);
    tcase_add_test(tc, test_diagnostic_payload_without_format_is_utf8_text);
    tcase_add_test(tc, test_success_payload_without_format_is_octet_stream);
    tcase_add_test(tc, test_etag_becomes_quoted_hex_entity_tag);
    suite_add_tcase(s, tc);

    tc = tcase("location");
    tcase_add_test(tc, test_location_path_maps_under_the_route_prefix);
    tcase_add_test(tc, test_location_strips_the_upstream_base_path);
    tcase_add_test(tc, test_location_outside_the_base_path_is_dropped);
    tcase_add_test(tc, test_location_segments_are_percent_encoded);
    tcase_add_test(tc, test_location_query_items_are_joined_with_ampersand);
    tcase_add_test(tc, test_location_query_alone_is_a_relative_reference);
    tcase_add_test(tc, test_location_with_dot_segments_is_dropped);
    tcase_add_test(tc, test_location_too_long_is_dropped_not_cut);
    suite_add_tcase(s, tc);

    tc = tcase("media types");
    tcase_add_loop_test(tc, test_content_formats_have_their_iana_media_types, 0, (int)COUNT(registry_sample));
    tcase_add_test(tc, test_every_known_format_round_trips);
    tcase_add_test(tc, test_unknown_format_is_coap_payload_and_maps_back);
    tcase_add_test(tc, test_media_type_case_and_whitespace_are_tolerated);
    tcase_add_test(tc, test_text_plain_is_mapped_only_as_utf8_or_its_subset_ascii);
    tcase_add_test(tc, test_distinguishing_parameters_must_match_an_entry);
    tcase_add_test(tc, test_unmappable_or_malformed_media_types_have_no_format);
    tcase_add_test(tc, test_format_to_media_does_not_overflow);
    suite_add_tcase(s, tc);

    tc = tcase("accept");
    tcase_add_test(tc, test_absent_or_empty_accept_sends_no_accept);
    tcase_add_test(tc, test_wildcards_send_no_accept);
    tcase_add_test(tc, test_browser_accept_sends_no_accept);
    tcase_add_test(tc, test_highest_q_mappable_type_wins);
    tcase_add_test(tc, test_first_type_wins_on_equal_q);
    tcase_add_test(tc, test_q_zero_entries_are_ignored);
    tcase_add_test(tc, test_only_unmappable_types_are_not_acceptable);
    tcase_add_test(tc, test_malformed_accept_elements_are_skipped);
    tcase_add_test(tc, test_accept_maps_parameters_and_coap_payload);
    suite_add_tcase(s, tc);

    tc = tcase("methods");
    tcase_add_loop_test(tc, test_http_methods_map_to_coap_methods, 0, (int)COUNT(method_rows));
    tcase_add_test(tc, test_coap_method_names);
    tcase_add_test(tc, test_options_method_is_501);
    tcase_add_test(tc, test_head_becomes_get_without_body);
    tcase_add_test(tc, test_body_on_get_or_delete_is_ignored);
    suite_add_tcase(s, tc);

    tc = tcase("uri path");
    tcase_add_loop_test(tc, test_percent_decoding_edge_cases, 0, (int)COUNT(decode_rows));
    tcase_add_test(tc, test_percent_decoding_needs_room);
    tcase_add_loop_test(tc, test_path_segments_become_uri_path_options, 0, (int)COUNT(path_rows));
    tcase_add_test(tc, test_null_path_is_like_empty_path);
    tcase_add_test(tc, test_base_path_is_prepended);
    tcase_add_test(tc, test_segment_of_255_bytes_passes_and_256_is_too_long);
    tcase_add_test(tc, test_too_many_segments_is_uri_too_long);
    tcase_add_test(tc, test_too_long_base_segment_is_uri_too_long);
    suite_add_tcase(s, tc);

    tc = tcase("uri query");
    tcase_add_loop_test(tc, test_query_items_become_uri_query_options, 0, (int)COUNT(query_rows));
    tcase_add_test(tc, test_query_item_of_256_bytes_is_uri_too_long);
    suite_add_tcase(s, tc);

    tc = tcase("request options");
    tcase_add_test(tc, test_options_are_in_ascending_number_order);
    tcase_add_test(tc, test_text_plain_content_format_0_is_an_empty_option);
    tcase_add_test(tc, test_unmappable_content_type_is_415_with_a_reason);
    tcase_add_test(tc, test_content_type_without_body_is_not_sent);
    tcase_add_test(tc, test_body_without_content_type_has_no_content_format);
    tcase_add_test(tc, test_unacceptable_accept_is_406);
    tcase_add_test(tc, test_if_match_star_is_an_empty_if_match);
    tcase_add_test(tc, test_if_match_list_keeps_only_our_strong_tags);
    tcase_add_test(tc, test_if_match_with_only_foreign_tags_is_412);
    tcase_add_test(tc, test_malformed_if_match_is_400);
    tcase_add_test(tc, test_checks_answer_in_http_order);
    tcase_add_test(tc, test_if_none_match_star_goes_upstream_on_put_only);
    tcase_add_test(tc, test_if_none_match_entity_tag_is_left_to_the_cache);
    tcase_add_test(tc, test_if_none_match_entity_tags_on_a_changing_method_are_refused_not_dropped);
    suite_add_tcase(s, tc);

    tc = tcase("etag");
    tcase_add_test(tc, test_etag_round_trips_for_every_length);
    tcase_add_test(tc, test_etag_format_rejects_bad_lengths_and_small_buffers);
    tcase_add_test(tc, test_etag_parse_accepts_only_our_tags);
    suite_add_tcase(s, tc);

    tc = tcase("problem json");
    tcase_add_loop_test(tc, test_each_outcome_has_status_title_and_slug, 0, (int)COUNT(outcome_rows));
    tcase_add_test(tc, test_timeout_title_and_reason_phrases);
    tcase_add_test(tc, test_problem_json_has_type_title_status_detail);
    tcase_add_test(tc, test_problem_json_escapes_quotes_backslashes_and_controls);
    tcase_add_test(tc, test_problem_json_truncates_detail_and_stays_valid);
    tcase_add_test(tc, test_problem_json_does_not_cut_utf8_characters);
    tcase_add_test(tc, test_problem_json_in_64_bytes_is_minimal_but_valid);
    suite_add_tcase(s, tc);

    tc = tcase("option sets");
    tcase_add_test(tc, test_optset_is_full_at_64_options);
    tcase_add_test(tc, test_optset_is_full_at_8192_bytes);
    tcase_add_test(tc, test_uint_options_use_the_minimal_encoding);
    tcase_add_test(tc, test_find_walks_options_of_one_number);
    tcase_add_test(tc, test_observe_freshness_follows_rfc_7641_section_3_4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(translate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
