/* coap/coaplog: libcoap's own messages as coapgw log lines (mod=coap), one line per line of the message, the
 * text quoted in msg="...". libcoap's level filter is set from coapgw's threshold, so what would be dropped
 * is never formatted. */
#ifndef CO_COAPLOG_H
#define CO_COAPLOG_H

#include "base/log.h"

/* coapgw's level for a libcoap message (level is a libcoap LOG_* value): EMERG..ERR error, WARNING warn,
 * NOTICE and INFO info, DEBUG and beyond debug; messages that report expected events are demoted (see
 * coaplog.c). Pure. */
enum cg_log_level co_log_map(int coap_level, const char *message);

/* The libcoap level that lets through every message co_log_map may place at or above threshold. Pure. */
int co_log_coap_level(enum cg_log_level threshold);

/* Routes libcoap's messages through coapgw's logger at threshold. Call before any thread uses libcoap. */
void co_log_install(enum cg_log_level threshold);

/* Replaces the GnuTLS audit-log function libcoap installs process-wide at coap_startup(). Call right after
 * coap_startup(), before the HTTPS front end starts (see coaplog.c for why). */
void co_log_tls_audit_install(void);

#endif
