/* base/addrrule: address allow-lists, as the forward proxy's configuration writes them (forward_proxy.allow):
 * rules parsed from text and one address checked against them. Pure: no I/O, no allocation, any thread. */
#ifndef CG_ADDRRULE_H
#define CG_ADDRRULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Reads 1..65535 from s[0..len) (decimal digits only). Returns 0, or -1. */
int cg_port_parse(const char *s, size_t len, uint16_t *port);

/* One rule: which target addresses and ports the forward proxy may reach. Grammar (no spaces):
 *
 *     rule    = ipv4 [ "/" len ] [ ":" port ]           "10.0.0.0/8"  "192.0.2.10:5683"  "127.0.0.2/32:*"
 *             / "[" ipv6 "]" [ "/" len ] [ ":" port ]   "[::1]:5683"  "[2001:db8::]/32:5683"
 *             / ipv6 [ "/" len ]                        "::1/128"  "2001:db8::/32" (no port: ':' is taken)
 *     port    = 1..65535 / "*"                          absent or "*": any port
 *
 * len defaults to the full length (32 or 128); the address may have no bits set beyond len (a typo such as
 * "10.0.0.1/8" is refused rather than guessed). ipv4 is four decimal octets (inet_pton), never "127.1".
 * An IPv4-mapped rule (::ffff:0:0/96 or narrower) is stored as the IPv4 rule it means, because addresses
 * are checked that way; a wider IPv6 rule (::/0) covers IPv6 addresses only. */
struct cg_addr_rule {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network address, network byte order (the first 4 bytes for AF_INET) */
    unsigned len;     /* prefix length: 0..32 or 0..128 */
    uint16_t port;    /* 0: any port */
};

/* Parses one rule (NUL-terminated). Returns 0, or -1 with *reason a static text for a configuration error
 * (`forward_proxy.targets[2]: <reason>`). Thread: any; no I/O, no allocation. */
int cg_addr_rule_parse(const char *s, struct cg_addr_rule *out, const char **reason);

/* Whether one resolved address (AF_INET or AF_INET6; its own port field is ignored) with this port is
 * allowed by at least one of rules[0..n). Refused whatever the rules say: the unspecified addresses
 * (0.0.0.0/8, ::), which Linux delivers to the local host. Refused unless a rule names them explicitly:
 *   - multicast (224.0.0.0/4, ff00::/8): only a rule inside multicast space ("224.0.1.187/32", "ff02::/16")
 *     matches a multicast address, so "0.0.0.0/0" or "::/0" never opens multicast;
 *   - broadcast: 255.255.255.255 only by the rule "255.255.255.255/32", and an address whose host bits are
 *     all 1 within a rule of length 0..30 (the subnet-directed broadcast of that rule's network) is not
 *     matched by that rule ("10.0.0.0/8" does not allow 10.255.255.255; "10.255.255.255/32" does).
 * An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is checked as its IPv4 address.
 * Thread: any (rules are read only); no I/O. */
bool cg_addr_allowed(const struct cg_addr_rule *rules, size_t n, const struct sockaddr_storage *addr,
                     uint16_t port);

/* The address to connect to: in with port, an IPv4-mapped IPv6 address written as the IPv4 it means. */
void cg_addr_normalize(const struct sockaddr_storage *in, uint16_t port, struct sockaddr_storage *out,
                       socklen_t *out_len);

#endif
