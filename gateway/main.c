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
#include "gateway/http.h"
#include "proxy/cache.h"
#include "proxy/client.h"

#define EXIT_USAGE 2

struct options {
    const char *config_path;
    const char *listen;
    int demo; /* -1 as configured, 0 off, 1 on */
    const char *log_level;
    bool check_config;
};

static const char usage_text[] =
    "Usage: coapgw [--config FILE] [--listen ADDR:PORT] [--demo | --no-demo]\n"
    "              [--log-level error|warn|info|debug] [--check-config] [--version] [--help]\n"
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
    "  --version          Print the version and exit.\n"
    "  --help             Print this text and exit.\n"
    "\n"
    "Example (from the source tree; there is no install step):\n"
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
    enum { OPT_NO_DEMO = 256, OPT_CHECK, OPT_LOG_LEVEL, OPT_LISTEN };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"demo", no_argument, NULL, 'd'},
        {"no-demo", no_argument, NULL, OPT_NO_DEMO},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"check-config", no_argument, NULL, OPT_CHECK},
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

static struct cfg *load_config(const struct options *o)
{
    struct cfg *cfg = NULL;
    struct cfg_error err;
    char msg[800];

    if (o->config_path == NULL) {
        cfg = cfg_default();
        if (cfg == NULL) {
            fprintf(stderr, "coapgw: out of memory\n");
        }
        return cfg;
    }
    if (cfg_load(o->config_path, &cfg, &err) != CFG_OK) {
        cfg_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        return NULL;
    }
    return cfg;
}

/* Command-line options win over the file. */
static int apply_overrides(const struct options *o, struct cfg *cfg)
{
    char reason[200];
    enum cg_log_level level;

    if (o->listen != NULL && cfg_endpoint_parse(o->listen, &cfg->listen, reason, sizeof(reason)) != 0) {
        fprintf(stderr, "coapgw: --listen: %s\n", reason);
        return -1;
    }
    if (o->demo >= 0) {
        cfg->demo.enabled = o->demo == 1;
    }
    if (o->log_level != NULL) {
        if (cg_log_level_parse(o->log_level, &level) != 0) {
            fprintf(stderr, "coapgw: --log-level: must be one of error, warn, info, debug\n");
            return -1;
        }
        cfg->log.level = (int)level;
    }
    return 0;
}

static unsigned longest_timeout(const struct cfg *cfg)
{
    unsigned t = 0;
    for (size_t i = 0; i < cfg->upstreams_len; i++) {
        if (cfg->upstreams[i].timeout_ms > t) {
            t = cfg->upstreams[i].timeout_ms;
        }
    }
    return t;
}

/* Waits for SIGINT or SIGTERM (blocked in every thread, so only this one sees them). */
static void wait_for_stop(const sigset_t *set)
{
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            CG_LOG(CG_LOG_WARN, "main",
                   "event=sighup detail=\"live reload is not supported yet; restart to apply changes\"");
            continue;
        }
        CG_LOG(CG_LOG_INFO, "main", "event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
}

static int serve(struct cfg *cfg)
{
    char err[512];
    int rc = EXIT_FAILURE;
    struct demo_server *demo = NULL;
    struct px_client *client = NULL;
    struct px_cache *cache = NULL;
    struct gw_http *http = NULL;

    if (cfg->demo.enabled) {
        demo = demo_server_start(cfg->demo.listen.host, cfg->demo.listen.port, err, sizeof(err));
        if (demo == NULL) {
            goto out_error;
        }
    }
    client = px_client_create(cfg, err, sizeof(err));
    if (client == NULL) {
        goto out_error;
    }
    if (cfg->cache.enabled) {
        cache = px_cache_create(cfg->cache.max_entries, cfg->cache.max_bytes);
        if (cache == NULL) {
            snprintf(err, sizeof(err), "cache: out of memory");
            goto out_error;
        }
    }
    http = gw_http_start(cfg, client, cache, err, sizeof(err));
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
    wait_for_stop(&set);

    gw_http_quiesce(http);
    if (!gw_http_wait_idle(http, longest_timeout(cfg) + 2000)) {
        CG_LOG(CG_LOG_WARN, "main", "event=drain_incomplete detail=\"requests still in progress at exit\"");
    }
    rc = EXIT_SUCCESS;
    goto out_stop;

out_error:
    CG_LOG(CG_LOG_ERROR, "main", "event=start_failed detail=\"%s\"", err);
    fprintf(stderr, "coapgw: %s\n", err);
out_stop:
    /* The client completes anything left, which resumes the connections before the daemon stops; it is freed
     * only after the daemon, whose threads may still submit (and get 503 at once). */
    px_client_stop(client);
    gw_http_stop(http);
    px_client_destroy(client);
    px_cache_destroy(cache);
    demo_server_stop(demo);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {.demo = -1};

    if (parse_args(argc, argv, &o) != 0) {
        return EXIT_USAGE;
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
    int rc = serve(cfg);
    cg_log_stop_buffering();
    coap_cleanup();
    cfg_free(cfg);
    return rc;
}
