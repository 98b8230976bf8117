/* fuzz/fuzz_wire: libFuzzer harness for proxy/client's inbound filter, coapgw's own parser of the datagrams
 * devices send (wire_parse, judge, check_block2), checked against libcoap's parser of the same bytes: what
 * the filter reads must be what libcoap reads, and a datagram the filter passes on as fine must be one
 * libcoap accepts (else the exchange would wait for its deadline, which the filter exists to prevent).
 * Must never crash, hang or read out of bounds. */
#include "proxy/client.c" /* the filter is static */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The options and payload libcoap read must equal the filter's. */
static void same_reading(const struct wire_msg *m, coap_pdu_t *pdu)
{
    coap_opt_iterator_t oi;
    coap_opt_t *opt;
    unsigned i = 0;
    size_t len = 0;
    const uint8_t *payload = NULL;

    if (coap_pdu_get_code(pdu) != m->code || coap_pdu_get_mid(pdu) != m->mid ||
        (uint8_t)coap_pdu_get_type(pdu) != m->type) {
        abort();
    }
    coap_bin_const_t token = coap_pdu_get_token(pdu);
    if (token.length != m->tkl || memcmp(token.s, m->token, m->tkl) != 0) {
        abort();
    }
    coap_option_iterator_init(pdu, &oi, COAP_OPT_ALL);
    while ((opt = coap_option_next(&oi)) != NULL) {
        if (i == m->count || oi.number != m->opt[i].number || coap_opt_length(opt) != m->opt[i].len ||
            memcmp(coap_opt_value(opt), m->opt[i].value, m->opt[i].len) != 0) {
            abort();
        }
        i++;
    }
    if (i != m->count) {
        abort();
    }
    if (!coap_get_data(pdu, &len, &payload)) {
        len = 0;
    }
    if (len != m->payload_len || (len > 0 && memcmp(payload, m->payload, len) != 0)) {
        abort();
    }
}

static void one(struct holder *h, const uint8_t *d, size_t n)
{
    static struct wire_msg m;
    coap_pdu_t *pdu = coap_pdu_init(0, 0, 0, RX_LIMIT - 4);
    if (pdu == NULL) {
        abort();
    }
    bool lib = n >= 4 && coap_pdu_parse(COAP_PROTO_UDP, d, n, pdu);
    bool ours = wire_parse(d, n, &m);

    if (n > RX_LIMIT) {
        coap_delete_pdu(pdu);
        return; /* the filter drops it before parsing (drop_oversize) */
    }
    if (ours) {
        enum verdict v = judge(&m);
        if (v == PASS && !lib && m.code >> 5 >= 2 && m.code >> 5 <= 5 && m.type != COAP_MESSAGE_RST) {
            abort(); /* passed on as fine, and libcoap discards it */
        }
    }
    if (ours && lib) {
        same_reading(&m, pdu);
    }
    if (ours && m.code >> 5 >= 2 && m.code >> 5 <= 5) {
        (void)check_block2(h, &m); /* one transfer on one holder, block after block */
        if (h->b2_etag_len > 8) {
            abort();
        }
    }
    coap_delete_pdu(pdu);
}

/* Input: datagrams, each after its length (2 bytes, big endian; a length past the end takes the rest). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool started;
    struct holder h;
    size_t p = 0;

    if (!started) {
        coap_startup();
        coap_set_log_level(LOG_EMERG);
        started = true;
    }
    memset(&h, 0, sizeof(h));
    h.kind = HOLD_SLOT;
    h.fd = -1;
    for (unsigned k = 0; k < 16 && p + 2 <= size; k++) {
        size_t len = (size_t)(data[p] << 8 | data[p + 1]);
        p += 2;
        if (len > size - p) {
            len = size - p;
        }
        /* An allocation of exactly the datagram, so a read past its end is caught. */
        uint8_t *d = malloc(len > 0 ? len : 1);
        memcpy(d, data + p, len);
        one(&h, d, len);
        free(d);
        p += len;
    }
    return 0;
}
