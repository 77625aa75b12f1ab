/* form.c — request bodies and header lines a connector builds for the HTTP client (see
 * client.h): application/x-www-form-urlencoded forms and authentication headers.
 *
 * Header helpers refuse rather than clean: a value with CR or LF would end the header and let
 * the rest become a header of the remote's choosing, and a silently altered secret only fails
 * later with a misleading 401. Lines that hold secrets are wiped before they are freed. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "http/client_parts.h"

struct sd_http_form {
    struct sd_buf text;
    size_t pairs;
};

struct sd_http_form *sd_http_form_new(void)
{
    struct sd_http_form *f = sd_calloc(1, sizeof(*f));
    sd_buf_puts(&f->text, "");
    return f;
}

void sd_http_form_free(struct sd_http_form *f)
{
    if (!f) {
        return;
    }
    if (f->text.data) {
        explicit_bzero(f->text.data, f->text.cap);
    }
    sd_buf_release(&f->text);
    free(f);
}

/* The WHATWG urlencoded serializer: keep ASCII alphanumerics and * - . _, space → '+', every
 * other byte percent-encoded. */
static void encode(struct sd_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '*' || *p == '-' || *p == '.' || *p == '_') {
            sd_buf_append(b, (const char *)p, 1);
        } else if (*p == ' ') {
            sd_buf_append(b, "+", 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sd_buf_append(b, e, 3);
        }
    }
}

int sd_http_form_add(struct sd_http_form *f, const char *name, const char *value)
{
    if (!f || !name || !*name || !value) {
        return -EINVAL;
    }
    if (f->pairs++ > 0) {
        sd_buf_append(&f->text, "&", 1);
    }
    encode(&f->text, name);
    sd_buf_append(&f->text, "=", 1);
    encode(&f->text, value);
    return 0;
}

const char *sd_http_form_body(const struct sd_http_form *f, size_t *ret_len)
{
    if (ret_len) {
        *ret_len = f->text.len;
    }
    return f->text.data;
}

bool sd_http_header_value_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

/* An HTTP field name is a token (RFC 9110 §5.6.2). */
static bool name_ok(const char *n)
{
    if (!n || !*n) {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)n; *p; p++) {
        bool tchar = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-.^_`|~", *p);
        if (!tchar) {
            return false;
        }
    }
    return true;
}

int sd_http_header(const char *name, const char *value, char **ret)
{
    if (!name_ok(name) || !value || !sd_http_header_value_ok(value)) {
        return -EINVAL;
    }
    *ret = sd_asprintf("%s: %s", name, value);
    return 0;
}

int sd_http_header_basic(const char *user, const char *password, char **ret)
{
    if (!user || !password || strchr(user, ':') || !sd_http_header_value_ok(user) ||
        !sd_http_header_value_ok(password)) {
        return -EINVAL;
    }
    size_t ul = strlen(user), pl = strlen(password);
    if (ul + pl > 8192) { /* far beyond any credential; keeps the sizes below small */
        return -EINVAL;
    }
    char *plain = sd_malloc(ul + pl + 2);
    memcpy(plain, user, ul);
    plain[ul] = ':';
    memcpy(plain + ul + 1, password, pl + 1);
    size_t n = ul + pl + 1;
    char *b64 = sd_malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)plain, (int)n);
    *ret = sd_asprintf("Authorization: Basic %s", b64);
    explicit_bzero(plain, n);
    explicit_bzero(b64, strlen(b64));
    free(plain);
    free(b64);
    return 0;
}

int sd_http_header_bearer(const char *token, char **ret)
{
    if (!token || !*token || strchr(token, ' ') || !sd_http_header_value_ok(token)) {
        return -EINVAL;
    }
    *ret = sd_asprintf("Authorization: Bearer %s", token);
    return 0;
}

void sd_http_header_free(char *line)
{
    if (line) {
        explicit_bzero(line, strlen(line));
        free(line);
    }
}
