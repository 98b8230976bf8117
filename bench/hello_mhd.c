/* bench/hello_mhd: the baseline for ratios — a bare libmicrohttpd server with the gateway's daemon flags
 * (internal epoll thread pool, one thread per core) answering "hello" to every request, on 127.0.0.1.
 *
 * Usage: hello_mhd [PORT] [--suspend]
 *   --suspend  the baseline for bench/reqmem.sh: every request is suspended and never answered (a request
 *              parked on a slow device, with nothing but MHD's own state), except GET /count, which answers
 *              the number of connections suspended so far. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool suspend_mode;
static atomic_ulong suspended;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    static const char body[] = "hello\n";
    (void)cls;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        *req_cls = conn;
        return MHD_YES;
    }
    *upload_data_size = 0;
    if (suspend_mode) {
        if (strcmp(url, "/count") != 0) {
            MHD_suspend_connection(conn);
            atomic_fetch_add(&suspended, 1);
            return MHD_YES;
        }
        char text[32];
        int n = snprintf(text, sizeof(text), "%lu\n", (unsigned long)atomic_load(&suspended));
        struct MHD_Response *cr = MHD_create_response_from_buffer((size_t)n, text, MHD_RESPMEM_MUST_COPY);
        enum MHD_Result cret = MHD_queue_response(conn, MHD_HTTP_OK, cr);
        MHD_destroy_response(cr);
        return cret;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

int main(int argc, char **argv)
{
    unsigned port = 18090;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--suspend") == 0) {
            suspend_mode = true;
        } else {
            port = (unsigned)atoi(argv[i]);
        }
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* The gateway's connection limit default (limits.max_connections), so 1000 parked requests fit. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port, NULL, NULL,
        on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cpus > 0 ? cpus : 1),
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin, MHD_OPTION_CONNECTION_LIMIT, 10000u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "hello_mhd: cannot listen on port %u\n", port);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    if (suspend_mode) {
        return 0; /* connections stay suspended: MHD must not be stopped with them, the exit closes them */
    }
    MHD_stop_daemon(d);
    return 0;
}
