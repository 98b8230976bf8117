/* rawhttp: sends exact bytes to 127.0.0.1:PORT and prints every byte the peer sends back, so a test sees
 * what a non-normalising client would (curl rewrites requests and hides framing errors).
 *
 *   rawhttp [-t TIMEOUT_MS] PORT REQUEST
 *
 * REQUEST is written after unescaping \r \n \t \\ \0 and \xHH (so a NUL or any control byte can be sent).
 * rawhttp never half-closes: it reads until the peer closes the connection or TIMEOUT_MS (default 3000)
 * passes without the peer closing, counted from the write. Exit status: 0 the peer closed, 2 the connection
 * was still open at the timeout (a hung request, or a keep-alive answer), 1 a local error. */
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

#define OUT_MAX (1024 * 1024)

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Unescapes in into out (at most as long as in); returns the length, or -1 on a bad escape. */
static long unescape(const char *in, char *out)
{
    size_t n = 0;

    for (const char *p = in; *p != '\0'; p++) {
        if (*p != '\\') {
            out[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'r':
            out[n++] = '\r';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case '0':
            out[n++] = '\0';
            break;
        case '\\':
            out[n++] = '\\';
            break;
        case 'x':
            if (hexval(p[1]) < 0 || hexval(p[2]) < 0) {
                return -1;
            }
            out[n++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
            break;
        default:
            return -1;
        }
    }
    return (long)n;
}

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
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        perror("rawhttp: connect");
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            perror("rawhttp: send");
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copies what the peer sends to stdout until it closes (0), resets (0: closed too) or the deadline (2). */
static int read_until_close(int fd, long long deadline)
{
    static char buf[OUT_MAX];
    size_t len = 0;
    int rc = 2;

    for (long long left = deadline - now_ms(); left > 0; left = deadline - now_ms()) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int p = poll(&pfd, 1, (int)left);
        if (p < 0 && errno == EINTR) {
            continue;
        }
        if (p <= 0) {
            break;
        }
        ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || len + (size_t)n == sizeof(buf)) {
            rc = 0;
            len += n > 0 ? (size_t)n : 0;
            break;
        }
        len += (size_t)n;
    }
    fwrite(buf, 1, len, stdout);
    return rc;
}

int main(int argc, char **argv)
{
    long timeout_ms = 3000;
    int argi = 1;

    if (argc == 5 && strcmp(argv[1], "-t") == 0) {
        timeout_ms = strtol(argv[2], NULL, 10);
        argi = 3;
    }
    if (argc - argi != 2 || timeout_ms <= 0) {
        fprintf(stderr, "usage: rawhttp [-t TIMEOUT_MS] PORT REQUEST\n");
        return 1;
    }
    unsigned port = (unsigned)strtoul(argv[argi], NULL, 10);
    char *req = malloc(strlen(argv[argi + 1]) + 1);
    long req_len = req != NULL ? unescape(argv[argi + 1], req) : -1;
    if (req_len < 0) {
        fprintf(stderr, "rawhttp: bad escape in the request\n");
        free(req);
        return 1;
    }
    int fd = connect_local(port);
    if (fd < 0 || write_all(fd, req, (size_t)req_len) != 0) {
        free(req);
        return 1;
    }
    free(req);
    int rc = read_until_close(fd, now_ms() + timeout_ms);
    close(fd);
    return rc;
}
