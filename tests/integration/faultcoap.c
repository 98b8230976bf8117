/* faultcoap: a misbehaving CoAP device on a raw UDP socket (no CoAP library), for the fault tests: answers
 * with the wrong token or message id, the wrong message type, truncated PDUs, or floods the gateway's client
 * sockets with unsolicited messages. rawcoap covers conformance quirks and random bytes; this one covers
 * answers that look right but belong to nothing. Test code only: obvious over fast.
 *
 * Usage: faultcoap [-p PORT] [-r FLOOD_RATE]
 *   -p PORT  UDP port on 127.0.0.1 (0, the default: one free in 20000-26383).
 *   -r N     flood datagrams per second at most (default 20000).
 * Prints "ready PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT. A request's first Uri-Path segment
 * chooses the answer (T: the request's token, M: its message id; "ACK M" is piggybacked):
 *   tok-mismatch      ACK M 2.05 with T's last byte flipped
 *   tok-empty         ACK M 2.05 without a token
 *   mid-mismatch      ACK M^0x5a5a 2.05 with T (every copy)
 *   tok-only-con      empty ACK M, then CON 2.05 with another token
 *   code-request      ACK M with T but a request code (0.01 GET)
 *   rst-with-token    RST M carrying T and 2.05
 *   empty-with-token  ACK M, code 0.00, carrying T
 *   non-answer        NON 2.05 with T, a new message id
 *   trunc-token       ACK M, TKL 8 but only 3 token bytes
 *   trunc-option      ACK M with T, an option claiming 200 bytes, 5 sent
 *   trunc-ext         ACK M with T, an option whose extended length byte is missing
 *   tkl-reserved      ACK M, TKL 9 (reserved), 9 bytes of token
 *   marker-only       ACK M 2.05 with T, a payload marker and no payload
 *   short             a 3-byte datagram
 *   flood[?n=N]       ACK M 2.05 "flooding", then N (default 20000, at most 1000000) unsolicited datagrams,
 *                     round-robin to every client socket that has asked anything (from this socket, and
 *                     every 8th from a second socket, another port): NON and CON notifications with unknown
 *                     tokens, RSTs and ACKs of unknown message ids, empty CONs (pings), ACK responses,
 *                     requests, random bytes; never a message id within 64 of the peer's last request
 *   stats             ACK M 2.05 "requests N flood_sent N flood_left N peers N"
 *   anything else     ACK M 2.05 "ok"
 * A NON request gets the same answers as NON with a new message id where the list says ACK. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
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
#define DGRAM_MAX 1500
#define MAX_PEERS 64
#define FLOOD_MAX 1000000L

static volatile sig_atomic_t stop;
static int sock = -1, sock2 = -1;
static uint16_t next_mid = 0x7000;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static struct sockaddr_in peers[MAX_PEERS];
static uint16_t peer_mid[MAX_PEERS]; /* the message id of the last request from each peer */
static size_t npeers, next_peer;
static long flood_left, flood_sent, requests;

struct msg {
    uint8_t type, code, tkl;
    uint16_t mid;
    uint8_t token[8];
    char first[64]; /* first Uri-Path segment */
    long n;         /* n=N query item, -1: none */
};

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 2685821657736338717ULL) >> 32);
}

/* ---- parsing (requests only: what the answer needs) ---- */

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

static bool parse(const uint8_t *d, size_t n, struct msg *m)
{
    uint32_t number = 0;
    bool have_path = false;

    memset(m, 0, sizeof(*m));
    m->n = -1;
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
        if (number == 11 && !have_path) {
            snprintf(m->first, sizeof(m->first), "%.*s", (int)len, (const char *)d + p);
            have_path = true;
        } else if (number == 15 && len > 2 && memcmp(d + p, "n=", 2) == 0) {
            char v[16];
            snprintf(v, sizeof(v), "%.*s", (int)(len - 2), (const char *)d + p + 2);
            m->n = strtol(v, NULL, 10);
        }
        p += len;
    }
    return true;
}

/* ---- building ---- */

struct out {
    uint8_t d[DGRAM_MAX];
    size_t n;
};

static void put_header(struct out *o, uint8_t type, uint8_t code, uint16_t mid, const uint8_t *tok,
                       uint8_t tkl)
{
    o->d[0] = (uint8_t)(0x40 | type << 4 | tkl);
    o->d[1] = code;
    o->d[2] = (uint8_t)(mid >> 8);
    o->d[3] = (uint8_t)mid;
    memcpy(o->d + 4, tok, tkl);
    o->n = 4u + tkl;
}

static void put_bytes(struct out *o, const void *p, size_t n)
{
    memcpy(o->d + o->n, p, n);
    o->n += n;
}

static void put_payload(struct out *o, const char *text)
{
    o->d[o->n++] = 0xff;
    put_bytes(o, text, strlen(text));
}

static void send_to(int fd, const struct sockaddr_in *to, const struct out *o)
{
    ssize_t r = sendto(fd, o->d, o->n, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof(*to));
    (void)r; /* a full socket buffer drops the datagram: it is a flood */
}

/* The type and message id of a piggybacked answer to req (NON with a new id for a NON request). */
static uint8_t ack_type(const struct msg *req)
{
    return req->type == T_CON ? T_ACK : T_NON;
}

static uint16_t ack_mid(const struct msg *req)
{
    return req->type == T_CON ? req->mid : next_mid++;
}

static void ok(const struct sockaddr_in *to, const struct msg *req, const char *body)
{
    struct out o;
    put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), req->token, req->tkl);
    o.d[o.n++] = 0xc0; /* Content-Format (12): 0, text/plain */
    put_payload(&o, body);
    send_to(sock, to, &o);
}

static void remember_peer(const struct sockaddr_in *from, uint16_t mid)
{
    size_t i;

    for (i = 0; i < npeers; i++) {
        if (peers[i].sin_port == from->sin_port && peers[i].sin_addr.s_addr == from->sin_addr.s_addr) {
            break;
        }
    }
    if (i == npeers) {
        i = npeers < MAX_PEERS ? npeers++ : rnd() % MAX_PEERS;
        peers[i] = *from;
    }
    peer_mid[i] = mid;
}

/* A message id for an unsolicited message to peer p: never within 64 of the peer's last request's (libcoap
 * counts up by one per message), so the flood never names a request the gateway has on the wire: that
 * would be an answer (a broken one), not an unsolicited message. */
static uint16_t unsolicited_mid(size_t p)
{
    uint16_t mid;
    do {
        mid = (uint16_t)rnd();
    } while ((uint16_t)(mid - peer_mid[p] + 64) < 128);
    return mid;
}

/* One unsolicited datagram of kind k (k cycles through eight kinds) to peer p. */
static void flood_one(size_t p, unsigned k)
{
    const struct sockaddr_in *to = &peers[p];
    struct out o;
    uint8_t tok[8];
    uint16_t mid = unsolicited_mid(p);
    uint32_t r = rnd();

    memcpy(tok, &r, 4);
    r = rnd();
    memcpy(tok + 4, &r, 4);
    switch (k % 8) {
    case 0: /* NON notification for an observation nobody made */
    case 1: /* the same as CON: the gateway answers RST */
        put_header(&o, k % 8 == 0 ? T_NON : T_CON, CODE(2, 5), mid, tok, 8);
        o.d[o.n++] = 0x63; /* Observe (6), 3 bytes */
        put_bytes(&o, &r, 3);
        o.d[o.n++] = 0x61; /* Content-Format (12): 50 */
        o.d[o.n++] = 50;
        put_payload(&o, "{\"flood\":1}");
        break;
    case 2:
        put_header(&o, T_RST, 0, mid, tok, 0);
        break;
    case 3:
        put_header(&o, T_ACK, 0, mid, tok, 0);
        break;
    case 4: /* a CoAP ping */
        put_header(&o, T_CON, 0, mid, tok, 0);
        break;
    case 5:
        put_header(&o, T_ACK, CODE(2, 5), mid, tok, 8);
        put_payload(&o, "stray");
        break;
    case 6: /* a request sent to the client */
        put_header(&o, T_CON, CODE(0, 1), mid, tok, 4);
        o.d[o.n++] = 0xb1; /* Uri-Path (11) "x" */
        o.d[o.n++] = 'x';
        break;
    default:
        o.n = 1 + rnd() % 40;
        for (size_t i = 0; i < o.n; i++) {
            o.d[i] = (uint8_t)rnd();
        }
        if (o.n >= 4) { /* where a message id would be, none of a request's */
            o.d[2] = (uint8_t)(mid >> 8);
            o.d[3] = (uint8_t)mid;
        }
        break;
    }
    send_to(flood_sent % 8 == 7 && sock2 >= 0 ? sock2 : sock, to, &o);
}

static void flood_some(long budget)
{
    for (long i = 0; i < budget && flood_left > 0 && npeers > 0; i++) {
        flood_one(next_peer++ % npeers, (unsigned)flood_sent);
        flood_sent++;
        flood_left--;
    }
}

/* ---- the scripted answers ---- */

static void answer(const struct sockaddr_in *to, const struct msg *req)
{
    const char *s = req->first;
    uint8_t tok[9];
    struct out o;

    memcpy(tok, req->token, 8);
    if (strcmp(s, "tok-mismatch") == 0) {
        tok[req->tkl > 0 ? req->tkl - 1 : 0] ^= 0x01;
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), tok, req->tkl > 0 ? req->tkl : 1);
        put_payload(&o, "wrong token");
    } else if (strcmp(s, "tok-empty") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), tok, 0);
        put_payload(&o, "no token");
    } else if (strcmp(s, "mid-mismatch") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), (uint16_t)(ack_mid(req) ^ 0x5a5a), req->token, req->tkl);
        put_payload(&o, "wrong mid");
    } else if (strcmp(s, "tok-only-con") == 0) {
        if (req->type == T_CON) {
            put_header(&o, T_ACK, 0, req->mid, tok, 0);
            send_to(sock, to, &o);
        }
        tok[0] ^= 0x80;
        put_header(&o, T_CON, CODE(2, 5), next_mid++, tok, req->tkl > 0 ? req->tkl : 1);
        put_payload(&o, "another token");
    } else if (strcmp(s, "code-request") == 0) {
        put_header(&o, ack_type(req), CODE(0, 1), ack_mid(req), req->token, req->tkl);
        put_payload(&o, "a request code");
    } else if (strcmp(s, "rst-with-token") == 0) {
        put_header(&o, T_RST, CODE(2, 5), req->mid, req->token, req->tkl);
    } else if (strcmp(s, "empty-with-token") == 0) {
        put_header(&o, ack_type(req), 0, ack_mid(req), req->token, req->tkl);
    } else if (strcmp(s, "non-answer") == 0) {
        put_header(&o, T_NON, CODE(2, 5), next_mid++, req->token, req->tkl);
        o.d[o.n++] = 0xc0;
        put_payload(&o, "non");
    } else if (strcmp(s, "trunc-token") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), req->token, 3);
        o.d[0] = (uint8_t)((o.d[0] & 0xf0) | 8);
    } else if (strcmp(s, "trunc-option") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), req->token, req->tkl);
        o.d[o.n++] = 0x4d; /* ETag (4), length 13 + ext */
        o.d[o.n++] = 200 - 13;
        put_bytes(&o, "abcde", 5);
    } else if (strcmp(s, "trunc-ext") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), req->token, req->tkl);
        o.d[o.n++] = 0xcd; /* Content-Format (12), length 13 + an ext byte that is not there */
    } else if (strcmp(s, "tkl-reserved") == 0) {
        tok[8] = 0x42;
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), tok, 8);
        put_bytes(&o, tok + 8, 1);
        o.d[0] = (uint8_t)((o.d[0] & 0xf0) | 9);
    } else if (strcmp(s, "marker-only") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), req->token, req->tkl);
        o.d[o.n++] = 0xff;
    } else if (strcmp(s, "short") == 0) {
        put_header(&o, ack_type(req), CODE(2, 5), ack_mid(req), req->token, 0);
        o.n = 3;
    } else if (strcmp(s, "flood") == 0) {
        long n = req->n >= 0 ? req->n : 20000;
        flood_left += n < FLOOD_MAX ? n : FLOOD_MAX;
        ok(to, req, "flooding");
        return;
    } else if (strcmp(s, "stats") == 0) {
        char text[128];
        snprintf(text, sizeof(text), "requests %ld flood_sent %ld flood_left %ld peers %zu", requests,
                 flood_sent, flood_left, npeers);
        ok(to, req, text);
        return;
    } else {
        ok(to, req, "ok");
        return;
    }
    send_to(sock, to, &o);
}

static int bind_port(unsigned port)
{
    for (unsigned p = port != 0 ? port : 20000; p <= (port != 0 ? port : 26383); p++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
            sock = fd;
            return (int)p;
        }
        if (fd >= 0) {
            close(fd);
        }
        if (port == 0) {
            p += rnd() % 50; /* spread the search: tests start several servers in parallel */
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    long rate = 20000;
    int opt;

    rng ^= (uint64_t)getpid() << 16 ^ now_ms();
    while ((opt = getopt(argc, argv, "p:r:")) != -1) {
        if (opt == 'p') {
            port = (unsigned)strtoul(optarg, NULL, 10);
        } else if (opt == 'r') {
            rate = strtol(optarg, NULL, 10);
        } else {
            fprintf(stderr, "usage: faultcoap [-p PORT] [-r FLOOD_RATE]\n");
            return 1;
        }
    }
    int bound = bind_port(port);
    if (bound < 0 || rate <= 0) {
        fprintf(stderr, "faultcoap: cannot bind port %u (or a bad -r)\n", port);
        return 1;
    }
    sock2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("ready %d\n", bound);
    fflush(stdout);

    static uint8_t d[DGRAM_MAX];
    uint64_t tick = now_ms();
    while (!stop) {
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        int p = poll(&pfd, 1, flood_left > 0 ? 1 : 200);
        if (p > 0 && (pfd.revents & POLLIN)) {
            struct sockaddr_in from;
            socklen_t flen = sizeof(from);
            struct msg m;
            ssize_t n = recvfrom(sock, d, sizeof(d), 0, (struct sockaddr *)&from, &flen);
            if (n > 0 && parse(d, (size_t)n, &m) && m.code >= CODE(0, 1) && m.code <= CODE(0, 31)) {
                requests++;
                remember_peer(&from, m.mid);
                answer(&from, &m);
            }
        }
        /* The flood goes out at most rate per second, in slices of a millisecond or more. */
        uint64_t now = now_ms();
        if (flood_left > 0 && now > tick) {
            long budget = (long)((now - tick) * (uint64_t)rate / 1000u);
            if (budget > 0) {
                flood_some(budget < 2000 ? budget : 2000);
                tick = now;
            }
        } else if (flood_left == 0) {
            tick = now;
        }
    }
    close(sock);
    if (sock2 >= 0) {
        close(sock2);
    }
    return 0;
}
