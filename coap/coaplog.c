/* coap/coaplog: the libcoap log handler. libcoap (4.3.1) formats each message into a buffer of its own
 * (COAP_DEBUG_BUF_SIZE) and hands it over with its trailing newline; PDU dumps (coap_show_pdu) may hold
 * several lines. Called on whichever thread libcoap runs in. */
#include "coap/coaplog.h"

#include <coap3/coap.h>
#include <gnutls/gnutls.h>
#include <string.h>

/* Prefixes of messages libcoap logs loudly for events coapgw expects and reports itself. */
static const struct {
    const char *text; /* matched at the start of the message, or after libcoap's "** <session>: " */
    enum cg_log_level level;
} demoted[] = {
    /* net.c, coap_handle_dispatch: every RST that is not the answer to a keepalive ping of the context's own
     * (coap_context_set_keepalive) is an ALERT. coapgw's reachability probe sends its CoAP pings itself
     * (coap_session_send_ping), so the RST that is the expected "pong" (RFC 7252 §4.3) lands here; an RST
     * to a real request is reported by proxy/client as a nack, with upstream and path. */
    {"got RST for mid=", CG_LOG_DEBUG},
    /* coap_io.c, coap_network_read: an ICMP error (port or host unreachable) on a client socket is a
     * WARNING; proxy/client reports it as a nack with upstream and path, and the probe of an upstream that
     * is down would repeat it every 30 s. */
    {"coap_network_read: ICMP: ", CG_LOG_DEBUG},
};

/* The message without libcoap's "** <session>: " prefix (coap_io.c puts it before socket errors). */
static const char *skip_session(const char *message)
{
    if (strncmp(message, "** ", 3) != 0) {
        return message;
    }
    const char *colon = strstr(message, ": ");
    return colon != NULL ? colon + 2 : message;
}

static enum cg_log_level by_level(int coap_level)
{
    if (coap_level <= LOG_ERR) {
        return CG_LOG_ERROR;
    }
    if (coap_level == LOG_WARNING) {
        return CG_LOG_WARN;
    }
    return coap_level <= LOG_INFO ? CG_LOG_INFO : CG_LOG_DEBUG;
}

enum cg_log_level co_log_map(int coap_level, const char *message)
{
    enum cg_log_level level = by_level(coap_level);
    const char *text = skip_session(message);

    for (size_t i = 0; i < sizeof(demoted) / sizeof(demoted[0]); i++) {
        size_t n = strlen(demoted[i].text);
        if (strncmp(message, demoted[i].text, n) == 0 || strncmp(text, demoted[i].text, n) == 0) {
            return demoted[i].level > level ? demoted[i].level : level;
        }
    }
    return level;
}

int co_log_coap_level(enum cg_log_level threshold)
{
    static const int coap_levels[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    return coap_levels[threshold];
}

/* One line of coapgw's format; sized so the quoted text (up to 4 bytes per byte) ends within the line
 * buffer of cg_log_write and keeps its closing quote. */
static void emit(enum cg_log_level level, const char *text, size_t len)
{
    char quoted[1900];
    cg_log_quote(quoted, sizeof(quoted), text, len);
    cg_log_write(level, "coap", "msg=%s", quoted);
}

static void on_coap_log(coap_log_t coap_level, const char *message)
{
    enum cg_log_level level = co_log_map(coap_level, message);
    if (!cg_log_enabled(level)) {
        return;
    }
    /* Each line of a multi-line message (a PDU dump) becomes a line of its own; empty ones are dropped. */
    const char *p = message;
    while (*p != '\0') {
        size_t n = strcspn(p, "\r\n");
        if (n > 0) {
            emit(level, p, n);
        }
        p += n;
        p += strspn(p, "\r\n");
    }
}

void co_log_install(enum cg_log_level threshold)
{
    coap_set_log_handler(on_coap_log);
    coap_set_show_pdu_output(0); /* PDU dumps too: by default coap_show_pdu() writes to stderr itself */
    coap_set_log_level(co_log_coap_level(threshold));
}

/* libcoap 4.3.1 (coap_gnutls.c) sets GnuTLS's process-wide audit-log function at coap_startup(), and that
 * function takes every GnuTLS session's transport pointer for a libcoap session. libmicrohttpd's HTTPS
 * sessions are GnuTLS sessions too: the first audit message on one (a client speaking plain HTTP to the
 * HTTPS port) made libcoap read an MHD connection as a coap_session_t and crash in coap_session_str. Ours
 * looks at no session. */
static void tls_audit(gnutls_session_t session, const char *message)
{
    (void)session;
    if (cg_log_enabled(CG_LOG_DEBUG)) {
        char quoted[512];
        size_t n = strlen(message);
        while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r')) {
            n--;
        }
        cg_log_quote(quoted, sizeof(quoted), message, n);
        cg_log_write(CG_LOG_DEBUG, "tls", "event=audit msg=%s", quoted);
    }
}

void co_log_tls_audit_install(void)
{
    gnutls_global_set_audit_log_function(tls_audit);
}
