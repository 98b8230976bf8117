/* proxy/exchange: one CoAP request/response as the pipeline hands it to whatever carries it (the pooled CoAP
 * client, or a test double), and the interface of that carrier. No code, only the contract. */
#ifndef PX_EXCHANGE_H
#define PX_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "coap/optset.h"
#include "proxy/translate.h"

struct px_exchange;

typedef void (*px_done_fn)(struct px_exchange *x, void *arg);

/* One CoAP request/response. Owned by the submitter; it must stay alive (and the request fields unchanged)
 * until done() has been called. */
struct px_exchange {
    /* Request, filled by the submitter. */
    size_t upstream;             /* index into cfg->upstreams */
    uint8_t code;                /* CoAP method */
    const struct co_optset *req; /* options in any order (sent sorted by number, stable); borrowed */
    const uint8_t *payload;      /* borrowed; copied by the worker before sending */
    size_t payload_len;
    /* Forward proxying: when set, the exchange goes to this address (an allowed target) instead of
     * cfg->upstreams[upstream], which is then ignored. Borrowed like req. */
    const struct sockaddr_storage *target;
    socklen_t target_len;
    px_done_fn done;   /* called once, on a worker thread; may free the exchange */
    px_done_fn notify; /* observations only: each notification (resp_* valid during the call) */
    void *arg;

    /* Result, valid inside and after done(). */
    enum px_status status; /* PX_OK (a CoAP response arrived), PX_ERR_TIMEOUT, PX_ERR_BAD_GATEWAY,
                              PX_ERR_UNAVAILABLE (queue full, shutting down), PX_ERR_INTERNAL */
    const char *detail;    /* static text saying why, for errors */
    uint8_t resp_code;
    struct co_optset resp; /* all response options except Block1/Block2; the submitter initialises it
                              (co_optset_init) before the first submission and finis it when done */
    uint8_t *resp_payload; /* malloc'd, owned by the exchange: free() it; NULL when empty */
    size_t resp_len;

    /* Private to the client. */
    struct {
        struct px_exchange *next;
        uint64_t deadline_ms;
        uint8_t token[8];
        size_t token_len;
        uint64_t obs_id;
        uint8_t block1_szx;                /* 0, or SZX + 1 after a 4.13 asked for smaller blocks */
        int32_t mid;                       /* message id of the (last) request sent, -1 before */
        int32_t block1;                    /* last Block1 number answered, -1 when none (for the debug log) */
        int32_t block2_first, block2_last; /* Block2 numbers received, -1 when none */
        void *owner;                       /* an observation's own record while it waits in a queue */
        bool heard;                        /* the device sent something for the request sent (ACK, RST,
                                              response): a timeout then is not "no answer at all" */
        uint64_t sent_ms;                  /* when the (last) CON was first sent, for retransmissions */
        unsigned retransmits;              /* CON retransmissions certainly sent for this exchange */
    } priv;
};

/* What carries exchanges to devices. The pooled CoAP client is one (px_client_transport); the pipeline's unit
 * tests use a fake. Every function may be called from any thread and never blocks on the network.
 * - submit: send x; x->done() is called exactly once, later, on the carrier's thread.
 * - observe: start an RFC 7641 observation of x's resource: x->notify() for each notification, x->done()
 *   once at its end. Returns an id for unobserve, 0 when nothing was started (stopping).
 * - unobserve: deregister observation id; its x->done() follows (nothing when it has ended already). */
struct px_transport {
    void *impl;
    void (*submit)(void *impl, struct px_exchange *x);
    uint64_t (*observe)(void *impl, struct px_exchange *x);
    void (*unobserve)(void *impl, size_t upstream, uint64_t id);
};

#endif
