/* gateway/mhdlog: libmicrohttpd's messages as coapgw log lines (mod=http), the text quoted in msg="...".
 * Registered with MHD_OPTION_EXTERNAL_LOGGER, which must come first among the daemon's options. */
#ifndef GW_MHDLOG_H
#define GW_MHDLOG_H

#include <stdarg.h>

#include "base/log.h"

/* coapgw's level for an MHD message, from its format string and its formatted text: debug for the
 * messages MHD prints when a client went away (an SSE client leaving, a hung-up request), warn for all
 * else. Pure. */
enum cg_log_level gw_mhdlog_level(const char *fmt, const char *message);

/* The MHD_OPTION_EXTERNAL_LOGGER function (cls unused). Any MHD thread. */
void gw_mhdlog(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Called (on the connection's thread, at any log level) when MHD is about to queue an error page of its own
 * with that HTTP status. Set before the daemon starts. */
void gw_mhdlog_set_refusal_hook(void (*hook)(unsigned status));

#endif
