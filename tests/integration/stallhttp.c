/* stallhttp: opens many HTTP connections to 127.0.0.1:PORT that stall, and reports how the server ends
 * them, for the fault tests (a bash loop cannot hold a thousand sockets cheaply). Test code only.
 *
 *   stallhttp -p PORT -n N [-t MAX_MS]
 *
 * Every even connection sends nothing; every odd one sends a request line and one header field, then
 * stalls inside its header section. Prints "ready N" once all N are connected (or "connected K" and exits
 * 1 when only K could be), then waits until the server has closed every one or MAX_MS (default 30000)
 * passed since the last connect, and prints one line:
 *   "closed C of N answered A status408 S still_open O last_close_ms L"
 * (A: connections that received any bytes; S: those whose first bytes are "HTTP/1.1 408"; L: when the last
 * close came, in ms after the last connect). Exit status 0 when every connection was closed, 2 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000

struct conn {
    int fd;
    int got; /* bytes received (only the first few are kept) */
    char head[16];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_local(unsigned port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads what is there; returns 1 when the peer closed (or reset) the connection. */
static int drain(struct conn *c)
{
    char buf[4096];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return 0;
    }
    if (n <= 0) {
        return 1;
    }
    for (ssize_t i = 0; i < n && c->got + i < (int)sizeof(c->head) - 1; i++) {
        c->head[c->got + i] = buf[i];
    }
    c->got += (int)n;
    return 0;
}

int main(int argc, char **argv)
{
    static struct conn conns[MAX_CONNS];
    unsigned port = 0;
    long n = 0, max_ms = 30000;
    int opt;

    while ((opt = getopt(argc, argv, "p:n:t:")) != -1) {
        if (opt == 'p') {
            port = (unsigned)strtoul(optarg, NULL, 10);
        } else if (opt == 'n') {
            n = strtol(optarg, NULL, 10);
        } else if (opt == 't') {
            max_ms = strtol(optarg, NULL, 10);
        } else {
            fprintf(stderr, "usage: stallhttp -p PORT -n N [-t MAX_MS]\n");
            return 1;
        }
    }
    if (port == 0 || port > 65535 || n <= 0 || n > MAX_CONNS || max_ms <= 0) {
        fprintf(stderr, "stallhttp: -p PORT and -n 1..%d are required\n", MAX_CONNS);
        return 1;
    }
    static const char partial[] = "GET /api/stalled HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (long i = 0; i < n; i++) {
        conns[i].fd = connect_local(port);
        if (conns[i].fd < 0) {
            printf("connected %ld\n", i);
            return 1;
        }
        if (i % 2 == 1 && send(conns[i].fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL) < 0) {
            printf("connected %ld (send failed)\n", i);
            return 1;
        }
    }
    long long start = now_ms(), last_close = 0;
    printf("ready %ld\n", n);
    fflush(stdout);

    static struct pollfd pfd[MAX_CONNS];
    static long idx[MAX_CONNS];
    long open = n;
    while (open > 0 && now_ms() - start < max_ms) {
        nfds_t k = 0;
        for (long i = 0; i < n; i++) {
            if (conns[i].fd >= 0) {
                pfd[k] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
                idx[k++] = i;
            }
        }
        if (poll(pfd, k, 100) <= 0) {
            continue;
        }
        for (nfds_t j = 0; j < k; j++) {
            struct conn *c = &conns[idx[j]];
            if ((pfd[j].revents & (POLLIN | POLLHUP | POLLERR)) && drain(c)) {
                close(c->fd);
                c->fd = -1;
                open--;
                last_close = now_ms() - start;
            }
        }
    }
    long answered = 0, s408 = 0;
    for (long i = 0; i < n; i++) {
        answered += conns[i].got > 0;
        s408 += strncmp(conns[i].head, "HTTP/1.1 408", 12) == 0;
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
        }
    }
    printf("closed %ld of %ld answered %ld status408 %ld still_open %ld last_close_ms %lld\n", n - open, n,
           answered, s408, open, last_close);
    return open == 0 ? 0 : 2;
}
