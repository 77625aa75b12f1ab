/* session.c — the cookie jar of one exchange (see client.h, "sessions"). The jar is a libcurl
 * share object holding only cookie data: every request of the session runs on its own easy
 * handle (as every request does, client.c) attached to the share, so cookies set by any answer
 * go to the jar and the engine sends the ones that match on every later request. There is no
 * lock callback: a session is used by one thread at a time, which the header demands.
 *
 * The caps are checked after each transfer, on the jar as libcurl keeps it (CURLINFO_COOKIELIST,
 * one Netscape-format line per cookie): counting lines and bytes there is exact whatever the
 * server sent, including cookies that replaced earlier ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "http/client_parts.h"

struct sd_http_session {
    CURLSH *share;
};

struct sd_http_session *sd_http_session_new(void)
{
    sd_http_global_init();
    struct sd_http_session *s = sd_calloc(1, sizeof(*s));
    s->share = curl_share_init();
    if (!s->share ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE) != CURLSHE_OK) {
        abort(); /* allocation failure */
    }
    return s;
}

void sd_http_session_free(struct sd_http_session *s)
{
    if (!s) {
        return;
    }
    curl_share_cleanup(s->share);
    free(s);
}

void sd_http_session_attach(struct sd_http_session *s, CURL *h)
{
    curl_easy_setopt(h, CURLOPT_SHARE, s->share);
    curl_easy_setopt(h, CURLOPT_COOKIEFILE, ""); /* the engine on, no file read */
}

/* Count the jar as seen through h; false if libcurl cannot list it. */
static bool jar_size(CURL *h, size_t *ret_n, size_t *ret_bytes)
{
    struct curl_slist *list = NULL;
    if (curl_easy_getinfo(h, CURLINFO_COOKIELIST, &list) != CURLE_OK) {
        return false;
    }
    size_t n = 0, bytes = 0;
    for (const struct curl_slist *l = list; l; l = l->next) {
        n++;
        bytes += strlen(l->data);
    }
    curl_slist_free_all(list);
    *ret_n = n;
    *ret_bytes = bytes;
    return true;
}

int sd_http_session_check(struct sd_http_session *s, CURL *h, char *error, size_t error_size)
{
    (void)s;
    size_t n = 0, bytes = 0;
    if (!jar_size(h, &n, &bytes)) {
        return 0;
    }
    if (n <= SD_HTTP_SESSION_MAX_COOKIES && bytes <= SD_HTTP_SESSION_MAX_COOKIE_BYTES) {
        return 0;
    }
    curl_easy_setopt(h, CURLOPT_COOKIELIST, "ALL");
    snprintf(error, error_size,
             "the server set more cookies than a session keeps (%zu cookies, %zu bytes; at most "
             "%d and %d): the session's cookies were dropped",
             n, bytes, SD_HTTP_SESSION_MAX_COOKIES, SD_HTTP_SESSION_MAX_COOKIE_BYTES);
    return -EFBIG;
}

size_t sd_http_session_cookies(struct sd_http_session *s)
{
    CURL *h = curl_easy_init();
    if (!h) {
        abort(); /* allocation failure */
    }
    sd_http_session_attach(s, h);
    size_t n = 0, bytes = 0;
    if (!jar_size(h, &n, &bytes)) {
        n = 0;
    }
    curl_easy_cleanup(h);
    return n;
}

char *sd_http_session_export(struct sd_http_session *s)
{
    CURL *h = curl_easy_init();
    if (!h) {
        abort(); /* allocation failure */
    }
    sd_http_session_attach(s, h);
    struct curl_slist *list = NULL;
    struct sd_buf out;
    sd_buf_init(&out);
    if (curl_easy_getinfo(h, CURLINFO_COOKIELIST, &list) == CURLE_OK) {
        for (const struct curl_slist *l = list; l; l = l->next) {
            sd_buf_puts(&out, l->data);
            sd_buf_puts(&out, "\n");
        }
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(h);
    return sd_buf_steal(&out);
}

/* A Netscape cookie line: 7 TAB-separated fields, no other control character. */
static bool cookie_line_ok(const char *l, size_t n)
{
    size_t tabs = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)l[i];
        if (ch == '\t') {
            tabs++;
        } else if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return tabs == 6;
}

int sd_http_session_import(struct sd_http_session *s, const char *text)
{
    if (!s || !text) {
        return -EINVAL;
    }
    size_t n = 0, bytes = 0;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0) {
            if (!cookie_line_ok(p, len)) {
                return -EINVAL;
            }
            n++;
            bytes += len;
        }
        p += len + (e ? 1 : 0);
    }
    if (n > SD_HTTP_SESSION_MAX_COOKIES || bytes > SD_HTTP_SESSION_MAX_COOKIE_BYTES) {
        return -EINVAL;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        abort(); /* allocation failure */
    }
    sd_http_session_attach(s, h);
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0) {
            char *line = sd_strndup(p, len);
            curl_easy_setopt(h, CURLOPT_COOKIELIST, line);
            free(line);
        }
        p += len + (e ? 1 : 0);
    }
    curl_easy_cleanup(h);
    return 0;
}
