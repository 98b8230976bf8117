/* bench/coap_hello: the CoAP side of the benchmarks — a minimal single-threaded libcoap server answering
 * every GET, whatever the path, with 2.05 "Hello, CoAP!" (text/plain, Max-Age 60). It must stay as bare as
 * bench/hello_mhd: no state, no logging, no per-request work beyond libcoap's own.
 * Usage: coap_hello [PORT]   (default 5683, bound to 127.0.0.1; SIGINT/SIGTERM stop it) */
#include <coap3/coap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELLO_TEXT "Hello, CoAP!"

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void on_get(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                   const coap_string_t *query, coap_pdu_t *resp)
{
    (void)res;
    (void)session;
    (void)req;
    (void)query;
    uint8_t buf[4];
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CONTENT);
    coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                    coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_TEXT_PLAIN), buf);
    coap_add_option(resp, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof(buf), 60), buf);
    coap_add_data(resp, strlen(HELLO_TEXT), (const uint8_t *)HELLO_TEXT);
}

int main(int argc, char **argv)
{
    unsigned port = argc > 1 ? (unsigned)atoi(argv[1]) : 5683;
    coap_address_t addr;

    coap_startup();
    coap_set_log_level(LOG_ERR);
    coap_address_init(&addr);
    addr.addr.sin.sin_family = AF_INET;
    addr.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.addr.sin.sin_port = htons((uint16_t)port);
    addr.size = sizeof(addr.addr.sin);

    coap_context_t *ctx = coap_new_context(NULL);
    if (ctx == NULL || coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP) == NULL) {
        fprintf(stderr, "coap_hello: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    /* The root resource answers "/" (no Uri-Path, or one empty segment); the unknown handler the rest. */
    coap_resource_t *root = coap_resource_init(NULL, 0);
    coap_register_handler(root, COAP_REQUEST_GET, on_get);
    coap_add_resource(ctx, root);
    coap_resource_t *any = coap_resource_unknown_init2(NULL, 0);
    coap_register_handler(any, COAP_REQUEST_GET, on_get);
    coap_add_resource(ctx, any);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!quit) {
        if (coap_io_process(ctx, 500) < 0) {
            break;
        }
    }
    coap_free_context(ctx);
    coap_cleanup();
    return 0;
}
