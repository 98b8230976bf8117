/* Unit tests for logging: base/log's quoting and its dropping of lines a stuck or failed sink cannot take,
 * coap/coaplog's level mapping of libcoap messages and gateway/mhdlog's of libmicrohttpd messages. */
#include <check.h>
#include <coap3/coap.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "coap/coaplog.h"
#include "gateway/mhdlog.h"

static const char *quote(const char *s, size_t cap)
{
    static char out[256];
    size_t n = cg_log_quote(out, cap, s, strlen(s));
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

START_TEST(test_quote_plain)
{
    ck_assert_str_eq(quote("/a/b", 256), "\"/a/b\"");
    ck_assert_str_eq(quote("", 256), "\"\"");
}
END_TEST

START_TEST(test_quote_escapes)
{
    ck_assert_str_eq(quote("a\"b\\c", 256), "\"a\\\"b\\\\c\"");
    ck_assert_str_eq(quote("x\ny\rz\t", 256), "\"x\\ny\\rz\\t\"");
    ck_assert_str_eq(quote("\x01\x7f\xc3\xa9", 256), "\"\\x01\\x7f\\xc3\\xa9\"");
    /* A forged field or line stays inside the value. */
    ck_assert_str_eq(quote("\" level=error\nts=1", 256), "\"\\\" level=error\\nts=1\"");
}
END_TEST

START_TEST(test_quote_truncates_whole_escapes)
{
    ck_assert_str_eq(quote("abcdef", 6), "\"abc\"");
    ck_assert_str_eq(quote("a\nb", 5), "\"a\""); /* "\n" does not fit after a: no half escape */
    ck_assert_str_eq(quote("a\nb", 6), "\"a\\n\"");
    ck_assert_str_eq(quote("abc", 3), "\"\"");
}
END_TEST

/* ---- the sink: a pipe the test controls ---- */

static int sink[2];

static void sink_open(void)
{
    ck_assert_int_eq(pipe(sink), 0);
    cg_log_set_fd(sink[1]);
}

static void sink_close(void)
{
    cg_log_set_fd(STDERR_FILENO);
    close(sink[1]);
    if (sink[0] >= 0) {
        close(sink[0]);
    }
}

/* A reader that stopped reading: the pipe is full, the write end blocking again (as stderr is). */
static void sink_fill(void)
{
    static const char page[4096];
    fcntl(sink[1], F_SETFL, O_NONBLOCK);
    while (write(sink[1], page, sizeof(page)) > 0) {
    }
    ck_assert_int_eq(errno, EAGAIN);
    fcntl(sink[1], F_SETFL, 0);
}

/* A sink that fails at once: nobody will ever read (EPIPE). */
static void sink_break(void)
{
    signal(SIGPIPE, SIG_IGN);
    close(sink[0]);
    sink[0] = -1;
}

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

START_TEST(test_drop_failed_sink)
{
    sink_open();
    sink_break();
    uint64_t before = cg_log_dropped();
    cg_log_write(CG_LOG_ERROR, "test", "event=a");
    cg_log_write(CG_LOG_INFO, "test", "event=b");
    cg_log_buffered(CG_LOG_INFO, "test", "event=c");
    ck_assert_uint_eq(cg_log_dropped() - before, 3);
    sink_close();
}
END_TEST

START_TEST(test_drop_when_buffer_full)
{
    enum { LINES = 2000, PAYLOAD = 100, HALVES = 2 * 65536 };
    sink_open();
    sink_fill();
    ck_assert_int_eq(cg_log_start_buffering(), 0);
    uint64_t before = cg_log_dropped();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < LINES; i++) {
        cg_log_buffered(CG_LOG_INFO, "test", "%0*d", PAYLOAD, i);
    }
    /* Nothing can be written: at most both halves of the buffer hold lines, the rest is dropped at once. */
    ck_assert_uint_ge(cg_log_dropped() - before, LINES - HALVES / PAYLOAD);
    ck_assert_int_lt(elapsed_ms(&t0), 500);
    sink_break(); /* the flusher's wait ends with EPIPE: stop drops the rest without waiting out its bound */
    cg_log_stop_buffering();
    /* Every line counted, none twice; stop's own lines_dropped line is one more when the flusher never got
     * to find the sink stuck. */
    uint64_t dropped = cg_log_dropped() - before;
    ck_assert(dropped == LINES || dropped == LINES + 1);
    sink_close();
}
END_TEST

START_TEST(test_buffered_lines_arrive_in_order)
{
    char got[4096];
    sink_open();
    ck_assert_int_eq(cg_log_start_buffering(), 0);
    uint64_t before = cg_log_dropped();
    cg_log_buffered(CG_LOG_INFO, "test", "event=a");
    cg_log_write(CG_LOG_ERROR, "test", "event=b");
    cg_log_buffered(CG_LOG_INFO, "test", "event=c");
    cg_log_stop_buffering();
    ssize_t n = read(sink[0], got, sizeof(got) - 1);
    ck_assert_int_gt(n, 0);
    got[n] = '\0';
    const char *a = strstr(got, " level=info mod=test event=a\n");
    const char *b = strstr(got, " level=error mod=test event=b\n");
    const char *c = strstr(got, " level=info mod=test event=c\n");
    ck_assert(a != NULL && b != NULL && c != NULL && a < b && b < c);
    ck_assert_uint_eq(cg_log_dropped(), before);
    sink_close();
}
END_TEST

/* Without the flusher, a line waits for a stuck sink once (bounded), the next ones not at all, until the
 * sink takes lines again. */
START_TEST(test_direct_line_waits_once)
{
    char page[8192];
    struct timespec t0;
    sink_open();
    sink_fill();
    uint64_t before = cg_log_dropped();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cg_log_write(CG_LOG_ERROR, "test", "event=first");
    long first = elapsed_ms(&t0);
    ck_assert(first >= 400 && first < 2000);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cg_log_write(CG_LOG_ERROR, "test", "event=second");
    ck_assert_int_lt(elapsed_ms(&t0), 100);
    ck_assert_uint_eq(cg_log_dropped() - before, 2);
    ck_assert_int_eq(read(sink[0], page, sizeof(page)), (ssize_t)sizeof(page)); /* the reader is back */
    cg_log_write(CG_LOG_ERROR, "test", "event=third");
    ck_assert_uint_eq(cg_log_dropped() - before, 2);
    sink_close();
}
END_TEST

START_TEST(test_coap_levels)
{
    ck_assert_int_eq(co_log_map(LOG_EMERG, "x\n"), CG_LOG_ERROR);
    ck_assert_int_eq(co_log_map(LOG_ALERT, "x\n"), CG_LOG_ERROR);
    ck_assert_int_eq(co_log_map(LOG_CRIT, "coap_network_send: Bad file descriptor\n"), CG_LOG_ERROR);
    ck_assert_int_eq(co_log_map(LOG_ERR, "x\n"), CG_LOG_ERROR);
    ck_assert_int_eq(co_log_map(LOG_WARNING, "discard malformed PDU\n"), CG_LOG_WARN);
    ck_assert_int_eq(co_log_map(LOG_NOTICE, "x\n"), CG_LOG_INFO);
    ck_assert_int_eq(co_log_map(LOG_INFO, "x\n"), CG_LOG_INFO);
    ck_assert_int_eq(co_log_map(LOG_DEBUG, "x\n"), CG_LOG_DEBUG);
    ck_assert_int_eq(co_log_map(COAP_LOG_CIPHERS, "x\n"), CG_LOG_DEBUG);
}
END_TEST

START_TEST(test_coap_expected_events_demoted)
{
    /* libcoap 4.3.1 net.c: the RST answering coapgw's own CoAP ping. */
    ck_assert_int_eq(co_log_map(LOG_ALERT, "got RST for mid=0xa419\n"), CG_LOG_DEBUG);
    /* libcoap 4.3.1 coap_io.c: ICMP on a client socket, reported by proxy/client as a nack. */
    ck_assert_int_eq(
        co_log_map(LOG_WARNING,
                   "** 127.0.0.1:58552 <-> 127.0.0.1:27808 UDP : coap_network_read: ICMP: Connection refused\n"),
        CG_LOG_DEBUG);
    /* Only at the start of the message: a device's text elsewhere does not demote a line. */
    ck_assert_int_eq(co_log_map(LOG_WARNING, "Proxy loop detected 'got RST for mid='\n"), CG_LOG_WARN);
    /* Demoting never raises a level. */
    ck_assert_int_eq(co_log_map(LOG_DEBUG, "got RST for mid=0x1\n"), CG_LOG_DEBUG);
}
END_TEST

START_TEST(test_coap_threshold)
{
    ck_assert_int_eq(co_log_coap_level(CG_LOG_ERROR), LOG_ERR);
    ck_assert_int_eq(co_log_coap_level(CG_LOG_WARN), LOG_WARNING);
    ck_assert_int_eq(co_log_coap_level(CG_LOG_INFO), LOG_INFO);
    ck_assert_int_eq(co_log_coap_level(CG_LOG_DEBUG), LOG_DEBUG);
}
END_TEST

#define SEND_CHUNKED "Failed to send the chunked response body for the request for `%s'. Error: %s\n"

START_TEST(test_mhd_peer_gone_is_debug)
{
    ck_assert_int_eq(gw_mhdlog_level(SEND_CHUNKED, "Failed to send the chunked response body for the request "
                                                   "for `/demo/s'. Error: The socket is no longer available "
                                                   "for sending\n"),
                     CG_LOG_DEBUG);
    ck_assert_int_eq(gw_mhdlog_level("Failed to send the response body for the request for `%s'. Error: %s\n",
                                     "Failed to send the response body for the request for `/x'. Error: The "
                                     "connection was forcibly closed by remote peer\n"),
                     CG_LOG_DEBUG);
    /* connection_close_error: the constant text through "%s\n". */
    ck_assert_int_eq(gw_mhdlog_level("%s\n", "Closing connection (application error generating response).\n"),
                     CG_LOG_DEBUG);
    ck_assert_int_eq(gw_mhdlog_level("Socket has been disconnected when reading request.\n",
                                     "Socket has been disconnected when reading request.\n"),
                     CG_LOG_DEBUG);
    ck_assert_int_eq(gw_mhdlog_level("Connection socket is closed when reading request due to the error: %s\n",
                                     "Connection socket is closed when reading request due to the error: "
                                     "detected connection closure\n"),
                     CG_LOG_DEBUG);
}
END_TEST

START_TEST(test_mhd_other_is_warn)
{
    ck_assert_int_eq(gw_mhdlog_level(SEND_CHUNKED, "Failed to send the chunked response body for the request "
                                                   "for `/x'. Error: Not enough system resources to serve "
                                                   "the request\n"),
                     CG_LOG_WARN);
    ck_assert_int_eq(gw_mhdlog_level("Server reached connection limit. Closing inbound connection.\n",
                                     "Server reached connection limit. Closing inbound connection.\n"),
                     CG_LOG_WARN);
    /* Another constant text, or the gone text with more after it, stays warn. */
    ck_assert_int_eq(gw_mhdlog_level("%s\n", "Closing connection (failed to create response header).\n"),
                     CG_LOG_WARN);
    ck_assert_int_eq(
        gw_mhdlog_level("%s\n", "Closing connection (application error generating response). x\n"),
        CG_LOG_WARN);
    /* The URL is the client's: naming a peer-gone error in it does not demote the message. */
    ck_assert_int_eq(gw_mhdlog_level(SEND_CHUNKED,
                                     "Failed to send the chunked response body for the request "
                                     "for `/The socket is not connected'. Error: Bad FD value\n"),
                     CG_LOG_WARN);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_quote_plain);
    tcase_add_test(tc, test_quote_escapes);
    tcase_add_test(tc, test_quote_truncates_whole_escapes);
    tcase_add_test(tc, test_drop_failed_sink);
    tcase_add_test(tc, test_drop_when_buffer_full);
    tcase_add_test(tc, test_buffered_lines_arrive_in_order);
    tcase_add_test(tc, test_direct_line_waits_once);
    tcase_add_test(tc, test_coap_levels);
    tcase_add_test(tc, test_coap_expected_events_demoted);
    tcase_add_test(tc, test_coap_threshold);
    tcase_add_test(tc, test_mhd_peer_gone_is_debug);
    tcase_add_test(tc, test_mhd_other_is_warn);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
