/* egress.c — the egress policy (see egress.h): address classes, URL checks through libcurl's URL
 * API, and path confinement. Classification works on the binary address only (never on the
 * text of a host name: "127.attacker.example" is a name, decided when it resolves), so the
 * save-time check and the connect-time check cannot disagree about a literal. */
#include "http/egress.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "base/log.h"

#define DEFAULT_ROOTS "/srv:/home"

const char *sd_addr_class_name(enum sd_addr_class c)
{
    switch (c) {
    case SD_ADDR_PUBLIC: return "public";
    case SD_ADDR_PRIVATE: return "private";
    case SD_ADDR_LOOPBACK: return "loopback";
    case SD_ADDR_LINK_LOCAL: return "link-local";
    case SD_ADDR_METADATA: return "cloud metadata";
    case SD_ADDR_RESERVED: return "reserved";
    }
    return "reserved";
}

static bool in4(uint32_t a, uint32_t net, int bits)
{
    uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    return (a & mask) == (net & mask);
}

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

static enum sd_addr_class classify4(uint32_t a)
{
    if (a == IP4(169, 254, 169, 254) || a == IP4(100, 100, 100, 200)) {
        return SD_ADDR_METADATA;
    }
    if (in4(a, IP4(0, 0, 0, 0), 8) || in4(a, IP4(224, 0, 0, 0), 4) ||
        in4(a, IP4(240, 0, 0, 0), 4)) {
        return SD_ADDR_RESERVED;
    }
    if (in4(a, IP4(127, 0, 0, 0), 8)) {
        return SD_ADDR_LOOPBACK;
    }
    if (in4(a, IP4(169, 254, 0, 0), 16)) {
        return SD_ADDR_LINK_LOCAL;
    }
    if (in4(a, IP4(10, 0, 0, 0), 8) || in4(a, IP4(172, 16, 0, 0), 12) ||
        in4(a, IP4(192, 168, 0, 0), 16) || in4(a, IP4(100, 64, 0, 0), 10)) {
        return SD_ADDR_PRIVATE;
    }
    return SD_ADDR_PUBLIC;
}

static uint32_t tail4(const uint8_t *b)
{
    return IP4(b[12], b[13], b[14], b[15]);
}

static enum sd_addr_class classify6(const uint8_t *b)
{
    static const uint8_t zero[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const uint8_t ec2[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) {
        return classify4(tail4(b));
    }
    if (memcmp(b, zero, 12) == 0) {
        /* ::1 is loopback; ::, and the deprecated IPv4-compatible ::a.b.c.d, are not places. */
        return tail4(b) == 1 ? SD_ADDR_LOOPBACK : SD_ADDR_RESERVED;
    }
    if (memcmp(b, ec2, 16) == 0) {
        return SD_ADDR_METADATA;
    }
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) {
        return SD_ADDR_LINK_LOCAL; /* fe80::/10 */
    }
    if (b[0] == 0xff) {
        return SD_ADDR_RESERVED; /* multicast */
    }
    if ((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)) {
        return SD_ADDR_PRIVATE; /* fc00::/7 unique local, fec0::/10 old site-local */
    }
    return SD_ADDR_PUBLIC;
}

enum sd_addr_class sd_egress_classify(const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return classify4(ntohl(s4->sin_addr.s_addr));
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return classify6(s6->sin6_addr.s6_addr);
    }
    return SD_ADDR_RESERVED;
}

int sd_egress_classify_host(const char *host, enum sd_addr_class *ret)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        *ret = classify4(ntohl(a4.s_addr));
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        *ret = classify6(a6.s6_addr);
        return 0;
    }
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '.') {
        n--; /* "localhost." is localhost */
    }
    if ((n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
        (n > 10 && strncasecmp(host + n - 10, ".localhost", 10) == 0)) {
        *ret = SD_ADDR_LOOPBACK;
        return 0;
    }
    static const char *const metadata[] = {"metadata.google.internal", "metadata", "instance-data",
                                           "instance-data.ec2.internal", NULL};
    for (size_t i = 0; metadata[i]; i++) {
        if (strlen(metadata[i]) == n && strncasecmp(host, metadata[i], n) == 0) {
            *ret = SD_ADDR_METADATA;
            return 0;
        }
    }
    return -ENOENT;
}

int sd_egress_policy_parse(const char *text, struct sd_egress_policy *ret)
{
    *ret = (struct sd_egress_policy){0};
    if (!text) {
        ret->allow_private = true;
        return 0;
    }
    struct sd_egress_policy p = {0};
    const char *s = text;
    while (*s) {
        size_t n = strcspn(s, ",");
        const char *w = s;
        size_t wn = n;
        while (wn > 0 && (*w == ' ' || *w == '\t')) {
            w++, wn--;
        }
        while (wn > 0 && (w[wn - 1] == ' ' || w[wn - 1] == '\t')) {
            wn--;
        }
        if (wn == 8 && strncmp(w, "loopback", 8) == 0) {
            p.allow_loopback = true;
        } else if (wn == 7 && strncmp(w, "private", 7) == 0) {
            p.allow_private = true;
        } else if (!(wn == 4 && strncmp(w, "none", 4) == 0) && wn != 0) {
            return -EINVAL;
        }
        s += n;
        if (*s == ',') {
            s++;
        }
    }
    *ret = p;
    return 0;
}

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static struct sd_egress_policy env_policy;

static void read_env(void)
{
    const char *v = getenv("STAGEDOOR_EGRESS_ALLOW");
    if (sd_egress_policy_parse(v, &env_policy) < 0) {
        sd_log(SD_LOG_ERROR, "bad STAGEDOOR_EGRESS_ALLOW; no loopback or private address allowed",
               "value=\"%.64s\" expected=\"loopback,private|none\"", v);
    }
}

const struct sd_egress_policy *sd_egress_policy_env(void)
{
    pthread_once(&env_once, read_env);
    return &env_policy;
}

const char *sd_egress_refusal(const struct sd_egress_policy *p, enum sd_addr_class c)
{
    switch (c) {
    case SD_ADDR_PUBLIC: return NULL;
    case SD_ADDR_PRIVATE:
        return p->allow_private ? NULL
                                : "a private address, refused on this instance "
                                  "(STAGEDOOR_EGRESS_ALLOW does not include \"private\")";
    case SD_ADDR_LOOPBACK:
        return p->allow_loopback ? NULL
                                 : "a loopback address, refused on this instance "
                                   "(STAGEDOOR_EGRESS_ALLOW does not include \"loopback\")";
    case SD_ADDR_LINK_LOCAL: return "a link-local address, always refused";
    case SD_ADDR_METADATA: return "a cloud metadata address, always refused";
    case SD_ADDR_RESERVED: return "not a destination address (unspecified, multicast or reserved)";
    }
    return "refused";
}

static bool has_ctl_or_space(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            return true;
        }
    }
    return false;
}

/* Parse url into u (libcurl), or NULL with why. */
static CURLU *parse(const char *url, char *why, size_t n)
{
    if (has_ctl_or_space(url) || strpbrk(url, "\"<>\\^`{|}")) {
        snprintf(why, n,
                 "contains characters a URL cannot have (spaces, quotes, control "
                 "characters)");
        return NULL;
    }
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, n, "cannot be parsed (out of memory)");
        return NULL;
    }
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        snprintf(why, n, "is not a valid URL (%s)", curl_url_strerror(rc));
        curl_url_cleanup(u);
        return NULL;
    }
    return u;
}

static int fill(CURLU *u, struct sd_url *out, char *why, size_t n)
{
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL;
    int r = -EINVAL;
    *out = (struct sd_url){0};
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
    if (user || pass) {
        snprintf(why, n,
                 "must not carry user:password@ (credentials have their own secret "
                 "settings, which are never shown)");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || !scheme ||
        strlen(scheme) >= sizeof(out->scheme)) {
        snprintf(why, n, "has no scheme");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        snprintf(why, n, "has no host");
        goto out;
    }
    size_t hl = strlen(host);
    const char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        h = host + 1;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(out->host)) {
        snprintf(why, n, "has no usable host");
        goto out;
    }
    for (size_t i = 0; scheme[i]; i++) {
        out->scheme[i] = (char)(scheme[i] >= 'A' && scheme[i] <= 'Z' ? scheme[i] + 32 : scheme[i]);
    }
    for (size_t i = 0; i < hl; i++) {
        out->host[i] = (char)(h[i] >= 'A' && h[i] <= 'Z' ? h[i] + 32 : h[i]);
    }
    out->port = -1;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && port) {
        out->port = strtol(port, NULL, 10);
    }
    enum sd_addr_class c;
    out->host_loopback = sd_egress_classify_host(out->host, &c) == 0 && c == SD_ADDR_LOOPBACK;
    r = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(pass);
    return r;
}

int sd_egress_check_url(const char *url, const char *const *schemes,
                        const struct sd_egress_policy *pol, struct sd_url *ret, char *why,
                        size_t why_size)
{
    struct sd_url su;
    CURLU *u = parse(url, why, why_size);
    if (!u) {
        return -EINVAL;
    }
    int r = fill(u, &su, why, why_size);
    curl_url_cleanup(u);
    if (r < 0) {
        return r;
    }
    bool scheme_ok = !schemes;
    struct sd_buf list = {0};
    for (size_t i = 0; schemes && schemes[i]; i++) {
        scheme_ok = scheme_ok || strcmp(su.scheme, schemes[i]) == 0;
        sd_buf_printf(&list, "%s%s://", i ? ", " : "", schemes[i]);
    }
    if (!scheme_ok) {
        snprintf(why, why_size, "must be a URL of scheme %s", list.data ? list.data : "");
        sd_buf_release(&list);
        return -EINVAL;
    }
    sd_buf_release(&list);
    enum sd_addr_class c;
    if (pol && sd_egress_classify_host(su.host, &c) == 0) {
        const char *no = sd_egress_refusal(pol, c);
        if (no) {
            snprintf(why, why_size, "names %s: %s", su.host, no);
            return -EINVAL;
        }
    }
    if (ret) {
        *ret = su;
    }
    return 0;
}

bool sd_egress_same_origin(const char *a, const char *b)
{
    char why[200];
    struct sd_url x, y;
    if (!a || !b || sd_egress_check_url(a, NULL, NULL, &x, why, sizeof(why)) < 0 ||
        sd_egress_check_url(b, NULL, NULL, &y, why, sizeof(why)) < 0) {
        return false;
    }
    return strcmp(x.scheme, y.scheme) == 0 && strcmp(x.host, y.host) == 0 && x.port == y.port;
}

/* ---- paths ----------------------------------------------------------------------------------- */

static pthread_mutex_t data_lock = PTHREAD_MUTEX_INITIALIZER;
static char data_dir_real[PATH_MAX];

void sd_egress_set_data_dir(const char *dir)
{
    char buf[PATH_MAX];
    if (!dir || !realpath(dir, buf)) {
        return;
    }
    pthread_mutex_lock(&data_lock);
    memcpy(data_dir_real, buf, sizeof(buf));
    pthread_mutex_unlock(&data_lock);
}

/* The real path of p: realpath of its longest existing prefix, then the rest as written (it
 * has no "." or ".." components, checked before). false if too long or unresolvable. */
static bool resolve(const char *p, char out[PATH_MAX])
{
    char head[PATH_MAX];
    size_t n = strlen(p);
    if (n >= PATH_MAX) {
        return false;
    }
    memcpy(head, p, n + 1);
    for (;;) {
        if (realpath(head, out)) {
            const char *rest = p + strlen(head);
            size_t ol = strlen(out);
            if (*rest == '/' && ol > 0 && out[ol - 1] == '/') {
                rest++;
            }
            if (ol + strlen(rest) >= PATH_MAX) {
                return false;
            }
            memcpy(out + ol, rest, strlen(rest) + 1);
            return true;
        }
        char *slash = strrchr(head, '/');
        if (!slash) {
            return false;
        }
        if (slash == head) {
            head[1] = '\0';
        } else {
            *slash = '\0';
        }
    }
}

/* p (a real path) is dir or inside it. */
static bool under(const char *p, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    if (n == 1 && dir[0] == '/') {
        return true;
    }
    return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int sd_egress_check_path(const char *path, const char *roots, const char *data_dir, char *why,
                         size_t why_size)
{
    if (path[0] != '/') {
        snprintf(why, why_size, "must be an absolute path");
        return -EINVAL;
    }
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if (*c < 0x20 || *c == 0x7f) {
            snprintf(why, why_size, "must not contain control characters");
            return -EINVAL;
        }
    }
    for (const char *s = path; *s;) {
        while (*s == '/') {
            s++;
        }
        size_t n = strcspn(s, "/");
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
            snprintf(why, why_size, "must not contain \".\" or \"..\" components");
            return -EINVAL;
        }
        s += n;
    }
    char real[PATH_MAX];
    if (!resolve(path, real)) {
        snprintf(why, why_size, "cannot be resolved (too long)");
        return -EINVAL;
    }
    static const char *const never[] = {"/etc", "/proc", "/sys", "/dev", NULL};
    for (size_t i = 0; never[i]; i++) {
        if (under(real, never[i])) {
            snprintf(why, why_size, "is inside %s, which settings may never name", never[i]);
            return -EINVAL;
        }
    }
    char dd[PATH_MAX] = "";
    if (data_dir) {
        if (!resolve(data_dir, dd)) {
            dd[0] = '\0';
        }
    } else {
        pthread_mutex_lock(&data_lock);
        memcpy(dd, data_dir_real, sizeof(dd));
        pthread_mutex_unlock(&data_lock);
    }
    if (dd[0] && (under(real, dd) || under(dd, real))) {
        snprintf(why, why_size, "is the hub's data directory, inside it or above it");
        return -EINVAL;
    }
    if (!roots) {
        roots = getenv("STAGEDOOR_FILE_ROOTS");
    }
    if (!roots) {
        roots = DEFAULT_ROOTS;
    }
    for (const char *s = roots; *s;) {
        size_t n = strcspn(s, ":");
        if (n > 0 && n < PATH_MAX && s[0] == '/') {
            char root[PATH_MAX], rroot[PATH_MAX];
            memcpy(root, s, n);
            root[n] = '\0';
            if (resolve(root, rroot) && under(real, rroot)) {
                return 0;
            }
        }
        s += n;
        if (*s == ':') {
            s++;
        }
    }
    snprintf(why, why_size,
             "is outside the file roots of this instance (STAGEDOOR_FILE_ROOTS: "
             "%.200s)",
             roots);
    return -EINVAL;
}
