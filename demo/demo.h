/* demo/demo: the embedded demo CoAP server. It runs on its own thread with its own libcoap context and a
 * real UDP socket; nothing else touches that context. Usable by any CoAP client, not only the gateway. */
#ifndef GW_DEMO_H
#define GW_DEMO_H

#include <stddef.h>
#include <stdint.h>

struct demo_server;

/* Binds host:port (numeric IPv4/IPv6 or a name) and starts the server thread. Returns NULL and writes
 * "what: why" into err when the socket cannot be bound or the thread cannot start. Thread: main. */
struct demo_server *demo_server_start(const char *host, uint16_t port, char *err, size_t err_len);

/* Stops the thread, closes the socket, frees everything. demo_server_stop(NULL) does nothing. */
void demo_server_stop(struct demo_server *srv);

#endif
