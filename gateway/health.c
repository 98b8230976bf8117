/* gateway/health: the `--health URL` probe. Plain sockets and poll(2) under one deadline; it never links
 * against the gateway's state, so a wedged gateway cannot wedge its own health check. */
#include "gateway/health.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"

struct target {
    char host[256];
    char port[6];
    char path[1024];
};

/* Bytes that would let the URL add a header or a second request line. */
static bool is_unsafe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

static int copy_part(char *dst, size_t dstlen, const char *src, size_t n)
{
    if (n == 0 || n >= dstlen || is_unsafe(src, n)) {
        return -1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

static int parse_port(const char *s, size_t n, char *dst, size_t dstlen)
{
    unsigned long v = 0;

    if (n == 0 || n > 5) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535) {
        return -1;
    }
    snprintf(dst, dstlen, "%lu", v);
    return 0;
}

/* http://HOST[:PORT][/PATH], HOST a name, an IPv4 literal or [IPv6]; a fragment is dropped. */
static int parse_url(const char *url, struct target *t)
{
    static const char scheme[] = "http://";
    const char *p, *end, *host_end, *path;
    size_t n;

    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0) {
        return -1;
    }
    p = url + sizeof(scheme) - 1;
    end = p + strcspn(p, "#");
    path = p + strcspn(p, "/?#");
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(path - p));
        if (host_end == NULL || copy_part(t->host, sizeof(t->host), p + 1, (size_t)(host_end - p - 1)) != 0) {
            return -1;
        }
        host_end++;
    } else {
        host_end = memchr(p, ':', (size_t)(path - p));
        host_end = host_end != NULL ? host_end : path;
        if (copy_part(t->host, sizeof(t->host), p, (size_t)(host_end - p)) != 0) {
            return -1;
        }
    }
    if (host_end == path) {
        snprintf(t->port, sizeof(t->port), "80");
    } else if (*host_end != ':' ||
               parse_port(host_end + 1, (size_t)(path - host_end - 1), t->port, sizeof(t->port)) != 0) {
        return -1;
    }
    n = (size_t)(end - path);
    if (n == 0) {
        snprintf(t->path, sizeof(t->path), "/");
        return 0;
    }
    if (*path == '?') { /* http://host?x is the path "/" with a query */
        t->path[0] = '/';
        return copy_part(t->path + 1, sizeof(t->path) - 1, path, n);
    }
    return copy_part(t->path, sizeof(t->path), path, n);
}

static int time_left(uint64_t deadline)
{
    uint64_t now = cg_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* Waits until fd is ready for events; -1 with errno ETIMEDOUT past the deadline. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int left, rc;

    for (;;) {
        left = time_left(deadline);
        if (left == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        rc = poll(&pfd, 1, left);
        if (rc > 0) {
            return 0;
        }
        if (rc < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline)
{
    int err = 0;
    socklen_t len = sizeof(err);
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);

    if (fd < 0) {
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        return fd;
    }
    if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0) {
        if (err == 0) {
            return fd;
        }
        errno = err;
    }
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

static int connect_target(const struct target *t, uint64_t deadline, char *msg, size_t msglen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int fd = -1, rc;

    rc = getaddrinfo(t->host, t->port, &hints, &res);
    if (rc != 0) {
        snprintf(msg, msglen, "%s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0 && time_left(deadline) > 0; ai = ai->ai_next) {
        fd = connect_one(ai, deadline);
    }
    if (fd < 0) {
        snprintf(msg, msglen, "connect to %s port %s: %s", t->host, t->port,
                 time_left(deadline) == 0 ? "timed out" : strerror(errno));
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -1;
        } else if (wait_fd(fd, POLLOUT, deadline) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Reads until the status line is whole; returns its length (without CRLF), or -1. */
static int read_status_line(int fd, char *buf, size_t buflen, uint64_t deadline)
{
    size_t have = 0;

    while (have + 1 < buflen) {
        if (wait_fd(fd, POLLIN, deadline) != 0) {
            return -1;
        }
        ssize_t n = recv(fd, buf + have, buflen - 1 - have, 0);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            return -1;
        }
        have += (size_t)n;
        buf[have] = '\0';
        char *eol = strstr(buf, "\r\n");
        if (eol != NULL) {
            *eol = '\0';
            return (int)(eol - buf);
        }
    }
    errno = EPROTO;
    return -1;
}

/* "HTTP/1.x NNN reason" → NNN, or -1. */
static int status_code(const char *line)
{
    if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) || line[8] != ' ') {
        return -1;
    }
    for (int i = 9; i < 12; i++) {
        if (!isdigit((unsigned char)line[i])) {
            return -1;
        }
    }
    if (line[12] != '\0' && line[12] != ' ') {
        return -1;
    }
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

static enum gw_health_result exchange(int fd, const struct target *t, uint64_t deadline, char *msg,
                                      size_t msglen)
{
    char req[1600], line[1024];
    bool v6 = strchr(t->host, ':') != NULL;
    int n, code;

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: coapgw-health\r\n"
                 "Connection: close\r\n\r\n",
                 t->path, v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
    if (n < 0 || (size_t)n >= sizeof(req) || send_all(fd, req, (size_t)n, deadline) != 0) {
        snprintf(msg, msglen, "send: %s", time_left(deadline) == 0 ? "timed out" : strerror(errno));
        return GW_HEALTH_UNHEALTHY;
    }
    if (read_status_line(fd, line, sizeof(line), deadline) < 0) {
        snprintf(msg, msglen, "no status line: %s", time_left(deadline) == 0 ? "timed out" : strerror(errno));
        return GW_HEALTH_UNHEALTHY;
    }
    code = status_code(line);
    if (code < 0) {
        snprintf(msg, msglen, "not an HTTP/1.x status line: %.200s", line);
        return GW_HEALTH_UNHEALTHY;
    }
    snprintf(msg, msglen, "%.200s", line);
    return code >= 200 && code <= 299 ? GW_HEALTH_OK : GW_HEALTH_UNHEALTHY;
}

enum gw_health_result gw_health_probe(const char *url, unsigned timeout_ms, char *msg, size_t msglen)
{
    struct target t;
    uint64_t deadline = cg_now_ms() + timeout_ms;
    enum gw_health_result res;
    int fd;

    if (parse_url(url, &t) != 0) {
        snprintf(msg, msglen, "%s: not an http://HOST[:PORT][/PATH] URL", url);
        return GW_HEALTH_BAD_URL;
    }
    fd = connect_target(&t, deadline, msg, msglen);
    if (fd < 0) {
        return GW_HEALTH_UNHEALTHY;
    }
    res = exchange(fd, &t, deadline, msg, msglen);
    close(fd);
    return res;
}
