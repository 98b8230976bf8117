/* lossyrelay: a UDP relay on 127.0.0.1 that drops a seeded share of the datagrams in both directions, for
 * the packet-loss tests (the test machine's kernel has no netem). Test code only: obvious over fast.
 *
 * Usage: lossyrelay -p PORT -u UPSTREAM_PORT [-l LOSS_PERCENT] [-s SEED] [-t MAX_SECONDS] [-c COUNTS_FILE]
 *   -p PORT       UDP port to listen on (127.0.0.1); the gateway's upstream URI points here.
 *   -u PORT       the device's UDP port on 127.0.0.1.
 *   -l PERCENT    share of datagrams dropped, each direction drawn on its own (0..100, default 30).
 *   -s SEED       seed of the drop sequence (default 1): the same seed and traffic drop the same datagrams.
 *   -t SECONDS    exits by itself after this long (default 300), so a forgotten relay cannot linger.
 *   -c FILE       rewritten after every datagram: "up_in N up_dropped N down_in N down_dropped N flows N".
 * Prints "ready PORT" on stdout once bound; exits 0 on SIGTERM/SIGINT or at -t.
 *
 * Each client address (the gateway keeps a socket per request slot, observation and probe) gets a socket of
 * its own towards the device, so the device sees one peer per client socket and its answers go back to the
 * socket that asked. Flows are bounded (MAX_FLOWS): the one idle longest is reused when the table is full. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FLOWS 128
#define DGRAM_MAX 65536

struct flow {
    struct sockaddr_in client; /* the gateway's socket this flow relays for */
    int fd;                    /* connected to the device; -1: free */
    long long used_ms;
};

static volatile sig_atomic_t stop;
static struct flow flows[MAX_FLOWS];
static uint64_t rng;
static unsigned loss = 30;
static unsigned long long up_in, up_dropped, down_in, down_dropped;
static const char *counts_path;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: a fixed sequence per seed. */
static unsigned draw_percent(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (unsigned)((rng * 2685821657736338717ULL) >> 33) % 100;
}

static int drop(void)
{
    return draw_percent() < loss;
}

static void write_counts(void)
{
    unsigned n = 0;
    FILE *f;

    if (counts_path == NULL) {
        return;
    }
    for (size_t i = 0; i < MAX_FLOWS; i++) {
        n += flows[i].fd >= 0;
    }
    f = fopen(counts_path, "w");
    if (f == NULL) {
        return;
    }
    fprintf(f, "up_in %llu up_dropped %llu down_in %llu down_dropped %llu flows %u\n", up_in, up_dropped,
            down_in, down_dropped, n);
    fclose(f);
}

static int udp_socket(unsigned port, int do_connect)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) {
        return -1;
    }
    if ((do_connect ? connect(fd, (struct sockaddr *)&sin, sizeof(sin))
                    : bind(fd, (struct sockaddr *)&sin, sizeof(sin))) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The flow of a client address, made (or the longest idle one reused) when there is none. */
static struct flow *flow_for(const struct sockaddr_in *client, unsigned upstream_port)
{
    struct flow *victim = &flows[0];

    for (size_t i = 0; i < MAX_FLOWS; i++) {
        struct flow *f = &flows[i];
        if (f->fd >= 0 && f->client.sin_port == client->sin_port &&
            f->client.sin_addr.s_addr == client->sin_addr.s_addr) {
            return f;
        }
        if (f->fd < 0 || (victim->fd >= 0 && f->used_ms < victim->used_ms)) {
            victim = f;
        }
    }
    if (victim->fd >= 0) {
        close(victim->fd);
    }
    victim->fd = udp_socket(upstream_port, 1);
    victim->client = *client;
    return victim->fd >= 0 ? victim : NULL;
}

static void relay_up(int listen_fd, unsigned upstream_port, uint8_t *buf)
{
    struct sockaddr_in from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(listen_fd, buf, DGRAM_MAX, 0, (struct sockaddr *)&from, &flen);

    if (n < 0) {
        return;
    }
    up_in++;
    struct flow *f = flow_for(&from, upstream_port);
    if (f == NULL) {
        return;
    }
    f->used_ms = now_ms();
    if (drop()) {
        up_dropped++;
        return;
    }
    ssize_t w = send(f->fd, buf, (size_t)n, 0);
    (void)w; /* a device that is down (ECONNREFUSED) is what the gateway sees as silence here */
}

static void relay_down(int listen_fd, struct flow *f, uint8_t *buf)
{
    ssize_t n = recv(f->fd, buf, DGRAM_MAX, 0);

    if (n < 0) {
        return; /* ICMP from the device's port (nothing listening): the relay hides it */
    }
    down_in++;
    f->used_ms = now_ms();
    if (drop()) {
        down_dropped++;
        return;
    }
    ssize_t w = sendto(listen_fd, buf, (size_t)n, 0, (struct sockaddr *)&f->client, sizeof(f->client));
    (void)w;
}

int main(int argc, char **argv)
{
    unsigned port = 0, upstream_port = 0;
    long max_s = 300;
    int opt;

    rng = 1;
    while ((opt = getopt(argc, argv, "p:u:l:s:t:c:")) != -1) {
        switch (opt) {
        case 'p':
            port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'u':
            upstream_port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'l':
            loss = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 's':
            rng = strtoull(optarg, NULL, 10);
            break;
        case 't':
            max_s = strtol(optarg, NULL, 10);
            break;
        case 'c':
            counts_path = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: lossyrelay -p PORT -u UPSTREAM_PORT [-l PERCENT] [-s SEED] [-t S] [-c F]\n");
            return 1;
        }
    }
    if (port == 0 || port > 65535 || upstream_port == 0 || upstream_port > 65535 || loss > 100 ||
        max_s <= 0) {
        fprintf(stderr, "lossyrelay: -p and -u are required ports, -l 0..100, -t > 0\n");
        return 1;
    }
    rng = rng != 0 ? rng : 1; /* xorshift never leaves 0 */
    for (size_t i = 0; i < MAX_FLOWS; i++) {
        flows[i].fd = -1;
    }
    int listen_fd = udp_socket(port, 0);
    if (listen_fd < 0) {
        perror("lossyrelay: bind");
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("ready %u\n", port);
    fflush(stdout);
    write_counts();

    static uint8_t buf[DGRAM_MAX];
    struct pollfd pfd[MAX_FLOWS + 1];
    struct flow *owner[MAX_FLOWS + 1];
    long long end = now_ms() + max_s * 1000;
    while (!stop && now_ms() < end) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        for (size_t i = 0; i < MAX_FLOWS; i++) {
            if (flows[i].fd >= 0) {
                owner[n] = &flows[i];
                pfd[n++] = (struct pollfd){.fd = flows[i].fd, .events = POLLIN};
            }
        }
        if (poll(pfd, n, 200) <= 0) {
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            relay_up(listen_fd, upstream_port, buf);
        }
        for (nfds_t i = 1; i < n; i++) {
            if (pfd[i].revents & (POLLIN | POLLERR)) {
                relay_down(listen_fd, owner[i], buf);
            }
        }
        write_counts();
    }
    write_counts();
    for (size_t i = 0; i < MAX_FLOWS; i++) {
        if (flows[i].fd >= 0) {
            close(flows[i].fd);
        }
    }
    close(listen_fd);
    return 0;
}
