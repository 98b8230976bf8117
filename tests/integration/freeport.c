/* freeport: prints a port number that is free on 127.0.0.1 for both TCP and UDP, so a test can give it to
 * a gateway's HTTP listener and to a CoAP server. Ports are drawn below Linux's default ephemeral range
 * (32768+) so that client sockets of concurrent tests do not take them between this check and the bind. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PORT_LOW 26384 /* 20000-26383 is coap_testsrv's own range */
#define PORT_HIGH 32767

static int can_bind(int type, unsigned port)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    int ok;

    if (fd < 0) {
        return 0;
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    /* No SO_REUSEADDR: a port held in TIME_WAIT is skipped too. */
    ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    close(fd);
    return ok;
}

int main(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    srandom((unsigned)(ts.tv_nsec ^ ((unsigned)getpid() << 16)));
    for (int tries = 0; tries < 1000; tries++) {
        unsigned port = PORT_LOW + (unsigned)random() % (PORT_HIGH - PORT_LOW);
        if (can_bind(SOCK_STREAM, port) && can_bind(SOCK_DGRAM, port)) {
            printf("%u\n", port);
            return 0;
        }
    }
    fprintf(stderr, "freeport: no port free for both TCP and UDP\n");
    return 1;
}
