/* gateway/deadline: a deadline for a connection's whole header section and for its whole body.
 * libmicrohttpd 0.9.75 has only an idle timeout, which every byte resets, so a client sending one byte a
 * second holds a connection for ever (slowloris). Every connection is tracked from MHD's "started" to its
 * "closed" notification with its phase and deadline; a watchdog thread ends the ones past their deadline. */
#ifndef GW_DEADLINE_H
#define GW_DEADLINE_H

#include <stdbool.h>

struct gw_dl;
struct gw_dl_conn;

enum gw_dl_phase {
    GW_DL_HEADER, /* reading a header section: limits.header_timeout_s */
    GW_DL_BODY,   /* reading a body: limits.body_timeout_s */
    GW_DL_NONE,   /* the request is complete (waiting for the device, answering, streaming): no deadline */
};

/* How the watchdog suspends and resumes a connection (MHD_suspend_connection, MHD_resume_connection): given,
 * so that this file needs no MHD. */
struct gw_dl_ops {
    void (*suspend)(void *conn);
    void (*resume)(void *conn);
};

/* Starts the watchdog. tls: the connections speak TLS (a 408 cannot be written under MHD's feet, so an
 * expired connection is only closed). max_connections: connections admitted at once; the ones opened
 * beyond are marked refused (gw_dl_refused) and get 1 s for their header section. NULL when out of memory
 * or threads. Thread: main. */
struct gw_dl *gw_dl_start(unsigned header_s, unsigned body_s, bool tls, unsigned max_connections,
                          struct gw_dl_ops ops);
/* Stops the watchdog and frees every connection still tracked. gw_dl_stop(NULL) does nothing. Thread: main,
 * after the daemon is stopped. */
void gw_dl_stop(struct gw_dl *dl);

/* MHD's connection notifications: a new connection (fd) in its header phase, and its end. open returns
 * NULL when out of memory (the connection is then not tracked); every function below accepts NULL. */
struct gw_dl_conn *gw_dl_open(struct gw_dl *dl, int fd, void *conn);
void gw_dl_close(struct gw_dl *dl, struct gw_dl_conn *c);

/* The connection was opened while max_connections others were admitted: its request is to be refused
 * (503, Connection: close). It is not counted among the admitted ones. */
bool gw_dl_refused(struct gw_dl *dl, const struct gw_dl_conn *c);

/* The request line was read: an expiry now answers 408, since the client is inside a request. */
void gw_dl_request_line(struct gw_dl *dl, struct gw_dl_conn *c);
/* Enters a phase, its deadline counted from now. False when the watchdog already ended the connection
 * (the caller returns MHD_NO). */
bool gw_dl_enter(struct gw_dl *dl, struct gw_dl_conn *c, enum gw_dl_phase phase);
/* Ends the connection now if its deadline has passed (a body chunk arrived late). False when it is ended. */
bool gw_dl_check(struct gw_dl *dl, struct gw_dl_conn *c);
/* 408 when the connection was ended with a 408 written, else 0: the status for the access log. */
int gw_dl_status(struct gw_dl *dl, const struct gw_dl_conn *c);

/* Parked requests: the ones waiting on the observation registry (a live stream between events, a stream
 * waiting for its registration's answer, a long-poll). libmicrohttpd 0.9.75 takes a suspended connection out
 * of its poll set, so a client that closes a parked request is not seen until the next write (for a
 * long-poll: its answer); the watchdog peeks at the socket of every parked connection instead and, when the
 * client is gone, marks it and resumes it (the stream's reader, or the handler of a request still waiting,
 * then ends it and cancels it in the pipeline).
 * park: suspends the connection (ops.suspend) and marks it parked, as one step for the watchdog. Thread: the
 * connection's own. With c NULL only suspends. */
void gw_dl_park(struct gw_dl *dl, struct gw_dl_conn *c, void *conn);
/* Resumes a connection (ops.resume) suspended by gw_dl_park or not; nothing when the watchdog resumed it
 * already, because its client is gone. Any thread. With c NULL only resumes. */
void gw_dl_resume(struct gw_dl *dl, struct gw_dl_conn *c, void *conn);
/* The client of this connection closed it while it was parked. */
bool gw_dl_gone(struct gw_dl *dl, struct gw_dl_conn *c);

/* New header and body timeouts (a reload), for the deadlines set from now on; a deadline already running
 * keeps its end. Thread: any. */
void gw_dl_set_timeouts(struct gw_dl *dl, unsigned header_s, unsigned body_s);

#endif
