/* inbound.c — raw-first vendor webhooks (see inbound.h): the door's checks, the split and
 * mapping of a payload, the writer job that stores it raw and applies it, replay, erasure and
 * retention, and the per-connector counters.
 *
 * Invariants not obvious from the code:
 *  - Every refusal of the door is the same -ENOENT, decided only after every check ran, so
 *    neither the answer nor (much) its timing says which check failed.
 *  - Each object becomes its own batch (upsert_sales, the connector's source), applied alone:
 *    a refused batch writes nothing (the store checks an upsert batch's references before it
 *    writes), so one bad object never undoes the others, and no nested savepoint is needed.
 *    Upserts make a re-applied object change nothing: replay never doubles a record.
 *  - The subjects of a payload (customer ids of its records, hashes of every other e-mail
 *    address found anywhere in it, mapped or not) are indexed when it is stored, so an erasure
 *    finds even a quarantined object that names the person. A customer record's own address
 *    gets no row: its customer id already finds the payload, and the rows are write volume. */
#include "core/inbound.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "base/log.h"
#include "core/ingest.h"
#include "core/profiles.h"
#include "mapping/mapping.h"
#include "store/inbound.h"

#define DAY_USEC (24LL * 3600 * 1000000)
#define MAX_REASON 480
#define MAX_SUBJECTS 4096 /* subjects indexed per payload */

/* ---- settings -------------------------------------------------------------------------------- */

static const char *sget(const json_t *settings, const char *key)
{
    const json_t *v = json_object_get(settings, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int64_t iget(const json_t *settings, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(settings, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
};

/* "a.b.c.d", "a.b.c.d/n", "v6", "v6/n" (surrounding spaces allowed). */
static int cidr_parse(const char *s, size_t len, struct cidr *ret)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    char buf[64];
    if (len == 0 || len >= sizeof(buf)) {
        return -EINVAL;
    }
    memcpy(buf, s, len);
    buf[len] = 0;
    char *slash = strchr(buf, '/');
    int64_t bits = -1;
    if (slash) {
        *slash = 0;
        if (sd_parse_int64(slash + 1, false, &bits) < 0) {
            return -EINVAL;
        }
    }
    struct cidr c = {0};
    if (inet_pton(AF_INET, buf, c.addr) == 1) {
        c.family = AF_INET;
        c.bits = bits < 0 ? 32 : (int)bits;
        if (bits > 32) {
            return -EINVAL;
        }
    } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
        c.family = AF_INET6;
        c.bits = bits < 0 ? 128 : (int)bits;
        if (bits > 128) {
            return -EINVAL;
        }
    } else {
        return -EINVAL;
    }
    *ret = c;
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/* Whether peer is inside one of the comma-separated ranges of list ("" admits everyone). An
 * IPv4-mapped IPv6 peer (::ffff:a.b.c.d) matches IPv4 ranges. */
static bool allowed(const char *list, const struct sockaddr *peer)
{
    if (!list || !*list) {
        return true;
    }
    if (!peer) {
        return false;
    }
    uint8_t a4[4], a6[16];
    bool has4 = false, has6 = false;
    if (peer->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)peer)->sin_addr, 4);
        has4 = true;
    } else if (peer->sa_family == AF_INET6) {
        memcpy(a6, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
        has6 = true;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6, mapped, 12) == 0) {
            memcpy(a4, a6 + 12, 4);
            has4 = true;
        }
    }
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        struct cidr c;
        if (cidr_parse(p, len, &c) == 0) {
            if ((c.family == AF_INET && has4 && prefix_equal(a4, c.addr, c.bits)) ||
                (c.family == AF_INET6 && has6 && prefix_equal(a6, c.addr, c.bits))) {
                return true;
            }
        }
        p += len + (end ? 1 : 0);
    }
    return false;
}

void sd_inbound_check_conf(const struct sd_inbound_conf *conf, struct sd_issues *errors)
{
    static const char *const auth_names[] = {"none", "basic", "header", "bearer"};
    int auth = conf->auth >= 0 && conf->auth < 4 ? conf->auth : 0;
    const char *secret = conf->auth_secret ? conf->auth_secret : "";
    const char *user = conf->auth_user ? conf->auth_user : "";
    if (auth != SD_INBOUND_AUTH_NONE && !*secret) {
        sd_issues_add(errors, "/settings/auth_secret", "required when auth is \"%s\"",
                      auth_names[auth]);
    }
    if (auth == SD_INBOUND_AUTH_BASIC && !*user) {
        sd_issues_add(errors, "/settings/auth_user", "required when auth is \"basic\"");
    }
    if (auth == SD_INBOUND_AUTH_BASIC && strchr(user, ':')) {
        sd_issues_add(errors, "/settings/auth_user", "must not contain ':' (HTTP Basic)");
    }
    if (auth == SD_INBOUND_AUTH_HEADER) {
        const char *h = conf->auth_header ? conf->auth_header : "";
        bool ok = *h != 0;
        for (const char *c = h; *c; c++) {
            ok = ok && (((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z') || (*c >= '0' && *c <= '9') ||
                        *c == '-' || *c == '_');
        }
        if (!ok || strcasecmp(h, "Authorization") == 0) {
            sd_issues_add(errors, "/settings/auth_header",
                          "required when auth is \"header\": a header name of letters, digits, "
                          "'-' and '_' (not Authorization: use bearer or basic)");
        }
    }
    const char *p = conf->allow_from ? conf->allow_from : "";
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        struct cidr c;
        if (cidr_parse(p, len, &c) < 0) {
            sd_issues_add(errors, "/settings/allow_from",
                          "\"%.*s\" is not an IPv4 or IPv6 address or CIDR range",
                          (int)(len > 60 ? 60 : len), p);
            break;
        }
        p += len + (end ? 1 : 0);
    }
}

/* ---- tokens and admission -------------------------------------------------------------------- */

bool sd_inbound_type_has_door(const char *type)
{
    const struct sd_connector *c = type ? sd_connector_find(type) : NULL;
    return c && (c->kind & SD_CONNECTOR_SOURCE) && c->inbound_map;
}

char *sd_inbound_path(const char *connector_id, const char *token)
{
    return sd_asprintf("/in/%s/%s", connector_id, token);
}

/* The scope segment a type's stream URLs carry (its inbound_scope_setting's value), or NULL. */
static const char *scope_of(const struct sd_connector *c, const json_t *settings)
{
    if (!c->inbound_scope_setting) {
        return NULL;
    }
    const json_t *v = json_object_get(settings, c->inbound_scope_setting);
    return json_is_string(v) ? json_string_value(v) : "";
}

json_t *sd_inbound_stream_paths(const char *type, const char *settings_json,
                                const char *connector_id, const char *token)
{
    const struct sd_connector *c = type ? sd_connector_find(type) : NULL;
    if (!c || !c->inbound_streams || !sd_inbound_type_has_door(type)) {
        return NULL;
    }
    json_t *settings = json_loads(settings_json ? settings_json : "{}", 0, NULL);
    const char *scope = scope_of(c, settings);
    json_t *o = json_object();
    for (size_t i = 0; c->inbound_streams[i]; i++) {
        char *path = sd_asprintf("/in/%s/%s%s%s/%s", connector_id, token ? token : "{token}",
                                 scope ? "/" : "", scope ? scope : "", c->inbound_streams[i]);
        json_object_set_new(o, c->inbound_streams[i], sd_json_text(path));
        free(path);
    }
    json_decref(settings);
    return o;
}

/* Whether the request's stream and scope fit the type (see sd_inbound_request). */
static bool stream_ok(const struct sd_connector *c, const json_t *settings,
                      const struct sd_inbound_request *rq)
{
    if (!c || !c->inbound_streams) {
        return rq->stream == NULL && rq->scope == NULL;
    }
    if (!rq->stream) {
        return false;
    }
    bool known = false;
    for (size_t i = 0; c->inbound_streams[i]; i++) {
        known = known || strcmp(c->inbound_streams[i], rq->stream) == 0;
    }
    const char *want = scope_of(c, settings);
    if ((want == NULL) != (rq->scope == NULL)) {
        return false;
    }
    return known && (!want || (*want && strcmp(want, rq->scope) == 0));
}

int sd_inbound_token_rotate(struct sd_store_handle *st, const char *connector_id, char **ret_token)
{
    struct sd_connector_conf c = {0};
    int r = sd_store_connector_get(st, connector_id, &c);
    if (r < 0) {
        return r;
    }
    bool door = sd_inbound_type_has_door(c.type);
    sd_connector_conf_release(&c);
    if (!door) {
        return -EINVAL;
    }
    uint8_t rnd[32];
    if (sd_random_bytes(rnd, sizeof(rnd)) < 0) {
        return -EIO;
    }
    char token[65];
    for (size_t i = 0; i < sizeof(rnd); i++) {
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
    }
    char hash[65];
    sd_sha256_hex(token, strlen(token), hash);
    r = sd_store_inbound_door_set(st, connector_id, hash);
    if (r < 0) {
        return r;
    }
    *ret_token = sd_strdup(token);
    return 0;
}

/* Constant-time comparison of two secrets of any length: their SHA-256s are compared. */
static bool secret_equal(const char *given, const char *want)
{
    char a[65], b[65];
    sd_sha256_hex(given ? given : "", given ? strlen(given) : 0, a);
    sd_sha256_hex(want, strlen(want), b);
    return sd_ct_equal(a, 64, b, 64) && given != NULL;
}

static const char *bearer(const char *authz, const char *scheme)
{
    size_t n = strlen(scheme);
    if (!authz || strncasecmp(authz, scheme, n) != 0 || authz[n] != ' ') {
        return NULL;
    }
    authz += n;
    while (*authz == ' ') {
        authz++;
    }
    return authz;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* "user:password" from a Basic credential (heap), or NULL. */
static char *basic_decode(const char *b64)
{
    size_t n = strlen(b64);
    if (n == 0 || n > 1024) {
        return NULL;
    }
    char *out = sd_malloc(n + 1);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && b64[i] != '='; i++) {
        int v = b64val((unsigned char)b64[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = 0;
    if (strlen(out) != o) {
        free(out);
        return NULL;
    }
    return out;
}

static bool credential_ok(const json_t *settings, const struct sd_inbound_request *rq)
{
    const char *auth = sget(settings, "auth");
    const char *secret = sget(settings, "auth_secret");
    if (strcmp(auth, "none") == 0) {
        return true;
    }
    const char *authz = rq->header(rq->header_arg, "Authorization");
    if (strcmp(auth, "bearer") == 0) {
        return secret_equal(bearer(authz, "Bearer"), secret);
    }
    if (strcmp(auth, "header") == 0) {
        return secret_equal(rq->header(rq->header_arg, sget(settings, "auth_header")), secret);
    }
    if (strcmp(auth, "basic") == 0) {
        const char *cred = bearer(authz, "Basic");
        char *up = cred ? basic_decode(cred) : NULL;
        char *want = sd_asprintf("%s:%s", sget(settings, "auth_user"), secret);
        bool ok = secret_equal(up, want);
        free(up);
        free(want);
        return ok;
    }
    return false;
}

int sd_inbound_admit(struct sd_store_handle *st, const struct sd_inbound_request *rq,
                     struct sd_connector_conf *ret_conf, bool *ret_known)
{
    *ret_known = false;
    struct sd_connector_conf c = {0};
    int r = sd_store_connector_get(st, rq->connector_id, &c);
    if (r < 0) {
        /* the token is hashed anyway, so an unknown id costs what a wrong token costs */
        char got[65];
        const char *token = rq->token ? rq->token : "";
        sd_sha256_hex(token, strlen(token), got);
        return r == -ENOENT && sd_ct_equal(got, 64, got, 64) ? -ENOENT : r;
    }
    char want[65] = "";
    r = sd_inbound_type_has_door(c.type) ? sd_store_inbound_door_get(st, c.id, want) : -ENOENT;
    if (r < 0 && r != -ENOENT) {
        sd_connector_conf_release(&c);
        return r;
    }
    *ret_known = r == 0;
    char got[65];
    const char *token = rq->token ? rq->token : "";
    sd_sha256_hex(token, strlen(token), got);
    bool ok = r == 0;
    ok = sd_ct_equal(got, 64, r == 0 ? want : got, 64) && ok;
    json_t *settings = json_loads(c.settings, 0, NULL);
    ok = credential_ok(settings, rq) && ok;
    ok = allowed(sget(settings, "allow_from"), rq->peer) && ok;
    ok = stream_ok(sd_connector_find(c.type), settings, rq) && ok;
    json_decref(settings);
    if (!ok) {
        sd_connector_conf_release(&c);
        return -ENOENT;
    }
    *ret_conf = c;
    return 0;
}

/* ---- preparing a payload --------------------------------------------------------------------- */

struct scan {
    char *invoice, *scan_id, *scanned_at, *gate;
};

struct item {
    int64_t idx; /* -1: the payload as a whole */
    bool ok;     /* batch holds the object's records */
    bool skip;   /* the mapping acknowledged it without records (SD_INBOUND_SKIP) */
    struct scan *scans; /* entry scans of stored sales (body["scans"]) */
    size_t n_scans;
    struct sd_batch batch;
    char *reason;  /* !ok: why it is quarantined */
    char **emails; /* hashes ("em:…") of addresses in its mapped records, for replay */
    size_t n_emails;
};

struct sd_inbound_payload {
    struct sd_connector_conf conf; /* copy of the strings we need */
    char *source;                  /* the records' source label; the batches point here */
    char *stream;                  /* the stream it came in on (raw.headers "stream"), or NULL */
    struct sd_inbound_raw raw;
    struct item *items;
    size_t n_items;
    char **subjects;
    size_t n_subjects;
    struct sd_inbound_outcome out;
    int64_t dedupe_after_usec; /* an identical payload received since is a resend */
    bool renewed;              /* an identical payload older than that was received anew */
    /* replay */
    bool replay;
    bool replay_all;
    /* the field errors that quarantined objects of a received payload (not of a replay) */
    struct sd_issues rejected;
};

const struct sd_issues *sd_inbound_payload_rejected(const struct sd_inbound_payload *p)
{
    return &p->rejected;
}

static void add_subject(struct sd_inbound_payload *p, char *s)
{
    for (size_t i = 0; i < p->n_subjects; i++) {
        if (strcmp(p->subjects[i], s) == 0) {
            free(s);
            return;
        }
    }
    if (p->n_subjects >= MAX_SUBJECTS) {
        free(s);
        return;
    }
    p->subjects = sd_realloc(p->subjects, (p->n_subjects + 1) * sizeof(char *));
    p->subjects[p->n_subjects++] = s;
}

static char *email_subject(const char *email)
{
    char *key = sd_profiles_email_key(email);
    if (!key) {
        return NULL;
    }
    char h[65];
    sd_sha256_hex(key, strlen(key), h);
    free(key);
    return sd_asprintf("em:%s", h);
}

struct strs {
    char **v;
    size_t n;
};

/* Every string in v that holds an '@' and is an e-mail address (depth-bounded by the parser),
 * as "em:" subjects into *out (at most MAX_SUBJECTS). */
static void scan_emails(const json_t *v, struct strs *out)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *sub =
            strchr(s, '@') && strlen(s) <= 320 && out->n < MAX_SUBJECTS ? email_subject(s) : NULL;
        if (sub) {
            out->v = sd_realloc(out->v, (out->n + 1) * sizeof(char *));
            out->v[out->n++] = sub;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            scan_emails(json_array_get(v, i), out);
        }
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            scan_emails(x, out);
        }
    }
}

/* A reason as stored and shown: valid UTF-8 (repaired), at most MAX_REASON bytes cut on a
 * character boundary. Heap. */
static char *reason_text(const char *s, size_t n)
{
    char *text = sd_utf8_repair(s, n);
    size_t len = strlen(text);
    if (len > MAX_REASON) {
        text[sd_utf8_prefix_len(text, len, MAX_REASON)] = 0;
    }
    return text;
}

static char *issues_text(const struct sd_issues *l)
{
    struct sd_buf b = {0};
    for (size_t i = 0; i < l->n && i < 3; i++) {
        sd_buf_printf(&b, "%s%s%s%s", i ? "; " : "", l->items[i].pointer,
                      *l->items[i].pointer ? ": " : "", l->items[i].message);
    }
    if (l->total > 3) {
        sd_buf_printf(&b, "; and %zu more", l->total - 3);
    }
    if (!b.data) {
        sd_buf_puts(&b, "the object could not be mapped");
    }
    char *text = reason_text(b.data, b.len);
    sd_buf_release(&b);
    return text;
}

/* body["scans"] (taken out of body) into it->scans; problems into issues. */
static void take_scans(json_t *body, struct item *it, struct sd_issues *issues)
{
    json_t *arr = json_incref(json_object_get(body, "scans"));
    json_object_del(body, "scans");
    if (!arr) {
        return;
    }
    if (!json_is_array(arr)) {
        sd_issues_add(issues, "/scans", "must be an array of scans");
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *x = json_array_get(arr, i);
        static const char *const keys[] = {"invoice_number", "scan_id", "scanned_at", "gate"};
        const char *v[4] = {NULL, NULL, NULL, NULL};
        bool ok = json_is_object(x);
        for (size_t k = 0; ok && k < 4; k++) {
            const json_t *f = json_object_get(x, keys[k]);
            v[k] = json_is_string(f) ? json_string_value(f) : NULL;
            if ((k < 2 && (!v[k] || !*v[k])) || (f && !v[k] && !json_is_null(f)) ||
                (v[k] && strlen(v[k]) > 200)) {
                char *ptr = sd_asprintf("/scans/%zu/%s", i, keys[k]);
                sd_issues_add(issues, ptr, "must be a string of 1-200 bytes");
                free(ptr);
                ok = false;
            }
        }
        char utc[64] = "";
        if (ok && v[2] && sd_datetime_to_utc(v[2], utc, sizeof(utc)) < 0) {
            char *ptr = sd_asprintf("/scans/%zu/scanned_at", i);
            sd_issues_add(issues, ptr, "must be an RFC 3339 date-time");
            free(ptr);
            ok = false;
        }
        if (ok) {
            it->scans = sd_realloc(it->scans, (it->n_scans + 1) * sizeof(*it->scans));
            it->scans[it->n_scans++] = (struct scan){
                .invoice = sd_strdup(v[0]),
                .scan_id = sd_strdup(v[1]),
                .scanned_at = v[2] ? sd_strdup(utc) : NULL,
                .gate = v[3] ? sd_strdup(v[3]) : NULL,
            };
        }
    }
    json_decref(arr);
}

/* Map and validate one object into it. */
static void prepare_object(struct sd_connector_ctx *ctx, const struct sd_connector *con,
                           const json_t *obj, struct sd_inbound_payload *p, struct item *it)
{
    struct sd_issues issues;
    sd_issues_init(&issues, 8);
    struct strs found = {0};
    scan_emails(obj, &found);
    json_t *body = json_object();
    int r = json_is_object(obj) ? con->inbound_map(ctx, obj, body, &issues) : -EINVAL;
    if (!json_is_object(obj)) {
        sd_issues_add(&issues, "", "not a JSON object");
    }
    int64_t version = 0;
    const json_t *jv = json_object_get(body, "remote_version");
    if (json_is_integer(jv) && json_integer_value(jv) > 0) {
        version = (int64_t)json_integer_value(jv);
    }
    json_object_del(body, "remote_version");
    take_scans(body, it, &issues);
    struct sd_issues warnings;
    sd_issues_init(&warnings, 4);
    if (r == SD_INBOUND_SKIP && issues.total == 0) {
        it->skip = true;
        r = 1;
    } else if (r == SD_INBOUND_SKIP) {
        r = -EINVAL;
    }
    if (r == 0 && issues.total == 0 && !(it->n_scans > 0 && json_object_size(body) == 0)) {
        r = sd_validate_ingest_flags(body,
                                     con->customers_email_optional ? SD_VALIDATE_EMAIL_OPTIONAL : 0,
                                     &it->batch, &issues, &warnings);
    }
    if (r == 0 && issues.total == 0) {
        for (size_t i = 0; i < it->batch.n_events; i++) {
            it->batch.events[i].remote_version = version;
        }
        for (size_t i = 0; i < it->batch.n_customers; i++) {
            it->batch.customers[i].remote_version = version;
        }
        for (size_t i = 0; i < it->batch.n_sales; i++) {
            it->batch.sales[i].remote_version = version;
        }
        it->ok = true;
        it->batch.upsert_sales = true;
        it->batch.source = ctx->source;
        it->batch.origin = ctx->id;
        for (size_t i = 0; i < it->batch.n_customers; i++) {
            const struct sd_customer_rec *c = &it->batch.customers[i];
            add_subject(p, sd_asprintf("cid:%s", c->customer_id));
        }
        for (size_t i = 0; i < it->batch.n_sales; i++) {
            const struct sd_sale_rec *s = &it->batch.sales[i];
            if (s->customer_id && strcmp(s->customer_id, SD_ANON_CUSTOMER) != 0) {
                add_subject(p, sd_asprintf("cid:%s", s->customer_id));
            }
        }
        /* Addresses of the records, for replay's erased-person check. */
        const json_t *arr = json_object_get(body, "customers");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            const json_t *e = json_object_get(json_array_get(arr, i), "email");
            char *sub = json_is_string(e) ? email_subject(json_string_value(e)) : NULL;
            if (sub) {
                it->emails = sd_realloc(it->emails, (it->n_emails + 1) * sizeof(char *));
                it->emails[it->n_emails++] = sub;
            }
        }
    } else if (!it->skip) {
        it->reason = issues_text(&issues);
        if (!p->replay) {
            /* for the data-quality view (a replay does not count an object twice) */
            for (size_t i = 0; i < issues.n; i++) {
                sd_issues_add(&p->rejected, issues.items[i].pointer, "%s",
                              issues.items[i].message);
            }
            p->rejected.total += issues.total - issues.n;
        }
    }
    /* An address that is a mapped customer record's own needs no row of its own: the record's
     * customer id finds the payload (an erasure forgets every customer id of the person). */
    for (size_t i = 0; i < found.n; i++) {
        bool own = false;
        for (size_t k = 0; !own && k < it->n_emails; k++) {
            own = strcmp(found.v[i], it->emails[k]) == 0;
        }
        if (own) {
            free(found.v[i]);
        } else {
            add_subject(p, found.v[i]);
        }
    }
    free(found.v);
    sd_issues_release(&warnings);
    sd_issues_release(&issues);
    json_decref(body);
}

static void item_release(struct item *it)
{
    sd_batch_release(&it->batch);
    for (size_t i = 0; i < it->n_scans; i++) {
        free(it->scans[i].invoice);
        free(it->scans[i].scan_id);
        free(it->scans[i].scanned_at);
        free(it->scans[i].gate);
    }
    free(it->scans);
    free(it->reason);
    for (size_t i = 0; i < it->n_emails; i++) {
        free(it->emails[i]);
    }
    free(it->emails);
}

void sd_inbound_payload_free(struct sd_inbound_payload *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n_items; i++) {
        item_release(&p->items[i]);
    }
    free(p->items);
    for (size_t i = 0; i < p->n_subjects; i++) {
        free(p->subjects[i]);
    }
    free(p->subjects);
    sd_inbound_raw_release(&p->raw);
    sd_connector_conf_release(&p->conf);
    free(p->source);
    free(p->stream);
    sd_issues_release(&p->rejected);
    free(p);
}

const struct sd_inbound_outcome *sd_inbound_payload_outcome(const struct sd_inbound_payload *p)
{
    return &p->out;
}

size_t sd_inbound_payload_count(const struct sd_inbound_payload *p)
{
    return p->n_items;
}

const char *sd_inbound_payload_reason(const struct sd_inbound_payload *p, size_t i)
{
    return i < p->n_items && !p->items[i].ok ? p->items[i].reason : NULL;
}

static void conf_copy(struct sd_connector_conf *to, const struct sd_connector_conf *from)
{
    *to = (struct sd_connector_conf){
        .id = sd_strdup(from->id),
        .tenant_id = from->tenant_id,
        .env = from->env,
        .type = sd_strdup(from->type),
        .schedule = sd_strdup(from->schedule ? from->schedule : ""),
        .settings = sd_strdup(from->settings ? from->settings : "{}"),
        .mapping = sd_strdup(from->mapping ? from->mapping : "{}"),
    };
}

/* Split body into items and map each. Any limit broken: -E2BIG with *ret_why. */
static int split_and_map(struct sd_inbound_payload *p, const char *body, size_t len,
                         const char **ret_why)
{
    const struct sd_connector *con = sd_connector_find(p->conf.type);
    json_t *settings = json_loads(p->conf.settings, 0, NULL);
    if (!con || !con->inbound_map || !settings) {
        json_decref(settings);
        return -EINVAL;
    }
    /* The connector's settings struct (ctx.conf), from the stored settings checked again so a
     * setting added since they were saved gets its default. */
    void *typed = NULL;
    struct sd_issues serr;
    sd_issues_init(&serr, 4);
    json_t *checked = sd_connector_check_settings(con, settings, &serr);
    sd_issues_release(&serr);
    if (!checked || sd_connector_settings_new(con, checked, &typed) < 0) {
        json_decref(checked);
        json_decref(settings);
        return -EINVAL;
    }
    json_decref(settings);
    settings = checked;
    if (ret_why && len > (size_t)iget(settings, "max_body_kib", 4096) * 1024) {
        *ret_why = "the payload is larger than the door's max_body_kib";
        free(typed);
        json_decref(settings);
        return -E2BIG;
    }
    json_t *mspec = json_loads(p->conf.mapping, 0, NULL);
    struct sd_mapping *mapping = NULL;
    struct sd_issues merr;
    sd_issues_init(&merr, 4);
    if (mspec && json_object_size(mspec) > 0 && sd_mapping_new(mspec, &mapping, &merr) < 0) {
        mapping = NULL; /* checked when saved; an unusable one quarantines everything below */
    }
    json_decref(mspec);
    const json_t *src = json_object_get(settings, "source");
    free(p->source);
    p->source = sd_strdup(json_is_string(src) ? json_string_value(src) : p->conf.type);
    json_t *hdrs = json_loads(p->raw.headers ? p->raw.headers : "{}", 0, NULL);
    const json_t *stream = json_object_get(hdrs, "stream");
    free(p->stream);
    p->stream = json_is_string(stream) ? sd_strdup(json_string_value(stream)) : NULL;
    json_decref(hdrs);
    struct sd_connector_ctx ctx = {
        .tenant_id = p->conf.tenant_id,
        .env = p->conf.env,
        .id = p->conf.id,
        .settings = settings,
        .conf = typed,
        .mapping = mapping,
        .source = p->source,
        .connector = con,
        .inbound_stream = p->stream,
    };
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int r = 0;
    size_t max = (size_t)iget(settings, "max_objects", 500);
    if (merr.total > 0) {
        p->items = sd_calloc(1, sizeof(struct item));
        p->n_items = 1;
        p->items[0].idx = -1;
        p->items[0].reason = issues_text(&merr);
    } else if (!root || !(json_is_object(root) || json_is_array(root))) {
        p->items = sd_calloc(1, sizeof(struct item));
        p->n_items = 1;
        p->items[0].idx = -1;
        /* jansson quotes the text near the error, possibly a cut character: repaired */
        char *why = root ? sd_strdup("the payload is neither a JSON object nor an array of objects")
                         : sd_asprintf("the payload is not JSON: %s at line %d, column %d",
                                       jerr.text, jerr.line, jerr.column);
        p->items[0].reason = reason_text(why, strlen(why));
        free(why);
    } else if (json_is_array(root) && json_array_size(root) > max && ret_why) {
        *ret_why = "the payload holds more objects than the door's max_objects";
        r = -E2BIG;
    } else {
        size_t n = json_is_array(root) ? json_array_size(root) : 1;
        p->items = sd_calloc(n ? n : 1, sizeof(struct item));
        p->n_items = n;
        for (size_t i = 0; i < n; i++) {
            p->items[i].idx = (int64_t)i;
            const json_t *obj = json_is_array(root) ? json_array_get(root, i) : root;
            prepare_object(&ctx, con, obj, p, &p->items[i]);
        }
    }
    json_decref(root);
    sd_issues_release(&merr);
    sd_mapping_free(mapping);
    free(typed);
    json_decref(settings);
    return r;
}

int sd_inbound_prepare(const struct sd_connector_conf *conf, const char *body, size_t len,
                       json_t *headers, int64_t now_usec, struct sd_inbound_payload **ret,
                       const char **ret_why)
{
    struct sd_inbound_payload *p = sd_calloc(1, sizeof(*p));
    sd_issues_init(&p->rejected, SD_MAX_ISSUES);
    conf_copy(&p->conf, conf);
    json_t *settings = json_loads(conf->settings, 0, NULL);
    int64_t days = iget(settings, "raw_retention_days", 30);
    p->dedupe_after_usec = now_usec - iget(settings, "dedupe_hours", 24) * 3600LL * 1000000;
    json_decref(settings);
    p->raw = (struct sd_inbound_raw){
        .connector_id = sd_strdup(conf->id),
        .tenant_id = conf->tenant_id,
        .env = conf->env,
        .received_usec = now_usec,
        .expires_usec = now_usec + days * DAY_USEC,
        .headers = headers ? json_dumps(headers, JSON_COMPACT | JSON_SORT_KEYS) : NULL,
        .body = sd_malloc(len + 1),
        .body_len = len,
    };
    json_decref(headers);
    if (!p->raw.headers) {
        p->raw.headers = sd_strdup("{}");
    }
    memcpy(p->raw.body, body, len);
    p->raw.body[len] = 0;
    sd_sha256_hex(body, len, p->raw.content_hash);
    int r = split_and_map(p, body, len, ret_why);
    if (r < 0) {
        sd_inbound_payload_free(p);
        return r;
    }
    *ret = p;
    return 0;
}

/* ---- the writer side ------------------------------------------------------------------------- */

static char *apply_reason(const struct sd_apply_result *res)
{
    if (res->n_duplicate_invoices > 0) {
        return sd_asprintf("invoice number '%.80s' already exists", res->duplicate_invoices[0]);
    }
    return issues_text(&res->errors);
}

/* Apply item it of p (or quarantine it); counts into p->out. */
static int apply_item(struct sd_store_handle *st, struct sd_inbound_payload *p, struct item *it)
{
    int r;
    if (it->ok && p->replay) {
        for (size_t i = 0; i < it->n_emails; i++) {
            r = sd_store_inbound_email_erased(st, p->conf.tenant_id, p->conf.env,
                                              it->emails[i] + 3);
            if (r < 0) {
                return r;
            }
            if (r == 1) {
                p->out.skipped_erased++;
                return sd_store_inbound_quarantine_delete(st, p->raw.id, it->idx);
            }
        }
    }
    if (it->skip) {
        p->out.skipped++;
        return p->replay || p->renewed ? sd_store_inbound_quarantine_delete(st, p->raw.id, it->idx)
                                       : 0;
    }
    char *reason = NULL;
    if (it->ok && sd_batch_count(&it->batch) > 0) {
        struct sd_apply_result res;
        sd_apply_result_init(&res);
        r = sd_ingest_apply(st, p->conf.tenant_id, p->conf.env, &it->batch, &res);
        if (r == 0 && res.outcome != SD_APPLY_OK) {
            reason = apply_reason(&res);
        }
        sd_apply_result_release(&res);
        if (r < 0) {
            return r;
        }
    }
    for (size_t i = 0; it->ok && !reason && i < it->n_scans; i++) {
        const struct scan *sc = &it->scans[i];
        r = sd_store_inbound_scan_put(st, p->conf.tenant_id, p->conf.env, sc->invoice, sc->scan_id,
                                      sc->scanned_at, sc->gate);
        if (r == -ENOENT) {
            reason = sd_asprintf("/scans/%zu/invoice_number: sale '%.80s' does not exist in %s", i,
                                 sc->invoice, sd_env_name(p->conf.env));
        } else if (r < 0) {
            return r;
        }
    }
    if (it->ok && !reason) {
        p->out.applied++;
        return p->replay || p->renewed ? sd_store_inbound_quarantine_delete(st, p->raw.id, it->idx)
                                       : 0;
    }
    p->out.quarantined++;
    r = sd_store_inbound_quarantine_put(st, p->raw.id, p->conf.id, p->conf.tenant_id, p->conf.env,
                                        it->idx, reason ? reason : it->reason);
    free(reason);
    return r;
}

int sd_inbound_store_run(struct sd_store_handle *st, struct sd_inbound_payload *p)
{
    int r = sd_store_inbound_raw_put(st, &p->raw, p->dedupe_after_usec, &p->raw.id, &p->renewed);
    p->out.raw_id = p->raw.id;
    if (r == -EEXIST) {
        p->out.duplicate = true;
        return 0;
    }
    if (r < 0) {
        return r;
    }
    p->out.objects = p->n_items;
    for (size_t i = 0; i < p->n_items; i++) {
        r = apply_item(st, p, &p->items[i]);
        if (r < 0) {
            return r;
        }
    }
    r = sd_store_inbound_subjects_put(st, p->conf.tenant_id, p->conf.env, p->raw.id, p->subjects,
                                      p->n_subjects);
    if (r < 0) {
        return r;
    }
    return sd_store_inbound_raw_counts(st, p->raw.id, (int64_t)p->n_items, (int64_t)p->out.applied,
                                       (int64_t)p->out.quarantined);
}

/* ---- replay ---------------------------------------------------------------------------------- */

struct replay_job {
    const struct sd_connector_conf *conf;
    int64_t raw_id;
    bool all;
    struct sd_inbound_outcome out;
};

static int replay_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct replay_job *j = wj->arg;
    struct sd_inbound_raw raw = {0};
    int r = sd_store_inbound_raw_get(st, j->raw_id, &raw);
    if (r == -ENOENT) {
        return 0; /* purged meanwhile */
    }
    if (r < 0) {
        return r;
    }
    if (raw.purged_usec != 0 || raw.tenant_id != j->conf->tenant_id ||
        strcmp(raw.connector_id, j->conf->id) != 0) {
        sd_inbound_raw_release(&raw);
        return 0;
    }
    struct sd_inbound_payload *p = sd_calloc(1, sizeof(*p));
    conf_copy(&p->conf, j->conf);
    p->raw = raw;
    p->replay = true;
    int64_t *want = NULL;
    size_t n_want = 0;
    r = split_and_map(p, (const char *)p->raw.body, p->raw.body_len, NULL);
    if (r == 0 && !j->all) {
        r = sd_store_inbound_quarantine_indexes(st, p->raw.id, &want, &n_want);
    }
    for (size_t i = 0; r == 0 && i < p->n_items; i++) {
        bool take = j->all;
        for (size_t k = 0; !take && k < n_want; k++) {
            /* a payload-level row (-1) re-runs every object the payload now splits into */
            take = want[k] == p->items[i].idx || want[k] == -1;
        }
        if (take) {
            p->out.objects++;
            r = apply_item(st, p, &p->items[i]);
        }
    }
    for (size_t k = 0; r == 0 && k < n_want; k++) {
        bool split_now = p->n_items > 0 && p->items[0].idx >= 0;
        if (want[k] == -1 && split_now) {
            r = sd_store_inbound_quarantine_delete(st, p->raw.id, -1);
        }
    }
    if (r == 0) {
        r = sd_store_inbound_subjects_put(st, p->conf.tenant_id, p->conf.env, p->raw.id,
                                          p->subjects, p->n_subjects);
    }
    free(want);
    j->out = p->out;
    sd_inbound_payload_free(p);
    return r;
}

int sd_inbound_replay(struct sd_hub *hub, const struct sd_connector_conf *conf, bool all,
                      int64_t from_usec, int64_t to_usec, struct sd_inbound_replay *ret)
{
    struct sd_inbound_replay sum = {0};
    int64_t after = 0;
    for (;;) {
        int64_t *ids = NULL;
        size_t n = 0;
        int r = sd_store_inbound_raw_list(hub->store, conf->id, !all, from_usec, to_usec, after,
                                          200, &ids, &n);
        if (r < 0) {
            return r;
        }
        for (size_t i = 0; i < n; i++) {
            struct replay_job j = {.conf = conf, .raw_id = ids[i], .all = all};
            r = sd_writer_run_sync(hub->writer, replay_run, &j);
            if (r < 0) {
                free(ids);
                return r;
            }
            sum.payloads++;
            sum.objects += j.out.objects;
            sum.applied += j.out.applied;
            sum.quarantined += j.out.quarantined;
            sum.skipped_erased += j.out.skipped_erased;
            after = ids[i];
        }
        free(ids);
        if (n < 200) {
            break;
        }
    }
    sd_log(SD_LOG_INFO, "inbound replay done",
           "connector=%s payloads=%zu applied=%zu quarantined=%zu skipped_erased=%zu", conf->id,
           sum.payloads, sum.applied, sum.quarantined, sum.skipped_erased);
    *ret = sum;
    return 0;
}

/* ---- erasure, retention, status -------------------------------------------------------------- */

int sd_inbound_forget_person(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                             const char *source, const char *customer_id)
{
    char **subjects = NULL;
    size_t n = 0;
    int r =
        sd_store_inbound_person_subjects(st, tenant_id, env, source, customer_id, &subjects, &n);
    if (r == -ENOTSUP) {
        return 0;
    }
    if (r < 0) {
        return r;
    }
    int64_t purged = 0;
    r = sd_store_inbound_forget(st, tenant_id, env, subjects, n, &purged);
    for (size_t i = 0; i < n; i++) {
        free(subjects[i]);
    }
    free(subjects);
    if (r == 0 && purged > 0) {
        sd_log(SD_LOG_INFO, "inbound payloads purged for an erasure", "payloads=%lld",
               (long long)purged);
    }
    return r;
}

int sd_inbound_purge_expired(struct sd_store_handle *st, int64_t now_usec)
{
    int64_t n = 0;
    int r = sd_store_inbound_purge_expired(st, now_usec, 10000, &n);
    if (r == 0 && n > 0) {
        sd_log(SD_LOG_INFO, "inbound payloads past retention deleted", "payloads=%lld",
               (long long)n);
    }
    return r == -ENOTSUP ? 0 : r;
}

json_t *sd_inbound_status(struct sd_store_handle *st, const char *connector_id)
{
    int64_t payloads = 0, quarantined = 0;
    if (sd_store_inbound_counts(st, connector_id, &payloads, &quarantined) < 0) {
        return NULL;
    }
    return json_pack("{s:I, s:I}", "payloads", (json_int_t)payloads, "quarantined",
                     (json_int_t)quarantined);
}

/* ---- counters -------------------------------------------------------------------------------- */

/* A fixed table: a (connector id, stream) pair is taken by the first slot free, the last slot
 * counts every pair past the table's size ("other"). Ids are "con_" + 16 hex and streams at
 * most 32 bytes, so they fit. */
#define COUNTER_SLOTS 64

struct counter {
    _Atomic int used; /* 0 free, 1 being written, 2 ready */
    char id[24];
    char stream[33]; /* "" for a plain door */
    _Atomic uint64_t payloads, applied, quarantined, skipped, non200;
};
static struct counter counters[COUNTER_SLOTS + 1];

static struct counter *counter_for(const char *id, const char *stream)
{
    stream = stream ? stream : "";
    for (size_t i = 0; i < COUNTER_SLOTS; i++) {
        struct counter *c = &counters[i];
        int u = atomic_load(&c->used);
        if (u == 0) {
            int expect = 0;
            if (atomic_compare_exchange_strong(&c->used, &expect, 1)) {
                snprintf(c->id, sizeof(c->id), "%s", id);
                snprintf(c->stream, sizeof(c->stream), "%s", stream);
                atomic_store(&c->used, 2);
                return c;
            }
            u = atomic_load(&c->used);
        }
        while (u == 1) {
            u = atomic_load(&c->used);
        }
        if (strncmp(c->id, id, sizeof(c->id) - 1) == 0 &&
            strncmp(c->stream, stream, sizeof(c->stream) - 1) == 0) {
            return c;
        }
    }
    return &counters[COUNTER_SLOTS];
}

void sd_inbound_count_stream(const char *connector_id, const char *stream,
                             const struct sd_inbound_outcome *o)
{
    struct counter *c = counter_for(connector_id, stream);
    if (!o->duplicate) {
        atomic_fetch_add_explicit(&c->payloads, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&c->applied, o->applied, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->quarantined, o->quarantined, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->skipped, o->skipped, memory_order_relaxed);
}

void sd_inbound_count(const char *connector_id, const struct sd_inbound_outcome *o)
{
    sd_inbound_count_stream(connector_id, NULL, o);
}

void sd_inbound_count_non200_stream(const char *connector_id, const char *stream, int status)
{
    struct counter *c = counter_for(connector_id, stream);
    atomic_fetch_add_explicit(&c->non200, 1, memory_order_relaxed);
    sd_log(SD_LOG_WARN, "inbound payload not accepted; the vendor may resend it, then drop it",
           "connector=%s stream=%s status=%d", connector_id, stream ? stream : "", status);
}

void sd_inbound_count_non200(const char *connector_id, int status)
{
    sd_inbound_count_non200_stream(connector_id, NULL, status);
}

void sd_inbound_metrics_render(struct sd_buf *out)
{
    static const char *const names[5][2] = {
        {"stagedoor_inbound_payloads_total", "vendor webhook payloads stored raw"},
        {"stagedoor_inbound_applied_total", "objects of vendor webhook payloads applied"},
        {"stagedoor_inbound_quarantined_total", "objects of vendor webhook payloads quarantined"},
        {"stagedoor_inbound_skipped_total",
         "objects of vendor webhook payloads acknowledged without storing (history depth)"},
        {"stagedoor_inbound_non200_total",
         "vendor webhook requests of a known door answered other than 200 (possible loss)"}};
    for (size_t m = 0; m < 5; m++) {
        sd_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", names[m][0], names[m][1],
                      names[m][0]);
        for (size_t i = 0; i <= COUNTER_SLOTS; i++) {
            struct counter *c = &counters[i];
            if (i < COUNTER_SLOTS && atomic_load(&c->used) != 2) {
                continue;
            }
            _Atomic uint64_t *v = m == 0   ? &c->payloads
                                  : m == 1 ? &c->applied
                                  : m == 2 ? &c->quarantined
                                  : m == 3 ? &c->skipped
                                           : &c->non200;
            uint64_t x = atomic_load_explicit(v, memory_order_relaxed);
            if (i == COUNTER_SLOTS && x == 0) {
                continue;
            }
            if (i < COUNTER_SLOTS && *c->stream) {
                sd_buf_printf(out, "%s{connector=\"%s\",stream=\"%s\"} %llu\n", names[m][0], c->id,
                              c->stream, (unsigned long long)x);
            } else {
                sd_buf_printf(out, "%s{connector=\"%s\"} %llu\n", names[m][0],
                              i < COUNTER_SLOTS ? c->id : "other", (unsigned long long)x);
            }
        }
    }
}

int sd_inbound_replay_quarantine(struct sd_hub *hub, const char *connector_id,
                                 struct sd_inbound_replay *ret)
{
    struct sd_connector_conf conf = {0};
    int r = sd_store_connector_get(hub->store, connector_id, &conf);
    if (r == 0) {
        r = sd_inbound_replay(hub, &conf, false, 0, 0, ret);
    }
    sd_connector_conf_release(&conf);
    return r;
}

int sd_inbound_replay_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    const char *type = ctx->connector ? ctx->connector->name : "door";
    if (!ctx->hub || !ctx->id) {
        return sd_connector_fail(ctx, -EINVAL, "this %s instance runs only when configured", type);
    }
    struct sd_inbound_replay res = {0};
    int r = sd_inbound_replay_quarantine(ctx->hub, ctx->id, &res);
    if (r < 0) {
        return sd_connector_fail(ctx, r, "replay failed: %s", strerror(-r));
    }
    ctx->records_in += res.applied;
    ctx->records_rejected += res.quarantined;
    return 0;
}
