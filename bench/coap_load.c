/* bench/coap_load: a closed-loop CoAP load generator. It keeps N confirmable GETs in flight over K client
 * sessions (NSTART raised to N/K on each) spread over T threads, each thread with its own libcoap context,
 * and sends the next request on a session as soon as one of its answers arrives. After a warm-up it counts
 * the answers received during D seconds and prints the rate. It only measures; it never judges.
 *
 * Usage: coap_load [-h HOST] [-p PORT] [-u PATH] [-n INFLIGHT] [-k SESSIONS] [-t THREADS] [-d SECONDS]
 *                  [-w WARMUP_SECONDS]
 * Prints one line: "coap_load: ... ok=X errors=Y seconds=S rate=R" (R in answers per second). Exit 1 when
 * no answer at all arrived in the measured window. */
#include <arpa/inet.h>
#include <coap3/coap.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16

enum phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

static _Atomic int phase = PHASE_WARMUP;

static struct {
    const char *host;
    unsigned port;
    const char *path;
    unsigned inflight;
    unsigned sessions;
    unsigned threads;
    double seconds;
    double warmup;
} opt = {"127.0.0.1", 5683, "/", 32, 8, 1, 5.0, 1.0};

struct loader {
    pthread_t thread;
    coap_context_t *ctx;
    coap_session_t **sessions;
    unsigned sessions_len;
    unsigned per_session;
    unsigned long long ok, errors; /* counted in PHASE_MEASURE only; read after join */
};

static coap_address_t server;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One GET for opt.path on session; false when libcoap refuses it. */
static bool send_get(coap_session_t *session)
{
    uint8_t token[8];
    size_t token_len = 0;
    coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, coap_new_message_id(session),
                                    coap_session_max_pdu_size(session));
    if (pdu == NULL) {
        return false;
    }
    coap_session_new_token(session, &token_len, token);
    coap_add_token(pdu, token_len, token);
    const char *p = opt.path;
    while (*p == '/') {
        p++;
    }
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        coap_add_option(pdu, COAP_OPTION_URI_PATH, n, (const uint8_t *)p);
        p += n;
        if (*p == '/') {
            p++;
        }
    }
    return coap_send(session, pdu) != COAP_INVALID_MID;
}

static struct loader *loader_of(coap_session_t *session)
{
    return coap_session_get_app_data(session);
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid)
{
    (void)sent;
    (void)mid;
    struct loader *l = loader_of(session);
    int p = atomic_load_explicit(&phase, memory_order_relaxed);
    if (p == PHASE_MEASURE) {
        if (COAP_RESPONSE_CLASS(coap_pdu_get_code(received)) == 2) {
            l->ok++;
        } else {
            l->errors++;
        }
    }
    if (p != PHASE_STOP) {
        send_get(session);
    }
    return COAP_RESPONSE_OK;
}

/* A lost exchange (no ACK after retransmissions, RST) counts as an error and is replaced. */
static void on_nack(coap_session_t *session, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid)
{
    (void)sent;
    (void)reason;
    (void)mid;
    struct loader *l = loader_of(session);
    int p = atomic_load_explicit(&phase, memory_order_relaxed);
    if (p == PHASE_MEASURE) {
        l->errors++;
    }
    if (p != PHASE_STOP) {
        send_get(session);
    }
}

static void *loader_main(void *arg)
{
    struct loader *l = arg;

    for (unsigned i = 0; i < l->sessions_len; i++) {
        for (unsigned k = 0; k < l->per_session; k++) {
            send_get(l->sessions[i]);
        }
    }
    while (atomic_load(&phase) != PHASE_STOP) {
        coap_io_process(l->ctx, 50);
    }
    return NULL;
}

static int loader_init(struct loader *l, unsigned sessions, unsigned per_session)
{
    l->ctx = coap_new_context(NULL);
    l->sessions = calloc(sessions, sizeof(*l->sessions));
    if (l->ctx == NULL || l->sessions == NULL) {
        return -1;
    }
    coap_register_response_handler(l->ctx, on_response);
    coap_register_nack_handler(l->ctx, on_nack);
    l->per_session = per_session;
    for (unsigned i = 0; i < sessions; i++) {
        coap_session_t *s = coap_new_client_session(l->ctx, NULL, &server, COAP_PROTO_UDP);
        if (s == NULL) {
            return -1;
        }
        coap_session_set_nstart(s, (uint16_t)per_session);
        coap_session_set_app_data(s, l);
        l->sessions[l->sessions_len++] = s;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: coap_load [-h HOST] [-p PORT] [-u PATH] [-n INFLIGHT] [-k SESSIONS] [-t THREADS]"
                    " [-d SECONDS] [-w WARMUP_SECONDS]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "h:p:u:n:k:t:d:w:")) != -1) {
        switch (c) {
        case 'h':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = (unsigned)atoi(optarg);
            break;
        case 'u':
            opt.path = optarg;
            break;
        case 'n':
            opt.inflight = (unsigned)atoi(optarg);
            break;
        case 'k':
            opt.sessions = (unsigned)atoi(optarg);
            break;
        case 't':
            opt.threads = (unsigned)atoi(optarg);
            break;
        case 'd':
            opt.seconds = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        default:
            usage();
        }
    }
    if (opt.threads < 1 || opt.threads > MAX_THREADS || opt.sessions < opt.threads ||
        opt.inflight < opt.sessions || opt.seconds <= 0 || opt.warmup < 0) {
        usage();
    }
}

int main(int argc, char **argv)
{
    static struct loader loaders[MAX_THREADS];

    parse_args(argc, argv);
    coap_startup();
    coap_set_log_level(LOG_ERR);
    coap_address_init(&server);
    server.addr.sin.sin_family = AF_INET;
    server.addr.sin.sin_port = htons((uint16_t)opt.port);
    server.size = sizeof(server.addr.sin);
    if (inet_pton(AF_INET, opt.host, &server.addr.sin.sin_addr) != 1) {
        fprintf(stderr, "coap_load: -h wants an IPv4 address, got %s\n", opt.host);
        return 2;
    }
    unsigned per_session = (opt.inflight + opt.sessions - 1) / opt.sessions;
    for (unsigned t = 0; t < opt.threads; t++) {
        unsigned share = opt.sessions / opt.threads + (t < opt.sessions % opt.threads ? 1 : 0);
        if (loader_init(&loaders[t], share, per_session) != 0) {
            fprintf(stderr, "coap_load: cannot set up libcoap sessions to %s:%u\n", opt.host, opt.port);
            return 1;
        }
    }
    for (unsigned t = 0; t < opt.threads; t++) {
        pthread_create(&loaders[t].thread, NULL, loader_main, &loaders[t]);
    }
    usleep((useconds_t)(opt.warmup * 1e6));
    double t0 = now_s();
    atomic_store(&phase, PHASE_MEASURE);
    usleep((useconds_t)(opt.seconds * 1e6));
    atomic_store(&phase, PHASE_STOP);
    double elapsed = now_s() - t0;
    unsigned long long ok = 0, errors = 0;
    for (unsigned t = 0; t < opt.threads; t++) {
        pthread_join(loaders[t].thread, NULL);
        ok += loaders[t].ok;
        errors += loaders[t].errors;
        coap_free_context(loaders[t].ctx);
        free(loaders[t].sessions);
    }
    coap_cleanup();
    printf("coap_load: target=%s:%u%s inflight=%u sessions=%u threads=%u ok=%llu errors=%llu seconds=%.2f "
           "rate=%.1f\n",
           opt.host, opt.port, opt.path, per_session * opt.sessions, opt.sessions, opt.threads, ok, errors,
           elapsed, (double)ok / elapsed);
    return ok > 0 ? 0 : 1;
}
