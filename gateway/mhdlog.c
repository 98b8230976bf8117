/* gateway/mhdlog: the libmicrohttpd logger. MHD (0.9.75) hands over its format string and arguments; the
 * texts matched here are MHD 0.9.75's (src/microhttpd/connection.c), matched on the format string where the
 * arguments hold the client's URL, so a request cannot choose its own level. */
#include "gateway/mhdlog.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Messages that by themselves mean the client went away. */
static const char *const gone_fmts[] = {
    /* MHD_connection_handle_read: ECONNRESET while the request was being read. */
    "Socket has been disconnected when reading request.",
    /* MHD_connection_handle_read: EOF before the request was complete. */
    "Connection was closed by remote side with incomplete request.",
    /* MHD_connection_handle_write: "100 Continue" could not be sent; a socket error is its only cause. */
    "Failed to send data in request for ",
};

/* Constant texts MHD passes as the argument of a bare "%s" (connection_close_error): matched as the whole
 * message, which no client can write because no client value ever goes through that format. */
static const char *const gone_messages[] = {
    /* try_ready_chunked_body: the content reader returned END_WITH_ERROR, which gateway/sse.c does when the
     * client closed a parked stream (deadline.c saw it), and otherwise only when out of memory. */
    "Closing connection (application error generating response).",
};

/* Messages ending in a socket error's text (str_conn_error_): the client went away when it is one of
 * gone_errors. The SSE case: a subscriber closes its stream, and the next event or keep-alive fails with
 * "Failed to send the chunked response body for the request for `...'. Error: The socket is no longer
 * available for sending". */
static const char *const error_fmts[] = {
    "Failed to send the ", /* the response headers, body, chunked body or footers */
    "Connection socket is closed when reading request due to the error: ",
};

static const char *const gone_errors[] = {
    "The connection was forcibly closed by remote peer", /* MHD_ERR_CONNRESET_ */
    "The socket is no longer available for sending",     /* MHD_ERR_PIPE_ */
    "The socket is not connected",                       /* MHD_ERR_NOTCONN_ */
    "detected connection closure",                       /* EOF while reading */
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* True when message ends in text, trailing newlines aside. */
static bool ends_with(const char *message, const char *text)
{
    size_t len = strlen(message), n = strlen(text);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == '\r')) {
        len--;
    }
    return len >= n && memcmp(message + len - n, text, n) == 0;
}

/* True when message is text, trailing newlines aside. */
static bool is_message(const char *message, const char *text)
{
    size_t n = strlen(text);
    return strncmp(message, text, n) == 0 && strspn(message + n, "\r\n") == strlen(message + n);
}

enum cg_log_level gw_mhdlog_level(const char *fmt, const char *message)
{
    if (strcmp(fmt, "%s") == 0 || strcmp(fmt, "%s\n") == 0) {
        for (size_t i = 0; i < COUNT(gone_messages); i++) {
            if (is_message(message, gone_messages[i])) {
                return CG_LOG_DEBUG;
            }
        }
    }
    for (size_t i = 0; i < COUNT(gone_fmts); i++) {
        if (starts_with(fmt, gone_fmts[i])) {
            return CG_LOG_DEBUG;
        }
    }
    for (size_t i = 0; i < COUNT(error_fmts); i++) {
        if (!starts_with(fmt, error_fmts[i])) {
            continue;
        }
        for (size_t k = 0; k < COUNT(gone_errors); k++) {
            if (ends_with(message, gone_errors[k])) {
                return CG_LOG_DEBUG;
            }
        }
    }
    return CG_LOG_WARN;
}

/* transmit_error_response_len, just before it queues its page: "... code is %u ('%s')). Closing connection."
 */
static const char refusal_fmt[] = "Error processing request (HTTP response code is %u";

static void (*refusal_hook)(unsigned status);

void gw_mhdlog_set_refusal_hook(void (*hook)(unsigned status))
{
    refusal_hook = hook;
}

void gw_mhdlog(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (refusal_hook != NULL && starts_with(fmt, refusal_fmt)) {
        va_list args;
        va_copy(args, ap);
        refusal_hook(va_arg(args, unsigned));
        va_end(args);
    }
    if (!cg_log_enabled(CG_LOG_WARN)) {
        return; /* nothing from MHD is above warn: skip the formatting */
    }
    char message[1024];
    vsnprintf(message, sizeof(message), fmt, ap);
    enum cg_log_level level = gw_mhdlog_level(fmt, message);
    if (!cg_log_enabled(level)) {
        return;
    }
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == '\r')) {
        len--; /* the newline MHD ends each message with; any other one is escaped */
    }
    char quoted[1900];
    cg_log_quote(quoted, sizeof(quoted), message, len);
    cg_log_write(level, "http", "msg=%s", quoted);
}
