/* Unit tests for gateway/gen: what a reload publishes, names and keeps, and when a generation may go. The
 * generations are real (a CoAP client on loopback towards a port nobody serves, a real cache and pipeline);
 * only the HTTP daemon is absent. */
#include <check.h>
#include <coap3/coap.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/gen.h"

#define BASE_UPSTREAMS "\"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:9/base\"}}"

static const char base_json[] = "{\"listen\": \"127.0.0.1:18080\", " BASE_UPSTREAMS ","
                                " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}]}";

static struct gw_gens *gens;

static struct cfg *parse(const char *json)
{
    struct cfg *cfg = NULL;
    struct cfg_error err;
    char msg[512];

    if (cfg_parse(json, strlen(json), "gw.json", &cfg, &err) != CFG_OK) {
        cfg_error_format(&err, msg, sizeof(msg));
        ck_abort_msg("config: %s", msg);
    }
    return cfg;
}

static void setup(void)
{
    char err[256];

    coap_startup();
    gens = gw_gens_create_take(parse(base_json), NULL, err, sizeof(err));
    ck_assert_msg(gens != NULL, "%s", err);
}

static void teardown(void)
{
    gw_gens_stop_clients(gens);
    gw_gens_destroy(gens);
    coap_cleanup();
}

static void reload(const char *json, struct gw_reload_report *rep)
{
    char err[256];
    ck_assert_msg(gw_gens_reload_take(gens, parse(json), rep, err, sizeof(err)) == 0, "%s", err);
}

/* ---- what a reload publishes and names ---- */

START_TEST(test_reload_publishes_a_new_generation_naming_what_changed)
{
    struct gw_reload_report rep;

    ck_assert_uint_eq(gw_gens_current(gens)->id, 1);
    reload("{\"listen\": \"127.0.0.1:18080\", " BASE_UPSTREAMS ","
           " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"},"
           "              {\"prefix\": \"/new/\", \"upstream\": \"dev\"}],"
           " \"log\": {\"level\": \"debug\"}}",
           &rep);
    ck_assert_uint_eq(rep.id, 2);
    ck_assert_uint_eq(gw_gens_current(gens)->id, 2);
    ck_assert_str_eq(rep.changed, "routes,log");
    ck_assert_str_eq(rep.restart, "");
    ck_assert_uint_eq(gw_gens_current(gens)->cfg->routes_len, 2);
}
END_TEST

START_TEST(test_an_unchanged_file_changes_nothing_but_the_generation)
{
    struct gw_reload_report rep;

    reload(base_json, &rep);
    ck_assert_uint_eq(rep.id, 2);
    ck_assert_str_eq(rep.changed, "none");
    ck_assert_str_eq(rep.restart, "");
    ck_assert(rep.cache_kept);
}
END_TEST

START_TEST(test_listen_and_demo_keep_their_running_values_and_are_named)
{
    struct gw_reload_report rep;

    reload("{\"listen\": \"127.0.0.1:18081\", " BASE_UPSTREAMS ","
           " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}],"
           " \"demo_server\": {\"enabled\": true},"
           " \"limits\": {\"max_connections\": 10, \"max_body_bytes\": 4096}}",
           &rep);
    ck_assert_str_eq(rep.restart, "listen,demo_server.enabled,limits.max_connections");
    const struct cfg *cfg = gw_gens_current(gens)->cfg;
    ck_assert_uint_eq(cfg->listen.port, 18080);
    ck_assert(!cfg->demo.enabled);
    ck_assert_uint_ne(cfg->limits.max_connections, 10);
    ck_assert_uint_eq(cfg->limits.max_body_bytes, 4096); /* the rest is applied */
    ck_assert_str_eq(rep.changed, "limits");
}
END_TEST

START_TEST(test_header_limits_beyond_the_reserved_memory_need_a_restart)
{
    struct gw_reload_report rep;

    reload("{\"listen\": \"127.0.0.1:18080\", " BASE_UPSTREAMS ","
           " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}],"
           " \"limits\": {\"max_header_bytes\": 2048}}",
           &rep);
    ck_assert_str_eq(rep.restart, "");
    ck_assert_uint_eq(gw_gens_current(gens)->cfg->limits.max_header_bytes, 2048);
    reload("{\"listen\": \"127.0.0.1:18080\", " BASE_UPSTREAMS ","
           " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}],"
           " \"limits\": {\"max_header_bytes\": 65536}}",
           &rep);
    ck_assert_str_eq(rep.restart, "limits.max_header_bytes");
    ck_assert_uint_eq(gw_gens_current(gens)->cfg->limits.max_header_bytes, 2048);
}
END_TEST

/* The HTTPS files of a configuration in dir: cert and key with the given contents (the key mode 600). */
static void write_tls(const char *dir, const char *cert, const char *key)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/cert.pem", dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(cert, f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fchmod(fileno(f), 0600);
    fputs(key, f);
    fclose(f);
}

static void tls_json(char *buf, size_t len, const char *dir)
{
    snprintf(buf, len,
             "{\"listen\": \"127.0.0.1:18080\", " BASE_UPSTREAMS ","
             " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}],"
             " \"tls\": {\"cert\": \"%s/cert.pem\", \"key\": \"%s/key.pem\"}}",
             dir, dir);
}

START_TEST(test_tls_files_keep_their_running_contents_and_are_named)
{
    char dir[] = "/tmp/test_gen.XXXXXX", json[512], err[256];
    struct gw_reload_report rep;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    write_tls(dir, "CERT-A\n", "KEY-A\n");
    tls_json(json, sizeof(json), dir);
    struct gw_gens *g = gw_gens_create_take(parse(json), NULL, err, sizeof(err));
    ck_assert_msg(g != NULL, "%s", err);
    write_tls(dir, "CERT-A\n", "KEY-B\n"); /* a renewed key under the same name */
    ck_assert_int_eq(gw_gens_reload_take(g, parse(json), &rep, err, sizeof(err)), 0);
    ck_assert_str_eq(rep.restart, "tls.key");
    ck_assert_str_eq((const char *)gw_gens_current(g)->cfg->tls.key_pem, "KEY-A\n");
    ck_assert_int_eq(gw_gens_reload_take(g, parse(base_json), &rep, err, sizeof(err)), 0);
    ck_assert_str_eq(rep.restart, "tls.cert,tls.key"); /* HTTPS cannot be turned off either */
    ck_assert_str_eq((const char *)gw_gens_current(g)->cfg->tls.cert_pem, "CERT-A\n");
    ck_assert_uint_eq(gw_gens_reap(g), 0);
    gw_gens_stop_clients(g);
    gw_gens_destroy(g);
    snprintf(json, sizeof(json), "%s/cert.pem", dir);
    unlink(json);
    snprintf(json, sizeof(json), "%s/key.pem", dir);
    unlink(json);
    rmdir(dir);
}
END_TEST

/* ---- the cache ---- */

START_TEST(test_the_cache_and_its_entries_are_kept_when_settings_and_upstreams_are_unchanged)
{
    struct gw_reload_report rep;
    struct co_optset opts;
    uint8_t key[] = {1, 2, 3};

    co_optset_init(&opts);
    struct px_cache *before = gw_gens_current(gens)->cache;
    struct px_cache_entry *e =
        px_cache_store(before, key, sizeof(key), 1, 0x45, &opts, (const uint8_t *)"v", 1, 0);
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
    co_optset_fini(&opts);
    reload("{\"listen\": \"127.0.0.1:18080\","
           " \"routes\": [{\"prefix\": \"/other/\", \"upstream\": \"dev\", \"cache\": false}],"
           " \"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:9/base\", \"timeout_ms\": 900}}}",
           &rep);
    ck_assert(rep.cache_kept);
    ck_assert_str_eq(rep.changed, "upstreams,routes");
    ck_assert_ptr_eq(gw_gens_current(gens)->cache, before);
    bool fresh = false;
    e = px_cache_lookup(gw_gens_current(gens)->cache, key, sizeof(key), 1000, &fresh);
    ck_assert_ptr_nonnull(e);
    px_cache_entry_release(e);
}
END_TEST

START_TEST(test_a_new_upstream_uri_or_new_bounds_make_a_new_cache)
{
    struct gw_reload_report rep;

    struct px_cache *first = gw_gens_current(gens)->cache;
    reload(
        "{\"listen\": \"127.0.0.1:18080\", \"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:9/other\"}},"
        " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}]}",
        &rep);
    ck_assert(!rep.cache_kept);
    ck_assert_str_eq(rep.changed, "upstreams");
    struct px_cache *second = gw_gens_current(gens)->cache;
    ck_assert_ptr_ne(second, first);
    reload(
        "{\"listen\": \"127.0.0.1:18080\", \"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:9/other\"}},"
        " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}], \"cache\": {\"max_entries\": 7}}",
        &rep);
    ck_assert(!rep.cache_kept);
    ck_assert_str_eq(rep.changed, "cache");
    reload(
        "{\"listen\": \"127.0.0.1:18080\", \"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:9/other\"}},"
        " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}], \"cache\": {\"enabled\": false}}",
        &rep);
    ck_assert_ptr_null(gw_gens_current(gens)->cache);
}
END_TEST

/* ---- the life of a generation ---- */

START_TEST(test_a_held_generation_outlives_its_replacement_until_released)
{
    struct gw_reload_report rep;

    struct gw_gen *held = gw_gens_acquire(gens);
    ck_assert_uint_eq(held->id, 1);
    reload("{\"listen\": \"127.0.0.1:18080\", " BASE_UPSTREAMS ","
           " \"routes\": [{\"prefix\": \"/v2/\", \"upstream\": \"dev\"}]}",
           &rep);
    ck_assert_uint_eq(rep.alive_older, 1);
    struct gw_gen *now = gw_gens_acquire(gens);
    ck_assert_uint_eq(now->id, 2);
    ck_assert_uint_eq(gw_gens_reap(gens), 1);
    ck_assert_str_eq(held->cfg->routes[0].prefix, "/api/"); /* still whole */
    ck_assert_str_eq(now->cfg->routes[0].prefix, "/v2/");
    gw_gen_release(held);
    ck_assert_uint_eq(gw_gens_reap(gens), 0);
    gw_gen_release(now);
    ck_assert_uint_eq(gw_gens_reap(gens), 0); /* the current one is never reaped */
    ck_assert_uint_eq(gw_gens_current(gens)->id, 2);
}
END_TEST

START_TEST(test_quiesce_drains_every_live_generation)
{
    struct gw_reload_report rep;

    struct gw_gen *held = gw_gens_acquire(gens);
    reload(base_json, &rep);
    gw_gens_quiesce(gens);
    ck_assert(px_forward_draining(held->fwd));
    ck_assert(px_forward_draining(gw_gens_current(gens)->fwd));
    gw_gen_release(held);
}
END_TEST

static Suite *gen_suite(void)
{
    Suite *s = suite_create("gen");
    TCase *pub = tcase_create("publish");
    tcase_add_checked_fixture(pub, setup, teardown);
    tcase_add_test(pub, test_reload_publishes_a_new_generation_naming_what_changed);
    tcase_add_test(pub, test_an_unchanged_file_changes_nothing_but_the_generation);
    tcase_add_test(pub, test_listen_and_demo_keep_their_running_values_and_are_named);
    tcase_add_test(pub, test_header_limits_beyond_the_reserved_memory_need_a_restart);
    tcase_add_test(pub, test_tls_files_keep_their_running_contents_and_are_named);
    suite_add_tcase(s, pub);
    TCase *cache = tcase_create("cache");
    tcase_add_checked_fixture(cache, setup, teardown);
    tcase_add_test(cache, test_the_cache_and_its_entries_are_kept_when_settings_and_upstreams_are_unchanged);
    tcase_add_test(cache, test_a_new_upstream_uri_or_new_bounds_make_a_new_cache);
    suite_add_tcase(s, cache);
    TCase *life = tcase_create("life");
    tcase_add_checked_fixture(life, setup, teardown);
    tcase_add_test(life, test_a_held_generation_outlives_its_replacement_until_released);
    tcase_add_test(life, test_quiesce_drains_every_live_generation);
    suite_add_tcase(s, life);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gen_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
