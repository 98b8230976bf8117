/* Unit tests for proxy/fproxy: RFC 8075 §5 target URIs in both forms, the allow-list grammar, the address
 * check (IPv4, IPv6, mapped, multicast, broadcast) and resolution that checks every address. Only names
 * that resolve offline are used: localhost and numeric spellings. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/fproxy.h"

/* ---- helpers ---- */

static int parse_q(const char *rest, const char *query, struct px_fp_target *t, const char **reason)
{
    *reason = NULL;
    return px_fp_target_parse(rest, strlen(rest), query, t, reason);
}

static int parse(const char *rest, struct px_fp_target *t)
{
    const char *reason;
    return parse_q(rest, NULL, t, &reason);
}

/* Asserts that rest (with query) is refused with 400 and a reason, and leaves nothing to free. */
static void assert_bad_q(const char *rest, const char *query)
{
    struct px_fp_target t;
    const char *reason = NULL;
    ck_assert_msg(parse_q(rest, query, &t, &reason) == 400, "accepted: %s", rest);
    ck_assert_ptr_nonnull(reason);
    ck_assert_ptr_null(t.storage);
}

static void assert_bad(const char *rest)
{
    assert_bad_q(rest, NULL);
}

static struct cg_addr_rule rule(const char *s)
{
    struct cg_addr_rule r;
    const char *reason = NULL;
    ck_assert_msg(cg_addr_rule_parse(s, &r, &reason) == 0, "rule %s: %s", s, reason ? reason : "");
    return r;
}

static struct sockaddr_storage sa(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    return ss;
}

/* Whether text (an address) with port passes the rules given as strings (NULL-terminated list). */
static bool allowed(const char *const *rules, const char *text, uint16_t port)
{
    struct cg_addr_rule r[8];
    size_t n = 0;
    struct sockaddr_storage ss = sa(text);
    while (rules[n] != NULL) {
        r[n] = rule(rules[n]);
        n++;
    }
    return cg_addr_allowed(r, n, &ss, port);
}

/* Parses rest as a target and resolves it against the rules; returns the status. */
static int resolve(const char *const *rules, const char *rest, struct sockaddr_storage *out)
{
    struct cg_addr_rule r[8];
    size_t n = 0;
    struct px_fp_target t;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *reason = NULL;
    int st;

    while (rules[n] != NULL) {
        r[n] = rule(rules[n]);
        n++;
    }
    ck_assert_msg(parse(rest, &t) == 0, "target %s", rest);
    st = px_fp_resolve(&t, r, n, out != NULL ? out : &ss, &len, &reason);
    if (st == 0) {
        ck_assert_uint_eq(len, (out != NULL ? out : &ss)->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                                               : sizeof(struct sockaddr_in6));
    } else {
        ck_assert_ptr_nonnull(reason);
    }
    px_fp_target_fini(&t);
    return st;
}

static const char *const only_127_0_0_2[] = {"127.0.0.2/32", NULL};
static const char *const net_127[] = {"127.0.0.0/8", NULL};
/* Many hosts files map localhost to ::1 as well, and every address of a name must pass. */
static const char *const loopback[] = {"127.0.0.0/8", "::1/128", NULL};

/* ==== Target URIs =============================================================================== */

START_TEST(test_default_form_gives_scheme_host_port_path_and_query)
{
    struct px_fp_target t;
    const char *reason;
    ck_assert_int_eq(parse_q("coap://sensor.example:61616/a/b%2Fc", "x=1&y", &t, &reason), 0);
    ck_assert_int_eq(t.scheme, PX_FP_COAP);
    ck_assert_int_eq(t.host_kind, PX_FP_HOST_NAME);
    ck_assert_str_eq(t.host, "sensor.example");
    ck_assert_uint_eq(t.port, 61616);
    ck_assert(t.port_given);
    ck_assert_str_eq(t.path, "a/b%2Fc");
    ck_assert_str_eq(t.query, "x=1&y");
    px_fp_target_fini(&t);
}
END_TEST

START_TEST(test_encoded_form_is_decoded_once_as_one_segment)
{
    struct px_fp_target t;
    ck_assert_int_eq(parse("coap%3A%2F%2Fs.example%3A5700%2Fkitchen%2Fa%252Fb%3Fk%3Dv", &t), 0);
    ck_assert_int_eq(t.scheme, PX_FP_COAP);
    ck_assert_str_eq(t.host, "s.example");
    ck_assert_uint_eq(t.port, 5700);
    /* The URI's own escape (%2F inside a segment) stays for the per-segment translation. */
    ck_assert_str_eq(t.path, "kitchen/a%2Fb");
    ck_assert_str_eq(t.query, "k=v");
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("COAPS%3a%2f%2f%5B::1%5D%2Fx", &t), 0);
    ck_assert_int_eq(t.scheme, PX_FP_COAPS);
    ck_assert_int_eq(t.host_kind, PX_FP_HOST_IPV6);
    ck_assert_str_eq(t.host, "::1");
    ck_assert_str_eq(t.path, "x");
    ck_assert_ptr_null(t.query);
    px_fp_target_fini(&t);
}
END_TEST

START_TEST(test_encoded_form_takes_the_request_query_but_not_two_queries)
{
    struct px_fp_target t;
    const char *reason;
    ck_assert_int_eq(parse_q("coap%3A%2F%2Fh%2Fp", "observe=next", &t, &reason), 0);
    ck_assert_str_eq(t.query, "observe=next");
    px_fp_target_fini(&t);
    assert_bad_q("coap%3A%2F%2Fh%2Fp%3Fa", "b");
}
END_TEST

START_TEST(test_encoded_form_must_be_the_only_segment)
{
    assert_bad("coap%3A%2F%2Fh%2Fp/more");
    assert_bad("coap%3A//h/p");
    assert_bad("coap%3A%2F%2Fh%2Fp/");
}
END_TEST

START_TEST(test_ports_default_by_scheme_and_an_empty_port_is_the_default)
{
    struct px_fp_target t;
    ck_assert_int_eq(parse("coap://h/x", &t), 0);
    ck_assert_uint_eq(t.port, 5683);
    ck_assert(!t.port_given);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coaps://h", &t), 0);
    ck_assert_uint_eq(t.port, 5684);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://h:/x", &t), 0);
    ck_assert_uint_eq(t.port, 5683);
    ck_assert(!t.port_given);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://[::1]:1", &t), 0);
    ck_assert_uint_eq(t.port, 1);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://h:065535", &t), 0);
    ck_assert_uint_eq(t.port, 65535);
    px_fp_target_fini(&t);
}
END_TEST

START_TEST(test_port_out_of_range_or_not_a_number_is_refused)
{
    assert_bad("coap://h:0/x");
    assert_bad("coap://h:65536/x");
    assert_bad("coap://h:99999999999999999999/x");
    assert_bad("coap://h:-1/x");
    assert_bad("coap://h:80a/x");
    assert_bad("coap://h:80:81/x");
    assert_bad("coap://[::1]x/");
}
END_TEST

START_TEST(test_scheme_is_case_insensitive_and_only_coap_or_coaps)
{
    struct px_fp_target t;
    ck_assert_int_eq(parse("CoAP://h/x", &t), 0);
    ck_assert_int_eq(t.scheme, PX_FP_COAP);
    px_fp_target_fini(&t);
    assert_bad("http://h/x");
    assert_bad("coap+tcp://h/x");
    assert_bad("http%3A%2F%2Fh%2Fx");
    assert_bad("coap:/h/x"); /* a client that merged "//" */
    assert_bad("coap:h/x");
    assert_bad("//h/x");
    assert_bad("h/x");
}
END_TEST

START_TEST(test_host_is_lower_cased_and_classified)
{
    struct px_fp_target t;
    ck_assert_int_eq(parse("coap://Sensor-1.Example_x/", &t), 0);
    ck_assert_str_eq(t.host, "sensor-1.example_x");
    ck_assert_int_eq(t.host_kind, PX_FP_HOST_NAME);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://192.0.2.1/", &t), 0);
    ck_assert_int_eq(t.host_kind, PX_FP_HOST_IPV4);
    px_fp_target_fini(&t);
    /* Not an RFC 3986 IPv4address: a reg-name, which resolution checks by what it resolves to. */
    ck_assert_int_eq(parse("coap://127.1/", &t), 0);
    ck_assert_int_eq(t.host_kind, PX_FP_HOST_NAME);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://[2001:DB8::A]/", &t), 0);
    ck_assert_int_eq(t.host_kind, PX_FP_HOST_IPV6);
    ck_assert_str_eq(t.host, "2001:db8::a");
    px_fp_target_fini(&t);
}
END_TEST

START_TEST(test_ipv6_literals_need_brackets_and_no_zone_id)
{
    assert_bad("coap://[fe80::1%25eth0]/x");
    assert_bad("coap%3A%2F%2F%5Bfe80::1%2525eth0%5D%2Fx");
    assert_bad("coap://[::1/x");
    assert_bad("coap://[]/x");
    assert_bad("coap://[v1.fe]/x");
    assert_bad("coap://[127.0.0.1]/x");
    assert_bad("coap://[::1::2]/x");
    assert_bad("coap://::1/x");
}
END_TEST

START_TEST(test_userinfo_is_refused)
{
    assert_bad("coap://user@h/x");
    assert_bad("coap://user:pw@h:5683/x");
    assert_bad("coap://127.0.0.2@127.0.0.1/x");
    assert_bad("coap%3A%2F%2Fu%40h%2Fx");
}
END_TEST

START_TEST(test_empty_host_is_refused)
{
    assert_bad("coap://");
    assert_bad("coap:///x");
    assert_bad("coap://:5683/x");
    assert_bad("coap://?q");
    assert_bad("coap%3A%2F%2F%2Fx");
}
END_TEST

START_TEST(test_fragments_are_refused)
{
    assert_bad("coap://h/x#frag");
    assert_bad("coap://h#frag");
    assert_bad("coap%3A%2F%2Fh%2Fx%23frag");
    assert_bad_q("coap://h/x", "a#b");
}
END_TEST

START_TEST(test_path_stays_raw_without_its_leading_slash)
{
    struct px_fp_target t;
    ck_assert_int_eq(parse("coap://h", &t), 0);
    ck_assert_str_eq(t.path, "");
    ck_assert_ptr_null(t.query);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://h/", &t), 0);
    ck_assert_str_eq(t.path, "");
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://h/a/", &t), 0);
    ck_assert_str_eq(t.path, "a/");
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://h/%7Euser/x%20y", &t), 0);
    ck_assert_str_eq(t.path, "%7Euser/x%20y");
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://h?", &t), 0);
    ck_assert_str_eq(t.path, "");
    ck_assert_str_eq(t.query, "");
    px_fp_target_fini(&t);
}
END_TEST

START_TEST(test_bytes_outside_uris_and_bad_escapes_are_refused)
{
    assert_bad("coap://h/a b");
    assert_bad("coap://h/a%zz");
    assert_bad("coap://h/a%4");
    assert_bad("coap://h/\xc3\xa9");
    assert_bad("coap%3A%2F%2Fh%2Fa%20b"); /* decodes to a space */
    assert_bad("coap%3A%2F%2Fh%00%2Fa");  /* decodes to a NUL */
    assert_bad("coap%3A%2F%2Fh%2Fa%2");
    assert_bad("coap%3A%2F%2Fh%2Fa%25zz");
    assert_bad_q("coap://h/x", "a b");
    assert_bad_q("coap://h/x", "a=%G0");
    assert_bad("coap://h%2Ex/");
    assert_bad("coap://h!x/");
}
END_TEST

START_TEST(test_missing_or_overlong_targets_are_refused)
{
    char rest[300] = "coap://";
    struct px_fp_target t;
    assert_bad("");
    memset(rest + 7, 'a', 256);
    rest[7 + 256] = '\0';
    assert_bad(rest);
    rest[7 + 255] = '\0';
    ck_assert_int_eq(parse(rest, &t), 0);
    ck_assert_uint_eq(strlen(t.host), 255);
    px_fp_target_fini(&t);
}
END_TEST

START_TEST(test_fini_is_idempotent_and_safe_after_an_error)
{
    struct px_fp_target t;
    ck_assert_int_eq(parse("coap://h/x", &t), 0);
    px_fp_target_fini(&t);
    px_fp_target_fini(&t);
    ck_assert_int_eq(parse("coap://user@h/x", &t), 400);
    px_fp_target_fini(&t);
}
END_TEST

/* ==== Rules ===================================================================================== */

START_TEST(test_rule_grammar_accepts_cidrs_addresses_and_ports)
{
    static const struct {
        const char *text;
        int family;
        unsigned len;
        uint16_t port;
    } cases[] = {
        {"127.0.0.2/32", AF_INET, 32, 0},
        {"10.0.0.0/8", AF_INET, 8, 0},
        {"192.0.2.10:5683", AF_INET, 32, 5683},
        {"192.0.2.0/24:5684", AF_INET, 24, 5684},
        {"127.0.0.2/32:*", AF_INET, 32, 0},
        {"0.0.0.0/0", AF_INET, 0, 0},
        {"[::1]:5683", AF_INET6, 128, 5683},
        {"[::1]", AF_INET6, 128, 0},
        {"[2001:db8::]/32:5683", AF_INET6, 32, 5683},
        {"[2001:db8::]/32:*", AF_INET6, 32, 0},
        {"::1/128", AF_INET6, 128, 0},
        {"::1", AF_INET6, 128, 0},
        {"2001:db8::/32", AF_INET6, 32, 0},
        {"::/0", AF_INET6, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cg_addr_rule r = rule(cases[i].text);
        ck_assert_msg(r.family == cases[i].family && r.len == cases[i].len && r.port == cases[i].port, "%s",
                      cases[i].text);
    }
    struct cg_addr_rule r = rule("192.0.2.10:5683");
    ck_assert_mem_eq(r.addr, "\xc0\x00\x02\x0a", 4);
}
END_TEST

START_TEST(test_bad_rules_are_refused_with_a_reason)
{
    static const char *const bad[] = {
        "",
        "*",
        "localhost",
        "127.1",
        "127.0.0.1/33",
        "10.0.0.0/",
        "10.0.0.0/8/",
        "10.0.0.0/-1",
        "10.0.0.0/0008",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:",
        "1.2.3.4:x",
        "1.2.3.4:80/8",
        "[::1",
        "[::1]x",
        "[::1]/129",
        "::1/128:5683",
        "::1/12a",
        "[1.2.3.4]",
        "fe80::1%eth0",
        "[fe80::1%25x]",
        "2001:db8::/129",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "[]",
        "[::1]:",
        "[::1]:*x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cg_addr_rule r;
        const char *reason = NULL;
        ck_assert_msg(cg_addr_rule_parse(bad[i], &r, &reason) == -1, "accepted rule \"%s\"", bad[i]);
        ck_assert_ptr_nonnull(reason);
    }
}
END_TEST

START_TEST(test_rules_with_address_bits_beyond_the_prefix_are_refused)
{
    struct cg_addr_rule r;
    const char *reason = NULL;
    ck_assert_int_eq(cg_addr_rule_parse("10.0.0.1/8", &r, &reason), -1);
    ck_assert_str_eq(reason, "address bits are set beyond the prefix length");
    ck_assert_int_eq(cg_addr_rule_parse("2001:db8::1/32", &r, &reason), -1);
    ck_assert_int_eq(cg_addr_rule_parse("[2001:db8::1]/64:5683", &r, &reason), -1);
}
END_TEST

START_TEST(test_mapped_rules_are_stored_as_ipv4_rules)
{
    struct cg_addr_rule r = rule("::ffff:127.0.0.0/104");
    ck_assert_int_eq(r.family, AF_INET);
    ck_assert_uint_eq(r.len, 8);
    ck_assert_mem_eq(r.addr, "\x7f\x00\x00\x00", 4);
    r = rule("[::ffff:192.0.2.1]:5683");
    ck_assert_int_eq(r.family, AF_INET);
    ck_assert_uint_eq(r.len, 32);
    ck_assert_uint_eq(r.port, 5683);
    r = rule("::/0");
    ck_assert_int_eq(r.family, AF_INET6);
}
END_TEST

/* ==== Address checks ============================================================================ */

START_TEST(test_ipv4_addresses_match_by_prefix)
{
    static const char *const rules[] = {"10.0.0.0/8", "192.0.2.10", "198.51.100.0/25", NULL};
    ck_assert(allowed(rules, "10.1.2.3", 5683));
    ck_assert(allowed(rules, "192.0.2.10", 1));
    ck_assert(allowed(rules, "198.51.100.127", 5683) == false); /* broadcast of the /25 */
    ck_assert(allowed(rules, "198.51.100.126", 5683));
    ck_assert(!allowed(rules, "198.51.100.128", 5683));
    ck_assert(!allowed(rules, "192.0.2.11", 5683));
    ck_assert(!allowed(rules, "11.0.0.1", 5683));
    ck_assert(!allowed(rules, "::ffff:11.0.0.1", 5683));
}
END_TEST

START_TEST(test_ipv6_addresses_match_by_prefix)
{
    static const char *const rules[] = {"2001:db8::/33", "::1/128", NULL};
    ck_assert(allowed(rules, "2001:db8:7fff::1", 5683));
    ck_assert(!allowed(rules, "2001:db8:8000::1", 5683));
    ck_assert(allowed(rules, "::1", 5683));
    ck_assert(!allowed(rules, "::2", 5683));
    ck_assert(!allowed(rules, "127.0.0.1", 5683)); /* an IPv6 rule never covers IPv4 */
}
END_TEST

START_TEST(test_a_port_mismatch_is_refused)
{
    static const char *const rules[] = {"192.0.2.10:5683", "[::1]:5684", "10.0.0.0/8:*", NULL};
    ck_assert(allowed(rules, "192.0.2.10", 5683));
    ck_assert(!allowed(rules, "192.0.2.10", 5684));
    ck_assert(allowed(rules, "::1", 5684));
    ck_assert(!allowed(rules, "::1", 5683));
    ck_assert(allowed(rules, "10.0.0.1", 9));
}
END_TEST

START_TEST(test_mapped_addresses_are_checked_as_ipv4)
{
    ck_assert(allowed(net_127, "::ffff:127.0.0.1", 5683));
    ck_assert(!allowed(only_127_0_0_2, "::ffff:127.0.0.1", 5683));
    ck_assert(allowed(only_127_0_0_2, "::ffff:127.0.0.2", 5683));
    static const char *const all_v6[] = {"::/0", NULL};
    ck_assert(!allowed(all_v6, "::ffff:127.0.0.1", 5683));
    ck_assert(allowed(all_v6, "2001:db8::1", 5683));
}
END_TEST

START_TEST(test_multicast_is_refused_unless_a_rule_names_it)
{
    static const char *const any[] = {"0.0.0.0/0", "::/0", NULL};
    static const char *const named[] = {"224.0.1.187/32", "[ff02::fd]:5683", NULL};
    static const char *const space[] = {"224.0.0.0/4", "ff00::/8", NULL};
    ck_assert(!allowed(any, "224.0.1.187", 5683));
    ck_assert(!allowed(any, "239.255.255.255", 5683));
    ck_assert(!allowed(any, "ff02::fd", 5683));
    ck_assert(!allowed(any, "::ffff:224.0.1.187", 5683));
    ck_assert(allowed(named, "224.0.1.187", 5683));
    ck_assert(!allowed(named, "224.0.1.188", 5683));
    ck_assert(allowed(named, "ff02::fd", 5683));
    ck_assert(!allowed(named, "ff02::fd", 5684));
    ck_assert(allowed(space, "239.1.2.3", 5683));
    ck_assert(allowed(space, "ff05::fd", 5683));
    ck_assert(allowed(any, "192.0.2.1", 5683)); /* the catch-all still covers unicast */
}
END_TEST

START_TEST(test_broadcast_is_refused_unless_a_rule_names_it)
{
    static const char *const any[] = {"0.0.0.0/0", NULL};
    static const char *const nets[] = {"10.0.0.0/8", "192.0.2.0/30", "192.0.2.4/31", NULL};
    static const char *const named[] = {"255.255.255.255/32", "10.255.255.255/32", NULL};
    ck_assert(!allowed(any, "255.255.255.255", 5683));
    ck_assert(!allowed(any, "::ffff:255.255.255.255", 5683));
    ck_assert(!allowed(nets, "10.255.255.255", 5683));
    ck_assert(allowed(nets, "10.255.255.254", 5683));
    ck_assert(!allowed(nets, "192.0.2.3", 5683));
    ck_assert(allowed(nets, "192.0.2.5", 5683)); /* a /31 has no broadcast address (RFC 3021) */
    ck_assert(allowed(named, "255.255.255.255", 5683));
    ck_assert(allowed(named, "10.255.255.255", 5683));
}
END_TEST

START_TEST(test_unspecified_addresses_are_always_refused)
{
    static const char *const any[] = {"0.0.0.0/0", "::/0", "0.0.0.0/32", "[::]", NULL};
    ck_assert(!allowed(any, "0.0.0.0", 5683));
    ck_assert(!allowed(any, "0.1.2.3", 5683));
    ck_assert(!allowed(any, "::", 5683));
    ck_assert(!allowed(any, "::ffff:0.0.0.0", 5683));
}
END_TEST

START_TEST(test_an_empty_rule_list_allows_nothing)
{
    struct sockaddr_storage ss = sa("127.0.0.1");
    ck_assert(!cg_addr_allowed(NULL, 0, &ss, 5683));
    ss.ss_family = AF_UNIX;
    struct cg_addr_rule any = rule("0.0.0.0/0");
    ck_assert(!cg_addr_allowed(&any, 1, &ss, 5683));
}
END_TEST

/* ==== Resolution ================================================================================ */

static const char *const loopback_spellings[] = {
    "coap://localhost/x",     "coap://127.1/x",           "coap://2130706433/x",
    "coap://0x7f000001/x",    "coap://0x7f.1/x",          "coap://0177.0.0.1/x",
    "coap://127.0.0.1/x",     "coap://[::ffff:7f00:1]/x", "coap://[::ffff:127.0.0.1]/x",
    "coap%3A%2F%2F127.1%2Fx",
};

START_TEST(test_loopback_spellings_are_refused_by_a_list_allowing_only_127_0_0_2)
{
    for (size_t i = 0; i < sizeof(loopback_spellings) / sizeof(loopback_spellings[0]); i++) {
        ck_assert_msg(resolve(only_127_0_0_2, loopback_spellings[i], NULL) == 403, "%s",
                      loopback_spellings[i]);
    }
    ck_assert_int_eq(resolve(only_127_0_0_2, "coap://[::1]/x", NULL), 403);
    ck_assert_int_eq(resolve(only_127_0_0_2, "coap://127.0.0.2/x", NULL), 0);
}
END_TEST

START_TEST(test_numeric_spellings_are_checked_as_127_0_0_1)
{
    for (size_t i = 0; i < sizeof(loopback_spellings) / sizeof(loopback_spellings[0]); i++) {
        struct sockaddr_storage out;
        if (strstr(loopback_spellings[i], "localhost") != NULL) {
            continue;
        }
        ck_assert_msg(resolve(net_127, loopback_spellings[i], &out) == 0, "%s", loopback_spellings[i]);
        const struct sockaddr_in *in = (const struct sockaddr_in *)&out;
        ck_assert_int_eq(in->sin_family, AF_INET); /* mapped literals come back as IPv4 */
        ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), 0x7f000001);
        ck_assert_uint_eq(ntohs(in->sin_port), 5683);
    }
}
END_TEST

START_TEST(test_localhost_and_ipv6_loopback_pass_a_loopback_list)
{
    struct sockaddr_storage out;
    ck_assert_int_eq(resolve(loopback, "coap://localhost:61616/x", &out), 0);
    if (out.ss_family == AF_INET) {
        ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&out)->sin_port), 61616);
    } else {
        ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&out)->sin6_port), 61616);
    }
    ck_assert_int_eq(resolve(loopback, "coap://[::1]:5700/x", &out), 0);
    ck_assert_int_eq(out.ss_family, AF_INET6);
    ck_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&out)->sin6_addr));
    ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&out)->sin6_port), 5700);
}
END_TEST

START_TEST(test_ipv6_loopback_is_refused_by_an_ipv4_list)
{
    ck_assert_int_eq(resolve(net_127, "coap://[::1]/x", NULL), 403);
    static const char *const v6[] = {"::1/128", NULL};
    ck_assert_int_eq(resolve(v6, "coap://localhost/x", NULL), 403); /* localhost has 127.0.0.1 */
}
END_TEST

START_TEST(test_resolution_refuses_a_port_mismatch)
{
    static const char *const rules[] = {"127.0.0.0/8:5683", NULL};
    ck_assert_int_eq(resolve(rules, "coap://127.0.0.1/x", NULL), 0);
    ck_assert_int_eq(resolve(rules, "coap://127.0.0.1:5684/x", NULL), 403);
    ck_assert_int_eq(resolve(rules, "coaps://127.0.0.1/x", NULL), 403);
}
END_TEST

START_TEST(test_resolution_refuses_an_empty_target)
{
    struct px_fp_target t = {0};
    struct sockaddr_storage out;
    socklen_t len;
    const char *reason = NULL;
    struct cg_addr_rule r = rule("0.0.0.0/0");
    ck_assert_int_eq(px_fp_resolve(&t, &r, 1, &out, &len, &reason), 400);
    ck_assert_ptr_nonnull(reason);
}
END_TEST

static Suite *fproxy_suite(void)
{
    Suite *s = suite_create("fproxy");
    TCase *tc = tcase_create("target");
    tcase_add_test(tc, test_default_form_gives_scheme_host_port_path_and_query);
    tcase_add_test(tc, test_encoded_form_is_decoded_once_as_one_segment);
    tcase_add_test(tc, test_encoded_form_takes_the_request_query_but_not_two_queries);
    tcase_add_test(tc, test_encoded_form_must_be_the_only_segment);
    tcase_add_test(tc, test_ports_default_by_scheme_and_an_empty_port_is_the_default);
    tcase_add_test(tc, test_port_out_of_range_or_not_a_number_is_refused);
    tcase_add_test(tc, test_scheme_is_case_insensitive_and_only_coap_or_coaps);
    tcase_add_test(tc, test_host_is_lower_cased_and_classified);
    tcase_add_test(tc, test_ipv6_literals_need_brackets_and_no_zone_id);
    tcase_add_test(tc, test_userinfo_is_refused);
    tcase_add_test(tc, test_empty_host_is_refused);
    tcase_add_test(tc, test_fragments_are_refused);
    tcase_add_test(tc, test_path_stays_raw_without_its_leading_slash);
    tcase_add_test(tc, test_bytes_outside_uris_and_bad_escapes_are_refused);
    tcase_add_test(tc, test_missing_or_overlong_targets_are_refused);
    tcase_add_test(tc, test_fini_is_idempotent_and_safe_after_an_error);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_add_test(tc, test_rule_grammar_accepts_cidrs_addresses_and_ports);
    tcase_add_test(tc, test_bad_rules_are_refused_with_a_reason);
    tcase_add_test(tc, test_rules_with_address_bits_beyond_the_prefix_are_refused);
    tcase_add_test(tc, test_mapped_rules_are_stored_as_ipv4_rules);
    suite_add_tcase(s, tc);
    tc = tcase_create("check");
    tcase_add_test(tc, test_ipv4_addresses_match_by_prefix);
    tcase_add_test(tc, test_ipv6_addresses_match_by_prefix);
    tcase_add_test(tc, test_a_port_mismatch_is_refused);
    tcase_add_test(tc, test_mapped_addresses_are_checked_as_ipv4);
    tcase_add_test(tc, test_multicast_is_refused_unless_a_rule_names_it);
    tcase_add_test(tc, test_broadcast_is_refused_unless_a_rule_names_it);
    tcase_add_test(tc, test_unspecified_addresses_are_always_refused);
    tcase_add_test(tc, test_an_empty_rule_list_allows_nothing);
    suite_add_tcase(s, tc);
    tc = tcase_create("resolve");
    tcase_add_test(tc, test_loopback_spellings_are_refused_by_a_list_allowing_only_127_0_0_2);
    tcase_add_test(tc, test_numeric_spellings_are_checked_as_127_0_0_1);
    tcase_add_test(tc, test_localhost_and_ipv6_loopback_pass_a_loopback_list);
    tcase_add_test(tc, test_ipv6_loopback_is_refused_by_an_ipv4_list);
    tcase_add_test(tc, test_resolution_refuses_a_port_mismatch);
    tcase_add_test(tc, test_resolution_refuses_an_empty_target);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fproxy_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
