/* Unit tests for proxy/forward, the request pipeline, with a fake transport (exchanges are recorded and
 * completed by the test, acting as the CoAP worker) and a fake clock. The real cache and observation
 * registry are used: they are pure data structures. */
#include <arpa/inet.h>
#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/forward.h"

#define T0 1000000u
#define MAX_X 64

static const char config_json[] =
    "{\"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:5683/base\"}},"
    " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"},"
    "              {\"prefix\": \"/ro/\", \"upstream\": \"dev\", \"methods\": [\"GET\"]},"
    "              {\"prefix\": \"/raw/\", \"upstream\": \"dev\", \"cache\": false},"
    "              {\"prefix\": \"/web/\", \"upstream\": \"dev\", \"methods\": [\"GET\", \"PUT\"],"
    "               \"cors\": {\"allow_origins\": [\"https://app.example\"],"
    "                        \"allow_headers\": [\"Content-Type\"], \"max_age_s\": 60}}],"
    " \"limits\": {\"max_body_bytes\": 16, \"longpoll_timeout_s\": 30}}";

/* ---- fixture: config, fake clock, fake transport, cache, pipeline ---- */

static struct cfg *cfg;
static struct px_cache *cache;
static struct px_forward *fwd;
static _Atomic uint64_t fake_now;

static struct {
    struct px_exchange *sent[MAX_X]; /* submitted, in order */
    unsigned nsent;
    struct px_exchange *observed[MAX_X];
    unsigned nobserved;
    uint64_t unobserved[MAX_X];
    unsigned nunobserved;
} fake;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

static void fake_submit(void *impl, struct px_exchange *x)
{
    (void)impl;
    ck_assert_uint_lt(fake.nsent, MAX_X);
    fake.sent[fake.nsent++] = x;
}

static uint64_t fake_observe(void *impl, struct px_exchange *x)
{
    (void)impl;
    ck_assert_uint_lt(fake.nobserved, MAX_X);
    fake.observed[fake.nobserved++] = x;
    return fake.nobserved; /* ids 1, 2, ... */
}

/* Called under the registry's lock: only recorded; teardown (or the test) ends the observation. */
static void fake_unobserve(void *impl, size_t upstream, uint64_t id)
{
    (void)impl;
    (void)upstream;
    fake.unobserved[fake.nunobserved++] = id;
}

static char secret_dir[64];

static void teardown(void);

/* A private file (mode 600) in secret_dir. */
static void write_secret(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", secret_dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0600), 0);
}

/* The pipeline over text (a config whose secret files are relative to secret_dir). */
static void setup_with(const char *text)
{
    struct cfg_error err;
    char name[96];
    snprintf(name, sizeof(name), "%s/gw.json", secret_dir);
    enum cfg_status st = cfg_parse(text, strlen(text), name, &cfg, &err);
    char msg[512];
    cfg_error_format(&err, msg, sizeof(msg));
    ck_assert_msg(st == CFG_OK, "%s", msg);
    memset(&fake, 0, sizeof(fake));
    atomic_store(&fake_now, T0);
    cache = px_cache_create(100, 1 << 20);
    struct px_transport t = {
        .impl = NULL, .submit = fake_submit, .observe = fake_observe, .unobserve = fake_unobserve};
    fwd = px_forward_create(cfg, t, cache, fake_clock, NULL);
    ck_assert_ptr_nonnull(fwd);
}

static void setup(void)
{
    snprintf(secret_dir, sizeof(secret_dir), ".");
    setup_with(config_json);
}

static const char auth_json[] =
    "{\"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:5683\"}},"
    " \"routes\": [{\"prefix\": \"/sec/\", \"upstream\": \"dev\","
    "               \"auth\": {\"type\": \"bearer\", \"tokens_file\": \"tokens.txt\"}},"
    "              {\"prefix\": \"/key/\", \"upstream\": \"dev\","
    "               \"auth\": {\"type\": \"api_key\", \"keys_file\": \"keys.txt\"}},"
    "              {\"prefix\": \"/web/\", \"upstream\": \"dev\","
    "               \"auth\": {\"type\": \"bearer\", \"tokens_file\": \"tokens.txt\"},"
    "               \"cors\": {\"allow_origins\": [\"https://app.example\"]}}],"
    " \"admin\": {\"auth\": {\"type\": \"bearer\", \"tokens_file\": \"admin.txt\"}}}";

static void setup_auth(void)
{
    snprintf(secret_dir, sizeof(secret_dir), "/tmp/coapgw-fwd-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(secret_dir));
    write_secret("tokens.txt", "# route tokens\ns3cret-token\n\nother.token\n");
    write_secret("keys.txt", "key-1\n");
    write_secret("admin.txt", "admin-token\n");
    setup_with(auth_json);
}

static void teardown_auth(void)
{
    static const char *const names[] = {"tokens.txt", "keys.txt", "admin.txt"};
    char path[128];
    teardown();
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", secret_dir, names[i]);
        unlink(path);
    }
    rmdir(secret_dir);
}

static void teardown(void)
{
    for (unsigned i = 0; i < fake.nobserved; i++) {
        struct px_exchange *x = fake.observed[i];
        if (x != NULL) {
            free(x->resp_payload); /* as the client does when an observation ends */
            x->resp_payload = NULL;
            x->status = PX_OK;
            x->done(x, x->arg);
        }
    }
    px_forward_destroy(fwd);
    px_cache_destroy(cache);
    cfg_free(cfg);
}

/* ---- the front end's side ---- */

struct conn {
    atomic_int suspended, resumed;
};

static void on_suspend(void *p)
{
    atomic_fetch_add(&((struct conn *)p)->suspended, 1);
}

static void on_resume(void *p)
{
    atomic_fetch_add(&((struct conn *)p)->resumed, 1);
}

static const struct px_headers no_headers = {.content_type = NULL};

/* A request through begin and run (no body). */
static struct px_req *request(struct conn *c, const char *method, const char *path, const char *query,
                              const struct px_headers *h, enum px_step *step, struct px_answer *a)
{
    struct px_front front = {.suspend = on_suspend, .resume = on_resume, .conn = c};
    struct px_req *req = px_req_new(fwd, &front);
    ck_assert_ptr_nonnull(req);
    px_req_begin(req, method, path, query, h != NULL ? h : &no_headers);
    *step = px_req_run(req, a);
    return req;
}

/* The fake worker completes x with a CoAP answer. opts is copied in; payload is malloc'd as the client's. */
static void complete(struct px_exchange *x, uint8_t code, int max_age, const char *etag, const char *payload)
{
    x->status = PX_OK;
    x->resp_code = code;
    co_optset_clear(&x->resp);
    co_optset_add_uint(&x->resp, CO_OPT_CONTENT_FORMAT, 0);
    if (etag != NULL) {
        co_optset_add(&x->resp, CO_OPT_ETAG, etag, strlen(etag));
    }
    if (max_age >= 0) {
        co_optset_add_uint(&x->resp, CO_OPT_MAX_AGE, (uint32_t)max_age);
    }
    x->resp_len = payload != NULL ? strlen(payload) : 0;
    x->resp_payload = x->resp_len > 0 ? (uint8_t *)strdup(payload) : NULL;
    x->done(x, x->arg);
}

static void fail_with(struct px_exchange *x, enum px_status st, const char *detail)
{
    x->status = st;
    x->detail = detail;
    x->done(x, x->arg);
}

static bool has_option(const struct co_optset *set, uint16_t number, const char *value)
{
    for (const struct co_opt *o = co_optset_find(set, number, 0); o != NULL;
         o = co_optset_find(set, number, (unsigned)(o - set->opt) + 1)) {
        if (value == NULL || (o->len == strlen(value) && memcmp(co_opt_value(set, o), value, o->len) == 0)) {
            return true;
        }
    }
    return false;
}

static void body_is(const struct px_answer *a, const char *text)
{
    ck_assert_uint_eq(a->body_len, strlen(text));
    ck_assert(memcmp(a->body, text, a->body_len) == 0);
}

/* A GET of /api/<path> answered by the device with 2.05, Max-Age 60, the given ETag and body. */
static void warm(const char *path, const char *etag, const char *body)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", path, NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    complete(fake.sent[fake.nsent - 1], CO_CODE(2, 5), 60, etag, body);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    px_answer_release(&a);
    px_req_free(req);
}

/* ---- refusals ---- */

START_TEST(test_a_path_without_route_is_a_404_problem_and_the_device_sees_nothing)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/nope", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_PROBLEM);
    ck_assert_int_eq(a.status, 404);
    ck_assert_int_eq(a.problem, PX_ERR_NO_ROUTE);
    ck_assert_int_eq(a.xcache, PX_XC_NONE);
    ck_assert_uint_eq(fake.nsent, 0);
    ck_assert_int_eq(c.suspended, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_method_the_route_does_not_allow_is_405_with_allow)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "PUT", "/ro/x", NULL, NULL, &step, &a);
    ck_assert_int_eq(a.status, 405);
    ck_assert_str_eq(a.allow, "GET, HEAD");
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_method_without_coap_equivalent_is_501)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "OPTIONS", "/api/x", NULL, NULL, &step, &a);
    ck_assert_int_eq(a.status, 501);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_declared_oversized_body_is_413_before_it_is_read_and_closes)
{
    struct conn c = {0};
    struct px_front front = {.suspend = on_suspend, .resume = on_resume, .conn = &c};
    struct px_headers h = no_headers;
    struct px_answer a;
    h.content_length = "17";
    struct px_req *req = px_req_new(fwd, &front);
    ck_assert_int_eq(px_req_begin(req, "PUT", "/api/x", NULL, &h), PX_BEGIN_ANSWER_NOW);
    ck_assert_int_eq(px_req_run(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 413);
    ck_assert(a.close);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_body_growing_past_the_limit_is_413)
{
    struct conn c = {0};
    struct px_front front = {.suspend = on_suspend, .resume = on_resume, .conn = &c};
    struct px_answer a;
    struct px_req *req = px_req_new(fwd, &front);
    ck_assert_int_eq(px_req_begin(req, "PUT", "/api/x", NULL, &no_headers), PX_BEGIN_READ_BODY);
    px_req_body(req, "0123456789", 10);
    px_req_body(req, "0123456789", 10);
    ck_assert_int_eq(px_req_run(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 413);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_draining_pipeline_answers_503_with_retry_after)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    px_forward_quiesce(fwd);
    struct px_req *req = request(&c, "GET", "/api/x", NULL, NULL, &step, &a);
    ck_assert_int_eq(a.status, 503);
    ck_assert_int_eq(a.retry_after, 1);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_an_unsupported_content_type_is_415_before_the_device_is_asked)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.content_type = "text/x-unknown";
    struct px_front front = {.suspend = on_suspend, .resume = on_resume, .conn = &c};
    struct px_req *req = px_req_new(fwd, &front);
    px_req_begin(req, "PUT", "/api/x", NULL, &h);
    px_req_body(req, "a", 1);
    step = px_req_run(req, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 415);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

/* ---- the device's answers ---- */

START_TEST(test_a_miss_suspends_before_submitting_and_answers_after_resume)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/api/a/b", "x=1", NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    ck_assert_int_eq(c.suspended, 1);
    ck_assert_uint_eq(fake.nsent, 1);
    struct px_exchange *x = fake.sent[0];
    ck_assert_uint_eq(x->code, CO_GET);
    ck_assert(has_option(x->req, CO_OPT_URI_PATH, "base"));
    ck_assert(has_option(x->req, CO_OPT_URI_PATH, "b"));
    ck_assert(has_option(x->req, CO_OPT_URI_QUERY, "x=1"));
    complete(x, CO_CODE(2, 5), 30, "\x01\x02", "hello");
    ck_assert_int_eq(c.resumed, 1);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_COAP);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(a.xcache, PX_XC_MISS);
    ck_assert_int_eq(a.http.max_age, 30);
    ck_assert_str_eq(a.http.etag, "\"0102\"");
    body_is(&a, "hello");
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_an_upstream_timeout_becomes_a_504_problem)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/raw/x", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    fail_with(fake.sent[0], PX_ERR_TIMEOUT, "the upstream did not answer within timeout_ms");
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_PROBLEM);
    ck_assert_int_eq(a.status, 504);
    ck_assert_str_eq(a.detail, "the upstream did not answer within timeout_ms");
    ck_assert_int_eq(a.xcache, PX_XC_BYPASS);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_fresh_hit_is_answered_at_once_with_its_age)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    warm("/api/t", "\x07", "22.5");
    atomic_store(&fake_now, T0 + 2500);
    struct px_req *req = request(&c, "GET", "/api/t", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_uint_eq(fake.nsent, 1); /* only the warming request */
    ck_assert_int_eq(c.suspended, 0);
    ck_assert_int_eq(a.xcache, PX_XC_HIT);
    ck_assert(a.prebuildable);
    ck_assert_int_eq(a.age, 2);
    ck_assert(px_answer_map(&a));
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(a.http.max_age, 60); /* the lifetime, with Age beside it (RFC 9111 §4.2.3) */
    body_is(&a, "22.5");
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_n_identical_misses_make_one_submit_and_all_get_the_answer)
{
    enum { N = 8 };
    struct conn c[N];
    struct px_req *req[N];
    struct px_answer a;
    enum px_step step;
    memset(c, 0, sizeof(c));
    for (int i = 0; i < N; i++) {
        req[i] = request(&c[i], "GET", "/api/same", NULL, NULL, &step, &a);
        ck_assert_int_eq(step, PX_STEP_WAIT);
    }
    ck_assert_uint_eq(fake.nsent, 1);
    complete(fake.sent[0], CO_CODE(2, 5), 60, NULL, "once");
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(c[i].resumed, 1);
        ck_assert_int_eq(px_req_resume(req[i], &a), PX_STEP_ANSWER);
        ck_assert_int_eq(a.status, 200);
        body_is(&a, "once");
        px_answer_release(&a);
        px_req_free(req[i]);
    }
}
END_TEST

START_TEST(test_a_failed_flight_gives_every_waiter_the_error)
{
    struct conn c1 = {0}, c2 = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *r1 = request(&c1, "GET", "/api/f", NULL, NULL, &step, &a);
    struct px_req *r2 = request(&c2, "GET", "/api/f", NULL, NULL, &step, &a);
    ck_assert_uint_eq(fake.nsent, 1);
    fail_with(fake.sent[0], PX_ERR_BAD_GATEWAY, "the upstream is unreachable");
    ck_assert_int_eq(px_req_resume(r1, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 502);
    px_answer_release(&a);
    ck_assert_int_eq(px_req_resume(r2, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 502);
    px_answer_release(&a);
    px_req_free(r1);
    px_req_free(r2);
}
END_TEST

START_TEST(test_a_stale_entry_is_revalidated_with_its_etag_and_2_03_refreshes_it)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    warm("/api/r", "\xab", "old body");
    atomic_store(&fake_now, T0 + 61000);
    struct px_req *req = request(&c, "GET", "/api/r", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    ck_assert_uint_eq(fake.nsent, 2);
    ck_assert(has_option(fake.sent[1]->req, CO_OPT_ETAG, "\xab"));
    complete(fake.sent[1], CO_CODE(2, 3), 60, "\xab", NULL);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.xcache, PX_XC_REVALIDATED);
    ck_assert_int_eq(a.status, 200);
    body_is(&a, "old body");
    px_answer_release(&a);
    px_req_free(req);
    /* Fresh again: the next GET is a hit. */
    req = request(&c, "GET", "/api/r", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_int_eq(a.xcache, PX_XC_HIT);
    ck_assert_uint_eq(fake.nsent, 2);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_if_none_match_with_the_current_etag_gives_304_with_the_length_kept)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    warm("/api/n", "\x0a\x0b", "twelve bytes");
    h.if_none_match = "\"ffff\", W/\"0a0b\"";
    struct px_req *req = request(&c, "GET", "/api/n", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert(!a.prebuildable);
    ck_assert_int_eq(a.status, 304);
    ck_assert(!a.http.send_body);
    ck_assert_uint_eq(a.body_len, 12);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_an_unsafe_method_invalidates_the_resource_before_the_client_hears)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    warm("/api/led", NULL, "off");
    struct px_req *req = request(&c, "DELETE", "/api/led", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    complete(fake.sent[1], CO_CODE(2, 2), -1, NULL, NULL);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 204);
    ck_assert_int_eq(a.xcache, PX_XC_BYPASS);
    px_answer_release(&a);
    px_req_free(req);
    req = request(&c, "GET", "/api/led", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT); /* no longer cached: the device is asked */
    ck_assert_uint_eq(fake.nsent, 3);
    complete(fake.sent[2], CO_CODE(4, 4), -1, NULL, NULL);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 404);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_failed_unsafe_method_leaves_the_cache_alone)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    warm("/api/keep", NULL, "v1");
    struct px_req *req = request(&c, "DELETE", "/api/keep", NULL, NULL, &step, &a);
    complete(fake.sent[1], CO_CODE(4, 3), -1, NULL, NULL);
    px_req_resume(req, &a);
    ck_assert_int_eq(a.status, 403);
    px_answer_release(&a);
    px_req_free(req);
    req = request(&c, "GET", "/api/keep", NULL, NULL, &step, &a);
    ck_assert_int_eq(a.xcache, PX_XC_HIT);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_no_store_bypasses_and_no_cache_revalidates)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    warm("/api/cc", "\x01", "v1");
    h.cache_control = "max-age=10, no-store";
    struct px_req *req = request(&c, "GET", "/api/cc", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    complete(fake.sent[1], CO_CODE(2, 5), 60, "\x02", "v2");
    px_req_resume(req, &a);
    ck_assert_int_eq(a.xcache, PX_XC_BYPASS);
    px_answer_release(&a);
    px_req_free(req);
    h.cache_control = NULL;
    h.pragma = "no-cache";
    req = request(&c, "GET", "/api/cc", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    ck_assert(has_option(fake.sent[2]->req, CO_OPT_ETAG, "\x01"));
    complete(fake.sent[2], CO_CODE(2, 3), 60, "\x01", NULL);
    px_req_resume(req, &a);
    ck_assert_int_eq(a.xcache, PX_XC_REVALIDATED);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_route_without_cache_always_asks_the_device)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    for (int i = 0; i < 2; i++) {
        struct px_req *req = request(&c, "GET", "/raw/x", NULL, NULL, &step, &a);
        ck_assert_int_eq(step, PX_STEP_WAIT);
        complete(fake.sent[i], CO_CODE(2, 5), 60, NULL, "r");
        px_req_resume(req, &a);
        ck_assert_int_eq(a.xcache, PX_XC_BYPASS);
        px_answer_release(&a);
        px_req_free(req);
    }
    ck_assert_uint_eq(fake.nsent, 2);
}
END_TEST

/* ---- live data ---- */

/* The fake device notifies: the registry fans it out. */
static void notify(struct px_exchange *x, uint32_t seq, const char *payload)
{
    x->status = PX_OK;
    x->resp_code = CO_CODE(2, 5);
    co_optset_clear(&x->resp);
    co_optset_add_uint(&x->resp, CO_OPT_OBSERVE, seq);
    co_optset_add_uint(&x->resp, CO_OPT_CONTENT_FORMAT, 0);
    free(x->resp_payload);
    x->resp_len = strlen(payload);
    x->resp_payload = (uint8_t *)strdup(payload);
    x->notify(x, x->arg);
}

START_TEST(test_a_long_poll_answers_the_next_notification_and_strips_its_query_item)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/api/hum", "a=1&observe=next&&b", NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    ck_assert_uint_eq(fake.nsent, 0);
    ck_assert_uint_eq(fake.nobserved, 1);
    struct px_exchange *x = fake.observed[0];
    ck_assert(has_option(x->req, CO_OPT_URI_QUERY, "a=1"));
    ck_assert(has_option(x->req, CO_OPT_URI_QUERY, "b"));
    ck_assert(!has_option(x->req, CO_OPT_URI_QUERY, "observe=next"));
    notify(x, 1, "current state"); /* the registration's answer: not "next" */
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_WAIT);
    notify(x, 2, "next state");
    ck_assert_int_ge(c.resumed, 1);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 200);
    body_is(&a, "next state");
    px_answer_release(&a);
    px_req_free(req);
    ck_assert_uint_eq(fake.nunobserved, 1); /* the last subscriber left: deregistered */
}
END_TEST

START_TEST(test_a_long_poll_with_nothing_new_gets_204_at_its_deadline)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/api/q", "observe=next", NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    atomic_store(&fake_now, T0 + 30000);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_EMPTY);
    ck_assert_int_eq(a.status, 204);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_an_event_stream_request_starts_a_stream_and_gets_each_notification)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    bool ended = true;
    h.accept = "text/event-stream";
    struct px_req *req = request(&c, "GET", "/api/temp", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT); /* until the registration is answered */
    ck_assert(!has_option(fake.observed[0]->req, CO_OPT_ACCEPT, NULL)); /* the stream is ours */
    notify(fake.observed[0], 4, "20.5");
    ck_assert_int_eq(c.resumed, 1);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_STREAM);
    ck_assert(a.no_store);
    px_answer_release(&a);
    struct px_notification *n = px_req_next_event(req, T0 + 15000, &ended);
    ck_assert_ptr_nonnull(n); /* the registration's answer is the first event */
    ck_assert_uint_eq(n->seq, 4);
    px_notification_release(n);
    ck_assert_ptr_null(px_req_next_event(req, T0 + 15000, &ended));
    ck_assert(!ended);
    ck_assert_int_eq(c.suspended, 2); /* parked */
    notify(fake.observed[0], 5, "21.0");
    ck_assert_int_eq(c.resumed, 2);
    n = px_req_next_event(req, T0 + 15000, &ended);
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_eq(n->seq, 5);
    ck_assert_uint_eq(n->len, 4);
    px_notification_release(n);
    px_req_free(req);
}
END_TEST

/* A front end that tells parks from suspends, as gateway/http does. */
struct park_conn {
    struct conn c;
    atomic_int parked;
};

static void on_park(void *p)
{
    atomic_fetch_add(&((struct park_conn *)p)->parked, 1);
}

static void on_park_suspend(void *p)
{
    on_suspend(&((struct park_conn *)p)->c);
}

static void on_park_resume(void *p)
{
    on_resume(&((struct park_conn *)p)->c);
}

static struct px_req *parking_request(struct park_conn *pc, const char *path, const char *query,
                                      const struct px_headers *h, enum px_step *step, struct px_answer *a)
{
    struct px_front front = {
        .suspend = on_park_suspend, .resume = on_park_resume, .park = on_park, .conn = pc};
    struct px_req *req = px_req_new(fwd, &front);
    ck_assert_ptr_nonnull(req);
    px_req_begin(req, "GET", path, query, h != NULL ? h : &no_headers);
    *step = px_req_run(req, a);
    return req;
}

START_TEST(test_registry_waits_park_and_exchange_waits_suspend)
{
    struct park_conn lp = {0}, sse = {0}, plain = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.accept = "text/event-stream";
    struct px_req *r1 = parking_request(&lp, "/api/lp", "observe=next", NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    struct px_req *r2 = parking_request(&sse, "/api/pending", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT); /* its registration is not answered yet */
    struct px_req *r3 = parking_request(&plain, "/api/x", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    ck_assert_int_eq(lp.parked, 1);
    ck_assert_int_eq(lp.c.suspended, 0);
    ck_assert_int_eq(sse.parked, 1);
    ck_assert_int_eq(sse.c.suspended, 0);
    ck_assert_int_eq(plain.parked, 0);
    ck_assert_int_eq(plain.c.suspended, 1);
    complete(fake.sent[0], CO_CODE(2, 5), -1, NULL, "x");
    ck_assert_int_eq(px_req_resume(r3, &a), PX_STEP_ANSWER);
    px_answer_release(&a);
    px_req_free(r3);
    px_req_free(r2);
    px_req_free(r1);
}
END_TEST

START_TEST(test_cancelling_a_parked_request_deregisters_before_it_is_freed)
{
    struct park_conn lp = {0}, sse = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.accept = "text/event-stream";
    struct px_req *r1 = parking_request(&lp, "/api/lp", "observe=next", NULL, &step, &a);
    struct px_req *r2 = parking_request(&sse, "/api/pending", NULL, &h, &step, &a);
    ck_assert_uint_eq(fake.nobserved, 2);
    px_req_cancel(r1); /* the front end saw the client go */
    ck_assert_uint_eq(fake.nunobserved, 1);
    px_req_cancel(r2);
    ck_assert_uint_eq(fake.nunobserved, 2);
    /* The slots are free: a new subscriber of the same resource starts a new observation. */
    struct px_req *r3 = parking_request(&sse, "/api/pending", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    ck_assert_uint_eq(fake.nobserved, 3);
    px_req_free(r1);
    px_req_free(r2);
    ck_assert_uint_eq(fake.nunobserved, 2); /* freeing after a cancel deregisters nothing twice */
    px_req_cancel(r3);
    px_req_free(r3);
    px_req_cancel(NULL);
}
END_TEST

START_TEST(test_live_requests_waiting_at_shutdown_get_503)
{
    struct park_conn lp = {0}, sse = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.accept = "text/event-stream";
    struct px_req *r1 = parking_request(&lp, "/api/lp", "observe=next", NULL, &step, &a);
    struct px_req *r2 = parking_request(&sse, "/api/pending", NULL, &h, &step, &a);
    px_forward_quiesce(fwd); /* ends every subscriber and wakes it */
    ck_assert_int_eq(lp.c.resumed, 1);
    ck_assert_int_eq(sse.c.resumed, 1);
    ck_assert_int_eq(px_req_resume(r1, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 503);
    ck_assert_int_eq(a.retry_after, 1);
    px_answer_release(&a);
    ck_assert_int_eq(px_req_resume(r2, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 503);
    px_answer_release(&a);
    px_req_free(r1);
    px_req_free(r2);
}
END_TEST

START_TEST(test_a_subscriber_that_falls_behind_is_ended_with_the_reason)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    bool ended = false;
    h.accept = "text/event-stream";
    struct px_req *req = request(&c, "GET", "/api/slow", NULL, &h, &step, &a);
    notify(fake.observed[0], 1, "first");
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    px_answer_release(&a);
    px_notification_release(px_req_next_event(req, T0, &ended)); /* the registration's answer */
    for (uint32_t seq = 2; seq < 2 + PX_SUB_QUEUE + 1; seq++) {
        notify(fake.observed[0], seq, "unread"); /* the reader never comes: one more than the queue */
    }
    struct px_notification *n = px_req_next_event(req, T0, &ended);
    ck_assert_ptr_nonnull(n);
    ck_assert(n->end);
    ck_assert_int_ne(n->status, PX_OK);
    ck_assert_str_eq(n->detail, "the subscriber fell 32 notifications behind");
    px_notification_release(n);
    ck_assert_ptr_null(px_req_next_event(req, T0, &ended));
    ck_assert(ended);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_second_subscriber_shares_the_observation)
{
    struct conn c1 = {0}, c2 = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.accept = "text/event-stream";
    struct px_req *r1 = request(&c1, "GET", "/api/temp", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    notify(fake.observed[0], 1, "20.0");
    ck_assert_int_eq(px_req_resume(r1, &a), PX_STEP_ANSWER);
    px_answer_release(&a);
    struct px_req *r2 = request(&c2, "GET", "/api/temp", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER); /* a live observation: the latest notification at once */
    ck_assert_int_eq(a.kind, PX_ANSWER_STREAM);
    px_answer_release(&a);
    ck_assert_uint_eq(fake.nobserved, 1);
    px_req_free(r1);
    ck_assert_uint_eq(fake.nunobserved, 0);
    px_req_free(r2);
    ck_assert_uint_eq(fake.nunobserved, 1);
}
END_TEST

START_TEST(test_an_event_stream_whose_registration_fails_gets_the_error_status)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.accept = "text/event-stream";
    struct px_req *req = request(&c, "GET", "/api/none", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    struct px_exchange *x = fake.observed[0];
    x->resp_code = CO_CODE(4, 4);
    co_optset_clear(&x->resp);
    x->resp_len = 0;
    x->notify(x, x->arg); /* the error answer, then the end (as the client does) */
    fake.observed[0] = NULL;
    x->status = PX_OK;
    x->done(x, x->arg);
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_COAP);
    ck_assert_int_eq(a.status, 404);
    ck_assert(a.no_store);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_notifications_refresh_the_cache_entry_of_a_caching_route)
{
    struct conn c = {0}, g = {0};
    struct px_answer a;
    enum px_step step;
    warm("/api/obs", "\x01", "old");
    struct px_req *req = request(&c, "GET", "/api/obs", "observe=next", NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    notify(fake.observed[0], 7, "newer");
    struct px_req *get = request(&g, "GET", "/api/obs", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_int_eq(a.xcache, PX_XC_HIT);
    body_is(&a, "newer");
    ck_assert_uint_eq(fake.nsent, 1); /* only the warming GET reached the device */
    px_answer_release(&a);
    px_req_free(get);
    px_req_free(req);
}
END_TEST

START_TEST(test_request_max_age_in_any_spelling_and_min_fresh_are_honoured)
{
    static const char *const revalidate[] = {"max-age=0", "max-age=00", "max-age=\"0\"",
                                             "MAX-AGE=0", "max-age=1",  "min-fresh=59"};
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    warm("/api/ma", "\x05", "v");
    atomic_store(&fake_now, T0 + 2000); /* Age 2, 58 s left */
    for (size_t i = 0; i < sizeof(revalidate) / sizeof(revalidate[0]); i++) {
        h.cache_control = revalidate[i];
        struct px_req *req = request(&c, "GET", "/api/ma", NULL, &h, &step, &a);
        ck_assert_msg(step == PX_STEP_WAIT, "%s must not be answered from the cache", revalidate[i]);
        complete(fake.sent[fake.nsent - 1], CO_CODE(2, 3), 60, "\x05", NULL);
        ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
        ck_assert_int_eq(a.xcache, PX_XC_REVALIDATED);
        px_answer_release(&a);
        px_req_free(req);
        atomic_store(&fake_now, atomic_load(&fake_now) + 2000); /* age the refreshed entry again */
    }
    h.cache_control = "max-age=5, min-fresh=10";
    struct px_req *req = request(&c, "GET", "/api/ma", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_int_eq(a.xcache, PX_XC_HIT);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_get_answers_carry_vary_accept_and_long_polls_no_store)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    warm("/api/v", NULL, "v");
    struct px_req *req = request(&c, "GET", "/api/v", NULL, NULL, &step, &a);
    ck_assert(a.vary_accept);
    ck_assert(!a.no_store);
    px_answer_release(&a);
    px_req_free(req);
    req = request(&c, "GET", "/api/v", "observe=next", NULL, &step, &a);
    notify(fake.observed[0], 1, "now");
    notify(fake.observed[0], 2, "next");
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert(a.no_store);
    ck_assert_int_eq(a.http.max_age, -1);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

/* ---- CORS ---- */

START_TEST(test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.origin = "https://app.example";
    h.access_control_method = "PUT";
    struct px_req *req = request(&c, "OPTIONS", "/web/led", NULL, &h, &step, &a);
    ck_assert_int_eq(step, PX_STEP_ANSWER);
    ck_assert_int_eq(a.kind, PX_ANSWER_PREFLIGHT);
    ck_assert_int_eq(a.status, 204);
    ck_assert_str_eq(a.cors_origin, "https://app.example");
    ck_assert_str_eq(a.allow, "GET, HEAD, PUT");
    ck_assert_uint_eq(a.cors->max_age_s, 60);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_preflight_from_another_origin_gets_403_without_cors_headers)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.origin = "https://evil.example";
    h.access_control_method = "PUT";
    struct px_req *req = request(&c, "OPTIONS", "/web/led", NULL, &h, &step, &a);
    ck_assert_int_eq(a.status, 403);
    ck_assert_ptr_null(a.cors_origin);
    ck_assert_ptr_nonnull(a.cors); /* Vary: Origin still */
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_options_on_a_route_without_cors_stays_501)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.origin = "https://app.example";
    h.access_control_method = "GET";
    struct px_req *req = request(&c, "OPTIONS", "/api/x", NULL, &h, &step, &a);
    ck_assert_int_eq(a.status, 501);
    ck_assert_ptr_null(a.cors);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_answers_to_an_allowed_origin_name_it_and_are_not_prebuilt)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    warm("/web/t", NULL, "x");
    h.origin = "https://app.example";
    struct px_req *req = request(&c, "GET", "/web/t", NULL, &h, &step, &a);
    ck_assert_int_eq(a.xcache, PX_XC_HIT);
    ck_assert_str_eq(a.cors_origin, "https://app.example");
    ck_assert(!a.prebuildable);
    px_answer_release(&a);
    px_req_free(req);
    h.origin = "https://evil.example";
    req = request(&c, "GET", "/web/t", NULL, &h, &step, &a);
    ck_assert_ptr_null(a.cors_origin);
    ck_assert(a.prebuildable);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

/* ---- authentication ---- */

static const char *lookup_api_key(void *ctx, const char *name)
{
    return strcasecmp(name, "X-API-Key") == 0 ? ctx : NULL;
}

static int auth_status(const char *path, const char *authorization, const char *api_key, struct px_answer *a)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    enum px_step step;
    h.authorization = authorization;
    h.get = lookup_api_key;
    h.get_ctx = (void *)api_key;
    struct px_req *req = request(&c, "GET", path, NULL, &h, &step, a);
    if (step == PX_STEP_WAIT) {
        complete(fake.sent[fake.nsent - 1], CO_CODE(2, 5), 60, NULL, "ok");
        px_req_resume(req, a);
    }
    int status = a->status;
    px_req_free(req);
    return status;
}

START_TEST(test_a_bearer_route_wants_a_listed_token_and_says_which_scheme)
{
    struct px_answer a;
    ck_assert_int_eq(auth_status("/sec/x", NULL, NULL, &a), 401);
    ck_assert_str_eq(a.challenge, "Bearer realm=\"coapgw\"");
    px_answer_release(&a);
    ck_assert_int_eq(auth_status("/sec/x", "Bearer wrong", NULL, &a), 403);
    ck_assert_str_eq(a.challenge, "");
    px_answer_release(&a);
    ck_assert_int_eq(auth_status("/sec/x", "Basic czNjcmV0", NULL, &a), 403);
    px_answer_release(&a);
    ck_assert_uint_eq(fake.nsent, 0); /* refused before the device is asked */
    ck_assert_int_eq(auth_status("/sec/x", "Bearer s3cret-token", NULL, &a), 200);
    px_answer_release(&a);
    ck_assert_int_eq(auth_status("/sec/y", "bearer other.token", NULL, &a), 200);
    px_answer_release(&a);
}
END_TEST

START_TEST(test_an_api_key_route_reads_its_header)
{
    struct px_answer a;
    ck_assert_int_eq(auth_status("/key/x", NULL, NULL, &a), 401);
    ck_assert_str_eq(a.challenge, "ApiKey header=\"X-API-Key\"");
    px_answer_release(&a);
    ck_assert_int_eq(auth_status("/key/x", NULL, "key-2", &a), 403);
    px_answer_release(&a);
    ck_assert_int_eq(auth_status("/key/x", NULL, "key-1", &a), 200);
    px_answer_release(&a);
}
END_TEST

START_TEST(test_a_preflight_is_answered_before_authentication)
{
    struct conn c = {0};
    struct px_headers h = no_headers;
    struct px_answer a;
    enum px_step step;
    h.origin = "https://app.example";
    h.access_control_method = "GET";
    struct px_req *req = request(&c, "OPTIONS", "/web/x", NULL, &h, &step, &a);
    ck_assert_int_eq(a.status, 204);
    px_answer_release(&a);
    px_req_free(req);
    ck_assert_int_eq(auth_status("/web/x", NULL, NULL, &a), 401); /* the actual request still needs it */
    px_answer_release(&a);
}
END_TEST

START_TEST(test_metrics_auth_is_checked_by_the_pipeline_for_the_front_end)
{
    struct px_headers h = no_headers;
    char challenge[96] = "";
    ck_assert_int_eq(px_forward_admin_auth(fwd, &h, challenge, sizeof(challenge)), PX_AUTH_MISSING);
    ck_assert_str_eq(challenge, "Bearer realm=\"coapgw\"");
    h.authorization = "Bearer s3cret-token"; /* a route's token is not the admin's */
    ck_assert_int_eq(px_forward_admin_auth(fwd, &h, challenge, sizeof(challenge)), PX_AUTH_WRONG);
    h.authorization = "Bearer admin-token";
    ck_assert_int_eq(px_forward_admin_auth(fwd, &h, challenge, sizeof(challenge)), PX_AUTH_OK);
}
END_TEST

/* ---- forward proxy ---- */

static void setup_fp(void)
{
    snprintf(secret_dir, sizeof(secret_dir), ".");
    setup_with("{\"forward_proxy\": {\"enabled\": true, \"allow\": [\"127.0.0.0/8\", \"::1/128\"]}}");
}

START_TEST(test_a_forward_proxy_request_goes_to_its_target_with_uri_host_and_no_cache)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/hc/coap://LocalHost:5700/a/b", "x=1", NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT);
    struct px_exchange *x = fake.sent[0];
    ck_assert_ptr_nonnull(x->target);
    ck_assert(has_option(x->req, CO_OPT_URI_HOST, "localhost")); /* RFC 7252 §6.4 step 5, lower case */
    ck_assert(has_option(x->req, CO_OPT_URI_PATH, "a"));
    ck_assert(has_option(x->req, CO_OPT_URI_QUERY, "x=1"));
    ck_assert(!has_option(x->req, CO_OPT_URI_PORT, NULL));
    complete(x, CO_CODE(2, 5), 60, NULL, "t");
    ck_assert_int_eq(px_req_resume(req, &a), PX_STEP_ANSWER);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(a.xcache, PX_XC_NONE);
    px_answer_release(&a);
    px_req_free(req);
    req = request(&c, "GET", "/hc/coap://127.0.0.1:5700/a/b", NULL, NULL, &step, &a);
    ck_assert_int_eq(step, PX_STEP_WAIT); /* never answered from a cache */
    ck_assert(!has_option(fake.sent[1]->req, CO_OPT_URI_HOST, NULL));
    complete(fake.sent[1], CO_CODE(2, 5), 60, NULL, "t");
    px_req_resume(req, &a);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

START_TEST(test_a_forward_proxy_target_outside_allow_is_403_before_the_device)
{
    struct conn c = {0};
    struct px_answer a;
    enum px_step step;
    struct px_req *req = request(&c, "GET", "/hc/coap://10.1.2.3/x", NULL, NULL, &step, &a);
    ck_assert_int_eq(a.status, 403);
    ck_assert_uint_eq(fake.nsent, 0);
    px_answer_release(&a);
    px_req_free(req);
}
END_TEST

/* ---- rate limit ---- */

static void setup_rate(void)
{
    snprintf(secret_dir, sizeof(secret_dir), ".");
    setup_with("{\"upstreams\": {\"dev\": {\"uri\": \"coap://127.0.0.1:5683\"}},"
               " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"dev\"}],"
               " \"rate_limit\": {\"per_ip_rps\": 2, \"burst\": 3}}");
}

static int status_from(const struct sockaddr_in *from, struct px_answer *a)
{
    struct conn c = {0};
    struct px_front front = {
        .suspend = on_suspend, .resume = on_resume, .conn = &c, .remote = (const struct sockaddr *)from};
    struct px_req *req = px_req_new(fwd, &front);
    px_req_begin(req, "GET", "/nope-route-free/x", NULL, &no_headers);
    px_req_run(req, a);
    int status = a->status;
    px_req_free(req);
    return status;
}

START_TEST(test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not)
{
    struct sockaddr_in a1 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    struct sockaddr_in a2 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002)};
    struct px_answer a;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(status_from(&a1, &a), 404); /* within the burst: the request goes on (no route) */
        px_answer_release(&a);
    }
    ck_assert_int_eq(status_from(&a1, &a), 429);
    ck_assert_int_eq(a.retry_after, 1);
    px_answer_release(&a);
    ck_assert_int_eq(status_from(&a2, &a), 404); /* another client has its own bucket */
    px_answer_release(&a);
    atomic_store(&fake_now, T0 + 500); /* half a second at 2/s: one token back */
    ck_assert_int_eq(status_from(&a1, &a), 404);
    px_answer_release(&a);
    ck_assert_int_eq(status_from(&a1, &a), 429);
    px_answer_release(&a);
    ck_assert_uint_eq(fake.nsent, 0);
}
END_TEST

static Suite *forward_suite(void)
{
    Suite *s = suite_create("forward");

    TCase *refusals = tcase_create("refusals");
    tcase_add_checked_fixture(refusals, setup, teardown);
    tcase_add_test(refusals, test_a_path_without_route_is_a_404_problem_and_the_device_sees_nothing);
    tcase_add_test(refusals, test_a_method_the_route_does_not_allow_is_405_with_allow);
    tcase_add_test(refusals, test_a_method_without_coap_equivalent_is_501);
    tcase_add_test(refusals, test_a_declared_oversized_body_is_413_before_it_is_read_and_closes);
    tcase_add_test(refusals, test_a_body_growing_past_the_limit_is_413);
    tcase_add_test(refusals, test_a_draining_pipeline_answers_503_with_retry_after);
    tcase_add_test(refusals, test_an_unsupported_content_type_is_415_before_the_device_is_asked);
    suite_add_tcase(s, refusals);

    TCase *answers = tcase_create("answers");
    tcase_add_checked_fixture(answers, setup, teardown);
    tcase_add_test(answers, test_a_miss_suspends_before_submitting_and_answers_after_resume);
    tcase_add_test(answers, test_an_upstream_timeout_becomes_a_504_problem);
    suite_add_tcase(s, answers);

    TCase *caching = tcase_create("cache policy");
    tcase_add_checked_fixture(caching, setup, teardown);
    tcase_add_test(caching, test_a_fresh_hit_is_answered_at_once_with_its_age);
    tcase_add_test(caching, test_n_identical_misses_make_one_submit_and_all_get_the_answer);
    tcase_add_test(caching, test_a_failed_flight_gives_every_waiter_the_error);
    tcase_add_test(caching, test_a_stale_entry_is_revalidated_with_its_etag_and_2_03_refreshes_it);
    tcase_add_test(caching, test_if_none_match_with_the_current_etag_gives_304_with_the_length_kept);
    tcase_add_test(caching, test_an_unsafe_method_invalidates_the_resource_before_the_client_hears);
    tcase_add_test(caching, test_a_failed_unsafe_method_leaves_the_cache_alone);
    tcase_add_test(caching, test_no_store_bypasses_and_no_cache_revalidates);
    tcase_add_test(caching, test_a_route_without_cache_always_asks_the_device);
    suite_add_tcase(s, caching);

    TCase *cors = tcase_create("cors");
    tcase_add_checked_fixture(cors, setup, teardown);
    tcase_add_test(cors, test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway);
    tcase_add_test(cors, test_a_preflight_from_another_origin_gets_403_without_cors_headers);
    tcase_add_test(cors, test_options_on_a_route_without_cors_stays_501);
    tcase_add_test(cors, test_answers_to_an_allowed_origin_name_it_and_are_not_prebuilt);
    suite_add_tcase(s, cors);

    TCase *auth = tcase_create("authentication");
    tcase_add_checked_fixture(auth, setup_auth, teardown_auth);
    tcase_add_test(auth, test_a_bearer_route_wants_a_listed_token_and_says_which_scheme);
    tcase_add_test(auth, test_an_api_key_route_reads_its_header);
    tcase_add_test(auth, test_a_preflight_is_answered_before_authentication);
    tcase_add_test(auth, test_metrics_auth_is_checked_by_the_pipeline_for_the_front_end);
    suite_add_tcase(s, auth);

    TCase *fp = tcase_create("forward proxy");
    tcase_add_checked_fixture(fp, setup_fp, teardown);
    tcase_add_test(fp, test_a_forward_proxy_request_goes_to_its_target_with_uri_host_and_no_cache);
    tcase_add_test(fp, test_a_forward_proxy_target_outside_allow_is_403_before_the_device);
    suite_add_tcase(s, fp);

    TCase *rate = tcase_create("rate limit");
    tcase_add_checked_fixture(rate, setup_rate, teardown);
    tcase_add_test(rate, test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not);
    suite_add_tcase(s, rate);

    TCase *live = tcase_create("live data");
    tcase_add_checked_fixture(live, setup, teardown);
    tcase_add_test(live, test_a_long_poll_answers_the_next_notification_and_strips_its_query_item);
    tcase_add_test(live, test_a_long_poll_with_nothing_new_gets_204_at_its_deadline);
    tcase_add_test(live, test_an_event_stream_request_starts_a_stream_and_gets_each_notification);
    tcase_add_test(live, test_a_second_subscriber_shares_the_observation);
    tcase_add_test(live, test_registry_waits_park_and_exchange_waits_suspend);
    tcase_add_test(live, test_cancelling_a_parked_request_deregisters_before_it_is_freed);
    tcase_add_test(live, test_live_requests_waiting_at_shutdown_get_503);
    tcase_add_test(live, test_a_subscriber_that_falls_behind_is_ended_with_the_reason);
    tcase_add_test(live, test_an_event_stream_whose_registration_fails_gets_the_error_status);
    tcase_add_test(live, test_notifications_refresh_the_cache_entry_of_a_caching_route);
    tcase_add_test(caching, test_request_max_age_in_any_spelling_and_min_fresh_are_honoured);
    tcase_add_test(caching, test_get_answers_carry_vary_accept_and_long_polls_no_store);
    suite_add_tcase(s, live);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(forward_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
