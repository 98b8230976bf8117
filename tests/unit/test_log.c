/* Unit tests for logging: base/log's quoting, coap/coaplog's level mapping of libcoap messages and
 * gateway/mhdlog's of libmicrohttpd messages. */
#include <check.h>
#include <coap3/coap.h>
#include <stdlib.h>
#include <string.h>

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
    /* The URL is the client's: naming a peer-gone error in it does not demote the message. */
    ck_assert_int_eq(gw_mhdlog_level(SEND_CHUNKED, "Failed to send the chunked response body for the request "
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
