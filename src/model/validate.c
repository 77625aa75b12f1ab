/* validate.c — record validators (event, customer, sale; seed §2) and the ingest body check.
 *
 * Each validator reads an untrusted JSON record and either fills a normalized record or adds
 * issues; it never stops at the first problem, so one answer lists everything wrong with a
 * request. Invariants:
 *  - Output is all-or-nothing: *ret is written only when the record added no error, and
 *    everything allocated on the way is released on every other path.
 *  - The record's pointer is kept in one growable buffer (struct check.path) that is extended
 *    while descending and cut back after, so nested walks allocate nothing per level.
 *  - Pointers and messages are always valid UTF-8 (bad bytes in keys become U+FFFD), because
 *    they are sent back inside a JSON answer.
 *  - The normalized doc is the record in request member order: known fields that have a
 *    normal form (prices, purchase_datetime) are replaced, everything else is copied as sent.
 *  - Nothing here looks at stored data; the store checks event existence and stored duplicates. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"

#define NEST_MAX 1024 /* deeper unknown values are rejected rather than walked */

static const char MSG_MISSING[] = "required field is missing";
static const char MSG_UTF8[] = "must be valid UTF-8 without NUL characters";
static const char MSG_KEY_UTF8[] = "field name must be valid UTF-8 without NUL characters";

/* One record (or body) being checked. */
struct check {
    struct sd_buf path; /* JSON Pointer of the value being looked at */
    struct sd_issues *errors;
    struct sd_issues *warnings;
    size_t errors0; /* errors->total when the record started */
    json_t *norm;   /* normalized values of known fields, by name; replaces the sent value */
};

static void check_init(struct check *c, const char *ptr, struct sd_issues *errors,
                       struct sd_issues *warnings)
{
    sd_buf_init(&c->path);
    sd_buf_puts(&c->path, ptr ? ptr : "");
    c->errors = errors;
    c->warnings = warnings;
    c->errors0 = errors->total;
    c->norm = json_object();
}

static void check_release(struct check *c)
{
    sd_buf_release(&c->path);
    json_decref(c->norm);
    c->norm = NULL;
}

static bool check_failed(const struct check *c)
{
    return c->errors->total != c->errors0;
}

static void err(struct check *c, const char *msg)
{
    sd_issues_add(c->errors, c->path.data, "%s", msg);
}

static void errf(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(struct check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    sd_issues_add(c->errors, c->path.data, "%s", msg);
    free(msg);
}

/* Append s as valid UTF-8: bytes that are not (and NUL) become U+FFFD; with `pointer`, '~' and
 * '/' are escaped as RFC 6901 requires. */
static void put_sanitized(struct sd_buf *b, const char *s, size_t len, bool pointer)
{
    size_t i = 0;
    while (i < len) {
        /* A run of plain ASCII (no NUL, and no '~' or '/' in a pointer) is copied as it is. */
        size_t run = i;
        while (run < len && (unsigned char)s[run] - 1u < 0x7Fu &&
               !(pointer && (s[run] == '~' || s[run] == '/'))) {
            run++;
        }
        if (run > i) {
            sd_buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        uint32_t cp;
        int n = sd_utf8_next(s + i, len - i, &cp);
        if (n < 0 || cp == 0) {
            sd_buf_puts(b, "\xef\xbf\xbd");
            i++;
        } else if (pointer && cp == '~') {
            sd_buf_puts(b, "~0");
            i++;
        } else if (pointer && cp == '/') {
            sd_buf_puts(b, "~1");
            i++;
        } else {
            sd_buf_append(b, s + i, (size_t)n);
            i += (size_t)n;
        }
    }
}

static size_t path_push_key(struct sd_buf *p, const char *key, size_t keylen)
{
    size_t at = p->len;
    sd_buf_append(p, "/", 1);
    put_sanitized(p, key, keylen, true);
    return at;
}

static size_t path_push_index(struct sd_buf *p, size_t i)
{
    size_t at = p->len;
    sd_buf_printf(p, "/%zu", i);
    return at;
}

static void path_pop(struct sd_buf *p, size_t at)
{
    p->len = at;
    p->data[at] = '\0';
}

/* jansson's iterators take a non-const object although walking does not modify it. */
static void *iter_first(const json_t *obj)
{
    return json_object_iter((json_t *)obj);
}

static void *iter_next(const json_t *obj, void *it)
{
    return json_object_iter_next((json_t *)obj, it);
}

static bool string_ok(const json_t *s)
{
    const char *v = json_string_value(s);
    size_t len = json_string_length(s);
    return strlen(v) == len && sd_utf8_valid(v, len);
}

static bool key_ok(const char *key, size_t keylen)
{
    return strlen(key) == keylen && sd_utf8_valid(key, keylen);
}

static bool is_blank(const char *s)
{
    char *f = sd_text_fold(s);
    bool blank = f[0] == '\0';
    free(f);
    return blank;
}

static bool name_in(const char *const *names, const char *key, size_t keylen)
{
    if (strlen(key) != keylen) {
        return false;
    }
    for (; *names; names++) {
        if (strcmp(*names, key) == 0) {
            return true;
        }
    }
    return false;
}

/* Every string and key anywhere in v must be valid UTF-8 without NUL. */
static void check_strings(struct check *c, const json_t *v, int depth)
{
    if (depth > NEST_MAX) {
        err(c, "is nested too deeply");
        return;
    }
    if (json_is_string(v)) {
        if (!string_ok(v)) {
            err(c, MSG_UTF8);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t at = path_push_index(&c->path, i);
            check_strings(c, json_array_get(v, i), depth + 1);
            path_pop(&c->path, at);
        }
    } else if (json_is_object(v)) {
        for (void *it = iter_first(v); it; it = iter_next(v, it)) {
            const char *key = json_object_iter_key(it);
            size_t keylen = json_object_iter_key_len(it);
            size_t at = path_push_key(&c->path, key, keylen);
            if (!key_ok(key, keylen)) {
                err(c, MSG_KEY_UTF8);
            }
            check_strings(c, json_object_iter_value(it), depth + 1);
            path_pop(&c->path, at);
        }
    }
}

/* Members of obj (whose pointer is c->path) not named in `known`: warn, check their strings. */
static void check_unknown(struct check *c, const json_t *obj, const char *const *known)
{
    for (void *it = iter_first(obj); it; it = iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        if (name_in(known, key, keylen)) {
            continue;
        }
        size_t at = path_push_key(&c->path, key, keylen);
        if (!key_ok(key, keylen)) {
            err(c, MSG_KEY_UTF8);
        } else {
            sd_issues_add(c->warnings, c->path.data, "unknown field '%s' kept", key);
        }
        check_strings(c, json_object_iter_value(it), 1);
        path_pop(&c->path, at);
    }
}

/* F_NULL: an optional field of an event or customer may be null, which clears the stored value
 * when the record updates one (the store merges updates). */
enum { F_OPT = 0, F_REQ = 1, F_NONEMPTY = 2, F_NULL = 4 };

/* String member `field` of obj (at c->path); NULL if absent or reported. */
static const char *want_string(struct check *c, const json_t *obj, const char *field, int flags)
{
    const json_t *x = json_object_get(obj, field);
    size_t at = path_push_key(&c->path, field, strlen(field));
    const char *ret = NULL;
    if (!x) {
        if (flags & F_REQ) {
            err(c, MSG_MISSING);
        }
    } else if (json_is_null(x) && (flags & F_NULL)) {
        /* cleared */
    } else if (!json_is_string(x)) {
        err(c, (flags & F_REQ)    ? "must be a string"
               : (flags & F_NULL) ? "must be a string or absent (null clears it)"
                                  : "must be a string or absent");
    } else if (!string_ok(x)) {
        err(c, MSG_UTF8);
    } else if ((flags & F_NONEMPTY) && is_blank(json_string_value(x))) {
        err(c, "must not be empty");
    } else {
        ret = json_string_value(x);
    }
    path_pop(&c->path, at);
    return ret;
}

/* Required JSON integer ≥ min (a real such as 1250.0 or a string is an error). */
static bool want_integer(struct check *c, const json_t *obj, const char *field, json_int_t min,
                         json_int_t *ret)
{
    const json_t *x = json_object_get(obj, field);
    size_t at = path_push_key(&c->path, field, strlen(field));
    bool ok = false;
    if (!x) {
        err(c, MSG_MISSING);
    } else if (!json_is_integer(x)) {
        err(c, "must be an integer");
    } else if (json_integer_value(x) < min) {
        errf(c, "must be %" JSON_INTEGER_FORMAT " or more", min);
    } else {
        *ret = json_integer_value(x);
        ok = true;
    }
    path_pop(&c->path, at);
    return ok;
}

/* Optional JSON integer in min..max; *ret untouched when absent. false if reported. */
static bool want_opt_integer(struct check *c, const json_t *obj, const char *field, json_int_t min,
                             json_int_t max, const char *max_name, json_int_t *ret)
{
    const json_t *x = json_object_get(obj, field);
    if (!x) {
        return true;
    }
    size_t at = path_push_key(&c->path, field, strlen(field));
    bool ok = false;
    if (!json_is_integer(x)) {
        err(c, "must be an integer or absent");
    } else if (json_integer_value(x) < min) {
        errf(c, "must be %" JSON_INTEGER_FORMAT " or more", min);
    } else if (json_integer_value(x) > max) {
        errf(c, "must not exceed %s (%" JSON_INTEGER_FORMAT ")", max_name, max);
    } else {
        *ret = json_integer_value(x);
        ok = true;
    }
    path_pop(&c->path, at);
    return ok;
}

/* Optional RFC 3339 date-time, normalized to UTC into c->norm; a new copy in *ret. */
static bool want_opt_datetime(struct check *c, const json_t *rec, const char *field, char **ret)
{
    const char *when = want_string(c, rec, field, F_OPT);
    if (!when) {
        return !json_object_get(rec, field);
    }
    char utc[40];
    size_t at = path_push_key(&c->path, field, strlen(field));
    bool ok = sd_datetime_to_utc(when, utc, sizeof(utc)) == 0;
    if (!ok) {
        err(c,
            "must be an RFC 3339 date-time with a real date and time, e.g. 2025-04-15T11:08:42Z");
    } else {
        json_object_set_new(c->norm, field, json_string(utc));
        *ret = sd_strdup(utc);
    }
    path_pop(&c->path, at);
    return ok;
}

/* A member name json_dumps writes as it is: printable ASCII without '"' or '\\' (no escape, no
 * multi-byte sequence). */
static bool plain_key(const char *key, size_t keylen)
{
    for (size_t i = 0; i < keylen; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch < 0x20 || ch >= 0x7F || ch == '"' || ch == '\\') {
            return false;
        }
    }
    return true;
}

static int append_dump(const char *buffer, size_t size, void *data)
{
    sd_buf_append(data, buffer, size);
    return 0;
}

#define DOC_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* build_doc through a jansson object: for records whose member names need escaping.
 * NULL (with an error) if it cannot be encoded, which validation should have made impossible. */
static char *build_doc_object(struct check *c, const json_t *rec)
{
    json_t *doc = json_object();
    for (void *it = iter_first(rec); it; it = iter_next(rec, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        json_t *norm = strlen(key) == keylen ? json_object_get(c->norm, key) : NULL;
        /* Shared, not copied: doc is only encoded (a deep copy doubled a big record's memory) */
        json_t *v = json_incref(norm ? norm : json_object_iter_value(it));
        if (!v || json_object_setn_new(doc, key, keylen, v) < 0) {
            json_decref(doc);
            err(c, "record cannot be encoded as JSON");
            return NULL;
        }
    }
    char *s = json_dumps(doc, DOC_FLAGS);
    json_decref(doc);
    if (!s) {
        err(c, "record cannot be encoded as JSON");
        return NULL;
    }
    /* jansson allocates with malloc unless told otherwise; hand out memory free() accepts. */
    char *ret = sd_strdup(s);
    free(s);
    return ret;
}

/* The record as compact JSON: member order as sent, normalized values where c->norm has one.
 * The same bytes as json_dumps of an object holding those members, written member by member
 * into one buffer (no object is built, nothing is copied twice); a member name that would need
 * escaping takes the object route. */
static char *build_doc(struct check *c, const json_t *rec)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_append(&b, "{", 1);
    for (void *it = iter_first(rec); it; it = iter_next(rec, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        if (!plain_key(key, keylen)) {
            sd_buf_release(&b);
            return build_doc_object(c, rec);
        }
        json_t *norm = json_object_get(c->norm, key);
        const json_t *v = norm ? norm : json_object_iter_value(it);
        if (b.len > 1) {
            sd_buf_append(&b, ",", 1);
        }
        sd_buf_append(&b, "\"", 1);
        sd_buf_append(&b, key, keylen);
        sd_buf_append(&b, "\":", 2);
        if (json_dump_callback(v, append_dump, &b, DOC_FLAGS | JSON_ENCODE_ANY) != 0) {
            sd_buf_release(&b);
            err(c, "record cannot be encoded as JSON");
            return NULL;
        }
    }
    sd_buf_append(&b, "}", 1);
    return sd_buf_steal(&b);
}

static bool begin_record(struct check *c, const json_t *rec)
{
    if (!json_is_object(rec)) {
        err(c, "must be an object");
        return false;
    }
    return true;
}

/* ---- event ---------------------------------------------------------------------------------- */

static const char *const event_fields[] = {
    "event_id", "title", "date",       "time",     "venue", "hall",
    "capacity", "city",  "work_title", "composer", "cast",  NULL,
};
static const char *const cast_fields[] = {"name", "role", NULL};

static void check_cast(struct check *c, const json_t *rec)
{
    const json_t *cast = json_object_get(rec, "cast");
    if (!cast) {
        return;
    }
    size_t at = path_push_key(&c->path, "cast", 4);
    if (!json_is_array(cast)) {
        err(c, "must be an array or absent");
    } else {
        for (size_t i = 0; i < json_array_size(cast); i++) {
            const json_t *m = json_array_get(cast, i);
            size_t at2 = path_push_index(&c->path, i);
            if (!json_is_object(m)) {
                err(c, "must be an object");
            } else {
                check_unknown(c, m, cast_fields);
                want_string(c, m, "name", F_REQ | F_NONEMPTY);
                want_string(c, m, "role", F_OPT);
            }
            path_pop(&c->path, at2);
        }
    }
    path_pop(&c->path, at);
}

int sd_validate_event(const json_t *rec, const char *ptr, struct sd_event_rec *ret,
                      struct sd_issues *errors, struct sd_issues *warnings)
{
    struct check c;
    check_init(&c, ptr, errors, warnings);
    int r = -EINVAL;
    char *fv = NULL, *fh = NULL;
    if (!begin_record(&c, rec)) {
        goto out;
    }
    check_unknown(&c, rec, event_fields);
    const char *event_id = want_string(&c, rec, "event_id", F_REQ | F_NONEMPTY);
    want_string(&c, rec, "title", F_REQ | F_NONEMPTY);
    const char *date = want_string(&c, rec, "date", F_REQ);
    if (date && !sd_date_valid(date)) {
        size_t at = path_push_key(&c.path, "date", 4);
        err(&c, "must be a real calendar date YYYY-MM-DD");
        path_pop(&c.path, at);
    }
    const char *time = want_string(&c, rec, "time", F_REQ);
    if (time && !sd_time_valid(time)) {
        size_t at = path_push_key(&c.path, "time", 4);
        err(&c, "must be a time HH:MM:SS from 00:00:00 to 23:59:59");
        path_pop(&c.path, at);
    }
    const char *venue = want_string(&c, rec, "venue", F_REQ | F_NONEMPTY);
    const char *hall = want_string(&c, rec, "hall", F_REQ | F_NONEMPTY);
    json_int_t capacity;
    want_integer(&c, rec, "capacity", 0, &capacity);
    want_string(&c, rec, "city", F_REQ | F_NONEMPTY);
    want_string(&c, rec, "work_title", F_OPT | F_NULL);
    want_string(&c, rec, "composer", F_OPT | F_NULL);
    check_cast(&c, rec);
    if (check_failed(&c)) {
        goto out;
    }
    char *doc = build_doc(&c, rec);
    if (!doc) {
        goto out;
    }
    fv = sd_text_fold(venue);
    fh = sd_text_fold(hall);
    *ret = (struct sd_event_rec){
        .index = 0,
        .event_id = sd_strdup(event_id),
        .dup_key = sd_asprintf("%s|%s|%s|%s", date, time, fv, fh),
        .doc = doc,
    };
    r = 0;
out:
    free(fv);
    free(fh);
    check_release(&c);
    return r;
}

void sd_event_rec_release(struct sd_event_rec *r)
{
    if (!r) {
        return;
    }
    free(r->event_id);
    free(r->dup_key);
    free(r->doc);
    *r = (struct sd_event_rec){0};
}

/* ---- customer ------------------------------------------------------------------------------- */

static const char *const customer_fields[] = {
    "customer_id", "email",     "salutation", "first_name", "last_name",
    "street",      "post_code", "ad_opt_out", NULL,
};

int sd_validate_customer(const json_t *rec, const char *ptr, struct sd_customer_rec *ret,
                         struct sd_issues *errors, struct sd_issues *warnings)
{
    return sd_validate_customer_flags(rec, ptr, 0, ret, errors, warnings);
}

int sd_validate_customer_flags(const json_t *rec, const char *ptr, unsigned flags,
                               struct sd_customer_rec *ret, struct sd_issues *errors,
                               struct sd_issues *warnings)
{
    struct check c;
    check_init(&c, ptr, errors, warnings);
    int r = -EINVAL;
    char *email_key = NULL;
    json_t *own = NULL;
    if (!begin_record(&c, rec)) {
        goto out;
    }
    if (json_object_get(rec, "source")) {
        /* The hub sets a customer's source (the transport's label) and shows it in reads, so a
         * record read from one hub and sent to another carries one: never stored as sent. */
        own = json_copy((json_t *)rec);
        json_object_del(own, "source");
        rec = own;
        size_t at = path_push_key(&c.path, "source", 6);
        sd_issues_add(c.warnings, c.path.data,
                      "'source' is set by the hub (where the record came from); ignored");
        path_pop(&c.path, at);
    }
    check_unknown(&c, rec, customer_fields);
    const char *id = want_string(&c, rec, "customer_id", F_REQ | F_NONEMPTY);
    if (id && strcmp(id, SD_ANON_CUSTOMER) == 0) {
        size_t at = path_push_key(&c.path, "customer_id", 11);
        err(&c, "must not be \"" SD_ANON_CUSTOMER "\": it is reserved for anonymous sales");
        path_pop(&c.path, at);
    }
    /* The hub's own contract (seed §2) requires the e-mail; a vendor whose contacts may have
     * none (a box-office buyer with a phone and a postal address) admits the record without
     * it, identified by (source, customer_id) alone, and a null clears a stored address. */
    const char *email = want_string(
        &c, rec, "email",
        (flags & SD_VALIDATE_EMAIL_OPTIONAL) ? F_OPT | F_NULL | F_NONEMPTY : F_REQ | F_NONEMPTY);
    if (email) {
        /* Surrounding whitespace is tolerated (the key is trimmed); the address itself is
         * checked in its folded form, which only lowercases it. */
        email_key = sd_text_fold(email);
        if (!sd_email_valid(email_key)) {
            size_t at = path_push_key(&c.path, "email", 5);
            err(&c, "must be a valid e-mail address");
            path_pop(&c.path, at);
        }
    }
    want_string(&c, rec, "salutation", F_OPT | F_NULL);
    want_string(&c, rec, "first_name", F_OPT | F_NULL);
    want_string(&c, rec, "last_name", F_OPT | F_NULL);
    want_string(&c, rec, "street", F_OPT | F_NULL);
    want_string(&c, rec, "post_code", F_OPT | F_NULL);
    int opt_out = -1;
    const json_t *o = json_object_get(rec, "ad_opt_out");
    if (o) {
        if (json_is_boolean(o)) {
            opt_out = json_is_true(o) ? 1 : 0;
        } else {
            size_t at = path_push_key(&c.path, "ad_opt_out", 10);
            err(&c, "must be true or false");
            path_pop(&c.path, at);
        }
    }
    if (check_failed(&c)) {
        goto out;
    }
    char *doc = build_doc(&c, rec);
    if (!doc) {
        goto out;
    }
    *ret = (struct sd_customer_rec){
        .index = 0,
        .customer_id = sd_strdup(id),
        .email_key = email_key,
        .ad_opt_out = opt_out,
        .doc = doc,
    };
    email_key = NULL;
    r = 0;
out:
    free(email_key);
    json_decref(own);
    check_release(&c);
    return r;
}

void sd_customer_rec_release(struct sd_customer_rec *r)
{
    if (!r) {
        return;
    }
    free(r->customer_id);
    free(r->email_key);
    free(r->doc);
    *r = (struct sd_customer_rec){.ad_opt_out = -1};
}

/* ---- sale ----------------------------------------------------------------------------------- */

static const char *const sale_fields[] = {
    "invoice_number",  "event_id",
    "customer_id",     "purchase_datetime",
    "ticket_category", "quantity",
    "sales_price",     "base_price",
    "currency",        "order_type",
    "status",          "refunded_quantity",
    "refunded_amount", "status_changed_at",
    "expires_at",      "attended_quantity",
    "refund_of",       NULL,
};
static const char *const ticket_categories[] = {"regular", "VIP", "subscription", "comp", NULL};

/* Currency code → minor units, or -1 (reported) when absent, wrong or unknown. */
static int check_currency(struct check *c, const json_t *rec, const char **ret_code)
{
    const char *code = want_string(c, rec, "currency", F_REQ);
    if (!code) {
        return -1;
    }
    int minor = sd_currency_minor_units(code);
    if (minor >= 0) {
        *ret_code = code;
        return minor;
    }
    char upper[4] = {0};
    bool lower_form = strlen(code) == 3;
    for (int i = 0; lower_form && i < 3; i++) {
        char ch = code[i];
        upper[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
    }
    size_t at = path_push_key(&c->path, "currency", 8);
    if (lower_form && sd_currency_minor_units(upper) >= 0) {
        err(c, "must be an uppercase ISO 4217 code");
    } else {
        err(c, "must be an active ISO 4217 currency code");
    }
    path_pop(&c->path, at);
    return -1;
}

/* A price: exact decimal ≥ 0 with at most `minor` places (minor < 0: currency unknown, so the
 * places cannot be judged and are not reported). Normalized into c->norm when minor is known. */
static bool check_price(struct check *c, const json_t *rec, const char *field, bool required,
                        int minor, int64_t *ret)
{
    const json_t *x = json_object_get(rec, field);
    if (!x && !required) {
        return true;
    }
    size_t at = path_push_key(&c->path, field, strlen(field));
    bool ok = false;
    int64_t amount = 0;
    const char *why = NULL;
    if (!x) {
        err(c, MSG_MISSING);
    } else if (!json_is_number(x) && !json_is_string(x)) {
        err(c, required ? "must be a number or a numeric string"
                        : "must be a number, a numeric string or absent");
    } else if (sd_decimal_parse(x, minor, &amount, &why) < 0) {
        err(c, why);
    } else {
        ok = true;
        if (minor >= 0) {
            char text[32];
            sd_decimal_format(amount, minor, text);
            json_object_set_new(c->norm, field, json_string(text));
            *ret = amount;
        }
    }
    path_pop(&c->path, at);
    return ok;
}

/* The lifecycle fields of a sales record (model.h "order lifecycle"), read after quantity,
 * currency and price: order_type, status, refunds, attendance, expiry, refund_of. */
struct lifecycle_fields {
    json_int_t attended;
    char *changed, *expires; /* owned */
    const char *refund_of;   /* in rec */
};

static void field_err(struct check *c, const char *field, const char *msg)
{
    size_t at = path_push_key(&c->path, field, strlen(field));
    err(c, msg);
    path_pop(&c->path, at);
}

static void check_lifecycle(struct check *c, const json_t *rec, int minor, bool amounts_ok,
                            struct sd_sale_state *st, struct lifecycle_fields *lc)
{
    lc->attended = -1;
    lc->refund_of = want_string(c, rec, "refund_of", F_OPT | F_NONEMPTY);
    const char *type = want_string(c, rec, "order_type", F_OPT);
    st->order_type = lc->refund_of ? SD_ORDER_REFUND : SD_ORDER_SALE;
    if (type && sd_order_type_parse(type, &st->order_type) < 0) {
        field_err(c, "order_type", "must be one of sale, reservation, option, abandoned, refund");
        return;
    }
    enum sd_order_type t = st->order_type;
    if (t == SD_ORDER_REFUND && !lc->refund_of && !json_object_get(rec, "refund_of")) {
        field_err(c, "refund_of", "required for a refund: the invoice_number of the sale refunded");
    } else if (t != SD_ORDER_REFUND && lc->refund_of) {
        field_err(c, "refund_of", "only a refund (order_type refund) names a sale it refunds");
    }
    const char *status = want_string(c, rec, "status", F_OPT);
    bool is_hold = t == SD_ORDER_RESERVATION || t == SD_ORDER_OPTION;
    st->status = t == SD_ORDER_SALE     ? SD_STATUS_SOLD
                 : is_hold              ? SD_STATUS_OPEN
                 : t == SD_ORDER_REFUND ? SD_STATUS_APPLIED
                                        : SD_STATUS_ABANDONED;
    if (status) {
        enum sd_sale_status v;
        bool ok = sd_sale_status_parse(status, &v) == 0;
        if (t == SD_ORDER_SALE && !(ok && v <= SD_STATUS_EXCHANGED)) {
            field_err(c, "status", "must be one of sold, refunded, cancelled, exchanged");
        } else if (is_hold && !(ok && (v == SD_STATUS_OPEN || v == SD_STATUS_FREED))) {
            field_err(c, "status", "must be open or freed for a reservation or an option");
        } else if (!is_hold && t != SD_ORDER_SALE) {
            field_err(c, "status",
                      t == SD_ORDER_REFUND ? "must be absent for a refund"
                                           : "must be absent for an abandoned basket");
        } else {
            st->status = v;
        }
    }
    json_int_t max_q = st->quantity > 0 ? st->quantity : INT64_MAX;
    json_int_t rq = -1, att = -1;
    want_opt_integer(c, rec, "refunded_quantity", 0, max_q, "quantity", &rq);
    want_opt_integer(c, rec, "attended_quantity", 0, max_q, "quantity", &att);
    int64_t ra = -1;
    const json_t *ra_v = json_object_get(rec, "refunded_amount");
    if (ra_v) {
        int64_t v = 0;
        if (check_price(c, rec, "refunded_amount", false, minor, &v) && minor >= 0) {
            ra = v;
            if (amounts_ok && ra > st->total_minor) {
                field_err(c, "refunded_amount", "must not exceed quantity × sales_price");
            }
        }
    }
    if (t != SD_ORDER_SALE) {
        static const char *const sale_only[] = {"refunded_quantity", "refunded_amount",
                                                "attended_quantity"};
        for (size_t i = 0; i < 3; i++) {
            if (json_object_get(rec, sale_only[i])) {
                field_err(c, sale_only[i], "only a sale (order_type sale) has this field");
            }
        }
    }
    if (!is_hold && json_object_get(rec, "expires_at")) {
        field_err(c, "expires_at", "only a reservation or an option expires");
    }
    want_opt_datetime(c, rec, "status_changed_at", &lc->changed);
    want_opt_datetime(c, rec, "expires_at", &lc->expires);
    lc->attended = att;
    if (t != SD_ORDER_SALE || !amounts_ok) {
        return;
    }
    /* A refund stated by amounts alone makes the sale refunded; "refunded" alone refunds all. */
    bool refunds = (rq > 0) || (ra > 0);
    if (!status && refunds) {
        st->status = SD_STATUS_REFUNDED;
    }
    if (st->status == SD_STATUS_SOLD && refunds) {
        field_err(c, "status",
                  "must be refunded when refunded_quantity or refunded_amount is "
                  "more than 0");
        return;
    }
    if (st->status == SD_STATUS_REFUNDED) {
        if (rq < 0) {
            rq = ra < 0 ? st->quantity : 0;
        }
        if (ra < 0) {
            ra = rq * (st->quantity > 0 ? st->total_minor / st->quantity : 0);
        }
        if (rq == 0 && ra == 0) {
            field_err(c, "refunded_quantity",
                      "a refunded sale refunds something: refunded_quantity and refunded_amount "
                      "are 0");
            return;
        }
    }
    st->refunded_quantity = rq > 0 ? rq : 0;
    st->refunded_minor = ra > 0 ? ra : 0;
}

int sd_validate_sale(const json_t *rec, const char *ptr, struct sd_sale_rec *ret,
                     struct sd_issues *errors, struct sd_issues *warnings)
{
    struct check c;
    check_init(&c, ptr, errors, warnings);
    int r = -EINVAL;
    struct lifecycle_fields lc = {.attended = -1};
    if (!begin_record(&c, rec)) {
        goto out;
    }
    check_unknown(&c, rec, sale_fields);
    const char *invoice = want_string(&c, rec, "invoice_number", F_REQ | F_NONEMPTY);
    const char *event_id = want_string(&c, rec, "event_id", F_REQ | F_NONEMPTY);
    const char *customer_id = want_string(&c, rec, "customer_id", F_REQ | F_NONEMPTY);
    char utc[40] = "";
    const char *when = want_string(&c, rec, "purchase_datetime", F_REQ);
    if (when) {
        size_t at = path_push_key(&c.path, "purchase_datetime", 17);
        if (sd_datetime_to_utc(when, utc, sizeof(utc)) < 0) {
            err(&c, "must be an RFC 3339 date-time with a real date and time, "
                    "e.g. 2025-04-15T11:08:42Z");
        } else {
            json_object_set_new(c.norm, "purchase_datetime", json_string(utc));
        }
        path_pop(&c.path, at);
    }
    const char *category = want_string(&c, rec, "ticket_category", F_REQ);
    if (category && !name_in(ticket_categories, category, strlen(category))) {
        size_t at = path_push_key(&c.path, "ticket_category", 15);
        err(&c, "must be one of regular, VIP, subscription, comp");
        path_pop(&c.path, at);
    }
    json_int_t quantity = 0;
    bool quantity_ok = want_integer(&c, rec, "quantity", 1, &quantity);
    const char *currency = NULL;
    int minor = check_currency(&c, rec, &currency);
    int64_t sales_minor = 0, base_minor = 0;
    bool price_ok = check_price(&c, rec, "sales_price", true, minor, &sales_minor) && minor >= 0;
    check_price(&c, rec, "base_price", false, minor, &base_minor);
    struct sd_sale_state st = {0};
    if (quantity_ok && price_ok &&
        __builtin_mul_overflow((int64_t)quantity, sales_minor, &st.total_minor)) {
        size_t at = path_push_key(&c.path, "sales_price", 11);
        err(&c, "is too large: quantity × sales_price does not fit the hub's amounts");
        path_pop(&c.path, at);
    }
    st.quantity = quantity;
    check_lifecycle(&c, rec, minor, quantity_ok && price_ok, &st, &lc);
    if (check_failed(&c)) {
        goto out;
    }
    char *doc = build_doc(&c, rec);
    if (!doc) {
        goto out;
    }
    memcpy(st.currency, currency, 4);
    *ret = (struct sd_sale_rec){
        .index = 0,
        .invoice_number = sd_strdup(invoice),
        .event_id = sd_strdup(event_id),
        .customer_id = sd_strdup(customer_id),
        .purchase_datetime = sd_strdup(utc),
        .sales_price_minor = sales_minor,
        .doc = doc,
        .state = st,
        .net_quantity = sd_sale_net_quantity(&st),
        .net_minor = sd_sale_net_minor(&st),
        .attended_quantity = lc.attended,
        .status_changed_at = lc.changed,
        .expires_at = lc.expires,
        .refund_of = lc.refund_of ? sd_strdup(lc.refund_of) : NULL,
    };
    lc.changed = lc.expires = NULL;
    memcpy(ret->currency, currency, 4);
    r = 0;
out:
    free(lc.changed);
    free(lc.expires);
    check_release(&c);
    return r;
}

void sd_sale_rec_release(struct sd_sale_rec *r)
{
    if (!r) {
        return;
    }
    free(r->invoice_number);
    free(r->event_id);
    free(r->customer_id);
    free(r->purchase_datetime);
    free(r->doc);
    free(r->status_changed_at);
    free(r->expires_at);
    free(r->refund_of);
    *r = (struct sd_sale_rec){0};
}

/* ---- batch and ingest body ------------------------------------------------------------------ */

void sd_batch_release(struct sd_batch *b)
{
    if (!b) {
        return;
    }
    for (size_t i = 0; i < b->n_events; i++) {
        sd_event_rec_release(&b->events[i]);
    }
    for (size_t i = 0; i < b->n_customers; i++) {
        sd_customer_rec_release(&b->customers[i]);
    }
    for (size_t i = 0; i < b->n_sales; i++) {
        sd_sale_rec_release(&b->sales[i]);
    }
    free(b->events);
    free(b->customers);
    free(b->sales);
    *b = (struct sd_batch){0};
}

size_t sd_batch_count(const struct sd_batch *b)
{
    return b ? b->n_events + b->n_customers + b->n_sales : 0;
}

struct invoice_ref {
    const char *invoice;
    size_t index;
};

static int invoice_ref_cmp(const void *a, const void *b)
{
    const struct invoice_ref *x = a, *y = b;
    int r = strcmp(x->invoice, y->invoice);
    if (r != 0) {
        return r;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/* first[i] = index of the earlier sale with sale i's invoice_number, or SIZE_MAX. Sales whose
 * invoice_number is not a usable string are skipped: their own error says so. */
static size_t *find_duplicate_invoices(const json_t *sales)
{
    size_t n = json_array_size(sales);
    size_t *first = sd_calloc(n, sizeof(*first));
    struct invoice_ref *refs = sd_calloc(n, sizeof(*refs));
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        first[i] = SIZE_MAX;
        const json_t *inv = json_object_get(json_array_get(sales, i), "invoice_number");
        if (json_is_string(inv) && string_ok(inv) && !is_blank(json_string_value(inv))) {
            refs[nr++] = (struct invoice_ref){json_string_value(inv), i};
        }
    }
    qsort(refs, nr, sizeof(*refs), invoice_ref_cmp);
    /* Sorted by (invoice, index): each run of equal invoices starts with the earliest sale. */
    for (size_t start = 0, k = 1; k < nr; k++) {
        if (strcmp(refs[start].invoice, refs[k].invoice) != 0) {
            start = k;
            continue;
        }
        first[refs[k].index] = refs[start].index;
    }
    free(refs);
    return first;
}

enum { ARR_EVENTS, ARR_CUSTOMERS, ARR_SALES, ARR_N };
static const char *const top_names[ARR_N] = {"events", "customers", "sales"};

int sd_validate_ingest(const json_t *body, struct sd_batch *ret, struct sd_issues *errors,
                       struct sd_issues *warnings)
{
    return sd_validate_ingest_flags(body, 0, ret, errors, warnings);
}

int sd_validate_ingest_flags(const json_t *body, unsigned flags, struct sd_batch *ret,
                             struct sd_issues *errors, struct sd_issues *warnings)
{
    size_t errors0 = errors->total;
    struct sd_batch b = {0};
    const json_t *arr[ARR_N] = {NULL};
    size_t *dup_first = NULL;
    struct sd_buf ptr;
    sd_buf_init(&ptr);
    sd_buf_puts(&ptr, "");
    int r = -EINVAL;

    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "request body must be a JSON object");
        goto out;
    }
    for (void *it = iter_first(body); it; it = iter_next(body, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        int k = -1;
        for (int i = 0; i < ARR_N; i++) {
            if (strlen(key) == keylen && strcmp(key, top_names[i]) == 0) {
                k = i;
            }
        }
        sd_buf_reset(&ptr);
        path_push_key(&ptr, key, keylen);
        if (k < 0) {
            sd_issues_add(errors, ptr.data, "unknown top-level member");
        } else if (!json_is_array(v)) {
            sd_issues_add(errors, ptr.data, "must be an array of records");
        } else {
            arr[k] = v;
        }
    }
    if (json_array_size(arr[ARR_EVENTS]) + json_array_size(arr[ARR_CUSTOMERS]) +
            json_array_size(arr[ARR_SALES]) ==
        0) {
        sd_issues_add(errors, "", "no records: send at least one of events, customers, sales");
    }

    /* Records are kept only while the request is still clean: once anything failed the batch
     * is discarded anyway, so later valid records are released at once (bounded memory). */
    size_t n_ev = json_array_size(arr[ARR_EVENTS]);
    for (size_t i = 0; i < n_ev; i++) {
        sd_buf_reset(&ptr);
        sd_buf_printf(&ptr, "/events/%zu", i);
        struct sd_event_rec rec;
        if (sd_validate_event(json_array_get(arr[ARR_EVENTS], i), ptr.data, &rec, errors,
                              warnings) < 0) {
            continue;
        }
        if (errors->total != errors0) {
            sd_event_rec_release(&rec);
            continue;
        }
        if (!b.events) {
            b.events = sd_calloc(n_ev, sizeof(*b.events));
        }
        rec.index = i;
        b.events[b.n_events++] = rec;
    }
    size_t n_cu = json_array_size(arr[ARR_CUSTOMERS]);
    for (size_t i = 0; i < n_cu; i++) {
        sd_buf_reset(&ptr);
        sd_buf_printf(&ptr, "/customers/%zu", i);
        struct sd_customer_rec rec;
        if (sd_validate_customer_flags(json_array_get(arr[ARR_CUSTOMERS], i), ptr.data, flags, &rec,
                                       errors, warnings) < 0) {
            continue;
        }
        if (errors->total != errors0) {
            sd_customer_rec_release(&rec);
            continue;
        }
        if (!b.customers) {
            b.customers = sd_calloc(n_cu, sizeof(*b.customers));
        }
        rec.index = i;
        b.customers[b.n_customers++] = rec;
    }
    size_t n_sa = json_array_size(arr[ARR_SALES]);
    if (n_sa > 1) {
        dup_first = find_duplicate_invoices(arr[ARR_SALES]);
    }
    for (size_t i = 0; i < n_sa; i++) {
        sd_buf_reset(&ptr);
        sd_buf_printf(&ptr, "/sales/%zu", i);
        struct sd_sale_rec rec;
        int vr =
            sd_validate_sale(json_array_get(arr[ARR_SALES], i), ptr.data, &rec, errors, warnings);
        if (dup_first && dup_first[i] != SIZE_MAX) {
            sd_buf_puts(&ptr, "/invoice_number");
            sd_issues_add(errors, ptr.data,
                          "duplicate invoice_number in this request (first used at /sales/%zu)",
                          dup_first[i]);
        }
        if (vr < 0) {
            continue;
        }
        if (errors->total != errors0) {
            sd_sale_rec_release(&rec);
            continue;
        }
        if (!b.sales) {
            b.sales = sd_calloc(n_sa, sizeof(*b.sales));
        }
        rec.index = i;
        b.sales[b.n_sales++] = rec;
    }
    if (errors->total != errors0) {
        goto out;
    }
    *ret = b;
    b = (struct sd_batch){0};
    r = 0;
out:
    sd_batch_release(&b);
    free(dup_first);
    sd_buf_release(&ptr);
    return r;
}

/* ---- reference check after a refusal ---------------------------------------------------------
 * A refused body still gets its sales' references checked, so one 400 names field errors and
 * unknown events/customers together. Only what can be checked honestly is kept: a record with
 * a field error is left out, and so is a sale whose event or customer is named by a record of
 * the request that is itself invalid (that record's own errors say what is wrong). */

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The string ids (member `field`) of the records of `arr` that bad[] marks, sorted. */
static const char **bad_ids(const json_t *arr, const bool *bad, const char *field, size_t *ret_n)
{
    size_t n = json_array_size(arr), m = 0;
    const char **ids = sd_calloc(n + 1, sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        const json_t *id = json_object_get(json_array_get(arr, i), field);
        if (bad[i] && json_is_string(id)) {
            ids[m++] = json_string_value(id);
        }
    }
    qsort(ids, m, sizeof(*ids), str_ptr_cmp);
    *ret_n = m;
    return ids;
}

static bool named(const char **ids, size_t n, const char *id)
{
    return n > 0 && bsearch(&id, ids, n, sizeof(*ids), str_ptr_cmp) != NULL;
}

size_t sd_validate_ingest_checkable(const json_t *body, struct sd_batch *ret)
{
    return sd_validate_ingest_checkable_flags(body, 0, ret);
}

size_t sd_validate_ingest_checkable_flags(const json_t *body, unsigned flags, struct sd_batch *ret)
{
    *ret = (struct sd_batch){0};
    if (!json_is_object(body)) {
        return 0;
    }
    const json_t *arr[ARR_N];
    for (int k = 0; k < ARR_N; k++) {
        arr[k] = json_object_get(body, top_names[k]);
        if (arr[k] && !json_is_array(arr[k])) {
            return 0; /* records sent in a wrong shape cannot be told apart from missing ones */
        }
    }
    size_t n[ARR_N];
    bool *bad[ARR_N];
    for (int k = 0; k < ARR_N; k++) {
        n[k] = json_array_size(arr[k]);
        bad[k] = sd_calloc(n[k] + 1, sizeof(bool));
    }
    struct sd_batch b = {0};
    b.events = sd_calloc(n[ARR_EVENTS] + 1, sizeof(*b.events));
    b.customers = sd_calloc(n[ARR_CUSTOMERS] + 1, sizeof(*b.customers));
    b.sales = sd_calloc(n[ARR_SALES] + 1, sizeof(*b.sales));
    size_t *dup_first = n[ARR_SALES] > 1 ? find_duplicate_invoices(arr[ARR_SALES]) : NULL;
    struct sd_issues errs, none; /* counted, not kept */
    sd_issues_init(&errs, 0);
    sd_issues_init(&none, 0);
    char ptr[48];
    for (size_t i = 0; i < n[ARR_EVENTS]; i++) {
        snprintf(ptr, sizeof(ptr), "/events/%zu", i);
        struct sd_event_rec rec;
        size_t before = errs.total;
        int vr = sd_validate_event(json_array_get(arr[ARR_EVENTS], i), ptr, &rec, &errs, &none);
        bad[ARR_EVENTS][i] = vr < 0 || errs.total != before;
        if (vr == 0 && bad[ARR_EVENTS][i]) {
            sd_event_rec_release(&rec);
        } else if (vr == 0) {
            rec.index = i;
            b.events[b.n_events++] = rec;
        }
    }
    for (size_t i = 0; i < n[ARR_CUSTOMERS]; i++) {
        snprintf(ptr, sizeof(ptr), "/customers/%zu", i);
        struct sd_customer_rec rec;
        size_t before = errs.total;
        int vr = sd_validate_customer_flags(json_array_get(arr[ARR_CUSTOMERS], i), ptr, flags, &rec,
                                            &errs, &none);
        bad[ARR_CUSTOMERS][i] = vr < 0 || errs.total != before;
        if (vr == 0 && bad[ARR_CUSTOMERS][i]) {
            sd_customer_rec_release(&rec);
        } else if (vr == 0) {
            rec.index = i;
            b.customers[b.n_customers++] = rec;
        }
    }
    size_t n_bad_ev = 0, n_bad_cu = 0;
    const char **bad_ev = bad_ids(arr[ARR_EVENTS], bad[ARR_EVENTS], "event_id", &n_bad_ev);
    const char **bad_cu = bad_ids(arr[ARR_CUSTOMERS], bad[ARR_CUSTOMERS], "customer_id", &n_bad_cu);
    for (size_t i = 0; i < n[ARR_SALES]; i++) {
        if (dup_first && dup_first[i] != SIZE_MAX) {
            continue;
        }
        snprintf(ptr, sizeof(ptr), "/sales/%zu", i);
        struct sd_sale_rec rec;
        size_t before = errs.total;
        if (sd_validate_sale(json_array_get(arr[ARR_SALES], i), ptr, &rec, &errs, &none) < 0) {
            continue;
        }
        if (errs.total != before || named(bad_ev, n_bad_ev, rec.event_id) ||
            named(bad_cu, n_bad_cu, rec.customer_id)) {
            sd_sale_rec_release(&rec);
            continue;
        }
        rec.index = i;
        b.sales[b.n_sales++] = rec;
    }
    size_t kept = b.n_sales;
    if (kept > 0) {
        *ret = b;
    } else {
        sd_batch_release(&b);
    }
    sd_issues_release(&errs);
    sd_issues_release(&none);
    free(bad_ev);
    free(bad_cu);
    free(dup_first);
    for (int k = 0; k < ARR_N; k++) {
        free(bad[k]);
    }
    return kept;
}

bool sd_validate_field_known(const char *records, const char *name)
{
    const char *const *lists[2] = {NULL, NULL};
    if (strcmp(records, "events") == 0) {
        lists[0] = event_fields;
        lists[1] = cast_fields;
    } else if (strcmp(records, "customers") == 0) {
        lists[0] = customer_fields;
    } else if (strcmp(records, "sales") == 0) {
        lists[0] = sale_fields;
    }
    for (size_t l = 0; l < 2 && lists[l]; l++) {
        for (size_t i = 0; lists[l][i]; i++) {
            if (strcmp(lists[l][i], name) == 0) {
                return true;
            }
        }
    }
    return false;
}
