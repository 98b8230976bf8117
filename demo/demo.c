/* demo/demo: the embedded demo CoAP server (hello, sensors, LED, echo, firmware, upload) on its own
 * thread. Everything made from the libcoap context is touched by the demo thread only; the caller thread only
 * starts, signals (eventfd) and joins it. */
#include "demo/demo.h"

#include "base/log.h"

#include <coap3/coap.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NOTIFY_INTERVAL_MS 1000
#define SENSOR_MAX_AGE 5
#define HELLO_TEXT "Hello, CoAP!"

/* The firmware image: FIRMWARE_SIZE bytes from xorshift64* seeded with FIRMWARE_SEED, so every build and
 * every run serves the same bytes and the same SHA-256. */
#define FIRMWARE_SIZE 65536
#define FIRMWARE_SEED 0x636f61706777ULL /* "coapgw" */
#define FIRMWARE_MAX_AGE 3600
#define UPLOAD_MAX_BYTES (4u * 1024 * 1024)
#define SHA256_LEN 32
#define SHA256_HEX_LEN (2 * SHA256_LEN)

/* A simulated sensor: base + a slow swing + a faster wobble, so readings look alive but stay plausible. */
struct sensor_def {
    const char *path;
    const char *rt;
    const char *title;
    const char *unit;
    double base;
    double swing;
    long long swing_period_ms;
    double wobble;
    long long wobble_period_ms;
};

static const struct sensor_def sensor_defs[] = {
    {"sensors/temperature", "\"temperature-c\"", "\"Temperature\"", "Cel", 21.0, 1.5, 300000, 0.3, 17000},
    {"sensors/humidity", "\"humidity-rh\"", "\"Relative humidity\"", "%RH", 45.0, 5.0, 600000, 0.8, 23000},
};

#define SENSOR_COUNT (sizeof(sensor_defs) / sizeof(sensor_defs[0]))

struct demo_server {
    pthread_t thread;
    int stop_fd;
    coap_address_t addr;
    char listen[80];

    /* Startup handshake: the thread fills these, then posts. */
    sem_t ready;
    bool ok;
    char err[256];

    /* Owned by the demo thread. */
    coap_context_t *ctx;
    coap_resource_t *sensors[SENSOR_COUNT];
    bool led_on;
    size_t upload_bytes;                    /* summary of the last accepted upload */
    char upload_sha256[SHA256_HEX_LEN + 1]; /* hex */

    /* Built by server_setup, read-only afterwards; libcoap borrows it for block-wise GETs. */
    uint8_t firmware[FIRMWARE_SIZE];
    char firmware_sha256[SHA256_HEX_LEN + 1]; /* hex */
};

static pthread_once_t coap_once = PTHREAD_ONCE_INIT;

static void coap_init_once(void)
{
    coap_startup();
}

/* ---- small helpers ---- */

static struct demo_server *server_of(coap_session_t *session)
{
    return coap_get_app_data(coap_session_get_context(session));
}

static long long now_ms(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Approximates sin(2*pi*phase) for phase in [0,1) with two parabolas: smooth enough for a demo and keeps
 * this file free of libm. */
static double wave(long long t_ms, long long period_ms)
{
    double p = (double)(t_ms % period_ms) / (double)period_ms;

    if (p < 0.5) {
        return 16.0 * p * (0.5 - p);
    }
    return -16.0 * (p - 0.5) * (1.0 - p);
}

static double sensor_value(const struct sensor_def *def, long long t_ms)
{
    return def->base + def->swing * wave(t_ms, def->swing_period_ms) +
           def->wobble * wave(t_ms, def->wobble_period_ms);
}

/* FNV-1a over the payload: the same representation always gets the same ETag (at most 8 bytes). */
static uint64_t etag_of(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h ? h : 1;
}

/* Writes the lower-case hex SHA-256 of data into hex. Returns 0, or -1 when gnutls fails. */
static int sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t digest[SHA256_LEN];

    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, len ? data : "", len, digest) < 0) {
        return -1;
    }
    for (size_t i = 0; i < SHA256_LEN; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0xf];
    }
    hex[SHA256_HEX_LEN] = '\0';
    return 0;
}

static bool option_uint(const coap_pdu_t *pdu, coap_option_num_t num, unsigned int *out)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt = coap_check_option(pdu, num, &it);

    if (!opt) {
        return false;
    }
    *out = coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
    return true;
}

static void reply_error(coap_pdu_t *response, coap_pdu_code_t code, const char *diagnostic)
{
    coap_pdu_set_code(response, code);
    coap_add_data(response, strlen(diagnostic), (const uint8_t *)diagnostic);
}

/* RFC 7252 5.10.4: an Accept naming another format than the one we have is 4.06. */
static bool accept_ok(const coap_pdu_t *request, coap_pdu_t *response, unsigned int format)
{
    unsigned int accept;
    char msg[96];

    if (!option_uint(request, COAP_OPTION_ACCEPT, &accept) || accept == format) {
        return true;
    }
    snprintf(msg, sizeof(msg), "Accept %u not available, this resource serves Content-Format %u", accept,
             format);
    reply_error(response, COAP_RESPONSE_CODE_NOT_ACCEPTABLE, msg);
    return false;
}

static void release_payload(coap_session_t *session, void *payload)
{
    (void)session;
    free(payload);
}

static void add_uint_option(coap_pdu_t *pdu, coap_option_num_t num, uint64_t value)
{
    uint8_t buf[8];

    coap_add_option(pdu, num, coap_encode_var_safe8(buf, sizeof(buf), value), buf);
}

/* True when the request lists our current ETag: the client's copy is still good (RFC 7252 5.10.6.2). */
static bool etag_matches(const coap_pdu_t *request, uint64_t etag)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt;

    coap_option_iterator_init(request, &it, COAP_OPT_ALL);
    while ((opt = coap_option_next(&it))) {
        if (it.number == COAP_OPTION_ETAG &&
            coap_decode_var_bytes8(coap_opt_value(opt), coap_opt_length(opt)) == etag) {
            return true;
        }
    }
    return false;
}

struct reply {
    coap_pdu_code_t code;
    uint16_t format;
    int maxage; /* seconds; < 0 leaves Max-Age out (CoAP default 60) */
    const void *data;
    size_t len;
};

/* Sends the body, block-wise when it does not fit one datagram. A 2.05 carries an ETag derived from the
 * body and becomes 2.03 Valid, without body, when the client already holds that ETag. borrowed: r->data
 * lives as long as the context, so libcoap points at it; otherwise it gets a copy it frees itself. */
static void send_body(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                      const coap_string_t *query, coap_pdu_t *response, const struct reply *r, bool borrowed)
{
    const void *data = r->data;
    uint64_t etag = 0;
    void *copy = NULL;

    if (r->code == COAP_RESPONSE_CODE_CONTENT) {
        etag = etag_of(r->data, r->len);
        add_uint_option(response, COAP_OPTION_ETAG, etag);
        if (etag_matches(request, etag)) {
            coap_pdu_set_code(response, COAP_RESPONSE_CODE_VALID);
            if (r->maxage >= 0) {
                add_uint_option(response, COAP_OPTION_MAXAGE, (uint64_t)r->maxage);
            }
            return;
        }
    }
    if (!borrowed) {
        copy = malloc(r->len ? r->len : 1);
        if (!copy) {
            reply_error(response, COAP_RESPONSE_CODE_INTERNAL_ERROR, "out of memory");
            return;
        }
        memcpy(copy, r->data, r->len);
        data = copy;
    }
    /* libcoap leaves out Content-Format 0; text/plain is said explicitly so no client has to guess. */
    if (r->format == COAP_MEDIATYPE_TEXT_PLAIN) {
        add_uint_option(response, COAP_OPTION_CONTENT_FORMAT, 0);
    }
    coap_pdu_set_code(response, r->code);
    /* libcoap calls release_payload once the last block is out, on success and on failure alike. */
    coap_add_data_large_response(resource, session, request, response, query, r->format, r->maxage, etag,
                                 r->len, data, copy ? release_payload : NULL, copy);
}

static void send_reply(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                       const coap_string_t *query, coap_pdu_t *response, const struct reply *r)
{
    send_body(resource, session, request, query, response, r, false);
}

/* ---- handlers ---- */

static void hnd_hello(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                      const coap_string_t *query, coap_pdu_t *response)
{
    struct reply r = {COAP_RESPONSE_CODE_CONTENT, COAP_MEDIATYPE_TEXT_PLAIN, -1, HELLO_TEXT,
                      strlen(HELLO_TEXT)};

    if (accept_ok(request, response, r.format)) {
        send_reply(resource, session, request, query, response, &r);
    }
}

static void hnd_sensor(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                       const coap_string_t *query, coap_pdu_t *response)
{
    const struct sensor_def *def = coap_resource_get_userdata(resource);
    char body[80];
    struct reply r = {COAP_RESPONSE_CODE_CONTENT, COAP_MEDIATYPE_APPLICATION_JSON, SENSOR_MAX_AGE, body, 0};

    if (!accept_ok(request, response, r.format)) {
        return;
    }
    r.len = (size_t)snprintf(body, sizeof(body), "{\"value\":%.1f,\"unit\":\"%s\"}",
                             sensor_value(def, now_ms(CLOCK_REALTIME)), def->unit);
    send_reply(resource, session, request, query, response, &r);
}

static void reply_led(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                      const coap_string_t *query, coap_pdu_t *response, coap_pdu_code_t code)
{
    const char *body = server_of(session)->led_on ? "{\"on\":true}" : "{\"on\":false}";
    /* Max-Age 0 on GET: the state can change under any cache at any moment. */
    struct reply r = {code, COAP_MEDIATYPE_APPLICATION_JSON, code == COAP_RESPONSE_CODE_CONTENT ? 0 : -1,
                      body, strlen(body)};

    send_reply(resource, session, request, query, response, &r);
}

static void hnd_led_get(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                        const coap_string_t *query, coap_pdu_t *response)
{
    if (!accept_ok(request, response, COAP_MEDIATYPE_APPLICATION_JSON)) {
        return;
    }
    reply_led(resource, session, request, query, response, COAP_RESPONSE_CODE_CONTENT);
}

/* Parses {"on": <bool>}. On failure writes a diagnostic into msg and returns -1. */
static int parse_led(const uint8_t *data, size_t len, bool *on, char *msg, size_t msg_len)
{
    json_error_t jerr;
    json_t *root, *field;
    int rc = -1;

    if (len == 0) {
        snprintf(msg, msg_len, "empty body, expected JSON like {\"on\":true}");
        return -1;
    }
    root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(msg, msg_len, "invalid JSON at %d:%d: %s", jerr.line, jerr.column, jerr.text);
        return -1;
    }
    field = json_object_get(root, "on");
    if (!json_is_object(root)) {
        snprintf(msg, msg_len, "body must be a JSON object like {\"on\":true}");
    } else if (!field) {
        snprintf(msg, msg_len, "field \"on\" is missing");
    } else if (!json_is_boolean(field)) {
        snprintf(msg, msg_len, "field \"on\" must be a boolean");
    } else {
        *on = json_is_true(field);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static bool content_format_is(const coap_pdu_t *request, coap_pdu_t *response, unsigned int want)
{
    unsigned int format;
    char msg[96];

    if (!option_uint(request, COAP_OPTION_CONTENT_FORMAT, &format)) {
        snprintf(msg, sizeof(msg), "Content-Format missing, expected %u (application/json)", want);
    } else if (format != want) {
        snprintf(msg, sizeof(msg), "Content-Format %u not supported, expected %u (application/json)", format,
                 want);
    } else {
        return true;
    }
    reply_error(response, COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT, msg);
    return false;
}

static void hnd_led_set(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                        const coap_string_t *query, coap_pdu_t *response)
{
    struct demo_server *srv = server_of(session);
    const uint8_t *data = NULL;
    size_t len = 0, offset, total;
    char msg[200];
    bool on;

    if (!content_format_is(request, response, COAP_MEDIATYPE_APPLICATION_JSON) ||
        !accept_ok(request, response, COAP_MEDIATYPE_APPLICATION_JSON)) {
        return;
    }
    (void)coap_get_data_large(request, &len, &data, &offset, &total);
    if (parse_led(data, len, &on, msg, sizeof(msg)) != 0) {
        reply_error(response, COAP_RESPONSE_CODE_BAD_REQUEST, msg);
        return;
    }
    if (on != srv->led_on) {
        srv->led_on = on;
        CG_LOG(CG_LOG_INFO, "demo", "event=led_changed on=%s", on ? "true" : "false");
        coap_resource_notify_observers(resource, NULL);
    }
    reply_led(resource, session, request, query, response, COAP_RESPONSE_CODE_CHANGED);
}

/* Echoes the body back with the request's Content-Format (42, octet-stream, when it has none). */
static void hnd_echo(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                     const coap_string_t *query, coap_pdu_t *response)
{
    unsigned int format = COAP_MEDIATYPE_APPLICATION_OCTET_STREAM;
    struct reply r = {COAP_RESPONSE_CODE_CHANGED, 0, -1, NULL, 0};
    const uint8_t *data = NULL;
    size_t offset, total;

    (void)option_uint(request, COAP_OPTION_CONTENT_FORMAT, &format);
    if (!accept_ok(request, response, format)) {
        return;
    }
    (void)coap_get_data_large(request, &r.len, &data, &offset, &total);
    r.format = (uint16_t)format;
    r.data = data;
    send_reply(resource, session, request, query, response, &r);
}

static void hnd_firmware(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                         const coap_string_t *query, coap_pdu_t *response)
{
    struct demo_server *srv = server_of(session);
    struct reply r = {COAP_RESPONSE_CODE_CONTENT, COAP_MEDIATYPE_APPLICATION_OCTET_STREAM, FIRMWARE_MAX_AGE,
                      srv->firmware, FIRMWARE_SIZE};

    if (accept_ok(request, response, r.format)) {
        send_body(resource, session, request, query, response, &r, true);
    }
}

static void hnd_firmware_sha256(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                                const coap_string_t *query, coap_pdu_t *response)
{
    struct demo_server *srv = server_of(session);
    struct reply r = {COAP_RESPONSE_CODE_CONTENT, COAP_MEDIATYPE_TEXT_PLAIN, FIRMWARE_MAX_AGE,
                      srv->firmware_sha256, SHA256_HEX_LEN};

    if (accept_ok(request, response, r.format)) {
        send_body(resource, session, request, query, response, &r, true);
    }
}

static void reply_upload(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                         const coap_string_t *query, coap_pdu_t *response, coap_pdu_code_t code)
{
    struct demo_server *srv = server_of(session);
    char body[128];
    /* Max-Age 0 on GET: the next upload replaces the summary. */
    struct reply r = {code, COAP_MEDIATYPE_APPLICATION_JSON, code == COAP_RESPONSE_CODE_CONTENT ? 0 : -1,
                      body, 0};

    r.len = (size_t)snprintf(body, sizeof(body), "{\"bytes\":%zu,\"sha256\":\"%s\"}", srv->upload_bytes,
                             srv->upload_sha256);
    send_reply(resource, session, request, query, response, &r);
}

static void hnd_upload_get(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                           const coap_string_t *query, coap_pdu_t *response)
{
    if (accept_ok(request, response, COAP_MEDIATYPE_APPLICATION_JSON)) {
        reply_upload(resource, session, request, query, response, COAP_RESPONSE_CODE_CONTENT);
    }
}

/* RFC 7959 2.9.3: 4.13 with Size1 telling the client the largest body we take. */
static void reply_too_large(coap_pdu_t *response, size_t len)
{
    char msg[96];

    CG_LOG(CG_LOG_INFO, "demo", "event=upload_rejected bytes=%zu max=%u", len, UPLOAD_MAX_BYTES);
    add_uint_option(response, COAP_OPTION_SIZE1, UPLOAD_MAX_BYTES);
    snprintf(msg, sizeof(msg), "body of %zu bytes exceeds the limit of %u bytes", len, UPLOAD_MAX_BYTES);
    reply_error(response, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE, msg);
}

/* Takes any Content-Format. libcoap hands over the whole body once every Block1 has arrived; a lone block
 * past the first (offset != 0) is a body we never saw the start of, hence 4.08 (RFC 7959 2.9.2). */
static void hnd_upload_put(coap_resource_t *resource, coap_session_t *session, const coap_pdu_t *request,
                           const coap_string_t *query, coap_pdu_t *response)
{
    struct demo_server *srv = server_of(session);
    const uint8_t *data = NULL;
    size_t len = 0, offset = 0, total = 0;
    char hex[SHA256_HEX_LEN + 1];

    if (!accept_ok(request, response, COAP_MEDIATYPE_APPLICATION_JSON)) {
        return;
    }
    (void)coap_get_data_large(request, &len, &data, &offset, &total);
    if (len > UPLOAD_MAX_BYTES || total > UPLOAD_MAX_BYTES) {
        reply_too_large(response, len > total ? len : total);
        return;
    }
    if (offset != 0 || total != len) {
        reply_error(response, COAP_RESPONSE_CODE_INCOMPLETE,
                    "incomplete body: Block1 transfer must start at 0");
        return;
    }
    if (sha256_hex(data, len, hex) != 0) {
        reply_error(response, COAP_RESPONSE_CODE_INTERNAL_ERROR, "cannot hash the body");
        return;
    }
    srv->upload_bytes = len;
    memcpy(srv->upload_sha256, hex, sizeof(hex));
    CG_LOG(CG_LOG_INFO, "demo", "event=upload bytes=%zu sha256=%s", len, hex);
    reply_upload(resource, session, request, query, response, COAP_RESPONSE_CODE_CHANGED);
}

/* ---- resources ---- */

static coap_resource_t *add_resource(struct demo_server *srv, const char *path, const char *rt,
                                     const char *iface, const char *ct, const char *title)
{
    coap_resource_t *r = coap_resource_init(path ? coap_make_str_const(path) : NULL, 0);

    if (!r) {
        return NULL;
    }
    coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const(rt), 0);
    coap_add_attr(r, coap_make_str_const("if"), coap_make_str_const(iface), 0);
    coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const(ct), 0);
    coap_add_attr(r, coap_make_str_const("title"), coap_make_str_const(title), 0);
    coap_add_resource(srv->ctx, r);
    return r;
}

/* /firmware and /firmware/sha256; the digest and size are also attributes in /.well-known/core. */
static int add_firmware_resources(struct demo_server *srv)
{
    char sha256_attr[SHA256_HEX_LEN + 3];
    char sz_attr[16];
    coap_resource_t *r;

    r = add_resource(srv, "firmware", "\"firmware\"", "\"core.rp\"", "42", "\"Firmware image\"");
    if (!r) {
        return -1;
    }
    snprintf(sha256_attr, sizeof(sha256_attr), "\"%s\"", srv->firmware_sha256);
    snprintf(sz_attr, sizeof(sz_attr), "%u", (unsigned)FIRMWARE_SIZE);
    coap_add_attr(r, coap_make_str_const("sz"), coap_make_str_const(sz_attr), 0);
    coap_add_attr(r, coap_make_str_const("sha256"), coap_make_str_const(sha256_attr), 0);
    coap_register_request_handler(r, COAP_REQUEST_GET, hnd_firmware);
    r = add_resource(srv, "firmware/sha256", "\"checksum\"", "\"core.rp\"", "0", "\"Firmware SHA-256\"");
    if (!r) {
        return -1;
    }
    coap_register_request_handler(r, COAP_REQUEST_GET, hnd_firmware_sha256);
    return 0;
}

static int add_resources(struct demo_server *srv)
{
    coap_resource_t *r;

    r = add_resource(srv, NULL, "\"hello\"", "\"core.rp\"", "0", "\"Hello\"");
    if (!r) {
        return -1;
    }
    coap_register_request_handler(r, COAP_REQUEST_GET, hnd_hello);
    for (size_t i = 0; i < SENSOR_COUNT; i++) {
        const struct sensor_def *def = &sensor_defs[i];

        r = add_resource(srv, def->path, def->rt, "\"core.s\"", "50", def->title);
        if (!r) {
            return -1;
        }
        coap_resource_set_userdata(r, (void *)def);
        coap_resource_set_get_observable(r, 1);
        coap_register_request_handler(r, COAP_REQUEST_GET, hnd_sensor);
        srv->sensors[i] = r;
    }
    r = add_resource(srv, "actuators/led", "\"light\"", "\"core.a\"", "50", "\"LED\"");
    if (!r) {
        return -1;
    }
    coap_resource_set_get_observable(r, 1);
    coap_register_request_handler(r, COAP_REQUEST_GET, hnd_led_get);
    coap_register_request_handler(r, COAP_REQUEST_PUT, hnd_led_set);
    coap_register_request_handler(r, COAP_REQUEST_POST, hnd_led_set);
    r = add_resource(srv, "echo", "\"echo\"", "\"core.p\"", "42", "\"Echo (POST/PUT)\"");
    if (!r) {
        return -1;
    }
    coap_register_request_handler(r, COAP_REQUEST_PUT, hnd_echo);
    coap_register_request_handler(r, COAP_REQUEST_POST, hnd_echo);
    r = add_resource(srv, "upload", "\"upload\"", "\"core.p\"", "50", "\"Upload sink (PUT/POST)\"");
    if (!r) {
        return -1;
    }
    coap_register_request_handler(r, COAP_REQUEST_GET, hnd_upload_get);
    coap_register_request_handler(r, COAP_REQUEST_PUT, hnd_upload_put);
    coap_register_request_handler(r, COAP_REQUEST_POST, hnd_upload_put);
    return add_firmware_resources(srv);
}

/* ---- thread ---- */

/* libcoap binds with SO_REUSEADDR, which on Linux lets two UDP servers share a port silently (the newer one
 * steals the traffic). A plain bind first turns "port taken" into the error the caller expects. */
static int probe_bind(const coap_address_t *addr)
{
    int fd = socket(addr->addr.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0) {
        return -1;
    }
    rc = bind(fd, &addr->addr.sa, addr->size);
    if (rc != 0) {
        int saved_errno = errno;

        close(fd);
        errno = saved_errno;
        return -1;
    }
    close(fd);
    return 0;
}

/* xorshift64*: a fixed seed gives the same image everywhere, without libc's rand() state. */
static void firmware_build(uint8_t *image, size_t len)
{
    uint64_t x = FIRMWARE_SEED;

    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        image[i] = (uint8_t)((x * 2685821657736338717ULL) >> 56);
    }
}

/* The firmware image and its digest, and the summary of the empty body as the "last upload". */
static int content_setup(struct demo_server *srv)
{
    firmware_build(srv->firmware, sizeof(srv->firmware));
    if (sha256_hex(srv->firmware, sizeof(srv->firmware), srv->firmware_sha256) != 0 ||
        sha256_hex(NULL, 0, srv->upload_sha256) != 0) {
        snprintf(srv->err, sizeof(srv->err), "demo_server: cannot compute SHA-256 (gnutls)");
        return -1;
    }
    return 0;
}

/* Runs on the demo thread: builds the context and binds. On failure fills srv->err and frees what it made. */
static int server_setup(struct demo_server *srv)
{
    if (probe_bind(&srv->addr) != 0) {
        snprintf(srv->err, sizeof(srv->err), "demo_server: cannot bind %s: %s", srv->listen, strerror(errno));
        return -1;
    }
    if (content_setup(srv) != 0) {
        return -1;
    }
    srv->ctx = coap_new_context(NULL);
    if (!srv->ctx) {
        snprintf(srv->err, sizeof(srv->err), "demo_server: cannot create libcoap context");
        return -1;
    }
    coap_set_app_data(srv->ctx, srv);
    coap_context_set_block_mode(srv->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    errno = 0;
    if (!coap_new_endpoint(srv->ctx, &srv->addr, COAP_PROTO_UDP)) {
        snprintf(srv->err, sizeof(srv->err), "demo_server: cannot bind %s: %s", srv->listen,
                 errno ? strerror(errno) : "libcoap refused the endpoint");
        goto out_free_ctx;
    }
    if (add_resources(srv) != 0) {
        snprintf(srv->err, sizeof(srv->err), "demo_server: cannot create resources: out of memory");
        goto out_free_ctx;
    }
    return 0;

out_free_ctx:
    coap_free_context(srv->ctx);
    srv->ctx = NULL;
    return -1;
}

static void notify_sensors(struct demo_server *srv)
{
    for (size_t i = 0; i < SENSOR_COUNT; i++) {
        coap_resource_notify_observers(srv->sensors[i], NULL);
    }
}

/* Milliseconds to wait: until libcoap's next timer or the next notification, whichever is first. */
static int next_wait_ms(struct demo_server *srv, long long next_notify)
{
    coap_tick_t now;
    unsigned int coap_ms;
    long long notify_ms = next_notify - now_ms(CLOCK_MONOTONIC);

    coap_ticks(&now);
    coap_ms = coap_io_prepare_epoll(srv->ctx, now);
    if (notify_ms < 0) {
        notify_ms = 0;
    }
    if (coap_ms != 0 && coap_ms < notify_ms) {
        return (int)coap_ms;
    }
    return (int)notify_ms;
}

static bool notify_due(struct demo_server *srv, long long *next_notify)
{
    long long now = now_ms(CLOCK_MONOTONIC);

    if (now < *next_notify) {
        return false;
    }
    notify_sensors(srv);
    *next_notify = now + NOTIFY_INTERVAL_MS;
    return true;
}

/* libcoap built with epoll: one epoll set holds libcoap's fd and our stop eventfd. */
static void run_epoll(struct demo_server *srv, int coap_fd)
{
    struct epoll_event ev = {.events = EPOLLIN}, got[4];
    long long next_notify = now_ms(CLOCK_MONOTONIC) + NOTIFY_INTERVAL_MS;
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (ep < 0) {
        CG_LOG(CG_LOG_ERROR, "demo", "event=epoll_failed error=\"%s\"", strerror(errno));
        return;
    }
    ev.data.fd = coap_fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, coap_fd, &ev);
    ev.data.fd = srv->stop_fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, srv->stop_fd, &ev);
    for (;;) {
        int n = epoll_wait(ep, got, 4, next_wait_ms(srv, next_notify));

        for (int i = 0; i < n; i++) {
            if (got[i].data.fd == srv->stop_fd) {
                goto out_close_ep;
            }
        }
        notify_due(srv, &next_notify);
        if (coap_io_process(srv->ctx, COAP_IO_NO_WAIT) < 0) {
            CG_LOG(CG_LOG_ERROR, "demo", "event=io_failed");
            goto out_close_ep;
        }
    }
out_close_ep:
    close(ep);
}

/* libcoap built without epoll: its own select() also watches the stop eventfd. */
static void run_select(struct demo_server *srv)
{
    long long next_notify = now_ms(CLOCK_MONOTONIC) + NOTIFY_INTERVAL_MS;

    for (;;) {
        fd_set readfds;
        long long wait_ms = next_notify - now_ms(CLOCK_MONOTONIC);

        FD_ZERO(&readfds);
        FD_SET(srv->stop_fd, &readfds);
        if (coap_io_process_with_fds(srv->ctx, wait_ms > 0 ? (uint32_t)wait_ms : COAP_IO_NO_WAIT,
                                     srv->stop_fd + 1, &readfds, NULL, NULL) < 0) {
            CG_LOG(CG_LOG_ERROR, "demo", "event=io_failed");
            return;
        }
        if (FD_ISSET(srv->stop_fd, &readfds)) {
            return;
        }
        notify_due(srv, &next_notify);
    }
}

static void *server_main(void *arg)
{
    struct demo_server *srv = arg;
    int coap_fd;

    srv->ok = server_setup(srv) == 0;
    sem_post(&srv->ready);
    if (!srv->ok) {
        return NULL;
    }
    CG_LOG(CG_LOG_INFO, "demo", "event=started listen=%s", srv->listen);
    coap_fd = coap_context_get_coap_fd(srv->ctx);
    if (coap_fd >= 0) {
        run_epoll(srv, coap_fd);
    } else {
        run_select(srv);
    }
    coap_free_context(srv->ctx);
    srv->ctx = NULL;
    CG_LOG(CG_LOG_INFO, "demo", "event=stopped listen=%s", srv->listen);
    return NULL;
}

/* ---- caller side ---- */

static int resolve(struct demo_server *srv, const char *host, uint16_t port, char *err, size_t err_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res;
    char service[8];
    int rc;

    snprintf(service, sizeof(service), "%u", (unsigned)port);
    snprintf(srv->listen, sizeof(srv->listen), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "demo_server: cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    coap_address_init(&srv->addr);
    srv->addr.size = res->ai_addrlen;
    memcpy(&srv->addr.addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

struct demo_server *demo_server_start(const char *host, uint16_t port, char *err, size_t err_len)
{
    struct demo_server *srv = calloc(1, sizeof(*srv));
    int rc;

    if (!srv) {
        snprintf(err, err_len, "demo_server: out of memory");
        return NULL;
    }
    pthread_once(&coap_once, coap_init_once);
    if (resolve(srv, host, port, err, err_len) != 0) {
        goto out_free_srv;
    }
    srv->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->stop_fd < 0) {
        snprintf(err, err_len, "demo_server: eventfd: %s", strerror(errno));
        goto out_free_srv;
    }
    sem_init(&srv->ready, 0, 0);
    rc = pthread_create(&srv->thread, NULL, server_main, srv);
    if (rc != 0) {
        snprintf(err, err_len, "demo_server: cannot start thread: %s", strerror(rc));
        goto out_destroy_sem;
    }
    pthread_setname_np(srv->thread, "coap-demo");
    while (sem_wait(&srv->ready) != 0 && errno == EINTR) {
    }
    if (!srv->ok) {
        snprintf(err, err_len, "%s", srv->err);
        pthread_join(srv->thread, NULL);
        goto out_destroy_sem;
    }
    return srv;

out_destroy_sem:
    sem_destroy(&srv->ready);
    close(srv->stop_fd);
out_free_srv:
    free(srv);
    return NULL;
}

void demo_server_stop(struct demo_server *srv)
{
    uint64_t one = 1;

    if (!srv) {
        return;
    }
    if (write(srv->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
        CG_LOG(CG_LOG_WARN, "demo", "event=stop_signal_failed error=\"%s\"", strerror(errno));
    }
    pthread_join(srv->thread, NULL);
    sem_destroy(&srv->ready);
    close(srv->stop_fd);
    free(srv);
}
