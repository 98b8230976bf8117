/* coap_testsrv: a scriptable CoAP server for the integration tests. Each request chooses its own answer
 * through Uri-Query items, so one server instance serves every scenario of a test. Test code only: it
 * favours being obvious over being fast, and it never runs next to production traffic.
 *
 * Usage: coap_testsrv [--port N] [--blackhole] [--small-blocks SZX]
 *   --port N     UDP port on 127.0.0.1; 0 (default) picks a free one in 20000-26383 (freeport: 26384+).
 *   --blackhole  bind the port and drop every datagram (no ACK, no RST): the 504 timeout case.
 *   --small-blocks SZX  (0..6, blocks of 2^(SZX+4) bytes) libcoap's block mode is OFF for the whole server
 *                and /blk does RFC 7959 by hand with that preferred size (below). /r bodies over 900 bytes
 *                and /stats output over 900 bytes are then not split by libcoap: keep them small.
 * Prints "ready PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT.
 *
 * Resources (any method):
 *   /r/<anything>?items   scripted answer, items in any order:
 *       code=C.DD (default 2.05)  ct=N  max_age=N  etag=HEX  body=TEXT  size=N (N bytes body, block-wise
 *       when large)  loc_path=a/b  loc_query=x=1 (repeatable)  delay_ms=N (separate response: empty ACK
 *       at once, the answer N ms later)  plen=1 (the body is the received payload length)
 *       silent=1 (never answer; libcoap still sends the empty ACK for a CON request because a server
 *       handler cannot suppress it: use --blackhole for "no ACK at all").
 *       Unknown items are ignored, so tests can add n=<i> to make URIs unique.
 *       ETag validation: a request carrying an ETag option equal to etag=HEX gets 2.03 Valid with that ETag
 *       and max_age, and no payload (counted as "VALID /r/<...>"). Every request carrying any ETag option
 *       is also counted as "ETAG /r/<...>".
 *   /echo[/...]           2.05 text/plain listing what arrived: "method=", "type=", one "opt=<n> val=<hex>"
 *                         line per option in wire order, "payload_len=", "payload_hex=" (first 512 bytes).
 *   /obs/<name>?items     an observable resource (RFC 7641); the first request for a name fixes its items:
 *       period_ms=N (default 1000) between notifications  max_age=S (Max-Age on every message; none by
 *       default)  stop_after=K (after K notifications the resource goes silent: no more notifications, and
 *       every later request, re-registrations included, gets only libcoap's empty ACK)  ct=N (default 50;
 *       -1: no Content-Format)  body=TEXT (payload instead of {"n":N})  binary=1 (payload prefixed with
 *       the bytes 00 ff fe, not UTF-8)  con=1 (notifications CON instead of NON)  reg_delay_ms=N (a new
 *       registration gets the empty ACK at once and its answer N ms later; counted in /stats/maxconc and
 *       /stats/outstanding like a delayed /r request).
 *       GET with Observe=0 registers (answer: 2.05 with Observe and the current payload), Observe=1 (same
 *       token) deregisters, plain GET reads. N counts the notifications sent; ticking runs only while the
 *       resource has observers, so a new registration sees N and the next notification N+1. The Observe
 *       value grows by one with every message of the resource. Counted per name as "GET /obs/<name>"
 *       (every request), "REGISTER" (new observer), "REREGISTER" (Observe=0 from a current observer, same
 *       session and token), "DEREGISTER" (Observe=1 from a current observer), "RST" (RST of a CON
 *       notification, observer dropped; "LOST" when never acknowledged), "NOTIFY" (notifications sent, one
 *       per observer), "IGNORED" (requests left unanswered while silent), each as "<WHAT> /obs/<name> N".
 *   /blk/<name>           only with --small-blocks (else 4.04). PUT/POST: a Block1 block of any size is
 *       taken and answered 2.31 Continue with Block1 carrying min(its SZX, ours) (RFC 7959 §2.3: the client
 *       goes on with the smaller size, block numbers rescaled); a block not at the expected offset gets 4.08;
 *       the last block (or a body that fits one of our blocks, without Block1) gets 2.04 text/plain
 *       "bytes=N sha256=HEX" of the reassembled body. A request WITHOUT Block1 whose payload exceeds our
 *       block size gets 4.13 with Block1 0/0/SZX (our preferred size, §2.9.3) and Size1 4194304.
 *       GET ?size=N: "abc...z" repeated (as /r), 2.05 octet-stream in Block2 blocks of min(asked SZX, ours)
 *       (§2.4), the block holding the offset asked for, Size2=N on each block.
 *       Counted as "METHOD /blk/<name>" (every request), "BLOCK1 /blk/<name> szx=S" (per Block1 block
 *       received, S = its SZX), "413 /blk/<name>" (4.13 sent), "INCOMPLETE /blk/<name>" (4.08 sent),
 *       "DONE /blk/<name>" (2.04 sent), "BLOCK2 /blk/<name> szx=S" (GET carrying Block2, S = the SZX asked)
 *       and "NOBLOCK2 /blk/<name>" (GET without Block2).
 *   /stats                "METHOD /path COUNT" per line for every request to /r, /echo and /obs (no query),
 *                         plus the VALID/ETAG and observe lines above.
 *   /stats/observers/<name>  current number of observers of /obs/<name>.
 *   /stats/maxconc        highest number of delayed requests outstanding at once.
 *   /stats/outstanding    delayed requests outstanding now.
 *   /stats/reset          zeroes the counters and maxconc.
 *   anything else         4.04 with a diagnostic payload.
 */
#include <coap3/coap.h>
#include <gnutls/crypto.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_COUNTERS 4096
#define MAX_KEY 300
#define PORT_LOW 20000
#define PORT_HIGH 26383 /* below the ephemeral range (32768+); freeport draws from 26384-32767 */

struct counter {
    char key[MAX_KEY];
    unsigned long count;
};

static volatile sig_atomic_t quit;
static struct counter counters[MAX_COUNTERS];
static size_t counters_len;
static unsigned outstanding;
static unsigned max_outstanding;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void count_request(const char *key)
{
    for (size_t i = 0; i < counters_len; i++) {
        if (strcmp(counters[i].key, key) == 0) {
            counters[i].count++;
            return;
        }
    }
    if (counters_len < MAX_COUNTERS) {
        snprintf(counters[counters_len].key, MAX_KEY, "%s", key);
        counters[counters_len].count = 1;
        counters_len++;
    }
}

static const char *method_name(coap_pdu_code_t code)
{
    switch ((int)code) {
    case COAP_REQUEST_CODE_GET:
        return "GET";
    case COAP_REQUEST_CODE_POST:
        return "POST";
    case COAP_REQUEST_CODE_PUT:
        return "PUT";
    case COAP_REQUEST_CODE_DELETE:
        return "DELETE";
    case COAP_REQUEST_CODE_FETCH:
        return "FETCH";
    case COAP_REQUEST_CODE_PATCH:
        return "PATCH";
    case COAP_REQUEST_CODE_IPATCH:
        return "iPATCH";
    }
    return "?";
}

/* Collects the Uri-Path options as "/a/b" (bytes copied as they are) and the first segment. */
static void request_path(const coap_pdu_t *req, char *path, size_t cap, char *first, size_t first_cap)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;
    size_t used = 0;
    int n = 0;

    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_PATH);
    coap_option_iterator_init(req, &it, &filter);
    path[0] = '\0';
    first[0] = '\0';
    while ((opt = coap_option_next(&it)) != NULL) {
        int len = (int)coap_opt_length(opt);
        const char *val = (const char *)coap_opt_value(opt);
        int w = snprintf(path + used, cap - used, "/%.*s", len, val);
        if (w > 0 && (size_t)w < cap - used) {
            used += (size_t)w;
        }
        if (n++ == 0) {
            snprintf(first, first_cap, "%.*s", len, val);
        }
    }
    if (used == 0) {
        snprintf(path, cap, "/");
    }
}

static void release_data(coap_session_t *session, void *data)
{
    (void)session;
    free(data);
}

static void add_text(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req, coap_pdu_t *resp,
                     const coap_string_t *query, const char *text, size_t len)
{
    uint8_t buf[4];

    if (len > 900) {
        coap_add_data_large_response(res, session, req, resp, query, COAP_MEDIATYPE_TEXT_PLAIN, -1, 0, len,
                                     (const uint8_t *)text, release_data, (void *)text);
        return;
    }
    coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                    coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_TEXT_PLAIN), buf);
    coap_add_data(resp, len, (const uint8_t *)text);
    free((void *)text);
}

/* ---- /stats ---- */
static unsigned obs_observers(const char *name);

static void handle_stats(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                         const coap_string_t *query, coap_pdu_t *resp, const char *path)
{
    size_t cap = 64 + counters_len * (MAX_KEY + 24);
    char *text = malloc(cap);
    size_t used = 0;

    if (text == NULL) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
        return;
    }
    text[0] = '\0';
    if (strcmp(path, "/stats/maxconc") == 0) {
        used = (size_t)snprintf(text, cap, "%u", max_outstanding);
    } else if (strcmp(path, "/stats/outstanding") == 0) {
        used = (size_t)snprintf(text, cap, "%u", outstanding);
    } else if (strncmp(path, "/stats/observers/", 17) == 0) {
        used = (size_t)snprintf(text, cap, "%u", obs_observers(path + 17));
    } else if (strcmp(path, "/stats/reset") == 0) {
        counters_len = 0;
        max_outstanding = outstanding;
        used = (size_t)snprintf(text, cap, "reset");
    } else {
        for (size_t i = 0; i < counters_len; i++) {
            used += (size_t)snprintf(text + used, cap - used, "%s %lu\n", counters[i].key, counters[i].count);
        }
    }
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
    add_text(res, session, req, resp, query, text, used);
}

/* ---- /echo ---- */
static size_t hex_append(char *out, size_t cap, size_t used, const uint8_t *val, size_t len)
{
    for (size_t i = 0; i < len && used + 3 < cap; i++) {
        used += (size_t)snprintf(out + used, cap - used, "%02x", val[i]);
    }
    return used;
}

static void handle_echo(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                        const coap_string_t *query, coap_pdu_t *resp)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    size_t len = 0, offset = 0, total = 0;
    const uint8_t *data = NULL;
    size_t cap = 4096 + 3 * 1500;
    char *text = malloc(cap);
    size_t used;

    if (text == NULL) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
        return;
    }
    used = (size_t)snprintf(text, cap, "method=%s\ntype=%s\n", method_name(coap_pdu_get_code(req)),
                            coap_pdu_get_type(req) == COAP_MESSAGE_CON ? "CON" : "NON");
    coap_option_iterator_init(req, &it, COAP_OPT_ALL);
    while ((opt = coap_option_next(&it)) != NULL && used + 64 < cap) {
        used += (size_t)snprintf(text + used, cap - used, "opt=%u val=", (unsigned)it.number);
        used = hex_append(text, cap, used, coap_opt_value(opt), coap_opt_length(opt));
        used += (size_t)snprintf(text + used, cap - used, "\n");
    }
    if (!coap_get_data_large(req, &len, &data, &offset, &total)) {
        len = 0;
        total = 0;
    }
    used +=
        (size_t)snprintf(text + used, cap - used, "payload_len=%zu\npayload_hex=", total > len ? total : len);
    used = hex_append(text, cap, used, data, len > 512 ? 512 : len);
    used += (size_t)snprintf(text + used, cap - used, "\n");
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
    add_text(res, session, req, resp, query, text, used);
}

/* ---- /r: the scripted answer ---- */
struct script {
    int code;
    long ct;
    long max_age;
    uint8_t etag[8];
    size_t etag_len;
    const char *body;
    size_t body_len;
    long size;
    long delay_ms;
    int silent;
    int plen;
    const char *loc_path;
    size_t loc_path_len;
};

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static size_t hex_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < len && n < cap; i += 2) {
        int hi = hex_nibble(in[i]), lo = hex_nibble(in[i + 1]);
        if (hi < 0 || lo < 0) {
            break;
        }
        out[n++] = (uint8_t)(hi << 4 | lo);
    }
    return n;
}

static long num(const char *val, size_t len)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)len, val);
    return strtol(buf, NULL, 10);
}

/* "4.04" -> COAP_RESPONSE_CODE(404) */
static int parse_code(const char *val, size_t len)
{
    char buf[16];
    unsigned c = 0, d = 0;
    snprintf(buf, sizeof(buf), "%.*s", (int)len, val);
    if (sscanf(buf, "%u.%u", &c, &d) != 2 || c > 7 || d > 31) {
        return COAP_RESPONSE_CODE(205);
    }
    return (int)(c << 5 | d);
}

static void parse_item(struct script *s, const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    if (eq == NULL) {
        return;
    }
    size_t klen = (size_t)(eq - item);
    const char *val = eq + 1;
    size_t vlen = len - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(item, k, klen) == 0)
    if (KEY("code")) {
        s->code = parse_code(val, vlen);
    } else if (KEY("ct")) {
        s->ct = num(val, vlen);
    } else if (KEY("max_age")) {
        s->max_age = num(val, vlen);
    } else if (KEY("etag")) {
        s->etag_len = hex_decode(val, vlen, s->etag, sizeof(s->etag));
    } else if (KEY("body")) {
        s->body = val;
        s->body_len = vlen;
    } else if (KEY("size")) {
        s->size = num(val, vlen);
    } else if (KEY("delay_ms")) {
        s->delay_ms = num(val, vlen);
    } else if (KEY("silent")) {
        s->silent = num(val, vlen) != 0;
    } else if (KEY("plen")) {
        s->plen = num(val, vlen) != 0;
    } else if (KEY("loc_path")) {
        s->loc_path = val;
        s->loc_path_len = vlen;
    }
#undef KEY
}

static void read_script(const coap_pdu_t *req, struct script *s)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;

    memset(s, 0, sizeof(*s));
    s->code = COAP_RESPONSE_CODE(205);
    s->ct = -1;
    s->max_age = -1;
    s->size = -1;
    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &it, &filter);
    while ((opt = coap_option_next(&it)) != NULL) {
        parse_item(s, (const char *)coap_opt_value(opt), coap_opt_length(opt));
    }
}

static void add_uint_opt(coap_pdu_t *resp, uint16_t number, unsigned long value)
{
    uint8_t buf[8];
    coap_add_option(resp, number, coap_encode_var_safe8(buf, sizeof(buf), value), buf);
}

/* Options go in ascending number order: ETag 4, Location-Path 8, Content-Format 12, Max-Age 14,
 * Location-Query 20. */
static void add_script_options(const coap_pdu_t *req, const struct script *s, coap_pdu_t *resp, int large)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;

    if (s->etag_len > 0) {
        coap_add_option(resp, COAP_OPTION_ETAG, s->etag_len, s->etag);
    }
    if (s->loc_path != NULL) {
        const char *p = s->loc_path, *end = s->loc_path + s->loc_path_len;
        while (p <= end) {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            const char *seg_end = slash ? slash : end;
            coap_add_option(resp, COAP_OPTION_LOCATION_PATH, (size_t)(seg_end - p), (const uint8_t *)p);
            p = seg_end + 1;
        }
    }
    if (!large && s->ct >= 0) {
        add_uint_opt(resp, COAP_OPTION_CONTENT_FORMAT, (unsigned long)s->ct);
    }
    if (!large && s->max_age >= 0) {
        add_uint_opt(resp, COAP_OPTION_MAXAGE, (unsigned long)s->max_age);
    }
    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &it, &filter);
    while ((opt = coap_option_next(&it)) != NULL) {
        const char *v = (const char *)coap_opt_value(opt);
        size_t len = coap_opt_length(opt);
        if (len >= 10 && memcmp(v, "loc_query=", 10) == 0) {
            coap_add_option(resp, COAP_OPTION_LOCATION_QUERY, len - 10, (const uint8_t *)v + 10);
        }
    }
}

/* True when the request carries an ETag option equal to the script's etag (RFC 7252 §5.10.6). */
static int etag_matches(const coap_pdu_t *req, const struct script *s)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;

    if (s->etag_len == 0) {
        return 0;
    }
    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_ETAG);
    coap_option_iterator_init(req, &it, &filter);
    while ((opt = coap_option_next(&it)) != NULL) {
        if (coap_opt_length(opt) == s->etag_len && memcmp(coap_opt_value(opt), s->etag, s->etag_len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 2.03 Valid: the ETag and Max-Age, no payload. */
static void answer_valid(coap_pdu_t *resp, const struct script *s, const char *path)
{
    char key[MAX_KEY];

    snprintf(key, sizeof(key), "VALID %s", path);
    count_request(key);
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(203));
    coap_add_option(resp, COAP_OPTION_ETAG, s->etag_len, s->etag);
    if (s->max_age >= 0) {
        add_uint_opt(resp, COAP_OPTION_MAXAGE, (unsigned long)s->max_age);
    }
}

static void answer_script(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                          const coap_string_t *query, coap_pdu_t *resp, const struct script *s,
                          const char *path)
{
    int large = s->size > 900;

    if (etag_matches(req, s)) {
        answer_valid(resp, s, path);
        return;
    }
    coap_pdu_set_code(resp, (coap_pdu_code_t)s->code);
    add_script_options(req, s, resp, large);
    if (large) {
        uint8_t *data = malloc((size_t)s->size);
        if (data == NULL) {
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
            return;
        }
        for (long i = 0; i < s->size; i++) {
            data[i] = (uint8_t)('a' + i % 26);
        }
        coap_add_data_large_response(res, session, req, resp, query,
                                     (uint16_t)(s->ct >= 0 ? s->ct : COAP_MEDIATYPE_APPLICATION_OCTET_STREAM),
                                     (int)s->max_age, 0, (size_t)s->size, data, release_data, data);
    } else if (s->size >= 0) {
        uint8_t data[901];
        for (long i = 0; i < s->size; i++) {
            data[i] = (uint8_t)('a' + i % 26);
        }
        coap_add_data(resp, (size_t)s->size, data);
    } else if (s->body != NULL) {
        coap_add_data(resp, s->body_len, (const uint8_t *)s->body);
    } else if (s->plen) {
        size_t len = 0, offset = 0, total = 0;
        const uint8_t *data = NULL;
        char text[32];
        if (!coap_get_data_large(req, &len, &data, &offset, &total)) {
            len = total = 0;
        }
        coap_add_data(resp, (size_t)snprintf(text, sizeof(text), "%zu", total > len ? total : len),
                      (const uint8_t *)text);
    }
}

static int has_option(const coap_pdu_t *req, uint16_t number)
{
    coap_opt_iterator_t it;
    return coap_check_option(req, number, &it) != NULL;
}

static void handle_script(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                          const coap_string_t *query, coap_pdu_t *resp, const char *key)
{
    const char *path = strchr(key, ' ') + 1;
    struct script s;
    coap_async_t *async;

    read_script(req, &s);
    async = coap_find_async(session, coap_pdu_get_token(req));
    if (async != NULL) {
        /* The delay fired: libcoap calls us again with a copy of the request, then frees the async. */
        outstanding--;
        answer_script(res, session, req, query, resp, &s, path);
        return;
    }
    count_request(key);
    if (has_option(req, COAP_OPTION_ETAG)) {
        char etag_key[MAX_KEY];
        snprintf(etag_key, sizeof(etag_key), "ETAG %s", path);
        count_request(etag_key);
    }
    if (s.silent) {
        return; /* no code set: an empty ACK for CON, nothing for NON */
    }
    if (s.delay_ms > 0) {
        async = coap_register_async(session, req, (coap_tick_t)s.delay_ms * COAP_TICKS_PER_SECOND / 1000);
        if (async == NULL) {
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(503));
            return;
        }
        outstanding++;
        if (outstanding > max_outstanding) {
            max_outstanding = outstanding;
        }
        return; /* empty ACK now, the separate response when the delay fires */
    }
    answer_script(res, session, req, query, resp, &s, path);
}

/* ---- /obs: observable resources (RFC 7641), with our own timer list ---- */
#define MAX_OBS_RES 256
#define OBS_NAME_MAX 64
#define OBS_BODY_MAX 256

struct observer {
    struct observer *next;
    coap_session_t *session; /* a reference, released when the observer goes */
    uint8_t token[8];
    size_t token_len;
};

struct obs_res {
    char name[OBS_NAME_MAX];
    long period_ms;
    long max_age;    /* -1: no Max-Age option */
    long stop_after; /* -1: never goes silent */
    long ct;
    char body[OBS_BODY_MAX];
    size_t body_len;
    int has_body;
    int binary;
    int con;
    long reg_delay_ms; /* > 0: a new registration is answered this late (separate response) */
    unsigned long n;   /* notifications sent: the counter in the payload */
    unsigned seq;      /* Observe value of the resource's last message */
    long long next_ms; /* when the next notification is due, while there are observers */
    unsigned nobservers;
    struct observer *observers;
};

static struct obs_res obs_table[MAX_OBS_RES];
static size_t obs_len;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void obs_count(const char *what, const struct obs_res *r)
{
    char key[MAX_KEY];
    /* name is NUL-terminated within OBS_NAME_MAX; the precision says so to the compiler too */
    snprintf(key, sizeof(key), "%s /obs/%.*s", what, (int)(sizeof(r->name) - 1), r->name);
    count_request(key);
}

static int obs_silent(const struct obs_res *r)
{
    return r->stop_after >= 0 && r->n >= (unsigned long)r->stop_after;
}

static void obs_parse_item(struct obs_res *r, const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    if (eq == NULL) {
        return;
    }
    size_t klen = (size_t)(eq - item);
    const char *val = eq + 1;
    size_t vlen = len - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(item, k, klen) == 0)
    if (KEY("period_ms")) {
        r->period_ms = num(val, vlen);
    } else if (KEY("max_age")) {
        r->max_age = num(val, vlen);
    } else if (KEY("stop_after")) {
        r->stop_after = num(val, vlen);
    } else if (KEY("ct")) {
        r->ct = num(val, vlen);
    } else if (KEY("body")) {
        r->body_len = vlen < sizeof(r->body) ? vlen : sizeof(r->body);
        memcpy(r->body, val, r->body_len);
        r->has_body = 1;
    } else if (KEY("binary")) {
        r->binary = num(val, vlen) != 0;
    } else if (KEY("con")) {
        r->con = num(val, vlen) != 0;
    } else if (KEY("reg_delay_ms")) {
        r->reg_delay_ms = num(val, vlen);
    }
#undef KEY
}

static struct obs_res *obs_find(const char *name)
{
    for (size_t i = 0; i < obs_len; i++) {
        if (strcmp(obs_table[i].name, name) == 0) {
            return &obs_table[i];
        }
    }
    return NULL;
}

static unsigned obs_observers(const char *name)
{
    const struct obs_res *r = obs_find(name);
    return r != NULL ? r->nobservers : 0;
}

/* The resource called name; the first request for it fixes its items. NULL when the table is full. */
static struct obs_res *obs_get(const char *name, const coap_pdu_t *req)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t filter;
    coap_opt_t *opt;
    struct obs_res *r = obs_find(name);

    if (r != NULL || obs_len == MAX_OBS_RES) {
        return r;
    }
    r = &obs_table[obs_len++];
    memset(r, 0, sizeof(*r));
    size_t name_len = strnlen(name, sizeof(r->name) - 1);
    memcpy(r->name, name, name_len); /* longer names are cut; tests use short ones */
    r->period_ms = 1000;
    r->max_age = -1;
    r->stop_after = -1;
    r->ct = COAP_MEDIATYPE_APPLICATION_JSON;
    coap_option_filter_clear(&filter);
    coap_option_filter_set(&filter, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &it, &filter);
    while ((opt = coap_option_next(&it)) != NULL) {
        obs_parse_item(r, (const char *)coap_opt_value(opt), coap_opt_length(opt));
    }
    if (r->period_ms < 1) {
        r->period_ms = 1;
    }
    return r;
}

static struct observer *observer_find(struct obs_res *r, const coap_session_t *session,
                                      coap_bin_const_t token)
{
    for (struct observer *o = r->observers; o != NULL; o = o->next) {
        if (o->session == session && o->token_len == token.length &&
            memcmp(o->token, token.s, token.length) == 0) {
            return o;
        }
    }
    return NULL;
}

static void observer_add(struct obs_res *r, coap_session_t *session, coap_bin_const_t token)
{
    struct observer *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        return;
    }
    o->session = coap_session_reference(session);
    o->token_len = token.length < sizeof(o->token) ? token.length : sizeof(o->token);
    memcpy(o->token, token.s, o->token_len);
    o->next = r->observers;
    r->observers = o;
    if (r->nobservers++ == 0) {
        r->next_ms = mono_ms() + r->period_ms;
    }
}

static void observer_remove(struct obs_res *r, struct observer *o)
{
    struct observer **p = &r->observers;
    while (*p != NULL && *p != o) {
        p = &(*p)->next;
    }
    if (*p == o) {
        *p = o->next;
        r->nobservers--;
        coap_session_release(o->session);
        free(o);
    }
}

/* Options in ascending order (Observe 6, Content-Format 12, Max-Age 14) and the payload. */
static void obs_fill(coap_pdu_t *pdu, const struct obs_res *r, int with_observe)
{
    uint8_t buf[3 + OBS_BODY_MAX + 32];
    size_t used = 0;

    if (with_observe) {
        add_uint_opt(pdu, COAP_OPTION_OBSERVE, r->seq);
    }
    if (r->ct >= 0) {
        add_uint_opt(pdu, COAP_OPTION_CONTENT_FORMAT, (unsigned long)r->ct);
    }
    if (r->max_age >= 0) {
        add_uint_opt(pdu, COAP_OPTION_MAXAGE, (unsigned long)r->max_age);
    }
    if (r->binary) {
        buf[used++] = 0x00;
        buf[used++] = 0xff;
        buf[used++] = 0xfe;
    }
    if (r->has_body) {
        memcpy(buf + used, r->body, r->body_len);
        used += r->body_len;
    } else {
        used += (size_t)snprintf((char *)buf + used, sizeof(buf) - used, "{\"n\":%lu}", r->n);
    }
    coap_add_data(pdu, used, buf);
}

static void obs_notify(struct obs_res *r, struct observer *o)
{
    coap_pdu_t *pdu = coap_pdu_init(r->con ? COAP_MESSAGE_CON : COAP_MESSAGE_NON, COAP_RESPONSE_CODE(205),
                                    coap_new_message_id(o->session), coap_session_max_pdu_size(o->session));
    if (pdu == NULL) {
        return;
    }
    if (!coap_add_token(pdu, o->token_len, o->token)) {
        coap_delete_pdu(pdu);
        return;
    }
    obs_fill(pdu, r, 1);
    if (coap_send(o->session, pdu) != COAP_INVALID_MID) {
        obs_count("NOTIFY", r);
    }
}

/* Sends the notifications that are due; returns the ms until the next one, or -1 when none is scheduled. */
static long long obs_tick(void)
{
    long long now = mono_ms(), next = -1;

    for (size_t i = 0; i < obs_len; i++) {
        struct obs_res *r = &obs_table[i];
        if (r->observers == NULL || obs_silent(r)) {
            continue;
        }
        if (r->next_ms <= now) {
            r->n++;
            r->seq = (r->seq + 1) & 0xffffff;
            for (struct observer *o = r->observers; o != NULL; o = o->next) {
                obs_notify(r, o);
            }
            r->next_ms += r->period_ms;
            if (r->next_ms <= now) {
                r->next_ms = now + r->period_ms; /* no burst to catch up */
            }
        }
        if (!obs_silent(r) && (next < 0 || r->next_ms - now < next)) {
            next = r->next_ms - now;
        }
    }
    return next;
}

/* A CON notification was refused (RST) or never acknowledged: the observer is gone (RFC 7641 §3.6). */
static void on_nack(coap_session_t *session, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid)
{
    (void)mid;
    if (sent == NULL || (reason != COAP_NACK_RST && reason != COAP_NACK_TOO_MANY_RETRIES)) {
        return;
    }
    for (size_t i = 0; i < obs_len; i++) {
        struct observer *o = observer_find(&obs_table[i], session, coap_pdu_get_token(sent));
        if (o != NULL) {
            obs_count(reason == COAP_NACK_RST ? "RST" : "LOST", &obs_table[i]);
            observer_remove(&obs_table[i], o);
            return;
        }
    }
}

static void obs_release_all(void)
{
    for (size_t i = 0; i < obs_len; i++) {
        while (obs_table[i].observers != NULL) {
            observer_remove(&obs_table[i], obs_table[i].observers);
        }
    }
}

static void print_token(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        fprintf(stderr, "%02x", p[i]);
    }
}

/* RFC 7641 §3.6 wants the registration's token: say on stderr (shown when a test fails) what came instead. */
static void log_unmatched(const struct obs_res *r, const coap_session_t *session, coap_bin_const_t token)
{
    fprintf(stderr, "coap_testsrv: GET /obs/%s with Observe=1 and token ", r->name);
    print_token(token.s, token.length);
    fprintf(stderr, " matches no observer; observers (same session?, token):");
    for (const struct observer *o = r->observers; o != NULL; o = o->next) {
        fprintf(stderr, " (%s, ", o->session == session ? "yes" : "no");
        print_token(o->token, o->token_len);
        fprintf(stderr, ")");
    }
    fprintf(stderr, "\n");
}

static void handle_obs(coap_session_t *session, const coap_pdu_t *req, coap_pdu_t *resp, const char *path,
                       const char *key)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    long observe = -1;
    const char *name = path + strlen("/obs/");
    struct obs_res *r;

    if (strncmp(path, "/obs/", 5) != 0 || *name == '\0' || coap_pdu_get_code(req) != COAP_REQUEST_CODE_GET) {
        coap_pdu_set_code(resp,
                          COAP_RESPONSE_CODE(coap_pdu_get_code(req) == COAP_REQUEST_CODE_GET ? 404 : 405));
        return;
    }
    coap_async_t *async = coap_find_async(session, coap_pdu_get_token(req));
    if (async != NULL) {
        outstanding--; /* a delayed registration's time has come: answered below */
    } else {
        count_request(key);
    }
    r = obs_get(name, req);
    if (r == NULL) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(503));
        return;
    }
    if (obs_silent(r)) {
        obs_count("IGNORED", r);
        return; /* no code set: an empty ACK for CON, nothing for NON */
    }
    if ((opt = coap_check_option(req, COAP_OPTION_OBSERVE, &it)) != NULL) {
        observe = (long)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
    }
    struct observer *o = observer_find(r, session, coap_pdu_get_token(req));
    if (observe == 0 && o == NULL && r->reg_delay_ms > 0 && async == NULL) {
        async = coap_register_async(session, req, (coap_tick_t)r->reg_delay_ms * COAP_TICKS_PER_SECOND / 1000);
        if (async == NULL) {
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(503));
            return;
        }
        if (++outstanding > max_outstanding) {
            max_outstanding = outstanding;
        }
        return; /* empty ACK now, the answer when the delay fires */
    }
    if (observe == 0) {
        if (o != NULL) {
            obs_count("REREGISTER", r);
        } else {
            obs_count("REGISTER", r);
            observer_add(r, session, coap_pdu_get_token(req));
        }
        r->seq = (r->seq + 1) & 0xffffff;
    } else if (observe == 1 && o != NULL) {
        obs_count("DEREGISTER", r);
        observer_remove(r, o);
    } else if (observe == 1) {
        log_unmatched(r, session, coap_pdu_get_token(req));
    }
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
    obs_fill(resp, r, observe == 0);
}

/* ---- /blk: RFC 7959 by hand with a small preferred block size (--small-blocks SZX) ---- */
#define BLK_MAX_RES 32
#define BLK_NAME_MAX 64
#define BLK_MAX_BODY (4u * 1024 * 1024)

struct blk_up {
    char name[BLK_NAME_MAX];
    uint8_t *buf;
    size_t len; /* bytes reassembled so far: the offset the next block must start at */
    size_t cap;
};

static int small_szx = -1; /* -1: no --small-blocks, /blk is 4.04 */
static struct blk_up blk_table[BLK_MAX_RES];
static size_t blk_len;

static struct blk_up *blk_get(const char *name)
{
    for (size_t i = 0; i < blk_len; i++) {
        if (strcmp(blk_table[i].name, name) == 0) {
            return &blk_table[i];
        }
    }
    if (blk_len == BLK_MAX_RES) {
        return NULL;
    }
    struct blk_up *u = &blk_table[blk_len++];
    memset(u, 0, sizeof(*u));
    memcpy(u->name, name, strnlen(name, sizeof(u->name) - 1)); /* longer names are cut */
    return u;
}

static void blk_release_all(void)
{
    for (size_t i = 0; i < blk_len; i++) {
        free(blk_table[i].buf);
    }
    blk_len = 0;
}

static int blk_append(struct blk_up *u, const uint8_t *data, size_t len)
{
    if (u->len + len > BLK_MAX_BODY) {
        return 0;
    }
    if (u->len + len > u->cap) {
        size_t cap = u->cap ? u->cap : 4096;
        while (cap < u->len + len) {
            cap *= 2;
        }
        uint8_t *p = realloc(u->buf, cap);
        if (p == NULL) {
            return 0;
        }
        u->buf = p;
        u->cap = cap;
    }
    if (len > 0) {
        memcpy(u->buf + u->len, data, len);
    }
    u->len += len;
    return 1;
}

static void blk_count(const char *what, const char *path, int szx)
{
    char key[MAX_KEY];
    if (szx >= 0) {
        snprintf(key, sizeof(key), "%s %s szx=%d", what, path, szx);
    } else {
        snprintf(key, sizeof(key), "%s %s", what, path);
    }
    count_request(key);
}

static void add_block_opt(coap_pdu_t *resp, uint16_t number, unsigned num, int more, int szx)
{
    add_uint_opt(resp, number, (unsigned long)num << 4 | (unsigned long)(more ? 8 : 0) | (unsigned long)szx);
}

/* 2.04 with "bytes=N sha256=HEX" for the body reassembled so far. */
static void blk_done(coap_pdu_t *resp, const struct blk_up *u, const coap_block_t *b1, const char *path)
{
    uint8_t digest[32];
    char text[128];
    size_t used;

    gnutls_hash_fast(GNUTLS_DIG_SHA256, u->buf != NULL ? u->buf : (const uint8_t *)"", u->len, digest);
    used = (size_t)snprintf(text, sizeof(text), "bytes=%zu sha256=", u->len);
    for (size_t i = 0; i < sizeof(digest); i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%02x", digest[i]);
    }
    blk_count("DONE", path, -1);
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(204));
    add_uint_opt(resp, COAP_OPTION_CONTENT_FORMAT, COAP_MEDIATYPE_TEXT_PLAIN);
    if (b1 != NULL) {
        add_block_opt(resp, COAP_OPTION_BLOCK1, b1->num, 0, (int)b1->szx);
    }
    coap_add_data(resp, used, (const uint8_t *)text);
}

/* PUT/POST: Block1 of any size is taken and answered 2.31 carrying our smaller SZX (RFC 7959 §2.3, the
 * client goes on with the smaller size, block numbers rescaled); no Block1 and a payload over our block
 * size -> 4.13 with Block1 (our SZX) and Size1 (§2.9.3). */
static void blk_upload(coap_pdu_t *resp, const coap_pdu_t *req, const char *path, const char *name)
{
    coap_block_t b1;
    size_t len = 0;
    const uint8_t *data = NULL;
    size_t bsize = (size_t)1 << (small_szx + 4);
    struct blk_up *u = blk_get(name);

    if (u == NULL) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(503));
        return;
    }
    if (!coap_get_data(req, &len, &data)) {
        len = 0;
    }
    if (!coap_get_block(req, COAP_OPTION_BLOCK1, &b1)) {
        if (len > bsize) {
            blk_count("413", path, -1);
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(413));
            add_block_opt(resp, COAP_OPTION_BLOCK1, 0, 0, small_szx);
            add_uint_opt(resp, COAP_OPTION_SIZE1, BLK_MAX_BODY);
            return;
        }
        u->len = 0;
        if (!blk_append(u, data, len)) {
            coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
            return;
        }
        blk_done(resp, u, NULL, path);
        return;
    }
    blk_count("BLOCK1", path, (int)b1.szx);
    size_t offset = (size_t)b1.num << (b1.szx + 4);
    if (b1.num == 0) {
        u->len = 0;
    }
    if (offset != u->len || (b1.m && len != ((size_t)1 << (b1.szx + 4)))) {
        fprintf(stderr,
                "coap_testsrv: %s Block1 %u/%u/%u at offset %zu with %zu bytes, expected offset %zu\n", path,
                b1.num, b1.m, b1.szx, offset, len, u->len);
        blk_count("INCOMPLETE", path, -1);
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(408));
        return;
    }
    if (!blk_append(u, data, len)) {
        blk_count("413", path, -1);
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(413));
        add_uint_opt(resp, COAP_OPTION_SIZE1, BLK_MAX_BODY);
        return;
    }
    if (b1.m) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(231));
        add_block_opt(resp, COAP_OPTION_BLOCK1, b1.num, 1, (int)b1.szx < small_szx ? (int)b1.szx : small_szx);
        return;
    }
    blk_done(resp, u, &b1, path);
}

/* GET ?size=N: the body "abc...z" repeated, in Block2 blocks of at most our size whatever the client asks
 * (RFC 7959 §2.4), the block holding the offset the client asked for; Size2 on every block. */
static void blk_download(coap_pdu_t *resp, const coap_pdu_t *req, const char *path)
{
    struct script s;
    coap_block_t b2;
    int szx = small_szx;
    size_t offset = 0;

    read_script(req, &s);
    size_t total = s.size > 0 ? (size_t)s.size : 0;
    if (coap_get_block(req, COAP_OPTION_BLOCK2, &b2)) {
        blk_count("BLOCK2", path, (int)b2.szx);
        offset = (size_t)b2.num << (b2.szx + 4);
        if ((int)b2.szx < szx) {
            szx = (int)b2.szx;
        }
    } else {
        blk_count("NOBLOCK2", path, -1);
    }
    size_t bsize = (size_t)1 << (szx + 4);
    unsigned num = (unsigned)(offset / bsize);
    offset = (size_t)num * bsize;
    if (offset > total || (offset == total && total > 0)) {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(402)); /* RFC 7959 §2.2: block out of range */
        return;
    }
    size_t n = total - offset < bsize ? total - offset : bsize;
    uint8_t data[1024];
    for (size_t i = 0; i < n; i++) {
        data[i] = (uint8_t)('a' + (offset + i) % 26);
    }
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
    add_uint_opt(resp, COAP_OPTION_CONTENT_FORMAT, COAP_MEDIATYPE_APPLICATION_OCTET_STREAM);
    add_block_opt(resp, COAP_OPTION_BLOCK2, num, offset + n < total, szx);
    add_uint_opt(resp, COAP_OPTION_SIZE2, total);
    coap_add_data(resp, n, data);
}

static void handle_blk(coap_pdu_t *resp, const coap_pdu_t *req, const char *path, const char *key)
{
    const char *name = path + strlen("/blk/");
    coap_pdu_code_t code = coap_pdu_get_code(req);

    if (small_szx < 0 || strncmp(path, "/blk/", 5) != 0 || *name == '\0') {
        static const char diag[] = "coap_testsrv: /blk needs --small-blocks";
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(404));
        coap_add_data(resp, sizeof(diag) - 1, (const uint8_t *)diag);
        return;
    }
    count_request(key);
    if (code == COAP_REQUEST_CODE_PUT || code == COAP_REQUEST_CODE_POST) {
        blk_upload(resp, req, path, name);
    } else if (code == COAP_REQUEST_CODE_GET) {
        blk_download(resp, req, path);
    } else {
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(405));
    }
}

static void handle_any(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                       const coap_string_t *query, coap_pdu_t *resp)
{
    char path[256], first[64], key[MAX_KEY];

    request_path(req, path, sizeof(path), first, sizeof(first));
    snprintf(key, sizeof(key), "%s %s", method_name(coap_pdu_get_code(req)), path);
    if (strcmp(first, "stats") == 0) {
        handle_stats(res, session, req, query, resp, path);
    } else if (strcmp(first, "echo") == 0) {
        count_request(key);
        handle_echo(res, session, req, query, resp);
    } else if (strcmp(first, "r") == 0) {
        handle_script(res, session, req, query, resp, key);
    } else if (strcmp(first, "obs") == 0) {
        handle_obs(session, req, resp, path, key);
    } else if (strcmp(first, "blk") == 0) {
        handle_blk(resp, req, path, key);
    } else {
        static const char diag[] = "coap_testsrv: no such resource";
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE(404));
        coap_add_data(resp, sizeof(diag) - 1, (const uint8_t *)diag);
    }
}

/* ---- start-up ---- */
static unsigned random_port(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srandom((unsigned)(ts.tv_nsec ^ (getpid() << 16)));
    return PORT_LOW + (unsigned)random() % (PORT_HIGH - PORT_LOW);
}

static void loopback(coap_address_t *addr, unsigned port)
{
    coap_address_init(addr);
    addr->addr.sin.sin_family = AF_INET;
    addr->addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->addr.sin.sin_port = htons((uint16_t)port);
    addr->size = sizeof(struct sockaddr_in);
}

static int run_blackhole(unsigned want)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    unsigned port = want ? want : random_port();
    coap_address_t addr;
    int tries = 0;

    if (fd < 0) {
        perror("socket");
        return 1;
    }
    for (;;) {
        loopback(&addr, port);
        if (bind(fd, &addr.addr.sa, addr.size) == 0) {
            break;
        }
        if (want || ++tries > 200) {
            perror("bind");
            return 1;
        }
        port = PORT_LOW + (port - PORT_LOW + 7919) % (PORT_HIGH - PORT_LOW);
    }
    printf("ready %u\n", port);
    fflush(stdout);
    while (!quit) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[2048];
        if (poll(&p, 1, 200) > 0) {
            (void)recv(fd, buf, sizeof(buf), 0);
        }
    }
    close(fd);
    return 0;
}

static int run_server(unsigned want)
{
    coap_context_t *ctx;
    coap_resource_t *res;
    coap_address_t addr;
    unsigned port = want ? want : random_port();
    int tries = 0;

    coap_startup();
    coap_set_log_level(LOG_EMERG); /* failed binds while searching a port are expected */
    ctx = coap_new_context(NULL);
    if (ctx == NULL) {
        fprintf(stderr, "coap_testsrv: cannot create context\n");
        return 1;
    }
    /* --small-blocks: libcoap must hand every block to us as it arrives (/blk does RFC 7959 itself). */
    coap_context_set_block_mode(ctx, small_szx >= 0 ? 0 : COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    for (;;) {
        loopback(&addr, port);
        if (coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP) != NULL) {
            break;
        }
        if (want || ++tries > 200) {
            fprintf(stderr, "coap_testsrv: cannot bind 127.0.0.1:%u\n", port);
            coap_free_context(ctx);
            return 1;
        }
        port = PORT_LOW + (port - PORT_LOW + 7919) % (PORT_HIGH - PORT_LOW);
    }
    coap_set_log_level(LOG_WARNING);
    res = coap_resource_unknown_init2(handle_any, 0);
    coap_register_request_handler(res, COAP_REQUEST_GET, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_POST, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_DELETE, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_FETCH, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_PATCH, handle_any);
    coap_register_request_handler(res, COAP_REQUEST_IPATCH, handle_any);
    coap_add_resource(ctx, res);

    coap_register_nack_handler(ctx, on_nack);

    printf("ready %u\n", port);
    fflush(stdout);
    while (!quit) {
        long long next = obs_tick();
        coap_io_process(ctx, next >= 0 && next < 200 ? (unsigned)(next > 0 ? next : 1) : 200);
    }
    obs_release_all();
    coap_free_context(ctx);
    blk_release_all();
    coap_cleanup();
    return 0;
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    int blackhole = 0;
    struct sigaction sa;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--blackhole") == 0) {
            blackhole = 1;
        } else if (strcmp(argv[i], "--small-blocks") == 0 && i + 1 < argc) {
            char *end;
            long szx = strtol(argv[++i], &end, 10);
            if (*end != '\0' || szx < 0 || szx > 6) {
                fprintf(stderr, "coap_testsrv: --small-blocks wants an SZX 0..6\n");
                return 2;
            }
            small_szx = (int)szx;
        } else {
            fprintf(stderr, "usage: coap_testsrv [--port N] [--blackhole] [--small-blocks SZX]\n");
            return 2;
        }
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return blackhole ? run_blackhole(port) : run_server(port);
}
