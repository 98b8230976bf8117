/* config: parses and validates the JSON configuration (jansson) into an immutable struct cfg.
 * No network I/O and no globals; the first error found is reported and parsing stops there.
 * The schema is data: one row of `fields` per JSON key. The rows drive the unknown-key check, the checks and
 * storing of plain values, the defaults and the README reference table; custom parsers are named in them. */
#include "config/cfg.h"

#include "base/log.h"
#include "base/pct.h"
#include "coap/optset.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define COAP_DEFAULT_PORT 5683
#define COAPS_DEFAULT_PORT 5684
#define URI_PATH_MAX 255 /* a Uri-Path option's value is 0..255 bytes (RFC 7252 §5.10) */
/* A base path is sent before every request's own path and options, all in one CoAP message: libcoap's
 * default UDP message is 1152 bytes and the option set holds CO_OPT_MAX options, so a base path gets half
 * the options and well under the message, and a request still has room for its own. */
#define BASE_PATH_MAX_SEGMENTS (CO_OPT_MAX / 2)
#define BASE_PATH_MAX_OPTION_BYTES 1024
#define MAX_FILE_BYTES (16L * 1024 * 1024)
#define FIELD_LEN sizeof(((struct cfg_error *)0)->field)
#define REASON_LEN sizeof(((struct cfg_error *)0)->reason)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* What cfg_default() returns, written as a config file so it goes through the same validation. */
static const char default_json[] = "{\"upstreams\": {\"demo\": {\"uri\": \"coap://127.0.0.1:5683\"}},"
                                   " \"routes\": [{\"prefix\": \"/api/\", \"upstream\": \"demo\"}],"
                                   " \"demo_server\": {\"enabled\": true}}";

static const char *const admin_paths[CFG_ADMIN_COUNT] = {[CFG_ADMIN_NONE] = "",
                                                         [CFG_ADMIN_HEALTHZ] = "/healthz",
                                                         [CFG_ADMIN_READYZ] = "/readyz",
                                                         [CFG_ADMIN_METRICS] = "/metrics"};

/* ---- the schema ---- */

/* What a field holds in JSON; for the plain kinds also the C type stored at the row's offset. */
enum kind {
    KIND_BOOL,     /* bool */
    KIND_UINT,     /* unsigned, min..max */
    KIND_SIZE,     /* size_t, min..max */
    KIND_STRING,   /* char *, owned */
    KIND_ENUM,     /* one of names[], stored as an int-sized enum */
    KIND_ENDPOINT, /* "HOST:PORT", stored as struct cfg_endpoint */
    KIND_METHODS,  /* array of method names (custom parser) */
    KIND_CIDRS,    /* array of CIDR strings (custom parser) */
    KIND_STRINGS,  /* array of strings, stored as struct cfg_strings (custom parser checks each) */
    KIND_OBJECT,   /* a section: its members are the rows whose `in` is this row's key */
    KIND_MAP,      /* an object of named elements, each holding rows as a section does (custom parser) */
    KIND_LIST,     /* an array of elements, each holding rows as a section does (custom parser) */
};

/* Where the fields being parsed are read from and stored to. */
struct scope {
    struct cfg_error *err;
    struct cfg *cfg;   /* the whole snapshot, for references across sections (route -> upstream) */
    const json_t *obj; /* the object holding the fields */
    const char *base;  /* its path in errors: "", "cache", "upstreams.s", "routes[0]" */
    void *dst;         /* what the rows' offsets point into: the cfg, a cfg_upstream or a cfg_route */
    size_t index;      /* of the element in routes[] */
};

struct field;

/* Parses a present value that has passed its kind's type check, in place of the kind's own storing. */
typedef enum cfg_status parse_fn(const struct scope *s, const struct field *f, const json_t *v);

/* One JSON key. Keys nest two levels deep at most: a top-level member, or a member of a top-level section or
 * of an element of a top-level map or list. */
struct field {
    const char *in;           /* key of the enclosing top-level member; "" for the top level itself */
    const char *key;          /* JSON key */
    enum kind kind;           /* set with the *_AT macros, which also check the stored type */
    size_t offset;            /* of the value in the scope's dst */
    const char *def;          /* the default as a JSON literal, applied through the same checks; NULL: none */
    long long min;            /* KIND_UINT, KIND_SIZE: inclusive bounds */
    long long max;            /* KIND_UINT, KIND_SIZE: inclusive bounds */
    const char *const *names; /* KIND_ENUM: the accepted strings in enum order, NULL-terminated */
    parse_fn *parse;          /* custom parsing; NULL: the kind's own */
    bool required;            /* absence is an error */
    bool own;                 /* KIND_OBJECT: the members' offsets are in the struct at this row's offset */
    const char *def_doc;      /* README default, when the JSON literal alone would mislead */
    const char *doc;          /* README meaning, one line; NULL for sections, maps and lists */
};

/* offsetof(T, m) that does not compile unless m has exactly the type the row's kind stores. */
#define OFFSET(T, m, type) (offsetof(T, m) + 0 * sizeof(char[_Generic(((T *)0)->m, type : 1, default : -1)]))
#define BOOL_AT(T, m) .kind = KIND_BOOL, .offset = OFFSET(T, m, bool)
#define UINT_AT(T, m) .kind = KIND_UINT, .offset = OFFSET(T, m, unsigned)
#define SIZE_AT(T, m) .kind = KIND_SIZE, .offset = OFFSET(T, m, size_t)
#define STRING_AT(T, m) .kind = KIND_STRING, .offset = OFFSET(T, m, char *)
#define ENUM_AT(T, m, type) .kind = KIND_ENUM, .offset = OFFSET(T, m, type)
#define ENDPOINT_AT(T, m) .kind = KIND_ENDPOINT, .offset = OFFSET(T, m, struct cfg_endpoint)
#define METHODS_AT(T, m) .kind = KIND_METHODS, .offset = OFFSET(T, m, unsigned)
#define STRINGS_AT(T, m) .kind = KIND_STRINGS, .offset = OFFSET(T, m, struct cfg_strings)

/* Enums are stored through an int (memcpy), whatever their declared type. */
_Static_assert(sizeof(enum cfg_msg_type) == sizeof(int), "enum cfg_msg_type is stored as an int");

static const char *const msg_type_names[] = {[CFG_MSG_CON] = "con", [CFG_MSG_NON] = "non", NULL};
_Static_assert(sizeof(enum cfg_auth_type) == sizeof(int), "enum cfg_auth_type is stored as an int");
static const char *const auth_type_names[] = {
    [CFG_AUTH_NONE] = "none", [CFG_AUTH_BEARER] = "bearer", [CFG_AUTH_API_KEY] = "api_key", NULL};

static const char *const log_format_names[] = {[CG_LOG_TEXT] = "text", [CG_LOG_JSON] = "json", NULL};

static parse_fn parse_upstreams, parse_upstream_uri, parse_routes, parse_route_prefix, parse_route_upstream,
    parse_methods, parse_forward_enabled, parse_prefix, parse_allow, parse_log_level, parse_origins,
    parse_header_names, parse_auth, parse_tls_file, parse_psk, parse_pki;

/* Row order is check order: the error reported is the one in the earliest row. */
static const struct field fields[] = {
    {"", "listen", ENDPOINT_AT(struct cfg, listen), .def = "\"127.0.0.1:8080\"",
     .doc = "HTTP address, `HOST:PORT` or `[V6]:PORT`"},
    {"", "upstreams", .kind = KIND_MAP, .parse = parse_upstreams},
    {"", "routes", .kind = KIND_LIST, .parse = parse_routes},
    {"", "forward_proxy", .kind = KIND_OBJECT},
    {"", "cache", .kind = KIND_OBJECT},
    {"", "demo_server", .kind = KIND_OBJECT},
    {"", "tls", .kind = KIND_OBJECT},
    {"", "admin", .kind = KIND_OBJECT},
    {"", "rate_limit", .kind = KIND_OBJECT},
    {"", "limits", .kind = KIND_OBJECT},
    {"", "log", .kind = KIND_OBJECT},
    {"", "shutdown_grace_s", UINT_AT(struct cfg, shutdown_grace_s), .def = "10", .min = 1, .max = 3600,
     .doc = "SIGTERM/SIGINT: requests in progress may finish within this; then what is left gets 503 or is "
            "cut, and the gateway exits 0"},

    {"upstreams", "uri", STRING_AT(struct cfg_upstream, uri), .parse = parse_upstream_uri, .required = true,
     .doc = "`coap://host[:port][/base/path]` (`coaps://`: DTLS, port 5684, needs `psk` or `pki`); the path "
            "after a route's prefix is appended to the base path"},
    {"upstreams", "timeout_ms", UINT_AT(struct cfg_upstream, timeout_ms), .def = "5000", .min = 1,
     .max = 600000, .doc = "deadline for the whole exchange, queueing included; then 504"},
    {"upstreams", "max_inflight", UINT_AT(struct cfg_upstream, max_inflight), .def = "1", .min = 1,
     .max = 1024, .doc = "exchanges on the wire at once, NSTART of RFC 7252 §4.7"},
    {"upstreams", "queue_limit", UINT_AT(struct cfg_upstream, queue_limit), .def = "64", .min = 0,
     .max = 1000000, .doc = "requests waiting beyond `max_inflight`; a full queue answers 503 + Retry-After"},
    {"upstreams", "type", ENUM_AT(struct cfg_upstream, type, enum cfg_msg_type), .def = "\"con\"",
     .names = msg_type_names, .doc = "`con` (confirmable, retransmitted) or `non`"},
    {"upstreams", "required", BOOL_AT(struct cfg_upstream, required), .def = "false",
     .doc = "`/readyz` answers 503 while this upstream is down (else the devices never make the gateway "
            "unready)"},
    {"upstreams", "ping_interval_s", UINT_AT(struct cfg_upstream, ping_interval_s), .def = "30", .min = 0,
     .max = 86400,
     .doc = "a CoAP ping (empty CON) after this long without news from the upstream, and at start-up; 0: "
            "no pings (the state then comes from traffic only)"},
    {"upstreams", "resolve_interval_s", UINT_AT(struct cfg_upstream, resolve_interval_s), .def = "60",
     .min = 1, .max = 86400,
     .doc = "a host name in `uri` is resolved again this often, and after a failure (off the workers)"},
    {"upstreams", "psk", .kind = KIND_OBJECT, .offset = OFFSET(struct cfg_upstream, psk, struct cfg_psk),
     .own = true, .parse = parse_psk},
    {"psk", "identity", STRING_AT(struct cfg_psk, identity), .required = true,
     .doc = "`coaps://` with a pre-shared key: the PSK identity (1 to 64 bytes, sent in the clear)"},
    {"psk", "key_file", STRING_AT(struct cfg_psk, key_file), .required = true,
     .doc = "the key as one line (1 to 64 bytes); relative to the configuration file; mode 600"},
    {"psk", "key_hex", BOOL_AT(struct cfg_psk, key_hex), .def = "false",
     .doc = "the key file's line is hex digits rather than the key's bytes"},
    {"upstreams", "pki", .kind = KIND_OBJECT, .offset = OFFSET(struct cfg_upstream, pki, struct cfg_pki),
     .own = true, .parse = parse_pki},
    {"pki", "ca_file", STRING_AT(struct cfg_pki, ca_file), .required = true,
     .doc = "`coaps://` with certificates: the CA(s) (PEM) the device's certificate must chain to; its name "
            "must match the URI's host"},
    {"pki", "cert", STRING_AT(struct cfg_pki, cert), .def_doc = "none",
     .doc = "the gateway's client certificate (PEM), relative to the configuration file"},
    {"pki", "key", STRING_AT(struct cfg_pki, key), .def_doc = "none",
     .doc = "its private key (PEM), mode 600; `cert` and `key` go together"},

    {"routes", "prefix", STRING_AT(struct cfg_route, prefix), .parse = parse_route_prefix, .required = true,
     .doc = "path prefix, starts and ends with `/`; the longest matching prefix wins"},
    /* A string in JSON, stored as the index of the upstream it names. */
    {"routes", "upstream", .kind = KIND_STRING, .offset = OFFSET(struct cfg_route, upstream, size_t),
     .parse = parse_route_upstream, .required = true, .doc = "name of an upstream"},
    {"routes", "methods", METHODS_AT(struct cfg_route, methods),
     .def = "[\"GET\", \"POST\", \"PUT\", \"DELETE\", \"FETCH\", \"PATCH\", \"iPATCH\"]",
     .parse = parse_methods, .def_doc = "all",
     .doc =
         "allowed methods among GET POST PUT DELETE FETCH PATCH iPATCH (GET allows HEAD); others get 405 + "
         "Allow"},
    {"routes", "cache", BOOL_AT(struct cfg_route, cache), .def = "true",
     .doc = "whether responses on this route may be cached"},
    {"routes", "auth", .kind = KIND_OBJECT, .offset = OFFSET(struct cfg_route, auth, struct cfg_auth),
     .own = true, .parse = parse_auth},
    {"auth", "type", ENUM_AT(struct cfg_auth, type, enum cfg_auth_type), .names = auth_type_names,
     .required = true,
     .doc = "`bearer` (`Authorization: Bearer <token>`) or `api_key` (a header); missing "
            "credentials get 401 + WWW-Authenticate, wrong ones 403. `admin.auth` (same "
            "fields) guards `/metrics`"},
    {"auth", "tokens_file", STRING_AT(struct cfg_auth, file), .def_doc = "required for `bearer`",
     .doc = "bearer tokens, one per line (`#` comments); relative to the configuration file; mode 600"},
    {"auth", "keys_file", STRING_AT(struct cfg_auth, keys_file), .def_doc = "required for `api_key`",
     .doc = "API keys, one per line, as `tokens_file`"},
    {"auth", "header", STRING_AT(struct cfg_auth, header), .def = "\"X-API-Key\"",
     .doc = "`api_key`: the request header holding the key"},
    {"routes", "cors", .kind = KIND_OBJECT},
    {"cors", "allow_origins", STRINGS_AT(struct cfg_route, cors.allow_origins), .parse = parse_origins,
     .def_doc = "none (CORS off)",
     .doc = "origins allowed to read answers from a browser: exact (`https://app.example`) or `*`"},
    {"cors", "allow_headers", STRINGS_AT(struct cfg_route, cors.allow_headers), .parse = parse_header_names,
     .def_doc = "none", .doc = "request headers a CORS preflight may ask for (`Content-Type`, ...)"},
    {"cors", "max_age_s", UINT_AT(struct cfg_route, cors.max_age_s), .def = "600", .min = 0, .max = 86400,
     .doc = "how long a browser may keep a preflight's answer (Access-Control-Max-Age)"},

    {"forward_proxy", "enabled", BOOL_AT(struct cfg, forward_proxy.enabled), .def = "false",
     .parse = parse_forward_enabled,
     .doc = "RFC 8075 forward proxying (`/hc/coap://host:port/path`, also percent-encoded); needs `allow`"},
    {"forward_proxy", "prefix", STRING_AT(struct cfg, forward_proxy.prefix), .def = "\"/hc/\"",
     .parse = parse_prefix, .doc = "path prefix of forward-proxy requests"},
    /* Stored by parse_allow() as forward_proxy.allow and .allow_len. */
    {"forward_proxy", "allow", .kind = KIND_CIDRS, .parse = parse_allow, .def_doc = "none",
     .doc =
         "the targets it may reach: `ADDR[/LEN][:PORT]`, `[V6][/LEN][:PORT]` or `V6[/LEN]` (`127.0.0.2/32`, "
         "`[::1]:5683`); every address a host name resolves to must match; multicast and broadcast only "
         "when named; anything else 403"},
    {"forward_proxy", "timeout_ms", UINT_AT(struct cfg, forward_proxy.timeout_ms), .def = "5000", .min = 1,
     .max = 600000, .doc = "deadline for an exchange with a target, queueing included; then 504"},

    {"cache", "enabled", BOOL_AT(struct cfg, cache.enabled), .def = "true",
     .doc = "the response cache (LRU)"},
    {"cache", "max_entries", SIZE_AT(struct cfg, cache.max_entries), .def = "10000", .min = 1,
     .max = 100000000, .doc = "hard bound on the number of cached responses"},
    {"cache", "max_bytes", SIZE_AT(struct cfg, cache.max_bytes), .def = "67108864", .min = 1024,
     .max = 1LL << 40, .doc = "hard bound on the bytes the cache holds"},

    {"demo_server", "enabled", BOOL_AT(struct cfg, demo.enabled), .def = "false",
     .def_doc = "`false` with a file", .doc = "the embedded demo CoAP server"},
    {"demo_server", "listen", ENDPOINT_AT(struct cfg, demo.listen), .def = "\"127.0.0.1:5683\"",
     .doc = "CoAP address of the embedded demo server"},

    {"tls", "cert", STRING_AT(struct cfg, tls.cert), .parse = parse_tls_file, .def_doc = "none (plain HTTP)",
     .doc = "HTTPS: the server certificate chain (PEM), relative to the configuration file"},
    {"tls", "key", STRING_AT(struct cfg, tls.key), .parse = parse_tls_file, .def_doc = "none",
     .doc = "HTTPS: its private key (PEM), mode 600; `cert` and `key` go together"},

    {"admin", "auth", .kind = KIND_OBJECT, .offset = OFFSET(struct cfg, admin.auth, struct cfg_auth),
     .own = true, .parse = parse_auth},

    {"rate_limit", "per_ip_rps", UINT_AT(struct cfg, rate_limit.per_ip_rps), .def = "0", .min = 0,
     .max = 1000000, .def_doc = "`0` (off)",
     .doc = "requests per second per client address (IPv6: per /64); beyond it 429 + Retry-After, before any "
            "CoAP is sent; admin paths exempt"},
    {"rate_limit", "burst", UINT_AT(struct cfg, rate_limit.burst), .def = "0", .min = 0, .max = 1000000,
     .def_doc = "`0` (twice per_ip_rps)",
     .doc = "requests a client may send at once before the rate applies"},

    {"limits", "max_connections", UINT_AT(struct cfg, limits.max_connections), .def = "10000", .min = 1,
     .max = 1000000, .doc = "concurrent HTTP connections; beyond it 503 at once, and the connection closes"},
    {"limits", "max_connections_per_ip", UINT_AT(struct cfg, limits.max_connections_per_ip), .def = "256",
     .min = 0, .max = 1000000,
     .doc = "concurrent HTTP connections from one address; beyond it new ones are "
            "closed at once (0: no cap)"},
    {"limits", "max_header_bytes", SIZE_AT(struct cfg, limits.max_header_bytes), .def = "8192", .min = 1024,
     .max = 1048576, .doc = "the whole request header section; beyond it 431"},
    {"limits", "max_uri_bytes", SIZE_AT(struct cfg, limits.max_uri_bytes), .def = "2048", .min = 16,
     .max = 65536, .doc = "the raw request target, query included; beyond it 414"},
    {"limits", "max_inflight_total", UINT_AT(struct cfg, limits.max_inflight_total), .def = "4096", .min = 1,
     .max = 1000000, .doc = "CoAP exchanges on the wire at once, all upstreams together; beyond it 503"},
    {"limits", "max_body_bytes", SIZE_AT(struct cfg, limits.max_body_bytes), .def = "1048576", .min = 0,
     .max = 1073741824,
     .doc = "largest body either way: a larger request gets 413 before the device is asked, a larger answer "
            "502"},
    {"limits", "connection_timeout_s", UINT_AT(struct cfg, limits.connection_timeout_s), .def = "30",
     .min = 1, .max = 86400, .doc = "idle HTTP connection timeout, also for a client that stops reading"},
    {"limits", "header_timeout_s", UINT_AT(struct cfg, limits.header_timeout_s), .def = "10", .min = 1,
     .max = 3600,
     .doc = "the whole request header section must arrive within this of the connection's start (or of the "
            "previous answer on a keep-alive connection); else 408 (over TLS, or before a request line: "
            "none) and "
            "the connection is closed"},
    {"limits", "body_timeout_s", UINT_AT(struct cfg, limits.body_timeout_s), .def = "60", .min = 1,
     .max = 86400,
     .doc = "the whole request body must arrive within this of the header section's end; else 408 "
            "(over TLS: none) and the connection is closed"},
    {"limits", "max_subscribers", UINT_AT(struct cfg, limits.max_subscribers), .def = "1000", .min = 1,
     .max = 1000000, .doc = "live-data subscribers (SSE and long-poll) in total; 503 beyond"},
    {"limits", "max_subscribers_per_resource", UINT_AT(struct cfg, limits.max_subscribers_per_resource),
     .def = "100", .min = 1, .max = 1000000, .doc = "live-data subscribers of one resource"},
    {"limits", "sse_keepalive_s", UINT_AT(struct cfg, limits.sse_keepalive_s), .def = "15", .min = 1,
     .max = 3600, .doc = "keep-alive comment interval on quiet SSE streams"},
    {"limits", "longpoll_timeout_s", UINT_AT(struct cfg, limits.longpoll_timeout_s), .def = "30", .min = 1,
     .max = 3600, .doc = "how long `?observe=next` waits before 204"},
    {"limits", "max_observations_per_upstream", UINT_AT(struct cfg, limits.max_observations_per_upstream),
     .def = "64", .min = 1, .max = 100000,
     .doc = "CoAP observations (registered or waiting for a slot) per upstream; a new one beyond gets 503"},

    {"log", "level", ENUM_AT(struct cfg, log.level, int), .def = "\"info\"", .parse = parse_log_level,
     .doc = "`error`, `warn`, `info`, `debug`"},
    {"log", "access_log", BOOL_AT(struct cfg, log.access_log), .def = "true",
     .doc = "one line per request (on stderr; on stdout with `format` `json`)"},
    {"log", "format", ENUM_AT(struct cfg, log.format, int), .def = "\"text\"", .names = log_format_names,
     .doc = "`text` (`key=value` lines) or `json` (one JSON object a line; the access log on stdout, every "
            "other line on stderr)"},
};

/* ---- errors and field paths ---- */

static void error_init(struct cfg_error *err, const char *file)
{
    memset(err, 0, sizeof(*err));
    snprintf(err->file, sizeof(err->file), "%s", file != NULL ? file : "(config)");
}

static enum cfg_status fail(struct cfg_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum cfg_status fail(struct cfg_error *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return CFG_ERR_INVALID;
}

static enum cfg_status nomem(struct cfg_error *err)
{
    fail(err, "", "out of memory");
    return CFG_ERR_NOMEM;
}

/* Fills reason (if any) and returns -1, for the helpers shared with cfg_endpoint_parse(). */
static int why(char *reason, size_t len, const char *msg)
{
    if (reason != NULL && len > 0) {
        snprintf(reason, len, "%s", msg);
    }
    return -1;
}

/* A field path cut to fit its buffer ends in "..." so the cut is visible. */
static void mark_cut(char *out, size_t len, int written)
{
    if (written >= 0 && (size_t)written >= len && len > 3) {
        memcpy(out + len - 4, "...", 4);
    }
}

/* out = "base.key", or "key" at the top level. */
static void join(char *out, size_t len, const char *base, const char *key)
{
    if (base[0] == '\0') {
        mark_cut(out, len, snprintf(out, len, "%s", key));
    } else {
        mark_cut(out, len, snprintf(out, len, "%s.%s", base, key));
    }
}

static enum cfg_status fail_at(struct cfg_error *err, const char *base, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fails at the field base.key, as fail() does. */
static enum cfg_status fail_at(struct cfg_error *err, const char *base, const char *key, const char *fmt, ...)
{
    va_list ap;

    join(err->field, sizeof(err->field), base, key);
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return CFG_ERR_INVALID;
}

/* ---- parsing driven by the rows ---- */

static bool is_container(enum kind kind)
{
    return kind == KIND_OBJECT || kind == KIND_MAP || kind == KIND_LIST;
}

static const struct field *find_field(const char *in, const char *key)
{
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        if (strcmp(fields[i].in, in) == 0 && strcmp(fields[i].key, key) == 0) {
            return &fields[i];
        }
    }
    return NULL;
}

/* Where the row's value lives in the scope's struct. */
static void *slot(const struct scope *s, const struct field *f)
{
    return (char *)s->dst + f->offset;
}

/* Unknown fields are errors: each member of s->obj needs a row whose `in` is in (the container's key). */
static enum cfg_status check_known(const struct scope *s, const char *in)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)s->obj, key, value)
    {
        if (find_field(in, key) == NULL) {
            return fail_at(s->err, s->base, key, "unknown field");
        }
    }
    return CFG_OK;
}

/* Why v cannot be a value of the kind at all, or NULL. */
static const char *type_problem(enum kind kind, const json_t *v)
{
    switch (kind) {
    case KIND_BOOL:
        return json_is_boolean(v) ? NULL : "must be a boolean (true or false)";
    case KIND_UINT:
    case KIND_SIZE:
        return json_is_integer(v) ? NULL : "must be an integer";
    case KIND_STRING:
    case KIND_ENUM:
    case KIND_ENDPOINT:
        return json_is_string(v) ? NULL : "must be a string";
    case KIND_METHODS:
        return json_is_array(v) ? NULL : "must be an array of method names";
    case KIND_CIDRS:
        return json_is_array(v) ? NULL : "must be an array of address rules";
    case KIND_STRINGS:
        return json_is_array(v) ? NULL : "must be an array of strings";
    case KIND_OBJECT:
    case KIND_MAP:
        return json_is_object(v) ? NULL : "must be an object";
    case KIND_LIST:
        return json_is_array(v) ? NULL : "must be an array";
    }
    return NULL;
}

static enum cfg_status store_integer(const struct scope *s, const struct field *f, const json_t *v)
{
    long long n = json_integer_value(v);

    if (n < f->min || n > f->max) {
        return fail_at(s->err, s->base, f->key, "must be between %lld and %lld", f->min, f->max);
    }
    if (f->kind == KIND_UINT) {
        *(unsigned *)slot(s, f) = (unsigned)n;
    } else {
        *(size_t *)slot(s, f) = (size_t)n;
    }
    return CFG_OK;
}

/* "\"a\" or \"b\"", "\"a\", \"b\" or \"c\"". */
static void quote_names(const char *const *names, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; names[i] != NULL && used < len; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ";
        int n = snprintf(buf + used, len - used, "%s\"%s\"", sep, names[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

static enum cfg_status store_enum(const struct scope *s, const struct field *f, const json_t *v)
{
    const char *text = json_string_value(v);
    char names[REASON_LEN];

    for (int i = 0; f->names[i] != NULL; i++) {
        if (strcmp(f->names[i], text) == 0) {
            memcpy(slot(s, f), &i, sizeof(i));
            return CFG_OK;
        }
    }
    quote_names(f->names, names, sizeof(names));
    return fail_at(s->err, s->base, f->key, "must be %s", names);
}

static enum cfg_status store_endpoint(const struct scope *s, const struct field *f, const json_t *v)
{
    char reason[REASON_LEN];

    if (cfg_endpoint_parse(json_string_value(v), slot(s, f), reason, sizeof(reason)) != 0) {
        return fail_at(s->err, s->base, f->key, "%s", reason);
    }
    return CFG_OK;
}

static enum cfg_status store_string(const struct scope *s, const struct field *f, const json_t *v)
{
    char **out = slot(s, f);

    free(*out);
    *out = strdup(json_string_value(v));
    return *out == NULL ? nomem(s->err) : CFG_OK;
}

static enum cfg_status parse_section(const struct scope *s, const struct field *f, const json_t *v);

/* The kind's own storing, for rows without a parser. */
static enum cfg_status store_value(const struct scope *s, const struct field *f, const json_t *v)
{
    switch (f->kind) {
    case KIND_BOOL:
        *(bool *)slot(s, f) = json_is_true(v);
        return CFG_OK;
    case KIND_UINT:
    case KIND_SIZE:
        return store_integer(s, f, v);
    case KIND_STRING:
        return store_string(s, f, v);
    case KIND_ENUM:
        return store_enum(s, f, v);
    case KIND_ENDPOINT:
        return store_endpoint(s, f, v);
    case KIND_OBJECT:
        return parse_section(s, f, v);
    case KIND_METHODS:
    case KIND_CIDRS:
    case KIND_STRINGS:
    case KIND_MAP:
    case KIND_LIST:
        break;
    }
    /* These kinds have no storing of their own: a row of one without a parser is a bug in the table. */
    return fail_at(s->err, s->base, f->key, "internal error: no parser for this field");
}

static enum cfg_status parse_value(const struct scope *s, const struct field *f, const json_t *v)
{
    const char *problem = type_problem(f->kind, v);

    if (problem != NULL) {
        return fail_at(s->err, s->base, f->key, "%s", problem);
    }
    return f->parse != NULL ? f->parse(s, f, v) : store_value(s, f, v);
}

/* Parses the members of s->obj that the rows whose `in` is in describe, in row order; absent ones keep their
 * default. */
static enum cfg_status parse_fields(const struct scope *s, const char *in)
{
    for (const struct field *f = fields; f < fields + ARRAY_LEN(fields); f++) {
        enum cfg_status st = CFG_OK;

        if (strcmp(f->in, in) != 0) {
            continue;
        }
        json_t *v = json_object_get(s->obj, f->key);
        if (v != NULL) {
            st = parse_value(s, f, v);
        } else if (f->required) {
            st = fail_at(s->err, s->base, f->key, "missing required field");
        }
        if (st != CFG_OK) {
            return st;
        }
    }
    return CFG_OK;
}

/* Stores the defaults of the rows whose `in` is in, through the same checks as values from a file, so that a
 * default outside its own range cannot go unnoticed. */
static enum cfg_status apply_defaults(const struct scope *s, const char *in)
{
    for (const struct field *f = fields; f < fields + ARRAY_LEN(fields); f++) {
        if (f->def == NULL || strcmp(f->in, in) != 0) {
            continue;
        }
        /* The literals are valid JSON, so only allocation can fail. */
        json_t *v = json_loads(f->def, JSON_DECODE_ANY, NULL);
        enum cfg_status st = v != NULL ? parse_value(s, f, v) : nomem(s->err);
        json_decref(v);
        if (st != CFG_OK) {
            return st;
        }
    }
    return CFG_OK;
}

/* The defaults of the snapshot itself: the top level and its sections (map and list elements get theirs as
 * they are parsed). */
static enum cfg_status apply_cfg_defaults(const struct scope *s)
{
    enum cfg_status st = apply_defaults(s, "");

    for (const struct field *f = fields; f < fields + ARRAY_LEN(fields) && st == CFG_OK; f++) {
        if (f->in[0] == '\0' && f->kind == KIND_OBJECT) {
            struct scope sub = *s;
            sub.base = f->key;
            st = apply_defaults(&sub, f->key);
        }
    }
    return st;
}

/* A section such as "cache" (or "cors" inside a route): its members are stored in the scope's struct. */
static enum cfg_status parse_section(const struct scope *s, const struct field *f, const json_t *v)
{
    char base[FIELD_LEN];
    struct scope sub = *s;
    enum cfg_status st;

    join(base, sizeof(base), s->base, f->key);
    sub.obj = v;
    sub.base = base;
    if (f->own) {
        sub.dst = slot(s, f);
    }
    st = check_known(&sub, f->key);
    if (st == CFG_OK && f->in[0] != '\0') {
        st = apply_defaults(&sub, f->key); /* a section inside an element: its defaults come with it */
    }
    return st == CFG_OK ? parse_fields(&sub, f->key) : st;
}

/* ---- hosts, ports and endpoints ---- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool only_digits_and_dots(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '.' && (s[i] < '0' || s[i] > '9')) {
            return false;
        }
    }
    return true;
}

/* RFC 1123 host name: dot-separated labels of 1..63 letters, digits and '-', no '-' at either end. */
static bool is_hostname(const char *s, size_t len)
{
    size_t label = 0;

    if (len > 253) {
        return false;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') {
                return false;
            }
            label = 0;
        } else if (is_alnum(s[i]) || s[i] == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static bool is_address(int family, const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[16];

    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(family, buf, addr) == 1;
}

/* Checks host (brackets already removed when bracketed) and copies it into out->host. */
static int set_host(const char *host, size_t len, bool bracketed, struct cfg_endpoint *out, char *reason,
                    size_t rlen)
{
    if (len == 0) {
        return why(reason, rlen, "missing host");
    }
    if (bracketed) {
        if (!is_address(AF_INET6, host, len)) {
            return why(reason, rlen, "invalid IPv6 address");
        }
    } else if (memchr(host, ':', len) != NULL) {
        return why(reason, rlen, "an IPv6 address must be in brackets, e.g. [::1]:8080");
    } else if (only_digits_and_dots(host, len)) {
        if (!is_address(AF_INET, host, len)) {
            return why(reason, rlen, "invalid IPv4 address");
        }
    } else if (!is_hostname(host, len)) {
        return why(reason, rlen, "invalid host name (letters, digits, '-' and '.' only)");
    }
    memcpy(out->host, host, len);
    out->host[len] = '\0';
    return 0;
}

static int set_port(const char *s, size_t len, struct cfg_endpoint *out, char *reason, size_t rlen)
{
    unsigned long n = 0;

    if (len == 0) {
        return why(reason, rlen, "missing port after ':'");
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || n > 65535) {
            return why(reason, rlen, "port must be a number between 1 and 65535");
        }
        n = n * 10 + (unsigned long)(s[i] - '0');
    }
    if (n < 1 || n > 65535) {
        return why(reason, rlen, "port must be a number between 1 and 65535");
    }
    out->port = (uint16_t)n;
    return 0;
}

/* Parses "host[:port]" or "[v6][:port]" in s[0..len). The port is required when def_port is 0. */
static int parse_host_port(const char *s, size_t len, uint16_t def_port, struct cfg_endpoint *out,
                           char *reason, size_t rlen)
{
    const char *end = s + len;
    const char *port = NULL;
    size_t hlen = len;
    bool bracketed = len > 0 && s[0] == '[';

    if (bracketed) {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            return why(reason, rlen, "missing ']' after the IPv6 address");
        }
        if (close + 1 < end && close[1] != ':') {
            return why(reason, rlen, "unexpected text after ']' (expected :PORT)");
        }
        port = close + 1 < end ? close + 2 : NULL;
        hlen = (size_t)(close - s) - 1;
        s++;
    } else {
        for (size_t i = len; i > 0; i--) {
            if (s[i - 1] == ':') {
                port = s + i;
                hlen = i - 1;
                break;
            }
        }
    }
    if (set_host(s, hlen, bracketed, out, reason, rlen) != 0) {
        return -1;
    }
    if (port == NULL) {
        out->port = def_port;
        return def_port != 0 ? 0 : why(reason, rlen, "missing port (expected HOST:PORT or [IPV6]:PORT)");
    }
    return set_port(port, (size_t)(end - port), out, reason, rlen);
}

int cfg_endpoint_parse(const char *text, struct cfg_endpoint *out, char *reason, size_t reason_len)
{
    struct cfg_endpoint ep;

    if (text == NULL) {
        return why(reason, reason_len, "missing address");
    }
    memset(&ep, 0, sizeof(ep));
    if (parse_host_port(text, strlen(text), 0, &ep, reason, reason_len) != 0) {
        return -1;
    }
    *out = ep;
    return 0;
}

/* ---- upstream URIs ---- */

/* RFC 3986 pchar other than pct-encoded: unreserved, sub-delims, ':' and '@'. */
static bool is_pchar(char c)
{
    return is_alnum(c) || (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

static void bad_char(char c, char *reason, size_t rlen)
{
    if (c > ' ' && c < 0x7f) {
        snprintf(reason, rlen, "character '%c' is not allowed in the path (percent-encode it)", c);
    } else {
        snprintf(reason, rlen, "byte 0x%02X is not allowed in the path (percent-encode it)",
                 (unsigned char)c);
    }
}

/* Percent-decodes one path segment s[0..len) into a new string. */
static enum cfg_status decode_segment(const char *s, size_t len, char **out, char *reason, size_t rlen)
{
    char *buf = malloc(len + 1);
    size_t n = 0;

    if (buf == NULL) {
        return CFG_ERR_NOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < len ? cg_hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? cg_hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || hi + lo == 0) {
                why(reason, rlen,
                    hi + lo == 0 ? "%00 is not allowed in the path" : "invalid percent-encoding in the path");
                goto out_free_buf;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (!is_pchar(c)) {
            bad_char(c, reason, rlen);
            goto out_free_buf;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    *out = buf;
    return CFG_OK;

out_free_buf:
    free(buf);
    return CFG_ERR_INVALID;
}

static bool is_dot_segment(const char *s, size_t len)
{
    return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

/* Each segment is one Uri-Path option: a longer one could never be sent, so every request would get 414. */
static enum cfg_status check_segment_len(const char *seg, size_t index, char *reason, size_t rlen)
{
    size_t len = strlen(seg); /* decoded, and %00 is refused, so no NUL inside */

    if (len > URI_PATH_MAX) {
        snprintf(reason, rlen,
                 "path segment %zu is %zu bytes after decoding; a Uri-Path option holds at most %d",
                 index + 1, len, URI_PATH_MAX);
        return CFG_ERR_INVALID;
    }
    return CFG_OK;
}

/* The bytes the base path takes in a CoAP message: each value plus its option header, 1 byte, or 2 when the
 * length needs the extended form (13..268, RFC 7252 §3.1). Deltas are 0 after the first Uri-Path, and the
 * first (at most 11) fits the header too. */
static size_t base_path_option_bytes(const struct cfg_upstream *u)
{
    size_t total = 0;

    for (size_t i = 0; i < u->base_path_len; i++) {
        size_t len = strlen(u->base_path[i]);
        total += 1 + (len >= 13) + len;
    }
    return total;
}

/* A base path too large for one message leaves no request that could be sent: refuse it here, not with a 414
 * on every request. */
static enum cfg_status check_base_path_size(const struct cfg_upstream *u, char *reason, size_t rlen)
{
    size_t bytes = base_path_option_bytes(u);

    if (u->base_path_len > BASE_PATH_MAX_SEGMENTS) {
        snprintf(reason, rlen,
                 "the base path has %zu segments; at most %d, to leave room for the request's own path and "
                 "options",
                 u->base_path_len, BASE_PATH_MAX_SEGMENTS);
        return CFG_ERR_INVALID;
    }
    if (bytes > BASE_PATH_MAX_OPTION_BYTES) {
        snprintf(reason, rlen,
                 "the base path takes %zu bytes as Uri-Path options; at most %d, to leave room for the "
                 "request's own path and options",
                 bytes, BASE_PATH_MAX_OPTION_BYTES);
        return CFG_ERR_INVALID;
    }
    return CFG_OK;
}

/* "/a/b" -> {"a","b"}; "" and "/" -> none; one trailing '/' is ignored ("/a/" -> {"a"}). */
static enum cfg_status parse_base_path(const char *path, struct cfg_upstream *u, char *reason, size_t rlen)
{
    size_t len = strlen(path);
    size_t count = 0;

    if (len > 0 && path[len - 1] == '/') {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        count += path[i] == '/';
    }
    if (count == 0) {
        return CFG_OK;
    }
    u->base_path = calloc(count, sizeof(*u->base_path));
    if (u->base_path == NULL) {
        return CFG_ERR_NOMEM;
    }
    u->base_path_len = count;
    for (size_t i = 0, start = 1; i < count; i++) {
        size_t end = start;
        while (end < len && path[end] != '/') {
            end++;
        }
        if (end == start || is_dot_segment(path + start, end - start)) {
            why(reason, rlen,
                end == start ? "empty segment (//) in the path"
                             : "'.' and '..' segments are not allowed in the path");
            return CFG_ERR_INVALID;
        }
        enum cfg_status st = decode_segment(path + start, end - start, &u->base_path[i], reason, rlen);
        if (st == CFG_OK) {
            st = check_segment_len(u->base_path[i], i, reason, rlen);
        }
        if (st != CFG_OK) {
            return st;
        }
        start = end + 1;
    }
    return check_base_path_size(u, reason, rlen);
}

/* Checks "scheme://" (coap or coaps, which sets *secure) and returns a pointer just past it, or NULL with
 * reason filled. */
static const char *skip_scheme(const char *uri, bool *secure, char *reason, size_t rlen)
{
    const char *sep = strstr(uri, "://");
    size_t len = sep != NULL ? (size_t)(sep - uri) : 0;

    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(uri[i]) && (i == 0 || strchr("+-.", uri[i]) == NULL)) {
            len = 0;
        }
    }
    if (len == 0) {
        why(reason, rlen, "must be a coap:// URI, e.g. \"coap://192.0.2.10:5683\"");
        return NULL;
    }
    *secure = len == 5 && strncasecmp(uri, "coaps", 5) == 0;
    if (!*secure && (len != 4 || strncasecmp(uri, "coap", 4) != 0)) {
        snprintf(reason, rlen, "scheme %.*s is not supported (only coap:// and coaps://)",
                 (int)(len > 32 ? 32 : len), uri);
        return NULL;
    }
    return sep + 3;
}

/* Splits "coap[s]://host[:port][/path]" into u->secure, u->peer and u->base_path. */
static enum cfg_status parse_uri(const char *uri, struct cfg_upstream *u, char *reason, size_t rlen)
{
    const char *auth = skip_scheme(uri, &u->secure, reason, rlen);
    const char *rest;
    size_t alen;

    if (auth == NULL) {
        return CFG_ERR_INVALID;
    }
    alen = strcspn(auth, "/?#");
    rest = auth + alen;
    if (memchr(auth, '@', alen) != NULL) {
        why(reason, rlen, "userinfo (user@) is not allowed");
        return CFG_ERR_INVALID;
    }
    if (parse_host_port(auth, alen, u->secure ? COAPS_DEFAULT_PORT : COAP_DEFAULT_PORT, &u->peer, reason,
                        rlen) != 0) {
        return CFG_ERR_INVALID;
    }
    if (strpbrk(rest, "?#") != NULL) {
        why(reason, rlen,
            *strpbrk(rest, "?#") == '?' ? "a query (?...) is not allowed"
                                        : "a fragment (#...) is not allowed");
        return CFG_ERR_INVALID;
    }
    return parse_base_path(rest, u, reason, rlen);
}

/* ---- upstreams ---- */

static bool is_upstream_name(const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(name[i]) && name[i] != '_' && name[i] != '-') {
            return false;
        }
    }
    return len >= 1 && len <= 64;
}

/* upstreams.NAME.uri: kept as written, split into the peer and the base path. */
static enum cfg_status parse_upstream_uri(const struct scope *s, const struct field *f, const json_t *v)
{
    char reason[REASON_LEN];
    enum cfg_status st = store_string(s, f, v);

    if (st != CFG_OK) {
        return st;
    }
    st = parse_uri(json_string_value(v), s->dst, reason, sizeof(reason));
    if (st == CFG_ERR_NOMEM) {
        return nomem(s->err);
    }
    return st == CFG_OK ? CFG_OK : fail_at(s->err, s->base, f->key, "%s", reason);
}

static enum cfg_status check_dtls(const struct scope *s, const struct cfg_upstream *u);

static enum cfg_status parse_upstream(const struct scope *s, const struct field *f, const char *name,
                                      const json_t *obj, struct cfg_upstream *u)
{
    char base[FIELD_LEN];
    struct scope sub = *s;
    enum cfg_status st;

    join(base, sizeof(base), f->key, name);
    if (!is_upstream_name(name)) {
        return fail(s->err, base, "invalid upstream name (1 to 64 of A-Z a-z 0-9 _ -)");
    }
    if (!json_is_object(obj)) {
        return fail(s->err, base, "must be an object");
    }
    sub.obj = obj;
    sub.base = base;
    sub.dst = u;
    st = check_known(&sub, f->key);
    if (st != CFG_OK) {
        return st;
    }
    u->name = strdup(name);
    if (u->name == NULL) {
        return nomem(s->err);
    }
    st = apply_defaults(&sub, f->key);
    st = st == CFG_OK ? parse_fields(&sub, f->key) : st;
    return st == CFG_OK ? check_dtls(&sub, u) : st;
}

/* "upstreams": in file order. That routes need one is checked by parse_routes(). */
static enum cfg_status parse_upstreams(const struct scope *s, const struct field *f, const json_t *v)
{
    struct cfg *cfg = s->cfg;
    json_t *value;
    const char *name;
    size_t i = 0;

    if (json_object_size(v) == 0) {
        return CFG_OK;
    }
    cfg->upstreams = calloc(json_object_size(v), sizeof(*cfg->upstreams));
    if (cfg->upstreams == NULL) {
        return nomem(s->err);
    }
    cfg->upstreams_len = json_object_size(v);
    json_object_foreach((json_t *)v, name, value)
    {
        enum cfg_status st = parse_upstream(s, f, name, value, &cfg->upstreams[i++]);
        if (st != CFG_OK) {
            return st;
        }
    }
    return CFG_OK;
}

/* ---- routes ---- */

/* Whether "/a/./b/" or "/a/../b/" holds a '.' or '..' segment. */
static bool has_dot_segment(const char *s)
{
    while (*s != '\0') {
        size_t len = strcspn(s, "/");
        if (is_dot_segment(s, len)) {
            return true;
        }
        s += len + (s[len] == '/');
    }
    return false;
}

/* A path prefix as routes and the forward proxy use it: "/", "/api/", "/a/b/". */
static const char *prefix_problem(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || s[0] != '/') {
        return "must start with '/'";
    }
    if (s[len - 1] != '/') {
        return "must end with '/', e.g. \"/api/\"";
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '?' || s[i] == '%' || s[i] == '#') {
            return "must not contain '?', '%' or '#'";
        }
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) {
            return "must not contain spaces or control characters";
        }
    }
    if (strstr(s, "//") != NULL) {
        return "must not contain an empty segment (//)";
    }
    /* Clients normalise such segments away (RFC 3986 §5.2.4) before they send a request, so the prefix
     * could never match what they send. */
    if (has_dot_segment(s)) {
        return "must not contain a '.' or '..' segment (a normalised request path never has one)";
    }
    for (size_t i = CFG_ADMIN_NONE + 1; i < CFG_ADMIN_COUNT; i++) {
        if (strncmp(s, admin_paths[i], strlen(admin_paths[i])) == 0) {
            return "must not be or start with an admin path (/healthz, /readyz, /metrics)";
        }
    }
    return NULL;
}

/* routes[].prefix and forward_proxy.prefix. */
static enum cfg_status parse_prefix(const struct scope *s, const struct field *f, const json_t *v)
{
    const char *problem = prefix_problem(json_string_value(v));

    if (problem != NULL) {
        return fail_at(s->err, s->base, f->key, "%s", problem);
    }
    return store_string(s, f, v);
}

static enum cfg_status check_duplicate_prefix(struct cfg_error *err, const struct cfg *cfg, size_t index,
                                              const char *base)
{
    char field[FIELD_LEN];

    for (size_t i = 0; i < index; i++) {
        if (strcmp(cfg->routes[i].prefix, cfg->routes[index].prefix) == 0) {
            join(field, sizeof(field), base, "prefix");
            return fail(err, field, "duplicate prefix \"%.64s\" (also routes[%zu])",
                        cfg->routes[index].prefix, i);
        }
    }
    return CFG_OK;
}

static enum cfg_status parse_route_prefix(const struct scope *s, const struct field *f, const json_t *v)
{
    enum cfg_status st = parse_prefix(s, f, v);

    return st == CFG_OK ? check_duplicate_prefix(s->err, s->cfg, s->index, s->base) : st;
}

/* routes[].upstream: stored as the index of the upstream it names. */
static enum cfg_status parse_route_upstream(const struct scope *s, const struct field *f, const json_t *v)
{
    const char *name = json_string_value(v);

    for (size_t i = 0; i < s->cfg->upstreams_len; i++) {
        if (strcmp(s->cfg->upstreams[i].name, name) == 0) {
            *(size_t *)slot(s, f) = i;
            return CFG_OK;
        }
    }
    return fail_at(s->err, s->base, f->key, "no upstream named \"%.64s\"", name);
}

/* The cfg_method bit for a method name, 0 when unknown. */
static unsigned method_bit(const char *name)
{
    uint8_t code = co_method_by_name(name);
    return code != 0 ? CO_METHOD_BIT(code) : 0;
}

static enum cfg_status add_method(struct cfg_error *err, const json_t *v, const char *field,
                                  unsigned *methods)
{
    const char *name = json_string_value(v);
    unsigned bit;

    if (name == NULL) {
        return fail(err, field, "must be a string");
    }
    bit = method_bit(name);
    if (bit == 0 && strcmp(name, "HEAD") == 0) {
        return fail(err, field, "HEAD is implied by GET; list GET instead");
    }
    if (bit == 0) {
        return fail(err, field,
                    "unknown method \"%.32s\" (known: GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH)", name);
    }
    if (*methods & bit) {
        return fail(err, field, "duplicate method \"%.32s\"", name);
    }
    *methods |= bit;
    return CFG_OK;
}

static enum cfg_status parse_methods(const struct scope *s, const struct field *f, const json_t *v)
{
    char field[FIELD_LEN];
    unsigned methods = 0;
    json_t *m;
    size_t i;

    if (json_array_size(v) == 0) {
        return fail_at(s->err, s->base, f->key, "must not be empty");
    }
    json_array_foreach(v, i, m)
    {
        mark_cut(field, sizeof(field), snprintf(field, sizeof(field), "%s.%s[%zu]", s->base, f->key, i));
        enum cfg_status st = add_method(s->err, m, field, &methods);
        if (st != CFG_OK) {
            return st;
        }
    }
    *(unsigned *)slot(s, f) = methods;
    return CFG_OK;
}

/* routes[i]: its defaults are set before anything is checked, as for every element. */
static enum cfg_status parse_route(const struct scope *s, const struct field *f, size_t index,
                                   const json_t *obj)
{
    char base[FIELD_LEN];
    struct scope sub = *s;
    enum cfg_status st;

    snprintf(base, sizeof(base), "%s[%zu]", f->key, index);
    sub.obj = obj;
    sub.base = base;
    sub.dst = &s->cfg->routes[index];
    sub.index = index;
    st = apply_defaults(&sub, f->key);
    if (st == CFG_OK && !json_is_object(obj)) {
        st = fail(s->err, base, "must be an object");
    }
    if (st == CFG_OK) {
        st = check_known(&sub, f->key);
    }
    return st == CFG_OK ? parse_fields(&sub, f->key) : st;
}

static enum cfg_status parse_routes(const struct scope *s, const struct field *f, const json_t *v)
{
    struct cfg *cfg = s->cfg;
    size_t n = json_array_size(v);

    if (n == 0) {
        return CFG_OK;
    }
    /* Checked here rather than at "upstreams", which may be absent: absent members run no parser. */
    if (cfg->upstreams_len == 0) {
        return fail(s->err, "upstreams", "at least one upstream is required when routes are defined");
    }
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    if (cfg->routes == NULL) {
        return nomem(s->err);
    }
    cfg->routes_len = n;
    for (size_t i = 0; i < n; i++) {
        enum cfg_status st = parse_route(s, f, i, json_array_get(v, i));
        if (st != CFG_OK) {
            return st;
        }
    }
    return CFG_OK;
}

/* ---- forward proxy ---- */

static enum cfg_status parse_allow(const struct scope *s, const struct field *f, const json_t *v)
{
    struct cfg *cfg = s->cfg;
    char field[FIELD_LEN];
    json_t *c;
    size_t i;

    if (json_array_size(v) == 0) {
        return CFG_OK;
    }
    cfg->forward_proxy.allow = calloc(json_array_size(v), sizeof(*cfg->forward_proxy.allow));
    if (cfg->forward_proxy.allow == NULL) {
        return nomem(s->err);
    }
    cfg->forward_proxy.allow_len = json_array_size(v);
    json_array_foreach(v, i, c)
    {
        mark_cut(field, sizeof(field), snprintf(field, sizeof(field), "%s.%s[%zu]", s->base, f->key, i));
        if (!json_is_string(c)) {
            return fail(s->err, field, "must be a string");
        }
        const char *why = NULL;
        if (cg_addr_rule_parse(json_string_value(c), &cfg->forward_proxy.allow[i], &why) != 0) {
            return fail(s->err, field, "invalid target rule \"%.64s\": %s", json_string_value(c), why);
        }
    }
    return CFG_OK;
}

/* Enabled with no allow rule, the proxy could reach nothing: that is a mistake, not a configuration. */
static enum cfg_status parse_forward_enabled(const struct scope *s, const struct field *f, const json_t *v)
{
    const json_t *allow = json_object_get(s->obj, "allow");
    if (json_is_true(v) && json_array_size(allow) == 0) {
        return fail_at(
            s->err, s->base, f->key,
            "needs forward_proxy.allow: the targets it may reach (closed by default, RFC 8075 §11)");
    }
    return store_value(s, f, v);
}

/* ---- lists of strings (CORS) ---- */

/* Stores each string of the array v after check() accepts it; errors name the element ("x.y[2]"). */
static enum cfg_status store_strings(const struct scope *s, const struct field *f, const json_t *v,
                                     const char *(*check)(const char *text))
{
    struct cfg_strings *out = slot(s, f);
    char field[FIELD_LEN];
    json_t *c;
    size_t i;

    if (json_array_size(v) == 0) {
        return CFG_OK;
    }
    if ((out->v = calloc(json_array_size(v), sizeof(*out->v))) == NULL) {
        return nomem(s->err);
    }
    json_array_foreach(v, i, c)
    {
        mark_cut(field, sizeof(field), snprintf(field, sizeof(field), "%s.%s[%zu]", s->base, f->key, i));
        const char *problem = json_is_string(c) ? check(json_string_value(c)) : "must be a string";
        if (problem != NULL) {
            return fail(s->err, field, "%s", problem);
        }
        if ((out->v[out->len] = strdup(json_string_value(c))) == NULL) {
            return nomem(s->err);
        }
        out->len++;
    }
    return CFG_OK;
}

/* An origin as browsers send it (RFC 6454 §6.1): "http(s)://host[:port]", nothing after; or "*". */
static const char *origin_problem(const char *text)
{
    const char *rest = strncmp(text, "https://", 8) == 0  ? text + 8
                       : strncmp(text, "http://", 7) == 0 ? text + 7
                                                          : NULL;
    if (strcmp(text, "*") == 0) {
        return NULL;
    }
    if (rest == NULL || *rest == '\0') {
        return "must be \"*\" or an origin such as \"https://app.example\" (scheme://host[:port])";
    }
    for (const char *p = rest; *p != '\0'; p++) {
        if (*p == '/' || *p == '?' || *p == '#' || (unsigned char)*p <= ' ' || *p == 0x7f) {
            return "an origin has no path, query, fragment or spaces (e.g. \"https://app.example:8443\")";
        }
    }
    return NULL;
}

/* A field name is a token (RFC 9110 §5.1). */
static const char *header_name_problem(const char *text)
{
    if (*text == '\0') {
        return "must not be empty";
    }
    for (const char *p = text; *p != '\0'; p++) {
        if (!is_alnum(*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL) {
            return "must be a header field name (letters, digits and !#$%&'*+-.^_`|~)";
        }
    }
    return NULL;
}

static enum cfg_status parse_origins(const struct scope *s, const struct field *f, const json_t *v)
{
    enum cfg_status st = store_strings(s, f, v, origin_problem);
    struct cfg_route *route = s->dst;

    for (size_t i = 0; st == CFG_OK && i < route->cors.allow_origins.len; i++) {
        route->cors.any_origin = route->cors.any_origin || strcmp(route->cors.allow_origins.v[i], "*") == 0;
    }
    return st;
}

static enum cfg_status parse_header_names(const struct scope *s, const struct field *f, const json_t *v)
{
    return store_strings(s, f, v, header_name_problem);
}

/* ---- authentication ---- */

/* path as written, or resolved against the folder of the configuration file (err->file) when relative. */
static char *resolve_path(const struct scope *s, const char *path)
{
    const char *file = s->err->file;
    const char *slash = strrchr(file, '/');
    char *out;

    if (path[0] == '/' || slash == NULL) {
        return strdup(path);
    }
    if (asprintf(&out, "%.*s/%s", (int)(slash - file), file, path) < 0) {
        return NULL;
    }
    return out;
}

/* Reads the secrets of an auth section now, so a missing or group/world-readable file is a configuration
 * error, not a surprise at the first request. */
static enum cfg_status load_secrets(const struct scope *s, struct cfg_auth *auth, const char *key)
{
    char reason[CG_SECRET_REASON_MAX];
    char *path = resolve_path(s, auth->file);

    if (path == NULL) {
        return nomem(s->err);
    }
    free(auth->file);
    auth->file = path;
    if (cg_secret_list_read(path, &auth->secrets, reason, sizeof(reason)) != 0) {
        return fail_at(s->err, s->base, key, "%.160s: %s", path, reason);
    }
    return CFG_OK;
}

/* An auth section: its members, then what they must say together. keys_file is stored where tokens_file
 * is (one file per route), so which of them is set must match the type. */
static enum cfg_status parse_auth(const struct scope *s, const struct field *f, const json_t *v)
{
    char base[FIELD_LEN];
    struct cfg_auth *auth = slot(s, f);
    const json_t *keys = json_object_get(v, "keys_file");
    const json_t *tokens = json_object_get(v, "tokens_file"); /* both type-checked by the section's rows */
    enum cfg_status st = parse_section(s, f, v);

    join(base, sizeof(base), s->base, f->key);
    if (st != CFG_OK || auth->type == CFG_AUTH_NONE) {
        return st;
    }
    bool bearer = auth->type == CFG_AUTH_BEARER;
    if ((bearer && keys != NULL) || (!bearer && tokens != NULL)) {
        return fail_at(s->err, base, bearer ? "keys_file" : "tokens_file",
                       bearer ? "is for type \"api_key\"; a bearer route takes tokens_file"
                              : "is for type \"bearer\"; an api_key route takes keys_file");
    }
    if (!bearer) {
        auth->file = auth->keys_file;
        auth->keys_file = NULL;
    }
    if (auth->file == NULL) {
        return fail_at(s->err, base, bearer ? "tokens_file" : "keys_file", "missing required field");
    }
    struct scope sub = *s;
    sub.base = base;
    return load_secrets(&sub, auth, bearer ? "tokens_file" : "keys_file");
}

/* ---- HTTPS ---- */

/* tls.cert or tls.key: read now (the key as a secret: private, zeroed when freed), so a bad file is a
 * configuration error; both or neither (checked once the section is done, in check_tls). */
static int read_public_file(const char *path, uint8_t **data, size_t *len, char *reason, size_t rlen);

/* A file the configuration names, read whole at load time: a secret one (a key: private, zeroed when freed,
 * base/secret) or a public one (a certificate). 0, or -1 with a reason. */
static int read_checked_file(const char *path, bool secret, uint8_t **data, size_t *len, char *reason,
                             size_t rlen)
{
    if (secret) {
        return cg_secret_file_read(path, data, len, reason, rlen);
    }
    return read_public_file(path, data, len, reason, rlen);
}

static enum cfg_status parse_tls_file(const struct scope *s, const struct field *f, const json_t *v)
{
    char reason[CG_SECRET_REASON_MAX];
    struct cfg *cfg = s->cfg;
    bool key = strcmp(f->key, "key") == 0;
    char *path = resolve_path(s, json_string_value(v));
    uint8_t **data = key ? &cfg->tls.key_pem : &cfg->tls.cert_pem;
    size_t *len = key ? &cfg->tls.key_len : &cfg->tls.cert_len;

    if (path == NULL) {
        return nomem(s->err);
    }
    *(char **)slot(s, f) = path;
    if (read_checked_file(path, key, data, len, reason, sizeof(reason)) != 0) {
        return fail_at(s->err, s->base, f->key, "%.160s: %s", path, reason);
    }
    return CFG_OK;
}

static enum cfg_status check_tls(const struct cfg *cfg, struct cfg_error *err)
{
    if ((cfg->tls.cert == NULL) != (cfg->tls.key == NULL)) {
        return fail(err, cfg->tls.cert == NULL ? "tls.cert" : "tls.key",
                    "tls.cert and tls.key go together (HTTPS needs both)");
    }
    return CFG_OK;
}

/* ---- DTLS to upstreams ---- */

/* Replaces the string at *path (as written) by its resolution against the configuration file's folder. */
static enum cfg_status resolve_in_place(const struct scope *s, char **path)
{
    char *resolved = resolve_path(s, *path);

    if (resolved == NULL) {
        return nomem(s->err);
    }
    free(*path);
    *path = resolved;
    return CFG_OK;
}

/* Credentials that would never be used are a mistake worth reporting, before any file is read. The uri row
 * comes first, so u->secure is known here. */
static enum cfg_status check_secure(const struct scope *s, const struct field *f)
{
    const struct cfg_upstream *u = s->dst;

    if (!u->secure) {
        return fail_at(s->err, s->base, f->key, "is only for a coaps:// upstream");
    }
    if (strcmp(f->key, "pki") == 0 && u->dtls == CFG_DTLS_PSK) {
        return fail_at(s->err, s->base, f->key, "psk and pki exclude each other; give one");
    }
    return CFG_OK;
}

/* upstreams.NAME.psk: the key is read now (private file, zeroed when freed), so a bad file is a
 * configuration error. */
static enum cfg_status parse_psk(const struct scope *s, const struct field *f, const json_t *v)
{
    char reason[CG_SECRET_REASON_MAX];
    char base[FIELD_LEN];
    struct cfg_psk *psk = slot(s, f);
    enum cfg_status st = check_secure(s, f);

    st = st == CFG_OK ? parse_section(s, f, v) : st;
    if (st != CFG_OK) {
        return st;
    }
    size_t id_len = strlen(psk->identity);
    join(base, sizeof(base), s->base, f->key);
    if (id_len == 0 || id_len > CFG_PSK_IDENTITY_MAX) {
        return fail_at(s->err, base, "identity", "must be 1 to %d bytes long", CFG_PSK_IDENTITY_MAX);
    }
    if ((st = resolve_in_place(s, &psk->key_file)) != CFG_OK) {
        return st;
    }
    if (cg_secret_key_read(psk->key_file, psk->key_hex, &psk->key, reason, sizeof(reason)) != 0) {
        return fail_at(s->err, base, "key_file", "%.160s: %s", psk->key_file, reason);
    }
    ((struct cfg_upstream *)s->dst)->dtls = CFG_DTLS_PSK;
    return CFG_OK;
}

/* One file of a pki section, resolved and checked now: the key must be private (cg_secret_file_read), the
 * certificates readable. libcoap reads them again by path when it opens a session. */
static enum cfg_status check_pki_file(const struct scope *s, const char *base, const char *key, char **path,
                                      bool secret)
{
    char reason[CG_SECRET_REASON_MAX];
    uint8_t *data = NULL;
    size_t len = 0;
    enum cfg_status st = resolve_in_place(s, path);

    if (st != CFG_OK) {
        return st;
    }
    int rc = read_checked_file(*path, secret, &data, &len, reason, sizeof(reason));
    cg_secret_free(data, len); /* zeroes what it frees: right for either kind */
    return rc == 0 ? CFG_OK : fail_at(s->err, base, key, "%.160s: %s", *path, reason);
}

/* upstreams.NAME.pki: ca_file (required), and cert with key, or neither. */
static enum cfg_status parse_pki(const struct scope *s, const struct field *f, const json_t *v)
{
    char base[FIELD_LEN];
    struct cfg_pki *pki = slot(s, f);
    enum cfg_status st = check_secure(s, f);

    st = st == CFG_OK ? parse_section(s, f, v) : st;
    if (st != CFG_OK) {
        return st;
    }
    join(base, sizeof(base), s->base, f->key);
    if ((pki->cert == NULL) != (pki->key == NULL)) {
        return fail_at(s->err, base, pki->cert == NULL ? "cert" : "key",
                       "cert and key go together (a client certificate needs both)");
    }
    st = check_pki_file(s, base, "ca_file", &pki->ca_file, false);
    if (st == CFG_OK && pki->cert != NULL) {
        st = check_pki_file(s, base, "cert", &pki->cert, false);
    }
    if (st == CFG_OK && pki->key != NULL) {
        st = check_pki_file(s, base, "key", &pki->key, true);
    }
    if (st == CFG_OK) {
        ((struct cfg_upstream *)s->dst)->dtls = CFG_DTLS_PKI;
    }
    return st;
}

/* Once an upstream's fields are done: coaps needs one of psk and pki (check_secure refused the rest). */
static enum cfg_status check_dtls(const struct scope *s, const struct cfg_upstream *u)
{
    if (u->secure && u->dtls == CFG_DTLS_NONE) {
        return fail_at(s->err, s->base, "uri", "a coaps:// upstream needs DTLS credentials: psk or pki");
    }
    return CFG_OK;
}

/* ---- log ---- */

static enum cfg_status parse_log_level(const struct scope *s, const struct field *f, const json_t *v)
{
    enum cg_log_level level;
    int n;

    if (cg_log_level_parse(json_string_value(v), &level) != 0) {
        return fail_at(s->err, s->base, f->key, "must be one of error, warn, info, debug");
    }
    n = (int)level;
    memcpy(slot(s, f), &n, sizeof(n));
    return CFG_OK;
}

/* ---- public API ---- */

/* The snapshot starts as every default of a config file (no upstreams, no routes, no demo server). */
static enum cfg_status parse_root(struct cfg *cfg, const json_t *root, struct cfg_error *err)
{
    struct scope s = {.err = err, .cfg = cfg, .obj = root, .base = "", .dst = cfg};
    enum cfg_status st = apply_cfg_defaults(&s);

    if (st == CFG_OK && !json_is_object(root)) {
        st = fail(err, "", "the top level must be a JSON object");
    }
    if (st == CFG_OK) {
        st = check_known(&s, "");
    }
    if (st == CFG_OK) {
        st = parse_fields(&s, "");
    }
    return st == CFG_OK ? check_tls(cfg, err) : st;
}

static enum cfg_status syntax_error(struct cfg_error *err, const json_error_t *jerr)
{
    err->line = jerr->line > 0 ? jerr->line : 1;
    err->column = jerr->column > 0 ? jerr->column : 1;
    snprintf(err->reason, sizeof(err->reason), "%s", jerr->text);
    return CFG_ERR_SYNTAX;
}

enum cfg_status cfg_parse(const char *text, size_t len, const char *name, struct cfg **out,
                          struct cfg_error *err)
{
    struct cfg_error local;
    json_error_t jerr;
    struct cfg *cfg;
    json_t *root;
    enum cfg_status st;

    assert(out != NULL);
    err = err != NULL ? err : &local;
    error_init(err, name);
    *out = NULL;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        return syntax_error(err, &jerr);
    }
    cfg = calloc(1, sizeof(*cfg));
    st = cfg != NULL ? parse_root(cfg, root, err) : nomem(err);
    json_decref(root);
    if (st != CFG_OK) {
        cfg_free(cfg);
        return st;
    }
    *out = cfg;
    return CFG_OK;
}

/* Appends the rest of f to *buf (grown as needed, NUL-terminated). Returns 0 or an errno value. */
static int read_all(FILE *f, char **buf, size_t *len)
{
    size_t cap = 0;

    for (;;) {
        if (*len + 1 >= cap) {
            cap = cap == 0 ? 4096 : cap * 2;
            char *bigger = cap <= MAX_FILE_BYTES ? realloc(*buf, cap) : NULL;
            if (bigger == NULL) {
                return cap <= MAX_FILE_BYTES ? ENOMEM : EFBIG;
            }
            *buf = bigger;
        }
        errno = 0;
        *len += fread(*buf + *len, 1, cap - *len - 1, f);
        if (ferror(f)) {
            return errno != 0 ? errno : EIO;
        }
        if (feof(f)) {
            (*buf)[*len] = '\0';
            return 0;
        }
    }
}

/* Opens path for reading only if it is a regular file: a FIFO with no writer (or a device) would block the
 * open or the read for ever. Opened non-blocking, so a swap after the check cannot hang either. */
static FILE *open_regular(const char *path, int *e)
{
    struct stat st;
    int fd;

    if (stat(path, &st) != 0) {
        *e = errno;
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        *e = EINVAL;
        return NULL;
    }
    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        *e = fd < 0 ? errno : EINVAL;
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        *e = errno;
        close(fd);
    }
    return f;
}

static const char *read_error(int e)
{
    return e == EINVAL ? "not a regular file" : strerror(e);
}

/* A file that is not secret (a certificate): read whole, NUL-terminated. 0, or -1 with a reason. */
static int read_public_file(const char *path, uint8_t **data, size_t *len, char *reason, size_t rlen)
{
    int e = 0;
    FILE *f = open_regular(path, &e);
    char *text = NULL;

    *len = 0;
    if (f != NULL) {
        e = read_all(f, &text, len);
        fclose(f);
    }
    if (e != 0) {
        free(text);
        snprintf(reason, rlen, "cannot read: %s", read_error(e));
        return -1;
    }
    *data = (uint8_t *)text;
    return 0;
}

/* Reads the whole file into a new buffer; on error fills err as "cannot read: why". */
static enum cfg_status read_file(const char *path, char **text, size_t *len, struct cfg_error *err)
{
    int e = 0;
    FILE *f = open_regular(path, &e);

    *text = NULL;
    *len = 0;
    if (f != NULL) {
        e = read_all(f, text, len);
        fclose(f);
    }
    if (e != 0) {
        free(*text);
        fail(err, "", "cannot read: %s", read_error(e));
        return e == ENOMEM ? CFG_ERR_NOMEM : CFG_ERR_IO;
    }
    return CFG_OK;
}

enum cfg_status cfg_load(const char *path, struct cfg **out, struct cfg_error *err)
{
    struct cfg_error local;
    enum cfg_status st;
    size_t len;
    char *text;

    assert(path != NULL && out != NULL);
    err = err != NULL ? err : &local;
    error_init(err, path);
    *out = NULL;
    st = read_file(path, &text, &len, err);
    if (st != CFG_OK) {
        return st;
    }
    st = cfg_parse(text, len, path, out, err);
    free(text);
    return st;
}

struct cfg *cfg_default(void)
{
    struct cfg *cfg;

    return cfg_parse(default_json, sizeof(default_json) - 1, "(defaults)", &cfg, NULL) == CFG_OK ? cfg : NULL;
}

const char *cfg_method_name(enum cfg_method m)
{
    for (uint8_t code = 1; code <= CO_METHOD_COUNT; code++) {
        if (CO_METHOD_BIT(code) == (unsigned)m) {
            return co_method_name(code);
        }
    }
    return "";
}

enum cfg_admin cfg_admin_path(const char *path, size_t len)
{
    for (size_t i = CFG_ADMIN_NONE + 1; i < CFG_ADMIN_COUNT; i++) {
        if (strlen(admin_paths[i]) == len && memcmp(admin_paths[i], path, len) == 0) {
            return (enum cfg_admin)i;
        }
    }
    return CFG_ADMIN_NONE;
}

void cfg_methods_format(unsigned methods, char *buf, size_t len)
{
    size_t used = 0;

    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    for (unsigned bit = 1; bit & CFG_METHOD_ALL; bit <<= 1) {
        if (!(methods & bit)) {
            continue;
        }
        const char *name = bit == CFG_METHOD_GET ? "GET, HEAD" : cfg_method_name((enum cfg_method)bit);
        int n = snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", name);
        if (n < 0 || (size_t)n >= len - used) {
            return;
        }
        used += (size_t)n;
    }
}

void cfg_error_format(const struct cfg_error *err, char *buf, size_t len)
{
    if (len == 0) {
        return;
    }
    if (err->line > 0) {
        snprintf(buf, len, "%s:%d:%d: %s", err->file, err->line, err->column, err->reason);
    } else if (err->field[0] == '\0') {
        snprintf(buf, len, "%s: %s", err->file, err->reason);
    } else {
        snprintf(buf, len, "%s: %s: %s", err->file, err->field, err->reason);
    }
}

const char *cfg_strerror(enum cfg_status status)
{
    switch (status) {
    case CFG_OK:
        return "ok";
    case CFG_ERR_IO:
        return "cannot read the configuration file";
    case CFG_ERR_SYNTAX:
        return "JSON syntax error in the configuration";
    case CFG_ERR_INVALID:
        return "invalid configuration";
    case CFG_ERR_NOMEM:
        return "out of memory";
    }
    return "unknown configuration status";
}

static void upstream_clear(struct cfg_upstream *u)
{
    free(u->psk.identity);
    free(u->psk.key_file);
    cg_secret_key_clear(&u->psk.key);
    free(u->pki.ca_file);
    free(u->pki.cert);
    free(u->pki.key);
    for (size_t i = 0; i < u->base_path_len; i++) {
        free(u->base_path[i]);
    }
    free(u->base_path);
    free(u->name);
    free(u->uri);
}

static void auth_clear(struct cfg_auth *a)
{
    free(a->header);
    free(a->file);
    free(a->keys_file);
    cg_secret_list_free(&a->secrets);
}

static void strings_free(struct cfg_strings *s)
{
    for (size_t i = 0; i < s->len; i++) {
        free(s->v[i]);
    }
    free(s->v);
}

void cfg_free(struct cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        upstream_clear(&cfg->upstreams[i]);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->routes_len; i++) {
        free(cfg->routes[i].prefix);
        strings_free(&cfg->routes[i].cors.allow_origins);
        strings_free(&cfg->routes[i].cors.allow_headers);
        auth_clear(&cfg->routes[i].auth);
    }
    auth_clear(&cfg->admin.auth);
    free(cfg->tls.cert);
    free(cfg->tls.key);
    free(cfg->tls.cert_pem);
    cg_secret_free(cfg->tls.key_pem, cfg->tls.key_len);
    free(cfg->routes);
    free(cfg->forward_proxy.prefix);
    free(cfg->forward_proxy.allow);
    free(cfg);
}

/* ---- the README reference table ---- */

/* The container row whose key is in (a top-level one first), NULL at the top level. */
static const struct field *parent_of(const char *in)
{
    const struct field *top = in[0] != '\0' ? find_field("", in) : NULL;

    for (size_t i = 0; top == NULL && in[0] != '\0' && i < ARRAY_LEN(fields); i++) {
        if (strcmp(fields[i].key, in) == 0 && is_container(fields[i].kind)) {
            top = &fields[i];
        }
    }
    return top;
}

/* "listen", "cache.max_bytes", "upstreams.NAME.timeout_ms", "routes[].prefix", "routes[].cors.max_age_s". */
static void doc_path(const struct field *f, char *buf, size_t len)
{
    const struct field *parent = parent_of(f->in);
    char up[FIELD_LEN] = "";

    if (parent == NULL) {
        snprintf(buf, len, "%s", f->key);
        return;
    }
    doc_path(parent, up, sizeof(up));
    const char *sep = parent->kind == KIND_MAP ? ".NAME." : parent->kind == KIND_LIST ? "[]." : ".";
    snprintf(buf, len, "%s%s%s", up, sep, f->key);
}

/* The row's own wording, "required", or the JSON literal in code style (a string without its quotes). */
static void doc_default(const struct field *f, char *buf, size_t len)
{
    size_t n = f->def != NULL ? strlen(f->def) : 0;

    if (f->def_doc != NULL) {
        snprintf(buf, len, "%s", f->def_doc);
    } else if (f->required) {
        snprintf(buf, len, "required");
    } else if (n >= 2 && f->def[0] == '"') {
        snprintf(buf, len, "`%.*s`", (int)(n - 2), f->def + 1);
    } else {
        snprintf(buf, len, "`%s`", n > 0 ? f->def : "");
    }
}

static void write_row(FILE *out, const struct field *f)
{
    char path[FIELD_LEN];
    char def[FIELD_LEN];
    char range[64] = "";

    doc_path(f, path, sizeof(path));
    doc_default(f, def, sizeof(def));
    if (f->kind == KIND_UINT || f->kind == KIND_SIZE) {
        snprintf(range, sizeof(range), " (%lld..%lld)", f->min, f->max);
    }
    fprintf(out, "| `%s` | %s%s | %s |\n", path, f->doc, range, def);
}

int cfg_reference_write(FILE *out)
{
    fputs("| field | meaning | default |\n|---|---|---|\n", out);
    for (const struct field *f = fields; f < fields + ARRAY_LEN(fields); f++) {
        if (!is_container(f->kind)) {
            write_row(out, f);
        }
    }
    return ferror(out) ? -1 : 0;
}
