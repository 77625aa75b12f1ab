/* egress.h — where the hub may send requests and which local files settings may name: one
 * policy for every outbound request (feeds, REST pull, SFTP pull, push targets) and every path a
 * setting holds (drop folders, key files, known_hosts).
 *
 * Addresses. A destination address is classified (sd_egress_classify): link-local
 * (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254, 100.100.100.200, fd00:ec2::254)
 * and reserved ones (0.0.0.0/8, multicast, 240.0.0.0/4, ::, ::/96) are always refused; loopback
 * (127.0.0.0/8, ::1) and private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7,
 * fec0::/10) only where the instance allows them: STAGEDOOR_EGRESS_ALLOW, a comma list of
 * `loopback`, `private` (or `none`); unset means `private` (a venue's own SFTP server or
 * ticketing API usually lives on its private network; loopback reaches the hub's own host and
 * no production connector needs it). IPv4-mapped and NAT64 (64:ff9b::/96) addresses are judged
 * by the IPv4 address inside. The policy is applied twice: when a setting is saved, to address
 * literals in the URL (a clear 400), and by the HTTP client when it opens each socket, to the
 * resolved address (so a name that resolves, or re-resolves, to a refused address is refused
 * too: no DNS rebinding).
 *
 * URLs are parsed with libcurl's URL API only (sd_egress_check_url): no control characters or
 * spaces, a scheme from the caller's list, a host, and no user:password@ (credentials have their
 * own secret settings).
 *
 * Paths. A path setting must be absolute, without "." or ".." components, and, once resolved
 * with realpath (symbolic links followed, as far as the path exists), inside one of the roots in
 * STAGEDOOR_FILE_ROOTS (colon-separated; unset: /srv:/home) and never inside /etc, /proc, /sys,
 * /dev or the hub's data directory (sd_egress_set_data_dir).
 *
 * Thread rules: any thread. The environment is read once per process; sd_egress_set_data_dir is
 * called at start-up (before other threads use the policy), later calls replace it safely. */
#ifndef SD_HTTP_EGRESS_H
#define SD_HTTP_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum sd_addr_class {
    SD_ADDR_PUBLIC = 0,
    SD_ADDR_PRIVATE,
    SD_ADDR_LOOPBACK,
    SD_ADDR_LINK_LOCAL,
    SD_ADDR_METADATA,
    SD_ADDR_RESERVED,
};
/* "public", "private", "loopback", "link-local", "cloud metadata", "reserved". */
const char *sd_addr_class_name(enum sd_addr_class c);

/* The class of an AF_INET or AF_INET6 address (anything else: reserved). */
enum sd_addr_class sd_egress_classify(const struct sockaddr *sa);
/* The class of a host as written in a URL (brackets stripped): an address literal, "localhost"
 * or a name under ".localhost" (loopback), a known metadata name (metadata.google.internal,
 * metadata, instance-data). 0, or -ENOENT for other names (decided when connecting). */
int sd_egress_classify_host(const char *host, enum sd_addr_class *ret);

struct sd_egress_policy {
    bool allow_loopback;
    bool allow_private;
};
/* Parse a STAGEDOOR_EGRESS_ALLOW value ("loopback,private", "private", "none", ""). NULL means
 * unset: the default (private). 0, or -EINVAL for an unknown word (*ret then allows nothing). */
int sd_egress_policy_parse(const char *text, struct sd_egress_policy *ret);
/* The process's policy, from the environment (read once; a bad value allows nothing and is
 * logged). */
const struct sd_egress_policy *sd_egress_policy_env(void);
/* NULL if the policy allows class c, else why not (a sentence for an error message). */
const char *sd_egress_refusal(const struct sd_egress_policy *p, enum sd_addr_class c);

/* A URL as the policy sees it. */
struct sd_url {
    char scheme[16];
    char host[256];     /* lower case; IPv6 without brackets */
    long port;          /* explicit or the scheme's default */
    bool host_loopback; /* a loopback literal or a localhost name */
};
/* Check url: parsed by libcurl, scheme one of `schemes` (NULL-terminated, lower case), a host,
 * no user info, no control characters or spaces, and an address-literal host the policy allows
 * (pol NULL: any address). Returns 0 and fills *ret (may be NULL), or -EINVAL with the reason in
 * why (a sentence that quotes nothing secret). */
int sd_egress_check_url(const char *url, const char *const *schemes,
                        const struct sd_egress_policy *pol, struct sd_url *ret, char *why,
                        size_t why_size);
/* True if both URLs parse and have the same scheme, host and port: stored secrets may stay. */
bool sd_egress_same_origin(const char *a, const char *b);

/* Check a path setting against roots (colon-separated absolute paths; NULL: the environment's
 * STAGEDOOR_FILE_ROOTS or the default) and the data directory (NULL: the one registered).
 * 0, or -EINVAL with the reason in why. */
int sd_egress_check_path(const char *path, const char *roots, const char *data_dir, char *why,
                         size_t why_size);
/* Register the hub's data directory (refused in path settings). */
void sd_egress_set_data_dir(const char *dir);

#endif
