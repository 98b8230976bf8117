/* rawcoap: a CoAP responder over a raw UDP socket, with no CoAP library, for the tests that need a device
 * doing what libcoap's server never does (duplicated CON responses, bad option lengths, unknown critical
 * options, changing ETags between blocks, random bytes). Test code only: obvious over fast.
 *
 * Usage: rawcoap [-p PORT] [-l LOGFILE] [-r]
 *   -p PORT  UDP port on 127.0.0.1; 0 (default) picks a free one in 20000-26383.
 *   -l FILE  one line per datagram received (below); default: none.
 *   -r       random mode: every datagram is answered with 8 datagrams of random bytes, half of them with a
 *            plausible CoAP response header (version 1, any type, code class 2..5, any token length).
 * Prints "ready PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT.
 *
 * The answer is chosen by the first Uri-Path segment (piggybacked in the ACK of a CON request unless said):
 *   dup           empty ACK, then a CON 2.05 "dup" sent twice with the same message id, 300 ms apart
 *   etag-change   2.05 in Block2 blocks of 16 bytes, 48 bytes: "A"s with ETag 01 until block 1 or later is
 *                 asked for, "B"s with ETag 02 from then on (for every block, block 0 included)
 *   wrongblock    block 0 of 64 bytes as above; a request for block N > 0 gets block N - 1 again
 *   wrongblock-ahead  the same, but block N + 1
 *   etag9         2.05 "etag9" with a 9-byte ETag          maxage5   2.05 "maxage5" with a 5-byte Max-Age
 *   etag9-con     empty ACK, then a CON 2.05 "etag9" with a 9-byte ETag
 *   critical      2.05 "critical" with option 65001 (critical, unregistered)
 *   critical-con  empty ACK, then a CON 2.05 "critical" with option 65001
 *   valid         2.03 Valid, no ETag, no payload
 *   size2         Block2 blocks of 16 bytes, M=1 for ever; Size2 10000000 on block 0 when the request
 *                 carried Size2; every block after block 0 comes 400 ms late (a separate CON response)
 *   mute          nothing at all (no ACK): the request is only logged, each retransmission too
 *   huge[/N]      one piggybacked 2.05 with N bytes of "H" (default 1500, at most 4000): no Block2, a
 *                 datagram of N + 14 bytes with the gateway's 8-byte token
 *   anything else 2.05 "ok"
 *
 * Log lines: "REQ mid=M type=CON|NON code=C token=HEX|- host=TEXT|- size2=0|1 block2=N|- path=/a/b
 * queries=K q=[item]..." for requests, "ACK mid=M" / "RST mid=M" for empty messages, "SENT mid=M type=T"
 * for every CON this responder sends. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { T_CON = 0, T_NON = 1, T_ACK = 2, T_RST = 3 };

#define CODE(c, d) ((uint8_t)((c) << 5 | (d)))
#define MAX_PENDING 256
#define DGRAM_MAX 4096 /* the largest datagram sent (loopback's MTU allows it) */
#define HUGE_MAX 4000

static volatile sig_atomic_t stop;
static FILE *log_file;
static int sock = -1;
static uint16_t next_mid = 0x4000;
static bool etag_changed;

struct msg {
    uint8_t type, code, tkl;
    uint16_t mid;
    uint8_t token[8];
    char path[512];
    char queries[1024];
    unsigned nquery;
    char host[256];
    bool size2;
    long block2; /* -1: none */
    unsigned szx;
};

/* A datagram to send later (separate responses, duplicate copies, late blocks). */
struct pending {
    uint64_t at_ms;
    struct sockaddr_in to;
    uint8_t d[DGRAM_MAX];
    size_t n;
};
static struct pending pend[MAX_PENDING];
static size_t npend;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logline(const char *fmt, ...)
{
    va_list ap;
    if (log_file == NULL) {
        return;
    }
    va_start(ap, fmt);
    vfprintf(log_file, fmt, ap);
    va_end(ap);
    fputc('\n', log_file);
    fflush(log_file);
}

/* ---- parsing ---- */

static bool ext(const uint8_t *d, size_t n, size_t *p, unsigned v, uint32_t *out)
{
    if (v < 13) {
        *out = v;
    } else if (v == 13 && *p < n) {
        *out = 13u + d[(*p)++];
    } else if (v == 14 && *p + 1 < n) {
        *out = 269u + ((uint32_t)d[*p] << 8 | d[*p + 1]);
        *p += 2;
    } else {
        return false;
    }
    return true;
}

static uint32_t uint_value(const uint8_t *v, uint32_t len)
{
    uint32_t x = 0;
    for (uint32_t i = 0; i < len && i < 4; i++) {
        x = x << 8 | v[i];
    }
    return x;
}

static void append(char *buf, size_t cap, const char *prefix, const uint8_t *v, uint32_t len, const char *suffix)
{
    size_t at = strlen(buf);
    int n = snprintf(buf + at, cap - at, "%s%.*s%s", prefix, (int)len, (const char *)v, suffix);
    (void)n;
}

static void take_option(struct msg *m, uint32_t number, const uint8_t *v, uint32_t len)
{
    switch (number) {
    case 3:
        snprintf(m->host, sizeof(m->host), "%.*s", (int)len, (const char *)v);
        break;
    case 11:
        append(m->path, sizeof(m->path), "/", v, len, "");
        break;
    case 15:
        append(m->queries, sizeof(m->queries), "[", v, len, "]");
        m->nquery++;
        break;
    case 23:
        m->block2 = (long)(uint_value(v, len) >> 4);
        m->szx = uint_value(v, len) & 7;
        break;
    case 28:
        m->size2 = true;
        break;
    default:
        break;
    }
}

static bool parse(const uint8_t *d, size_t n, struct msg *m)
{
    uint32_t number = 0;
    memset(m, 0, sizeof(*m));
    m->block2 = -1;
    if (n < 4 || d[0] >> 6 != 1 || (d[0] & 15) > 8 || 4u + (d[0] & 15) > n) {
        return false;
    }
    m->type = d[0] >> 4 & 3;
    m->tkl = d[0] & 15;
    m->code = d[1];
    m->mid = (uint16_t)(d[2] << 8 | d[3]);
    memcpy(m->token, d + 4, m->tkl);
    for (size_t p = 4u + m->tkl; p < n && d[p] != 0xff;) {
        uint32_t delta, len;
        unsigned hd = d[p] >> 4, hl = d[p] & 15;
        p++;
        if (!ext(d, n, &p, hd, &delta) || !ext(d, n, &p, hl, &len) || len > n - p) {
            return false;
        }
        number += delta;
        take_option(m, number, d + p, len);
        p += len;
    }
    return true;
}

/* ---- building ---- */

struct out {
    uint8_t d[DGRAM_MAX];
    size_t n;
    uint32_t last;
};

static void put_header(struct out *o, uint8_t type, uint8_t code, uint16_t mid, const struct msg *req)
{
    o->d[0] = (uint8_t)(0x40 | type << 4 | req->tkl);
    o->d[1] = code;
    o->d[2] = (uint8_t)(mid >> 8);
    o->d[3] = (uint8_t)mid;
    memcpy(o->d + 4, req->token, req->tkl);
    o->n = 4u + req->tkl;
    o->last = 0;
}

static void put_nibble_ext(struct out *o, uint32_t v)
{
    if (v >= 269) {
        o->d[o->n++] = (uint8_t)((v - 269) >> 8);
        o->d[o->n++] = (uint8_t)(v - 269);
    } else if (v >= 13) {
        o->d[o->n++] = (uint8_t)(v - 13);
    }
}

static unsigned nibble(uint32_t v)
{
    return v >= 269 ? 14 : v >= 13 ? 13 : v;
}

/* Options must be added in ascending order. */
static void put_option(struct out *o, uint32_t number, const void *v, uint32_t len)
{
    uint32_t delta = number - o->last;
    o->d[o->n++] = (uint8_t)(nibble(delta) << 4 | nibble(len));
    put_nibble_ext(o, delta);
    put_nibble_ext(o, len);
    memcpy(o->d + o->n, v, len);
    o->n += len;
    o->last = number;
}

static void put_uint_option(struct out *o, uint32_t number, uint32_t v)
{
    uint8_t b[4];
    uint32_t len = v > 0xffffff ? 4 : v > 0xffff ? 3 : v > 0xff ? 2 : v > 0 ? 1 : 0;
    for (uint32_t i = 0; i < len; i++) {
        b[i] = (uint8_t)(v >> (8 * (len - 1 - i)));
    }
    put_option(o, number, b, len);
}

static void put_payload(struct out *o, const void *p, size_t n)
{
    if (n > 0) {
        o->d[o->n++] = 0xff;
        memcpy(o->d + o->n, p, n);
        o->n += n;
    }
}

static void send_now(const struct sockaddr_in *to, const struct out *o)
{
    if (sendto(sock, o->d, o->n, 0, (const struct sockaddr *)to, sizeof(*to)) < 0) {
        perror("rawcoap: sendto");
    }
    if ((o->d[0] >> 4 & 3) == T_CON) {
        logline("SENT mid=%u type=CON", (unsigned)(o->d[2] << 8 | o->d[3]));
    }
}

static void send_later(const struct sockaddr_in *to, const struct out *o, unsigned delay_ms)
{
    if (npend == MAX_PENDING) {
        return;
    }
    pend[npend].at_ms = now_ms() + delay_ms;
    pend[npend].to = *to;
    memcpy(pend[npend].d, o->d, o->n);
    pend[npend].n = o->n;
    npend++;
}

static void send_due(void)
{
    uint64_t now = now_ms();
    for (size_t i = 0; i < npend;) {
        if (pend[i].at_ms <= now) {
            struct out o;
            memcpy(o.d, pend[i].d, pend[i].n);
            o.n = pend[i].n;
            send_now(&pend[i].to, &o);
            pend[i] = pend[--npend];
        } else {
            i++;
        }
    }
}

/* ---- scripts ---- */

static void empty_ack(const struct sockaddr_in *to, const struct msg *req)
{
    struct out o;
    struct msg none = *req;
    none.tkl = 0;
    put_header(&o, T_ACK, 0, req->mid, &none);
    send_now(to, &o);
}

/* The piggybacked type for a request: ACK for a CON, NON for a NON. */
static uint8_t reply_type(const struct msg *req)
{
    return req->type == T_CON ? T_ACK : T_NON;
}

static void simple(const struct sockaddr_in *to, const struct msg *req, uint8_t code, const char *body)
{
    struct out o;
    put_header(&o, reply_type(req), code, req->mid, req);
    put_uint_option(&o, 12, 0);
    put_payload(&o, body, strlen(body));
    send_now(to, &o);
}

/* One Block2 block (szx 0: 16 bytes) of a body of total bytes of fill, M set when more follow. */
static void block(struct out *o, uint8_t type, uint16_t mid, const struct msg *req, unsigned num, char fill,
                  const uint8_t *etag, size_t total, long size2)
{
    char data[16];
    size_t off = (size_t)num * 16, n = total == 0 ? 16 : (off < total ? (total - off < 16 ? total - off : 16) : 0);
    bool more = total == 0 || off + n < total;
    put_header(o, type, CODE(2, 5), mid, req);
    if (etag != NULL) {
        put_option(o, 4, etag, 1);
    }
    put_uint_option(o, 12, 42);
    put_uint_option(o, 23, (uint32_t)(num << 4 | (more ? 8u : 0u)));
    if (size2 >= 0) {
        put_uint_option(o, 28, (uint32_t)size2);
    }
    memset(data, fill, sizeof(data));
    put_payload(o, data, n);
}

static void script_dup(const struct sockaddr_in *to, const struct msg *req)
{
    struct out o;
    empty_ack(to, req);
    put_header(&o, T_CON, CODE(2, 5), next_mid++, req);
    put_uint_option(&o, 12, 0);
    put_payload(&o, "dup", 3);
    send_later(to, &o, 50);
    send_later(to, &o, 350);
}

static void script_separate(const struct sockaddr_in *to, const struct msg *req, bool critical)
{
    struct out o;
    empty_ack(to, req);
    put_header(&o, T_CON, CODE(2, 5), next_mid++, req);
    if (critical) {
        put_option(&o, 12, "", 0);
        put_option(&o, 65001, "x", 1);
        put_payload(&o, "critical", 8);
    } else {
        put_option(&o, 4, "123456789", 9);
        put_option(&o, 12, "", 0);
        put_payload(&o, "etag9", 5);
    }
    send_later(to, &o, 50);
}

static void script_blocks(const struct sockaddr_in *to, const struct msg *req, const char *name)
{
    struct out o;
    unsigned num = req->block2 < 0 ? 0 : (unsigned)req->block2;
    if (strcmp(name, "etag-change") == 0) {
        if (num >= 1) {
            etag_changed = true;
        }
        static const uint8_t a = 1, b = 2;
        block(&o, reply_type(req), req->mid, req, num, etag_changed ? 'B' : 'A', etag_changed ? &b : &a, 48, -1);
        send_now(to, &o);
    } else if (strncmp(name, "wrongblock", 10) == 0) {
        unsigned wrong = num == 0 ? 0 : strcmp(name, "wrongblock") == 0 ? num - 1 : num + 1;
        block(&o, reply_type(req), req->mid, req, wrong, 'W', NULL, 64, -1);
        send_now(to, &o);
    } else if (num == 0) { /* size2 */
        block(&o, reply_type(req), req->mid, req, 0, 'S', NULL, 0, req->size2 ? 10000000 : -1);
        send_now(to, &o);
    } else {
        empty_ack(to, req);
        block(&o, T_CON, next_mid++, req, num, 'S', NULL, 0, -1);
        send_later(to, &o, 400);
    }
}

/* A response larger than libcoap's receive size, in one datagram: /huge/N for N bytes of payload. */
static void script_huge(const struct sockaddr_in *to, const struct msg *req, const char *name)
{
    static char body[HUGE_MAX];
    struct out o;
    long n = name[4] == '/' ? strtol(name + 5, NULL, 10) : 1500;
    n = n < 1 ? 1 : n > HUGE_MAX ? HUGE_MAX : n;
    memset(body, 'H', (size_t)n);
    put_header(&o, reply_type(req), CODE(2, 5), req->mid, req);
    put_option(&o, 12, "", 0);
    put_payload(&o, body, (size_t)n);
    send_now(to, &o);
}

static void answer(const struct sockaddr_in *to, const struct msg *req)
{
    const char *name = req->path[0] == '/' ? req->path + 1 : "";
    char first[64];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(name, "/"), name);
    struct out o;

    if (strcmp(first, "dup") == 0) {
        script_dup(to, req);
    } else if (strcmp(first, "etag-change") == 0 || strncmp(first, "wrongblock", 10) == 0 ||
               strcmp(first, "size2") == 0) {
        script_blocks(to, req, first);
    } else if (strcmp(first, "etag9") == 0 || strcmp(first, "maxage5") == 0) {
        bool etag = first[0] == 'e';
        put_header(&o, reply_type(req), CODE(2, 5), req->mid, req);
        if (etag) {
            put_option(&o, 4, "123456789", 9);
        }
        put_option(&o, 12, "", 0);
        if (!etag) {
            put_option(&o, 14, "\0\0\0\0\x05", 5);
        }
        put_payload(&o, first, strlen(first));
        send_now(to, &o);
    } else if (strcmp(first, "etag9-con") == 0 || strcmp(first, "critical-con") == 0) {
        script_separate(to, req, first[0] == 'c');
    } else if (strcmp(first, "critical") == 0) {
        put_header(&o, reply_type(req), CODE(2, 5), req->mid, req);
        put_option(&o, 12, "", 0);
        put_option(&o, 65001, "x", 1);
        put_payload(&o, "critical", 8);
        send_now(to, &o);
    } else if (strcmp(first, "huge") == 0) {
        script_huge(to, req, name);
    } else if (strcmp(first, "mute") == 0) {
        return; /* logged by the caller; never answered */
    } else if (strcmp(first, "valid") == 0) {
        put_header(&o, reply_type(req), CODE(2, 3), req->mid, req);
        send_now(to, &o);
    } else {
        simple(to, req, CODE(2, 5), "ok");
    }
}

static void answer_random(const struct sockaddr_in *to)
{
    for (int k = 0; k < 8; k++) {
        struct out o;
        o.n = 1 + (size_t)(rand() % 64);
        for (size_t i = 0; i < o.n; i++) {
            o.d[i] = (uint8_t)rand();
        }
        if (k % 2 == 0 && o.n >= 4) {
            o.d[0] = (uint8_t)(0x40 | (rand() % 4) << 4 | (rand() % 9));
            o.d[1] = CODE(2 + rand() % 4, rand() % 32);
        }
        if (sendto(sock, o.d, o.n, 0, (const struct sockaddr *)to, sizeof(*to)) < 0) {
            perror("rawcoap: sendto");
        }
    }
}

static void log_request(const struct msg *m)
{
    char token[17] = "-", block2[24] = "-";
    for (unsigned i = 0; i < m->tkl; i++) {
        snprintf(token + 2 * i, 3, "%02x", m->token[i]);
    }
    if (m->block2 >= 0) {
        snprintf(block2, sizeof(block2), "%ld", m->block2);
    }
    logline("REQ mid=%u type=%s code=%u token=%s host=%s size2=%d block2=%s path=%s queries=%u q=%s", m->mid,
            m->type == T_CON ? "CON" : "NON", m->code, token, m->host[0] ? m->host : "-", m->size2 ? 1 : 0,
            block2, m->path[0] ? m->path : "/", m->nquery, m->queries);
}

static int bind_port(unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    sock = socket(AF_INET, SOCK_DGRAM, 0);
    if (sock < 0) {
        return -1;
    }
    for (int tries = 0; tries < 200; tries++) {
        unsigned p = port != 0 ? port : 20000u + (unsigned)(rand() % 6384);
        a.sin_port = htons((uint16_t)p);
        if (bind(sock, (struct sockaddr *)&a, sizeof(a)) == 0) {
            return (int)p;
        }
        if (port != 0) {
            break;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    bool random_mode = false;
    int opt;

    srand((unsigned)(time(NULL) ^ getpid()));
    while ((opt = getopt(argc, argv, "p:l:r")) != -1) {
        if (opt == 'p') {
            port = (unsigned)atoi(optarg);
        } else if (opt == 'l') {
            log_file = fopen(optarg, "a");
        } else if (opt == 'r') {
            random_mode = true;
        } else {
            fprintf(stderr, "usage: rawcoap [-p PORT] [-l LOGFILE] [-r]\n");
            return 2;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int bound = bind_port(port);
    if (bound < 0) {
        perror("rawcoap: bind");
        return 1;
    }
    printf("ready %d\n", bound);
    fflush(stdout);
    while (!stop) {
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        if (poll(&pfd, 1, npend > 0 ? 10 : 200) > 0) {
            uint8_t d[1500];
            struct sockaddr_in from;
            socklen_t flen = sizeof(from);
            ssize_t n = recvfrom(sock, d, sizeof(d), 0, (struct sockaddr *)&from, &flen);
            struct msg m;
            if (n > 0 && random_mode) {
                answer_random(&from);
            } else if (n > 0 && parse(d, (size_t)n, &m)) {
                if (m.code == 0) {
                    logline("%s mid=%u", m.type == T_ACK ? "ACK" : m.type == T_RST ? "RST" : "PING", m.mid);
                    if (m.type == T_CON) { /* CoAP ping: RST */
                        struct out o;
                        struct msg none = m;
                        none.tkl = 0;
                        put_header(&o, T_RST, 0, m.mid, &none);
                        send_now(&from, &o);
                    }
                } else if (m.code >> 5 == 0) {
                    log_request(&m);
                    answer(&from, &m);
                }
            }
        }
        send_due();
    }
    if (log_file != NULL) {
        fclose(log_file);
    }
    return 0;
}
