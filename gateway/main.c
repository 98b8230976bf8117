/* gateway/main: command line, start-up order, signals and graceful shutdown. The only place that exits. */
#include <coap3/coap.h>
#include <getopt.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/log.h"
#include "coap/coaplog.h"
#include "config/cfg.h"
#include "demo/demo.h"
#include "gateway/gen.h"
#include "gateway/health.h"
#include "gateway/http.h"

#define EXIT_USAGE 2
#define HEALTH_TIMEOUT_MS 3000 /* --health: connecting, sending and the status line */

struct options {
    const char *config_path;
    const char *listen;
    int demo; /* -1 as configured, 0 off, 1 on */
    const char *log_level;
    bool check_config;
    const char *health_url;
};

static const char usage_text[] =
    "Usage: coapgw [--config FILE] [--listen ADDR:PORT] [--demo | --no-demo]\n"
    "              [--log-level error|warn|info|debug] [--check-config] [--version] [--help]\n"
    "       coapgw --health URL\n"
    "\n"
    "coapgw is an HTTP-to-CoAP reverse proxy (RFC 8075): HTTP requests under a route prefix are sent as\n"
    "CoAP requests to the route's upstream device, and the CoAP answers come back as HTTP responses.\n"
    "\n"
    "  --config FILE      JSON configuration (see README.md). Without it: HTTP on 127.0.0.1:8080, the\n"
    "                     embedded demo CoAP server on 127.0.0.1:5683 and the route /api/ -> demo.\n"
    "  --listen ADDR:PORT HTTP address, overriding the configuration (e.g. 0.0.0.0:8080, [::1]:8080).\n"
    "  --demo, --no-demo  Run (or do not run) the embedded demo CoAP server.\n"
    "  --log-level LEVEL  error, warn, info (default) or debug.\n"
    "  --check-config     Validate the configuration and exit: 0 when valid, 2 with FILE: field: reason.\n"
    "  --health URL       GET URL (http:// only, e.g. http://127.0.0.1:8080/healthz) within 3 s and exit:\n"
    "                     0 on a 2xx answer, 1 otherwise (for container health checks; no curl needed).\n"
    "  --version          Print the version and exit.\n"
    "  --help             Print this text and exit.\n"
    "\n"
    "Example (from the source tree; installed by make install, it is just coapgw):\n"
    "  ./build/coapgw &\n"
    "  curl http://127.0.0.1:8080/api/                      # Hello, CoAP!\n"
    "  curl http://127.0.0.1:8080/api/sensors/temperature   # JSON from a CoAP sensor\n"
    "  ./build/coapgw --config gw.json --check-config\n";

/* libcoap asks for random bytes (message ids, tokens) on every request; getrandom(2) per call shows up in
 * profiles. Each thread keeps a buffer of kernel randomness and refills it 256 bytes at a time. */
static int buffered_random(void *out, size_t len)
{
    static _Thread_local uint8_t pool[256];
    static _Thread_local size_t left;
    uint8_t *dst = out;

    while (len > 0) {
        if (left == 0) {
            if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool)) {
                return 0;
            }
            left = sizeof(pool);
        }
        size_t n = len < left ? len : left;
        memcpy(dst, pool + sizeof(pool) - left, n);
        memset(pool + sizeof(pool) - left, 0, n);
        left -= n;
        dst += n;
        len -= n;
    }
    return 1;
}

static void print_version(void)
{
    printf("coapgw %s (libcoap %s, libmicrohttpd %s, jansson %s)\n", COAPGW_VERSION, coap_package_version(),
           MHD_get_version(), jansson_version_str());
}

static int parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_NO_DEMO = 256, OPT_CHECK, OPT_LOG_LEVEL, OPT_LISTEN, OPT_HEALTH };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"demo", no_argument, NULL, 'd'},
        {"no-demo", no_argument, NULL, OPT_NO_DEMO},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"health", required_argument, NULL, OPT_HEALTH},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case 'd':
            o->demo = 1;
            break;
        case OPT_NO_DEMO:
            o->demo = 0;
            break;
        case OPT_LOG_LEVEL:
            o->log_level = optarg;
            break;
        case OPT_CHECK:
            o->check_config = true;
            break;
        case OPT_HEALTH:
            o->health_url = optarg;
            break;
        case 'V':
            print_version();
            exit(EXIT_SUCCESS);
        case 'h':
            fputs(usage_text, stdout);
            exit(EXIT_SUCCESS);
        default:
            fputs(usage_text, stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "coapgw: unexpected argument: %s\n\n%s", argv[optind], usage_text);
        return -1;
    }
    return 0;
}

/* --health URL: the answer's status line on stdout, or why there was none on stderr. */
static int health(const char *url)
{
    char msg[512];
    enum gw_health_result res = gw_health_probe(url, HEALTH_TIMEOUT_MS, msg, sizeof(msg));

    switch (res) {
    case GW_HEALTH_OK:
        printf("%s\n", msg);
        return EXIT_SUCCESS;
    case GW_HEALTH_UNHEALTHY:
        fprintf(stderr, "coapgw: --health: %s\n", msg);
        return EXIT_FAILURE;
    case GW_HEALTH_BAD_URL:
        fprintf(stderr, "coapgw: --health: %s\n", msg);
        return EXIT_USAGE;
    }
    return EXIT_FAILURE;
}

/* Reads the configuration (the defaults without --config), or NULL with the message in msg: `FILE: field:
 * reason`, the same at start-up, for --check-config and for a reload. */
static struct cfg *read_config(const struct options *o, char *msg, size_t len)
{
    struct cfg *cfg = NULL;
    struct cfg_error err;

    if (o->config_path == NULL) {
        cfg = cfg_default();
        if (cfg == NULL) {
            snprintf(msg, len, "coapgw: out of memory");
        }
        return cfg;
    }
    if (cfg_load(o->config_path, &cfg, &err) != CFG_OK) {
        cfg_error_format(&err, msg, len);
        return NULL;
    }
    return cfg;
}

static struct cfg *load_config(const struct options *o)
{
    char msg[800];
    struct cfg *cfg = read_config(o, msg, sizeof(msg));

    if (cfg == NULL) {
        fprintf(stderr, "%s\n", msg);
    }
    return cfg;
}

/* Command-line options win over the file (at start and at every reload). -1 with the message in msg. */
static int overrides(const struct options *o, struct cfg *cfg, char *msg, size_t len)
{
    char reason[200];
    enum cg_log_level level;

    if (o->listen != NULL && cfg_endpoint_parse(o->listen, &cfg->listen, reason, sizeof(reason)) != 0) {
        snprintf(msg, len, "coapgw: --listen: %s", reason);
        return -1;
    }
    if (o->demo >= 0) {
        cfg->demo.enabled = o->demo == 1;
    }
    if (o->log_level != NULL) {
        if (cg_log_level_parse(o->log_level, &level) != 0) {
            snprintf(msg, len, "coapgw: --log-level: must be one of error, warn, info, debug");
            return -1;
        }
        cfg->log.level = (int)level;
    }
    return 0;
}

static int apply_overrides(const struct options *o, struct cfg *cfg)
{
    char msg[300];

    if (overrides(o, cfg, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "%s\n", msg);
        return -1;
    }
    return 0;
}

static void log_reload_failed(const char *msg)
{
    char q[1024];
    cg_log_quote(q, sizeof(q), msg, strlen(msg));
    CG_LOG(CG_LOG_ERROR, "main", "event=reload_failed detail=%s kept=current", q);
}

/* SIGHUP: reads the file again and publishes it as a new generation (gateway/gen.h): requests from now on
 * see it, requests in flight finish on theirs. An invalid file, or one whose client cannot start, changes
 * nothing. The log level is process-wide (base/log, libcoap's filter), so it follows the new snapshot. */
static void reload(const struct options *o, struct gw_gens *gens, struct gw_http *http)
{
    char msg[800];
    struct gw_reload_report rep;
    struct cfg *next = read_config(o, msg, sizeof(msg));

    if (next == NULL || overrides(o, next, msg, sizeof(msg)) != 0) {
        cfg_free(next);
        log_reload_failed(msg);
        return;
    }
    if (gw_gens_reload_take(gens, next, &rep, msg, sizeof(msg)) != 0) {
        log_reload_failed(msg);
        return;
    }
    const struct cfg *cfg = gw_gens_current(gens)->cfg;
    gw_http_reloaded(http);
    cg_log_set_level((enum cg_log_level)cfg->log.level);
    coap_set_log_level(co_log_coap_level((enum cg_log_level)cfg->log.level));
    if (rep.restart[0] != '\0') {
        CG_LOG(CG_LOG_WARN, "main",
               "event=reload_needs_restart fields=%s detail=\"kept the running values; restart to apply\"",
               rep.restart);
    }
    const char *cache = !cfg->cache.enabled ? "off" : rep.cache_kept ? "kept" : "new";
    CG_LOG(CG_LOG_INFO, "main", "event=reloaded generation=%llu changed=%s cache=%s older_held=%u",
           (unsigned long long)rep.id, rep.changed, cache, rep.alive_older);
}

/* How often main wakes to destroy the retired generations their last request let go. */
#define REAP_EVERY_MS 100

/* Waits for SIGINT or SIGTERM (blocked in every thread, so only this one sees them), reloading on SIGHUP
 * and reaping retired generations in between: px_client_stop and px_client_destroy are main-thread only. */
static void wait_for_stop(const sigset_t *set, const struct options *o, struct gw_gens *gens,
                          struct gw_http *http)
{
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = REAP_EVERY_MS * 1000000L};

    for (;;) {
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig < 0) {
            gw_gens_reap(gens); /* EAGAIN (the tick) or EINTR */
            continue;
        }
        if (sig == SIGHUP) {
            reload(o, gens, http);
            continue;
        }
        CG_LOG(CG_LOG_INFO, "main", "event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
}

/* The part of shutdown_grace_s kept for writing the 503s of what is still in flight at its end. */
static unsigned answer_reserve_ms(unsigned grace_ms)
{
    return grace_ms / 5 < 1000 ? grace_ms / 5 : 1000;
}

/* SIGTERM/SIGINT: stop accepting (live streams get their last event and end, requests arriving on open
 * connections get 503 and Connection: close), and let the requests in progress finish within
 * shutdown_grace_s. What is still waiting for a device near its end is answered 503 by stopping the clients
 * (px_client_stop completes every exchange, which resumes its connection), and the rest of the grace is for
 * writing those answers; serve() then stops the daemon, which cuts whatever is left (a body still being
 * read, a client that does not read its answer). */
static void drain(struct gw_http *http, struct gw_gens *gens, unsigned grace_s)
{
    unsigned grace_ms = grace_s * 1000u;
    unsigned reserve_ms = answer_reserve_ms(grace_ms);

    gw_http_quiesce(http);
    if (gw_http_wait_idle(http, grace_ms - reserve_ms)) {
        CG_LOG(CG_LOG_INFO, "main", "event=drained");
        return;
    }
    CG_LOG(CG_LOG_WARN, "main", "event=drain_grace_over active=%d detail=\"answering 503 to what is left\"",
           gw_http_active(http));
    gw_gens_stop_clients(gens); /* every generation's client: a stream may hold a retired one */
    if (!gw_http_wait_idle(http, reserve_ms)) {
        CG_LOG(CG_LOG_WARN, "main", "event=drain_incomplete active=%d detail=\"cut at the end of the grace\"",
               gw_http_active(http));
    }
}

/* Serves boot (taken: generation 1) until SIGINT or SIGTERM. The demo server is started once and never
 * restarted: a reload that changes demo_server is told it needs a restart. */
static int serve(struct cfg *boot, const struct options *o)
{
    char err[512];
    int rc = EXIT_FAILURE;
    struct demo_server *demo = NULL;
    struct gw_gens *gens = NULL;
    struct gw_http *http = NULL;
    const struct cfg *cfg = boot;

    if (cfg->demo.enabled) {
        demo = demo_server_start(cfg->demo.listen.host, cfg->demo.listen.port, err, sizeof(err));
        if (demo == NULL) {
            cfg_free(boot);
            goto out_error;
        }
    }
    gens = gw_gens_create_take(boot, gw_prebuilt_free, err, sizeof(err));
    if (gens == NULL) {
        goto out_error;
    }
    http = gw_http_start(gens, err, sizeof(err));
    if (http == NULL) {
        goto out_error;
    }
    CG_LOG(CG_LOG_INFO, "main", "event=started version=%s listen=%s:%u routes=%zu demo=%s", COAPGW_VERSION,
           cfg->listen.host, cfg->listen.port, cfg->routes_len, cfg->demo.enabled ? "on" : "off");

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    wait_for_stop(&set, o, gens, http);
    cfg = gw_gens_current(gens)->cfg;

    drain(http, gens, cfg->shutdown_grace_s);
    rc = EXIT_SUCCESS;
    goto out_stop;

out_error:
    CG_LOG(CG_LOG_ERROR, "main", "event=start_failed detail=\"%s\"", err);
    if (cg_log_format() == CG_LOG_TEXT) {
        fprintf(stderr, "coapgw: %s\n", err); /* with log.format json, stderr holds only JSON lines */
    }
out_stop:
    /* The clients (of every generation) complete anything left, which resumes the connections before the
     * daemon stops; they are freed only after the daemon, whose threads may still submit (and get 503). */
    gw_gens_stop_clients(gens);
    gw_http_stop(http);
    gw_gens_destroy(gens); /* every generation, held or not: the daemon is gone */
    demo_server_stop(demo);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {.demo = -1};

    if (parse_args(argc, argv, &o) != 0) {
        return EXIT_USAGE;
    }
    if (o.health_url != NULL) {
        return health(o.health_url);
    }
    struct cfg *cfg = load_config(&o);
    if (cfg == NULL) {
        return EXIT_USAGE;
    }
    if (apply_overrides(&o, cfg) != 0) {
        cfg_free(cfg);
        return EXIT_USAGE;
    }
    if (o.check_config) {
        px_client_check_names(cfg, o.config_path ? o.config_path : "(defaults)", stderr); /* warnings only */
        printf("%s: configuration is valid\n", o.config_path ? o.config_path : "(defaults)");
        cfg_free(cfg);
        return EXIT_SUCCESS;
    }
    cg_log_set_level((enum cg_log_level)cfg->log.level);
    cg_log_set_format((enum cg_log_format)cfg->log.format);

    /* Block the stop signals before any thread exists, so every thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* libcoap's global state is set up once here, before any thread uses it, and torn down after every
     * context is gone. Its messages go through coapgw's logger from the start. */
    co_log_install((enum cg_log_level)cfg->log.level);
    coap_startup();
    co_log_tls_audit_install();
    coap_set_prng(buffered_random);
    cg_log_start_buffering();
    int rc = serve(cfg, &o);
    cg_log_stop_buffering();
    coap_cleanup();
    return rc;
}
