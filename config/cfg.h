/* config: loads and validates the JSON configuration (jansson) into an immutable snapshot.
 * Every field is checked (type, range, syntax, references); unknown fields are errors. No network I/O.
 * Defaults and ranges are not repeated here: the field rows in cfg.c hold them, and cfgdoc prints them as the
 * README's configuration reference. */
#ifndef CFG_H
#define CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/addrrule.h"
#include "base/secret.h"
#include "coap/code.h"

/* HTTP methods a route may allow, as bits of the CoAP method codes (coap/code). HEAD is implied by GET. */
enum cfg_method {
    CFG_METHOD_GET = CO_METHOD_BIT(CO_GET),
    CFG_METHOD_POST = CO_METHOD_BIT(CO_POST),
    CFG_METHOD_PUT = CO_METHOD_BIT(CO_PUT),
    CFG_METHOD_DELETE = CO_METHOD_BIT(CO_DELETE),
    CFG_METHOD_FETCH = CO_METHOD_BIT(CO_FETCH),
    CFG_METHOD_PATCH = CO_METHOD_BIT(CO_PATCH),
    CFG_METHOD_IPATCH = CO_METHOD_BIT(CO_IPATCH),
};
#define CFG_METHOD_ALL CO_METHOD_ALL

/* The gateway's own endpoints, which no route may shadow. The one list of admin paths. */
enum cfg_admin { CFG_ADMIN_NONE = 0, CFG_ADMIN_HEALTHZ, CFG_ADMIN_READYZ, CFG_ADMIN_METRICS };
#define CFG_ADMIN_COUNT 4

/* Which admin endpoint owns path[0..len) (exactly), CFG_ADMIN_NONE for any other path. */
enum cfg_admin cfg_admin_path(const char *path, size_t len);

enum cfg_msg_type { CFG_MSG_CON = 0, CFG_MSG_NON = 1 };

/* "HOST:PORT" or "[V6]:PORT", split. host is a numeric address or a name. */
struct cfg_endpoint {
    char host[256];
    uint16_t port;
};

/* DTLS to a coaps:// upstream (RFC 7252 §9): exactly one of psk and pki is set for coaps, none for coap. */
enum cfg_dtls { CFG_DTLS_NONE = 0, CFG_DTLS_PSK, CFG_DTLS_PKI };

#define CFG_PSK_IDENTITY_MAX 64 /* bytes; libcoap's COAP_DTLS_MAX_PSK_IDENTITY */

struct cfg_psk {
    char *identity;           /* sent in the clear in the handshake: not a secret */
    char *key_file;           /* resolved against the configuration file's folder; mode 600 */
    bool key_hex;             /* the file's line is hex digits */
    struct cg_secret_key key; /* read at load time; zeroed by cfg_free */
};

struct cfg_pki {
    char *ca_file; /* PEM: the CA(s) the device's certificate must chain to; resolved like key_file */
    char *cert;    /* PEM: the gateway's client certificate, or NULL (then key is NULL too) */
    char *key;     /* PEM: its private key, mode 600 (checked at load time; libcoap reads the file) */
};

struct cfg_upstream {
    char *name;               /* key in "upstreams" */
    char *uri;                /* as written, e.g. "coap://192.0.2.10:5683/base" */
    struct cfg_endpoint peer; /* host and port from uri (port defaults to 5683, 5684 for coaps) */
    bool secure;              /* coaps:// */
    enum cfg_dtls dtls;       /* which of psk and pki holds the DTLS credentials */
    struct cfg_psk psk;
    struct cfg_pki pki;
    char **base_path; /* decoded path segments of uri ("/a/b" -> {"a","b"}); may be empty */
    size_t base_path_len;
    unsigned timeout_ms;    /* whole-exchange deadline */
    unsigned max_inflight;  /* exchanges on the wire at once (NSTART) */
    unsigned queue_limit;   /* requests waiting beyond max_inflight */
    enum cfg_msg_type type; /* "con" or "non" */
    bool required;               /* /readyz is 503 while this upstream is down */
    unsigned ping_interval_s;    /* CoAP ping after this long without news; 0: never */
    unsigned resolve_interval_s; /* a host name is resolved again this often */
};

/* A list of strings (owned). */
struct cfg_strings {
    char **v;
    size_t len;
};

/* CORS for browser apps (Fetch standard, CORS protocol). Off when allow_origins is empty. */
struct cfg_cors {
    struct cfg_strings allow_origins; /* exact origins ("https://app.example"), or "*" */
    bool any_origin;                  /* "*" is listed */
    struct cfg_strings allow_headers; /* request headers a preflight may ask for */
    unsigned max_age_s;               /* Access-Control-Max-Age of preflight answers */
};

/* Authentication of a route (or of /metrics). Off when type is CFG_AUTH_NONE. */
enum cfg_auth_type { CFG_AUTH_NONE = 0, CFG_AUTH_BEARER, CFG_AUTH_API_KEY };

struct cfg_auth {
    enum cfg_auth_type type;
    char *header;                  /* api_key: the request header holding the key */
    char *file;                    /* tokens_file (bearer) or keys_file (api_key), resolved against the
                                      configuration file's folder */
    char *keys_file;               /* as parsed; moved to file for api_key */
    struct cg_secret_list secrets; /* read from file at load time */
};

struct cfg_route {
    char *prefix;     /* starts and ends with '/', e.g. "/api/" */
    size_t upstream;  /* index into cfg.upstreams */
    unsigned methods; /* cfg_method bits */
    bool cache;
    struct cfg_cors cors;
    struct cfg_auth auth;
};

struct cfg {
    struct cfg_endpoint listen;
    struct cfg_upstream *upstreams;
    size_t upstreams_len;
    struct cfg_route *routes; /* in file order; matching picks the longest prefix */
    size_t routes_len;
    struct {
        bool enabled;
        char *prefix;
        struct cg_addr_rule *allow; /* the targets it may reach (base/addrrule); none: nothing */
        size_t allow_len;
        unsigned timeout_ms; /* per exchange with a target, queueing included */
    } forward_proxy;
    struct {
        bool enabled;
        size_t max_entries;
        size_t max_bytes;
    } cache;
    struct {
        bool enabled; /* false when loaded from a file, true in cfg_default() */
        struct cfg_endpoint listen;
    } demo;
    struct {
        struct cfg_auth auth; /* for /metrics; /healthz and /readyz stay open for probes */
    } admin;
    struct {
        char *cert, *key;            /* PEM file paths, resolved against the configuration file's folder */
        uint8_t *cert_pem, *key_pem; /* their contents, NUL-terminated, read at load time (HTTPS when set) */
        size_t cert_len, key_len;
    } tls;
    struct {
        unsigned per_ip_rps; /* 0: no rate limit */
        unsigned burst;
    } rate_limit;
    struct {
        unsigned max_connections;
        unsigned max_connections_per_ip; /* 0: no per-address cap */
        size_t max_header_bytes;         /* the whole header section */
        size_t max_uri_bytes;            /* the raw request target, query included */
        unsigned max_inflight_total;     /* CoAP exchanges on the wire at once, all upstreams together */
        size_t max_body_bytes;
        unsigned connection_timeout_s;
        unsigned header_timeout_s; /* the whole header section, from the connection's start or last answer */
        unsigned body_timeout_s;   /* the whole request body, from the header section's end */
        unsigned max_subscribers;  /* live-data subscribers in total */
        unsigned max_subscribers_per_resource;
        unsigned sse_keepalive_s;    /* SSE keep-alive comment interval */
        unsigned longpoll_timeout_s; /* ?observe=next waits this long, then 204 */
        unsigned max_observations_per_upstream; /* registered or waiting for a slot */
    } limits;
    struct {
        int level; /* enum cg_log_level value: 0 error, 1 warn, 2 info, 3 debug */
        bool access_log;
        int format; /* enum cg_log_format value: 0 text, 1 json */
    } log;
    unsigned shutdown_grace_s; /* SIGTERM/SIGINT: how long requests in progress may take to finish */
};

/* The first error found. Printed by cfg_error_format() as "FILE: field: reason", or as
 * "FILE:LINE:COL: reason" for a JSON syntax error (line > 0, field empty). */
struct cfg_error {
    char file[256];
    char field[128]; /* JSON path: "upstreams.sensors.timeout_ms", "routes[0].prefix" */
    int line;        /* 1-based, 0 when not a syntax error */
    int column;
    char reason[256];
};

enum cfg_status { CFG_OK = 0, CFG_ERR_IO, CFG_ERR_SYNTAX, CFG_ERR_INVALID, CFG_ERR_NOMEM };

/* Reads and validates path. On CFG_OK *out owns a new snapshot (free with cfg_free); otherwise *out is
 * NULL and err says why. Thread: any. */
enum cfg_status cfg_load(const char *path, struct cfg **out, struct cfg_error *err);

/* Same, from a buffer; name is used as the file name in errors. */
enum cfg_status cfg_parse(const char *text, size_t len, const char *name, struct cfg **out,
                          struct cfg_error *err);

/* The no-arguments configuration: listen 127.0.0.1:8080, demo server enabled on 127.0.0.1:5683,
 * upstream "demo" = coap://127.0.0.1:5683, route "/api/" -> "demo". NULL on allocation failure. */
struct cfg *cfg_default(void);

/* Parses "HOST:PORT" / "[V6]:PORT" (port 1..65535 required). 0 ok, -1 invalid (reason filled). */
int cfg_endpoint_parse(const char *text, struct cfg_endpoint *out, char *reason, size_t reason_len);

/* Name of a single method bit ("GET", ..., "iPATCH"). */
const char *cfg_method_name(enum cfg_method m);

/* Writes "A, B, C" for the bits in methods (GET implies HEAD, which is listed). */
void cfg_methods_format(unsigned methods, char *buf, size_t len);

void cfg_error_format(const struct cfg_error *err, char *buf, size_t len);

/* Writes the README's configuration reference: a markdown table (field | meaning | default), one line per
 * field, from the rows that drive parsing. Returns 0, or -1 after a write error. */
int cfg_reference_write(FILE *out);
const char *cfg_strerror(enum cfg_status status);
void cfg_free(struct cfg *cfg);

#endif
