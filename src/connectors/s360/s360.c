/* s360.c — the `s360` connector type (stagedoor as the CRM of one S-360 institution) and its
 * inbound half: S-360's contact, order and access-control webhooks, received at the instance's
 * streamed doors POST /in/{connector_id}/{token}/{institution}/{contacts|orders|access}
 * (core/inbound.h) and mapped here to customers, events and sales. docs/connectors/s360.md
 * has the mapping tables and every assumption.
 *
 * Rules the mapping keeps:
 *  - ids are int64 read from JSON integers (or digit strings), never through a double: an
 *    orderId past 2^53 keeps every digit; a floating-point id is refused;
 *  - money arrives in integer thousandths of the catalogue currency and converts exactly to
 *    the currency's minor unit (sd_money_scaled_to_minor); a fraction of a cent is refused;
 *  - a contact is the customer whose customer_id is its contactNumber (as sent, leading zeros
 *    kept): never keyed by e-mail, so people sharing an address stay separate customers, and
 *    one without any e-mail is a customer too (e-mail null); its
 *    lastUpdateDate (ms) is the record's remote_version, so an older resend never overwrites;
 *  - one sales record per operation line, invoice "<orderId>-<operationId>", upserted: a
 *    resend changes nothing;
 *  - objects older than history_from are acknowledged and counted, not stored (SD_INBOUND_SKIP).
 * Pure: called on HTTP threads and on the writer (replay). */
#include "connectors/s360/s360.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "model/tz.h"

#define AT(member) offsetof(struct s360_conf, member)

static const struct sd_setting s360_settings[] = {
    {"institution", SD_SETTING_STRING, NULL, 1, 64,
     "the S-360 institution code (\"myvenue\"): the path segment of the inbound URLs", NULL,
     AT(institution)},
    {"api_base", SD_SETTING_URL, NULL, 8, 2048,
     "base URL of the institution's backend APIs, e.g. https://myvenue.ws.secutix.com",
     SD_CHOICES("http", "https"), AT(api_base)},
    {"operator", SD_SETTING_STRING, "\"\"", 0, 128,
     "API operator (the /auth call); required when push_contacts or create_contacts", NULL,
     AT(operator_name)},
    {"partner", SD_SETTING_STRING, "\"\"", 0, 128,
     "API partner (the /auth call); required when push_contacts or create_contacts", NULL,
     AT(partner)},
    {"secret", SD_SETTING_SECRET, "\"\"", 0, 1024,
     "API secret (the /auth call); required when push_contacts or create_contacts", NULL,
     AT(secret)},
    {"contact_service", SD_SETTING_STRING, "\"v2_21\"", 1, 16,
     "version segment of contactInformationPublicService", NULL, AT(contact_service)},
    {"order_facade", SD_SETTING_STRING, "\"v1_33\"", 1, 16,
     "version segment of externalOrderFacade", NULL, AT(order_facade)},
    {"point_of_sales_id", SD_SETTING_INT, "0", 0, INT64_MAX,
     "pointOfSalesId of the orders stagedoor creates (offers)", NULL, AT(point_of_sales_id)},
    {"timeout_seconds", SD_SETTING_INT, "30", 1, 300, "timeout of one API call", NULL,
     AT(timeout_seconds)},
    {"quota_minute_calls", SD_SETTING_INT, "0", 0, 100000,
     "API calls per minute this credential may make (0: S-360's 180)", NULL,
     AT(quota_minute_calls)},
    {"push_contacts", SD_SETTING_BOOL, "true", 0, 0,
     "customers linked to an S-360 contact that change through another source go out", NULL,
     AT(push_contacts)},
    {"create_contacts", SD_SETTING_BOOL, "false", 0, 0,
     "new customers of other sources become S-360 contacts", NULL, AT(create_contacts)},
    {"time_zone", SD_SETTING_STRING, "\"Europe/Zurich\"", 1, 64,
     "the institution's IANA time zone: referenceDate, performance times, history_from", NULL,
     AT(time_zone)},
    {"history_from", SD_SETTING_STRING, "\"\"", 0, 10,
     "YYYY-MM-DD (local day): contacts last changed and orders created before it are "
     "acknowledged and counted, not stored; \"\": everything is stored",
     NULL, AT(history_from)},
    {"abandoned_states", SD_SETTING_STRING, "\"ABANDONED\"", 0, 512,
     "comma-separated orderState values meaning an abandoned basket (CLOSED is a finished "
     "order; any other state is stored as order_state)",
     NULL, AT(abandoned_states)},
    {"optin_authorizations", SD_SETTING_STRING, "\"NEWSLETTER\"", 0, 512,
     "comma-separated authorizationType values that are advertising consent: any of them "
     "false makes the customer opted out (opt-out wins), all present ones true opted in; a "
     "customer's opt-out is written to S-360 as all of them false",
     NULL, AT(optin_authorizations)},
    {"event_venue", SD_SETTING_STRING, "\"\"", 0, 200,
     "venue of the events made from performances (\"\": the institution code)", NULL,
     AT(event_venue)},
    {"event_hall", SD_SETTING_STRING, "\"main\"", 1, 200,
     "hall of the events made from performances", NULL, AT(event_hall)},
    {"event_city", SD_SETTING_STRING, NULL, 1, 200, "city of the events made from performances",
     NULL, AT(event_city)},
    {"access_ok_results", SD_SETTING_STRING, "\"ACCEPTED\"", 0, 512,
     "comma-separated access-control `result` values that count as an entry", NULL,
     AT(access_ok_results)},
    {"attendance", SD_SETTING_BOOL, "false", 0, 0,
     "the access-control stream is set up: ticket sales start with attended_quantity 0 and each "
     "scan counts one, so \"bought but did not attend\" (attended: 0) finds who never came",
     NULL, AT(attendance)},
    {"access_fields", SD_SETTING_STRING,
     "\"scan_id=controlId,order=orderId,operation=operationId,time=controlDateTime,"
     "gate=accessPoint,result=result\"",
     1, 400,
     "the access-control scan's field names, as role=field pairs (roles: scan_id, order, "
     "operation, time, gate, result)",
     NULL, AT(access_fields)},
    SD_INBOUND_SETTINGS(struct s360_conf),
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

bool s360_in_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        const char *e = p;
        while (*e && *e != ',') {
            e++;
        }
        const char *t = e;
        while (t > p && t[-1] == ' ') {
            t--;
        }
        if ((size_t)(t - p) == n && n && memcmp(p, word, n) == 0) {
            return true;
        }
        p = e;
    }
    return false;
}

/* ---- small readers --------------------------------------------------------------------------- */

struct mctx {
    const struct s360_conf *cf;
    const struct sd_tz *tz;
    struct sd_issues *issues;
    const char *ptr; /* pointer prefix of the object inside the webhook item */
};

static void bad(struct mctx *m, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad(struct mctx *m, const char *field, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *ptr = sd_asprintf("%s/%s", m->ptr, field);
    sd_issues_add(m->issues, ptr, "%s", msg);
    free(ptr);
}

/* An int64 id: a JSON integer, or a string of digits (never a double). */
static bool get_id(struct mctx *m, const json_t *o, const char *field, bool required, int64_t *ret)
{
    const json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v)) {
        if (required) {
            bad(m, field, "missing");
        }
        return false;
    }
    if (json_is_integer(v)) {
        *ret = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_string(v) && sd_parse_int64(json_string_value(v), true, ret) == 0) {
        return true;
    }
    bad(m, field, "must be an integer id (a floating-point number would lose digits past 2^53)");
    return false;
}

static const char *get_str(const json_t *o, const char *field)
{
    const json_t *v = json_object_get(o, field);
    return json_is_string(v) && *json_string_value(v) ? json_string_value(v) : NULL;
}

/* RFC 3339 (offset, optional fraction) → ms since the epoch. */
static int instant_ms(const char *s, int64_t *ret)
{
    char utc[64];
    if (!s || sd_datetime_to_utc(s, utc, sizeof(utc)) < 0) {
        return -EINVAL;
    }
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(utc, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) {
        return -EINVAL;
    }
    int64_t ms = 0;
    if (utc[n] == '.') {
        int digits = 0;
        for (const char *p = utc + n + 1; *p >= '0' && *p <= '9'; p++) {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
                digits++;
            }
        }
        while (digits++ < 3) {
            ms *= 10;
        }
    }
    int64_t days = sd_days_from_civil(y, mo, d);
    *ret = ((days * 86400) + h * 3600 + mi * 60 + sec) * 1000 + ms;
    return 0;
}

/* UTC instant (s) → local "YYYY-MM-DD" and "HH:MM:SS" in the institution's zone. */
static int local_parts(const struct sd_tz *tz, int64_t utc_s, char date[16], char time[16])
{
    int64_t local;
    if (sd_tz_utc_to_local(tz, utc_s, &local) < 0) {
        return -ERANGE;
    }
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t sod = local - days * 86400;
    int64_t y;
    int mo, d;
    sd_civil_from_days(days, &y, &mo, &d);
    if (y < 1900 || y > 9999) {
        return -ERANGE;
    }
    snprintf(date, 16, "%04d-%02d-%02d", (int)y, mo, d);
    if (time) {
        snprintf(time, 16, "%02u:%02u:%02u", (unsigned)(sod / 3600) % 24u,
                 (unsigned)(sod / 60) % 60u, (unsigned)sod % 60u);
    }
    return 0;
}

/* history_from as a UTC instant in ms (its local midnight), or INT64_MIN when unset. */
static int64_t history_ms(const struct mctx *m)
{
    const char *h = m->cf->history_from;
    if (!h || !*h || !sd_date_valid(h)) {
        return INT64_MIN;
    }
    int y, mo, d;
    if (sscanf(h, "%4d-%2d-%2d", &y, &mo, &d) != 3) {
        return INT64_MIN;
    }
    int64_t local = sd_days_from_civil(y, mo, d) * 86400, utc;
    if (!m->tz || sd_tz_local_to_utc(m->tz, local, SD_TZ_EARLIER, &utc) < 0) {
        return INT64_MIN;
    }
    return utc * 1000;
}

/* ---- contacts -------------------------------------------------------------------------------- */

static const json_t *main_of(const json_t *arr, const char *type)
{
    const json_t *first = NULL;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *x = json_array_get(arr, i);
        if (type && !(get_str(x, "type") && strcmp(get_str(x, "type"), type) == 0)) {
            continue;
        }
        if (!json_is_object(x) || (type && !get_str(x, "value"))) {
            continue;
        }
        if (json_is_true(json_object_get(x, "isMain"))) {
            return x;
        }
        first = first ? first : x;
    }
    return first;
}

static void set_text_or_null(json_t *rec, const char *key, const char *v)
{
    json_object_set_new(rec, key, v ? sd_json_text(v) : json_null());
}

static int map_contact(struct mctx *m, const json_t *c, json_t *body, int64_t *ret_version)
{
    const json_t *num = json_object_get(c, "contactNumber");
    if (!json_is_string(num) || !*json_string_value(num)) {
        bad(m, "contactNumber", "must be a non-empty string (the contact's number)");
        return -EINVAL;
    }
    const char *changed = get_str(c, "lastUpdateDate");
    if (!changed) {
        changed = get_str(c, "creationDate");
    }
    int64_t version = 0;
    if (changed && instant_ms(changed, &version) < 0) {
        bad(m, "lastUpdateDate", "must be an ISO 8601 date-time with an offset");
        return -EINVAL;
    }
    if (changed && version < history_ms(m)) {
        return SD_INBOUND_SKIP;
    }
    const json_t *means = json_object_get(c, "communicationMeans");
    /* A contact without a communication mean of type EMAIL (a box-office buyer known by
     * phone and address) is a customer all the same: "email" null, which also clears the
     * address a resend no longer has (the type sets customers_email_optional). */
    const json_t *mail = main_of(means, "EMAIL");
    const json_t *person = json_object_get(c, "individualContact");
    const json_t *company = json_object_get(c, "structureContact");
    if (!json_is_object(person) && !json_is_object(company)) {
        bad(m, "individualContact",
            "neither individualContact (a person) nor structureContact (a company)");
        return -EINVAL;
    }
    json_t *rec = json_object();
    json_object_set_new(rec, "customer_id", sd_json_text(json_string_value(num)));
    set_text_or_null(rec, "email", mail ? get_str(mail, "value") : NULL);
    if (json_is_object(person)) {
        json_object_set_new(rec, "contact_type", json_string("person"));
        set_text_or_null(rec, "salutation", get_str(person, "title"));
        set_text_or_null(rec, "first_name", get_str(person, "firstName"));
        set_text_or_null(rec, "last_name", get_str(person, "lastName"));
        set_text_or_null(rec, "birth_date", get_str(person, "birthDate"));
        set_text_or_null(rec, "language", get_str(person, "languageCode"));
        set_text_or_null(rec, "company_contact_number", get_str(person, "structureContactNumber"));
        json_object_set_new(rec, "company", json_null());
        json_object_set_new(rec, "vat_number", json_null());
    } else {
        json_object_set_new(rec, "contact_type", json_string("company"));
        set_text_or_null(rec, "company", get_str(company, "name"));
        set_text_or_null(rec, "last_name", get_str(company, "name"));
        set_text_or_null(rec, "vat_number", get_str(company, "vatNumber"));
        json_object_set_new(rec, "salutation", json_null());
        json_object_set_new(rec, "first_name", json_null());
        json_object_set_new(rec, "birth_date", json_null());
        json_object_set_new(rec, "language", json_null());
        json_object_set_new(rec, "company_contact_number", json_null());
    }
    const json_t *addr = main_of(json_object_get(c, "addresses"), NULL);
    char *street = NULL;
    if (addr) {
        const char *s1 = get_str(addr, "street1"), *s2 = get_str(addr, "street2");
        street = s1 && s2 ? sd_asprintf("%s, %s", s1, s2)
                 : s1     ? sd_strdup(s1)
                 : s2     ? sd_strdup(s2)
                          : NULL;
    }
    set_text_or_null(rec, "street", street);
    free(street);
    set_text_or_null(rec, "post_code", addr ? get_str(addr, "zipCode") : NULL);
    set_text_or_null(rec, "city", addr ? get_str(addr, "town") : NULL);
    set_text_or_null(rec, "country", addr ? get_str(addr, "countryCode") : NULL);
    json_t *phones = json_array();
    for (size_t i = 0; i < json_array_size(means); i++) {
        const json_t *x = json_array_get(means, i);
        const char *t = get_str(x, "type"), *v = get_str(x, "value");
        if (t && v &&
            (strcmp(t, "PHONE") == 0 || strcmp(t, "MOBILE") == 0 || strcmp(t, "FAX") == 0)) {
            json_array_append_new(phones, json_pack("{s:o, s:o}", "type", sd_json_text(t), "number",
                                                    sd_json_text(v)));
        }
    }
    json_object_set_new(rec, "phones", phones);
    /* consent: any listed authorization false opts out (opt-out wins); all present true opts
     * in; none present leaves it unknown */
    int seen = 0, refused = 0;
    json_t *auths = json_object();
    const json_t *al = json_object_get(c, "authorizations");
    for (size_t i = 0; i < json_array_size(al); i++) {
        const json_t *x = json_array_get(al, i);
        const char *t = get_str(x, "authorizationType");
        const json_t *v = json_object_get(x, "value");
        if (!t || !json_is_boolean(v)) {
            continue;
        }
        json_object_set_new(auths, t, json_boolean(json_is_true(v)));
        if (s360_in_list(m->cf->optin_authorizations, t)) {
            seen++;
            refused += json_is_false(v);
        }
    }
    json_object_set_new(rec, "authorizations", auths);
    if (seen) {
        json_object_set_new(rec, "ad_opt_out", json_boolean(refused > 0));
    }
    json_t *arr = json_object_get(body, "customers");
    if (!arr) {
        arr = json_array();
        json_object_set_new(body, "customers", arr);
    }
    json_array_append_new(arr, rec);
    *ret_version = version > 0 ? version : 0;
    return 0;
}

/* ---- orders ---------------------------------------------------------------------------------- */

enum line_role { ROLE_SALE, ROLE_REFUND, ROLE_HOLD, ROLE_FREE, ROLE_ABANDONED };

struct order_kind {
    const char *type;
    const char *order_type; /* the model's */
    enum line_role role;    /* of lines with a positive quantity; negative ones undo */
};
/* orderType → the lifecycle (docs/ORDER_LIFECYCLE.md). RENEWAL (a season ticket renewed) and
 * ST_TRANSFER (a season ticket handed to this contact) are purchases of this contact: sales. */
static const struct order_kind kinds[] = {
    {"SALE", "sale", ROLE_SALE},
    {"RENEWAL", "sale", ROLE_SALE},
    {"ST_TRANSFER", "sale", ROLE_SALE},
    {"REFUND_CLIENT", "refund", ROLE_REFUND},
    {"REFUND_ORGANIZATION", "refund", ROLE_REFUND},
    {"EXCHANGE_CLIENT", "sale", ROLE_SALE},
    {"EXCHANGE_ORGANIZATION", "sale", ROLE_SALE},
    {"RESERVATION", "reservation", ROLE_HOLD},
    {"OPTION", "option", ROLE_HOLD},
    {"RESERVATION_FREEING", "reservation", ROLE_FREE},
    {"OPTION_FREEING", "option", ROLE_FREE},
};

/* "dd.mm.yyyy HH:MM" at the end of a performance label (S-360's display form). */
static bool label_datetime(const char *label, char date[16], char time[16])
{
    size_t n = label ? strlen(label) : 0;
    if (n < 16) {
        return false;
    }
    const char *s = label + n - 16;
    int d, mo, y, h, mi, used = 0;
    if (sscanf(s, "%2d.%2d.%4d %2d:%2d%n", &d, &mo, &y, &h, &mi, &used) != 5 || used != 16) {
        return false;
    }
    snprintf(date, 16, "%04d-%02d-%02d", y, mo, d);
    snprintf(time, 16, "%02d:%02d:00", h, mi);
    return sd_date_valid(date) && sd_time_valid(time);
}

/* Thousandths → the currency's decimal text. */
static bool money(struct mctx *m, const json_t *line, const char *field, int minor, bool required,
                  char out[32])
{
    int64_t v;
    const json_t *x = json_object_get(line, field);
    if (!x && !required) {
        return false;
    }
    if (!json_is_integer(x)) {
        bad(m, field, "must be an integer amount in thousandths of the currency");
        return false;
    }
    v = (int64_t)json_integer_value(x);
    int64_t mv;
    const char *why = NULL;
    if (v == INT64_MIN || sd_money_scaled_to_minor(v < 0 ? -v : v, 3, minor, &mv, &why) < 0) {
        bad(m, field, "%" PRId64 " thousandths: %s", v, why ? why : "out of range");
        return false;
    }
    sd_decimal_format(mv, minor, out);
    return true;
}

static json_t *ensure(json_t *body, const char *name)
{
    json_t *arr = json_object_get(body, name);
    if (!arr) {
        arr = json_array();
        json_object_set_new(body, name, arr);
    }
    return arr;
}

static void add_event(struct mctx *m, json_t *body, const char *event_id, const json_t *line,
                      const char *date, const char *time)
{
    json_t *events = ensure(body, "events");
    for (size_t i = 0; i < json_array_size(events); i++) {
        if (strcmp(json_string_value(json_object_get(json_array_get(events, i), "event_id")),
                   event_id) == 0) {
            return;
        }
    }
    const char *title = get_str(line, "performance");
    const char *product = get_str(line, "product");
    const char *venue =
        m->cf->event_venue && *m->cf->event_venue ? m->cf->event_venue : m->cf->institution;
    json_t *ev = json_pack(
        "{s:o, s:o, s:s, s:s, s:o, s:o, s:i, s:o}", "event_id", sd_json_text(event_id), "title",
        sd_json_text(title     ? title
                     : product ? product
                               : event_id),
        "date", date, "time", time, "venue", sd_json_text(venue), "hall",
        sd_json_text(m->cf->event_hall), "capacity", 0, "city", sd_json_text(m->cf->event_city));
    if (product) {
        json_object_set_new(ev, "work_title", sd_json_text(product));
    }
    const char *code = get_str(line, "productCode");
    if (code) {
        json_object_set_new(ev, "product_code", sd_json_text(code));
    }
    int64_t id;
    const json_t *pid = json_object_get(line, "productId");
    if (json_is_integer(pid)) {
        id = (int64_t)json_integer_value(pid);
        char b[24];
        snprintf(b, sizeof(b), "%" PRId64, id);
        json_object_set_new(ev, "product_id", json_string(b));
    }
    json_array_append_new(events, ev);
}

static int map_order(struct mctx *m, const json_t *o, json_t *body)
{
    size_t before = m->issues->total;
    int64_t order_id = 0, original = 0;
    get_id(m, o, "orderId", true, &order_id);
    bool has_original = get_id(m, o, "originalOrderId", false, &original);
    const char *type = get_str(o, "orderType");
    const char *state = get_str(o, "orderState");
    const char *contact = get_str(o, "contactReference");
    const char *created = get_str(o, "creationDateTime");
    const struct order_kind *kind = NULL;
    for (size_t i = 0; type && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        kind = strcmp(kinds[i].type, type) == 0 ? &kinds[i] : kind;
    }
    if (!type) {
        bad(m, "orderType", "missing");
    } else if (!kind) {
        bad(m, "orderType", "'%.40s' is not an order type this mapping knows", type);
    }
    if (!state) {
        bad(m, "orderState", "missing");
    }
    if (!contact) {
        bad(m, "contactReference", "missing: the order's contact number");
    }
    int64_t created_ms = 0;
    char purchase[64] = "";
    if (!created || instant_ms(created, &created_ms) < 0 ||
        sd_datetime_to_utc(created, purchase, sizeof(purchase)) < 0) {
        bad(m, "creationDateTime", "must be an ISO 8601 date-time with an offset");
    }
    const json_t *cur = json_object_get(o, "catalogCurrency");
    const char *currency = get_str(cur, "currencyCode");
    int minor = currency ? sd_currency_minor_units(currency) : -1;
    if (minor < 0) {
        bad(m, "catalogCurrency", "must hold an active ISO 4217 currencyCode");
    }
    char ref_date[16] = "";
    const char *ref = get_str(o, "referenceDate");
    int64_t ref_ms;
    if (ref && (instant_ms(ref, &ref_ms) < 0 ||
                local_parts(m->tz, ref_ms >= 0 ? ref_ms / 1000 : -((-ref_ms + 999) / 1000),
                            ref_date, NULL) < 0)) {
        bad(m, "referenceDate", "must be an ISO 8601 date-time");
    }
    char expires[64] = "";
    const char *exp = get_str(o, "expirationDate");
    if (exp && sd_datetime_to_utc(exp, expires, sizeof(expires)) < 0) {
        bad(m, "expirationDate", "must be an ISO 8601 date-time with an offset");
    }
    if (m->issues->total > before) {
        return -EINVAL;
    }
    if (created_ms < history_ms(m)) {
        return SD_INBOUND_SKIP;
    }
    bool abandoned = s360_in_list(m->cf->abandoned_states, state);
    const json_t *lines = json_object_get(o, "operationDatas");
    if (!json_is_array(lines)) {
        bad(m, "operationDatas", "must be an array of operation lines");
        return -EINVAL;
    }
    json_t *sales = ensure(body, "sales");
    size_t made = 0;
    for (size_t i = 0; i < json_array_size(lines); i++) {
        const json_t *line = json_array_get(lines, i);
        char lp[48];
        snprintf(lp, sizeof(lp), "operationDatas/%zu", i);
        int64_t op = 0, perf = 0, qty = 0;
        struct mctx lm = *m;
        char *lptr = sd_asprintf("%s/%s", m->ptr, lp);
        lm.ptr = lptr;
        bool ok = json_is_object(line);
        if (!ok) {
            bad(m, lp, "not an object");
        }
        ok = ok && get_id(&lm, line, "operationId", true, &op);
        if (ok && !json_object_get(line, "performanceId")) {
            free(lptr);
            continue; /* goods, services, memberships: no performance, no ticket record */
        }
        ok = ok && get_id(&lm, line, "performanceId", true, &perf);
        const json_t *q = json_object_get(line, "quantity");
        if (ok && (!json_is_integer(q) || json_integer_value(q) == 0)) {
            bad(&lm, "quantity", "must be a non-zero integer");
            ok = false;
        }
        qty = ok ? (int64_t)json_integer_value(q) : 0;
        char unit[32], base[32];
        bool has_base = false;
        ok = ok && money(&lm, line, "unitPrice", minor, true, unit);
        has_base = ok && money(&lm, line, "basePrice", minor, false, base);
        char date[16], time[16];
        const char *start = get_str(line, "performanceStartDateTime");
        int64_t start_ms;
        bool when = false;
        if (ok && start && instant_ms(start, &start_ms) == 0) {
            when = local_parts(m->tz, start_ms / 1000, date, time) == 0;
        }
        if (ok && !when) {
            when = label_datetime(get_str(line, "performance"), date, time);
        }
        if (ok && !when) {
            bad(&lm, "performance",
                "no start of the performance (performanceStartDateTime, or a label ending in "
                "\"dd.mm.yyyy HH:MM\"): the hub's events need a date and time");
            ok = false;
        }
        if (!ok || m->issues->total > before) {
            free(lptr);
            continue;
        }
        char invoice[48], event_id[24], refund_of[48] = "";
        snprintf(invoice, sizeof(invoice), "%" PRId64 "-%" PRId64, order_id, op);
        snprintf(event_id, sizeof(event_id), "%" PRId64, perf);
        /* a negative line undoes a line of the original order */
        bool undo = qty < 0;
        if (undo || kind->role == ROLE_REFUND || kind->role == ROLE_FREE) {
            int64_t orig_op = 0;
            if (!has_original) {
                bad(m, "originalOrderId", "a %s line must name the order it undoes", type);
            } else if (get_id(&lm, line, "originalOperationId", true, &orig_op)) {
                snprintf(refund_of, sizeof(refund_of), "%" PRId64 "-%" PRId64, original, orig_op);
            }
            if (m->issues->total > before) {
                free(lptr);
                continue;
            }
        }
        json_t *s = json_object();
        const char *otype = kind->order_type;
        if (abandoned) {
            otype = "abandoned";
        } else if (undo && kind->role != ROLE_FREE) {
            otype = "refund"; /* refunds, and the returned tickets of an exchange */
        }
        const char *kind_s = get_str(line, "kind");
        json_object_set_new(s, "invoice_number",
                            json_string(kind->role == ROLE_FREE ? refund_of : invoice));
        json_object_set_new(s, "event_id", json_string(event_id));
        json_object_set_new(s, "customer_id", sd_json_text(contact));
        json_object_set_new(s, "purchase_datetime", json_string(purchase));
        json_object_set_new(s, "ticket_category",
                            json_string(kind_s && strcmp(kind_s, "SEASONTICKET") == 0
                                            ? "subscription"
                                            : "regular"));
        json_object_set_new(s, "quantity", json_integer(qty < 0 ? -qty : qty));
        json_object_set_new(s, "sales_price", json_string(unit));
        if (has_base) {
            json_object_set_new(s, "base_price", json_string(base));
        }
        json_object_set_new(s, "currency", sd_json_text(currency));
        json_object_set_new(s, "order_type", json_string(otype));
        if (strcmp(otype, "sale") == 0 && m->cf->attendance) {
            json_object_set_new(s, "attended_quantity", json_integer(0));
        }
        if (strcmp(otype, "refund") == 0) {
            json_object_set_new(s, "refund_of", json_string(refund_of));
        } else if (kind->role == ROLE_FREE) {
            json_object_set_new(s, "status", json_string("freed"));
            json_object_set_new(s, "status_changed_at", json_string(purchase));
        } else if (kind->role == ROLE_HOLD && !abandoned && *expires) {
            json_object_set_new(s, "expires_at", json_string(expires));
        }
        char ids[24];
        snprintf(ids, sizeof(ids), "%" PRId64, order_id);
        json_object_set_new(s, kind->role == ROLE_FREE ? "freed_by_order_id" : "order_id",
                            json_string(ids));
        if (kind->role == ROLE_FREE) {
            json_object_set_new(s, "order_id", json_stringn(refund_of, strcspn(refund_of, "-")));
        }
        snprintf(ids, sizeof(ids), "%" PRId64, op);
        json_object_set_new(s, "operation_id", json_string(ids));
        json_object_set_new(s, "order_state", sd_json_text(state));
        json_object_set_new(s, "s360_order_type", sd_json_text(type));
        if (kind_s) {
            json_object_set_new(s, "line_kind", sd_json_text(kind_s));
        }
        if (*ref_date) {
            json_object_set_new(s, "reference_date", json_string(ref_date));
        }
        static const char *const texts[] = {"seatCategory", "audienceSubCategory", "product",
                                            "productCode", NULL};
        static const char *const names[] = {"seat_category", "audience_sub_category", "product",
                                            "product_code", NULL};
        for (size_t k = 0; texts[k]; k++) {
            const char *v = get_str(line, texts[k]);
            if (v) {
                json_object_set_new(s, names[k], sd_json_text(v));
            }
        }
        json_array_append_new(sales, s);
        add_event(m, body, event_id, line, date, time);
        made++;
        free(lptr);
    }
    if (m->issues->total > before) {
        return -EINVAL;
    }
    if (made == 0) {
        /* only goods and services: nothing the model keeps; acknowledged like history */
        json_object_del(body, "sales");
        return json_object_size(body) ? 0 : SD_INBOUND_SKIP;
    }
    return 0;
}

/* ---- access control -------------------------------------------------------------------------- */

enum { F_SCAN, F_ORDER, F_OPERATION, F_TIME, F_GATE, F_RESULT, F_N };
static const char *const roles[F_N] = {"scan_id", "order", "operation", "time", "gate", "result"};

/* access_fields ("role=field,…") into names[role] (into buf); -EINVAL on a malformed list or an
 * unknown role. Roles left out keep their default. */
static int access_names(const char *spec, char buf[512], const char *names[F_N])
{
    static const char *const dflt[F_N] = {"controlId",       "orderId",     "operationId",
                                          "controlDateTime", "accessPoint", "result"};
    for (size_t i = 0; i < F_N; i++) {
        names[i] = dflt[i];
    }
    snprintf(buf, 512, "%s", spec ? spec : "");
    char *save = NULL;
    for (char *pair = strtok_r(buf, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        while (*pair == ' ') {
            pair++;
        }
        char *eq = strchr(pair, '=');
        if (!eq || eq == pair || !eq[1]) {
            return -EINVAL;
        }
        *eq = 0;
        size_t i = 0;
        while (i < F_N && strcmp(roles[i], pair) != 0) {
            i++;
        }
        if (i == F_N) {
            return -EINVAL;
        }
        char *end = eq + 1 + strlen(eq + 1);
        while (end > eq + 1 && end[-1] == ' ') {
            *--end = 0;
        }
        names[i] = eq + 1;
    }
    return 0;
}

/* An id-like member as text: a JSON integer or a non-empty string. */
static bool id_text(const json_t *v, char out[64])
{
    if (json_is_integer(v)) {
        snprintf(out, 64, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    }
    if (json_is_string(v) && *json_string_value(v) && strlen(json_string_value(v)) < 64) {
        snprintf(out, 64, "%s", json_string_value(v));
        return true;
    }
    return false;
}

/* A scan (access-control check) becomes an entry of the sale line it names: body["scans"]. A
 * scan whose result is not an entry (access_ok_results) is acknowledged, not stored. */
static int map_access(struct mctx *m, const json_t *o, json_t *body)
{
    char buf[512];
    const char *f[F_N];
    if (access_names(m->cf->access_fields, buf, f) < 0) {
        sd_issues_add(m->issues, "", "the setting access_fields is malformed");
        return -EINVAL;
    }
    size_t before = m->issues->total;
    char scan[64], order_s[64];
    int64_t order = 0, op = 0;
    if (!id_text(json_object_get(o, f[F_SCAN]), scan)) {
        bad(m, f[F_SCAN], "missing: the scan's id (an integer or a string)");
    }
    get_id(m, o, f[F_ORDER], true, &order);
    get_id(m, o, f[F_OPERATION], true, &op);
    const char *when = get_str(o, f[F_TIME]);
    char utc[64] = "";
    int64_t ms = 0;
    if (when && (instant_ms(when, &ms) < 0 || sd_datetime_to_utc(when, utc, sizeof(utc)) < 0)) {
        bad(m, f[F_TIME], "must be an ISO 8601 date-time with an offset");
    }
    const char *result = get_str(o, f[F_RESULT]);
    if (m->issues->total > before) {
        return -EINVAL;
    }
    if ((result && !s360_in_list(m->cf->access_ok_results, result)) ||
        (when && ms < history_ms(m))) {
        return SD_INBOUND_SKIP;
    }
    snprintf(order_s, sizeof(order_s), "%" PRId64 "-%" PRId64, order, op);
    json_t *s = json_pack("{s:s, s:s}", "invoice_number", order_s, "scan_id", scan);
    if (*utc) {
        json_object_set_new(s, "scanned_at", json_string(utc));
    }
    const char *gate = get_str(o, f[F_GATE]);
    if (gate) {
        json_object_set_new(s, "gate", sd_json_text(gate));
    }
    json_array_append_new(ensure(body, "scans"), s);
    return 0;
}

/* ---- the whole object ------------------------------------------------------------------------ */

int s360_map_object(const struct s360_conf *cf, const char *stream, const json_t *object,
                    json_t *body, struct sd_issues *issues)
{
    const struct sd_tz *tz = NULL;
    char err[128];
    if (sd_tz_get(cf->time_zone, &tz, err, sizeof(err)) < 0) {
        sd_issues_add(issues, "", "time zone '%.64s' unusable: %s", cf->time_zone, err);
        return -EINVAL;
    }
    struct mctx m = {.cf = cf, .tz = tz, .issues = issues, .ptr = ""};
    if (!json_is_object(object)) {
        sd_issues_add(issues, "", "not a JSON object");
        return -EINVAL;
    }
    if (stream && strcmp(stream, "contacts") == 0) {
        int64_t version = 0;
        int r = map_contact(&m, object, body, &version);
        if (r == 0 && version > 0) {
            json_object_set_new(body, "remote_version", json_integer(version));
        }
        return r;
    }
    if (stream && strcmp(stream, "orders") == 0) {
        const json_t *d = json_object_get(object, "orderDetailsData");
        if (json_is_object(d)) {
            m.ptr = "/orderDetailsData";
            return map_order(&m, d, body);
        }
        if (!json_is_array(d) || json_array_size(d) == 0) {
            sd_issues_add(issues, "/orderDetailsData",
                          "must be an order object or a non-empty array of them");
            return -EINVAL;
        }
        int r = 0;
        size_t skipped = 0;
        for (size_t i = 0; i < json_array_size(d); i++) {
            char p[48];
            snprintf(p, sizeof(p), "/orderDetailsData/%zu", i);
            m.ptr = p;
            int ri = map_order(&m, json_array_get(d, i), body);
            skipped += ri == SD_INBOUND_SKIP;
            r = ri < 0 ? ri : r;
        }
        if (r == 0 && skipped == json_array_size(d)) {
            return SD_INBOUND_SKIP;
        }
        return r;
    }
    if (stream && strcmp(stream, "access") == 0) {
        return map_access(&m, object, body);
    }
    sd_issues_add(issues, "", "stream '%.32s' has no mapping", stream ? stream : "");
    return -EINVAL;
}

static int inbound_map(struct sd_connector_ctx *ctx, const json_t *object, json_t *body,
                       struct sd_issues *issues)
{
    return s360_map_object(ctx->conf, ctx->inbound_stream, object, body, issues);
}

/* ---- the type -------------------------------------------------------------------------------- */

static void check(const void *conf, struct sd_issues *errors)
{
    const struct s360_conf *cf = conf;
    const char *inst = cf->institution ? cf->institution : "";
    bool ok = *inst != 0 && strlen(inst) <= 64;
    for (const char *p = inst; *p; p++) {
        ok = ok && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-');
    }
    if (!ok) {
        sd_issues_add(errors, "/settings/institution", "must be 1-64 of a-z 0-9 _ -");
    }
    const struct sd_tz *tz = NULL;
    char err[128];
    if (sd_tz_get(cf->time_zone, &tz, err, sizeof(err)) < 0) {
        sd_issues_add(errors, "/settings/time_zone", "%s", err);
    }
    if (cf->history_from && *cf->history_from &&
        !(strlen(cf->history_from) == 10 && sd_date_valid(cf->history_from))) {
        sd_issues_add(errors, "/settings/history_from", "must be a date YYYY-MM-DD or \"\"");
    }
    char buf[512];
    const char *names[F_N];
    if (access_names(cf->access_fields, buf, names) < 0) {
        sd_issues_add(errors, "/settings/access_fields",
                      "must be role=field pairs separated by commas (roles: scan_id, order, "
                      "operation, time, gate, result)");
    }
    if (cf->push_contacts || cf->create_contacts) {
        static const char *const keys[] = {"operator", "partner", "secret"};
        const char *vals[] = {cf->operator_name, cf->partner, cf->secret};
        for (size_t i = 0; i < 3; i++) {
            if (!vals[i] || !*vals[i]) {
                char p[32];
                snprintf(p, sizeof(p), "/settings/%s", keys[i]);
                sd_issues_add(errors, p, "required when push_contacts or create_contacts is true");
            }
        }
    }
    sd_inbound_check_conf(&cf->inbound, errors);
}

static int init(struct sd_connector_ctx *ctx, void **ret_state)
{
    (void)ctx;
    *ret_state = NULL;
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

const struct sd_connector sd_connector_s360 = {
    .name = "s360",
    .kind = SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET,
    .help = "S-360 (SecuTix) institution: contact, order and access-control webhooks in at "
            "/in/{connector_id}/{token}/{institution}/{contacts|orders|access}; a run replays "
            "the quarantine",
    .settings = s360_settings,
    .settings_size = sizeof(struct s360_conf),
    .default_schedule = "every 15m",
    .init = init,
    .run = sd_inbound_replay_run, /* a run replays the quarantine */
    .fini = fini,
    .check = check,
    .inbound_map = inbound_map,
    .inbound_streams = SD_CHOICES("contacts", "orders", "access"),
    .inbound_scope_setting = "institution",
    .operations = s360_operations,
    .deliver = s360_deliver,
    .on_change = s360_on_change,
    .actions = s360_actions,
    .customers_email_optional = true,
    .quotas = (const struct sd_quota[]){{"minute", 60000000, 180, 30}, {NULL, 0, 0, 0}},
    .credential_settings = (const char *const[]){"api_base", "operator", "partner", NULL},
};
