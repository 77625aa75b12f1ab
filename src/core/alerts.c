/* alerts.c — alert rules, their evaluation, the history and the signed webhook sender (see
 * alerts.h).
 *
 * Invariants. Hooks never wait: with a worker they append a fact to a bounded queue under a
 * mutex and signal; the worker judges facts and sends alerts on its own thread. Judging a fact
 * reads the tenant's settings (defaults when none) and the facts' history in the store, then
 * opens an alert (the store keeps one open per tenant, rule and subject within DEDUPE_USEC) or
 * resolves the open one. A 2xx inbound answer or a quota take below the threshold is frequent:
 * it resolves only when this process knows an alert of that subject is open (`open_keys`), so
 * the common path costs a mutex and no store call. A repeated breach is skipped only while
 * the store said "open" within the last minute: with several nodes on one store, another node
 * may have resolved the alert since. (A node that never saw an alert open does not resolve it
 * on a good answer; the node that raised it does, or the next breach re-raises it.)
 *
 * Delivery. Alerts are claimed from the store with a lease (several nodes may send), signed at
 * each attempt with a fresh timestamp (Standard Webhooks: the signed content is
 * "<webhook-id>.<webhook-timestamp>.<body>", HMAC-SHA256 keyed with the base64-decoded part of
 * "whsec_…", header "v1,<base64>"), and the webhook-id is the alert id on every attempt, so a
 * receiver can drop repeats. The HTTP client applies the egress policy (http/egress.h) to every
 * connection. The secret is never logged and never returned. */
#include "core/alerts.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "core/connector_config.h"
#include "core/quota.h"
#include "core/runs.h"
#include "http/client.h"
#include "http/egress.h"

#define DEDUPE_USEC (86400LL * 1000000)  /* "one open alert … until it resolves or 24 h pass" */
/* How long this process trusts its own note that an alert is open before asking the store
 * again (one store call a minute per breached subject at most). */
#define HINT_FRESH_USEC (60LL * 1000000)
#define GIVE_UP_USEC (86400LL * 1000000) /* "gives up after a day" */
#define QUEUE_MAX 512
#define OPEN_KEYS_MAX 256
#define CLAIM_LEASE_USEC (60LL * 1000000)
#define CLAIM_BATCH 16
#define SEND_TIMEOUT_MS 10000
#define URL_MAX 2048
#define SECRET_PREFIX "whsec_"
#define SECRET_KEY_MIN 24 /* bytes of the decoded key (the specification: 24 to 64) */
#define SECRET_KEY_MAX 64
#define RECENT_RUNS 60                       /* runs read to find the previous successful ones */
#define QUOTA_MIN 0.5                        /* the lowest quota_used threshold */
#define INGEST_WINDOW_USEC (300LL * 1000000) /* an ingest window (scaled like the back-off) */
#define INGEST_MIN_ROWS 20                   /* fewer rows in a window say nothing about a share */
#define INGEST_WINDOWS_MAX 128

/* ---- rules ----------------------------------------------------------------------------------- */

struct rules {
    int64_t failures_in_a_row; /* 0: off */
    double drop_below_percent; /* 0: off */
    int64_t drop_previous_runs;
    double rejected_share; /* 0: off */
    bool dead_letters;
    double quota_used; /* 0: off */
    bool vendor_webhook_non200;
};

static const struct rules defaults = {
    .failures_in_a_row = 3,
    .drop_below_percent = 50,
    .drop_previous_runs = 5,
    .rejected_share = 0.25,
    .dead_letters = true,
    .quota_used = 0.9,
    .vendor_webhook_non200 = true,
};

static const char *const rule_names[] = {"connector_failures_in_a_row",
                                         "record_count_drop",
                                         "rejected_share",
                                         "dead_letters",
                                         "quota_used",
                                         "vendor_webhook_non200",
                                         NULL};

static json_t *rules_json(const struct rules *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "connector_failures_in_a_row",
                        r->failures_in_a_row ? json_integer(r->failures_in_a_row) : json_false());
    json_object_set_new(o, "record_count_drop",
                        r->drop_below_percent > 0
                            ? json_pack("{s:f, s:I}", "below_percent", r->drop_below_percent,
                                        "previous_runs", (json_int_t)r->drop_previous_runs)
                            : json_false());
    json_object_set_new(o, "rejected_share",
                        r->rejected_share > 0 ? json_real(r->rejected_share) : json_false());
    json_object_set_new(o, "dead_letters", json_boolean(r->dead_letters));
    json_object_set_new(o, "quota_used",
                        r->quota_used > 0 ? json_real(r->quota_used) : json_false());
    json_object_set_new(o, "vendor_webhook_non200", json_boolean(r->vendor_webhook_non200));
    return o;
}

static bool number_in(const json_t *v, double lo_excl, double hi_incl, double *ret)
{
    if (!json_is_number(v)) {
        return false;
    }
    double d = json_number_value(v);
    if (!(d > lo_excl && d <= hi_incl)) {
        return false;
    }
    *ret = d;
    return true;
}

/* Rules from a stored or sent object: members left out keep their defaults. With errors NULL
 * (a stored document, checked when saved) a bad member keeps its default silently. */
static void rules_parse(const json_t *o, struct rules *r, struct sd_issues *errors)
{
    *r = defaults;
    if (!o) {
        return;
    }
    if (!json_is_object(o)) {
        if (errors) {
            sd_issues_add(errors, "/rules", "must be an object of rules");
        }
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        bool known = false;
        for (size_t i = 0; rule_names[i]; i++) {
            known = known || strcmp(key, rule_names[i]) == 0;
        }
        if (!known) {
            if (errors) {
                sd_issues_add(errors, "/rules",
                              "unknown rule '%s' (rules: connector_failures_"
                              "in_a_row, record_count_drop, rejected_share, dead_letters, "
                              "quota_used, vendor_webhook_non200)",
                              key);
            }
            continue;
        }
        char ptr[96];
        snprintf(ptr, sizeof(ptr), "/rules/%s", key);
        bool off = json_is_false(v);
        if (strcmp(key, "connector_failures_in_a_row") == 0) {
            if (off) {
                r->failures_in_a_row = 0;
            } else if (json_is_integer(v) && json_integer_value(v) >= 1 &&
                       json_integer_value(v) <= 100) {
                r->failures_in_a_row = json_integer_value(v);
            } else if (errors) {
                sd_issues_add(errors, ptr, "must be a number of runs from 1 to 100, or false");
            }
        } else if (strcmp(key, "record_count_drop") == 0) {
            double pct = 0;
            const json_t *k = json_object_get(v, "previous_runs");
            if (off) {
                r->drop_below_percent = 0;
            } else if (!json_is_object(v) || json_object_size(v) > 2 ||
                       !number_in(json_object_get(v, "below_percent"), 0, 100, &pct) ||
                       (k && !(json_is_integer(k) && json_integer_value(k) >= 3 &&
                               json_integer_value(k) <= 50))) {
                if (errors) {
                    sd_issues_add(errors, ptr,
                                  "must be {\"below_percent\": more than 0 up to 100, "
                                  "\"previous_runs\": 3 to 50 (default 5)}, or false");
                }
            } else {
                r->drop_below_percent = pct;
                r->drop_previous_runs = k ? json_integer_value(k) : defaults.drop_previous_runs;
            }
        } else if (strcmp(key, "rejected_share") == 0 || strcmp(key, "quota_used") == 0) {
            bool quota = key[0] == 'q';
            double *dst = quota ? &r->quota_used : &r->rejected_share;
            /* quota_used starts at half a window: below that a take is never judged (the
             * hook's cheap path, sd_alerts_quota) */
            double d = json_is_number(v) ? json_number_value(v) : -1;
            bool ok = d <= 1 && (quota ? d >= QUOTA_MIN : d > 0);
            if (off) {
                *dst = 0;
            } else if (ok) {
                *dst = d;
            } else if (errors) {
                sd_issues_add(errors, ptr,
                              quota ? "must be a fraction from 0.5 up to 1, or false"
                                    : "must be a fraction above 0 up to 1, or false");
            }
        } else {
            bool *dst = key[0] == 'd' ? &r->dead_letters : &r->vendor_webhook_non200;
            if (json_is_boolean(v)) {
                *dst = json_is_true(v);
            } else if (errors) {
                sd_issues_add(errors, ptr, "must be true or false");
            }
        }
    }
}

/* ---- settings -------------------------------------------------------------------------------- */

/* The key of a "whsec_<base64>" secret into key (at least SECRET_KEY_MAX bytes): its length,
 * or -EINVAL (not the prefix, not strict base64, or a key outside 24..64 bytes). */
static int secret_key(const char *secret, unsigned char *key)
{
    size_t plen = strlen(SECRET_PREFIX);
    if (!secret || strncmp(secret, SECRET_PREFIX, plen) != 0) {
        return -EINVAL;
    }
    const char *b = secret + plen;
    size_t n = strlen(b);
    if (n == 0 || n % 4 != 0 || n > 4 * ((SECRET_KEY_MAX + 2) / 3)) {
        return -EINVAL;
    }
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (c == '=' && i >= n - 2) {
            pad++;
            continue;
        }
        if (!ok || pad) {
            return -EINVAL;
        }
    }
    unsigned char buf[4 * ((SECRET_KEY_MAX + 2) / 3)];
    int len = EVP_DecodeBlock(buf, (const unsigned char *)b, (int)n);
    if (len < 0) {
        return -EINVAL;
    }
    len -= (int)pad;
    if (len < SECRET_KEY_MIN || len > SECRET_KEY_MAX) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return -EINVAL;
    }
    memcpy(key, buf, (size_t)len);
    OPENSSL_cleanse(buf, sizeof(buf));
    return len;
}

int sd_alerts_sign(const char *secret, const char *id, int64_t timestamp, const char *body,
                   size_t body_len, char *out, size_t out_size)
{
    unsigned char key[SECRET_KEY_MAX];
    int klen = secret_key(secret, key);
    if (klen < 0 || out_size < 64) {
        return -EINVAL;
    }
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)timestamp);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mlen = 0;
    /* The signed content: id + "." + timestamp + "." + body. */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    int ok = ctx && EVP_MAC_init(ctx, key, (size_t)klen, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)body, body_len) &&
             EVP_MAC_final(ctx, mac, &mlen, sizeof(mac));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok || mlen != 32) {
        return -EIO;
    }
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mlen); /* 44 chars + NUL */
    return 0;
}

static bool has_ctl(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return true;
        }
    }
    return false;
}

int sd_alerts_settings_check(const json_t *body, json_t **ret_doc, char **ret_secret,
                             struct sd_issues *errors)
{
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "must be an object {\"webhook_url\", \"secret\", \"rules\"}");
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "webhook_url") != 0 && strcmp(key, "secret") != 0 &&
            strcmp(key, "rules") != 0) {
            sd_issues_add(errors, "", "unknown member '%s' (webhook_url, secret, rules)", key);
        }
    }
    const json_t *url = json_object_get(body, "webhook_url");
    if (url && !json_is_null(url)) {
        static const char *const schemes[] = {"https", "http", NULL};
        struct sd_url su;
        char why[320];
        const char *u = json_string_value(url);
        if (!json_is_string(url) || json_string_length(url) == 0) {
            sd_issues_add(errors, "/webhook_url", "must be an https:// URL or null");
        } else if (json_string_length(url) > URL_MAX) {
            sd_issues_add(errors, "/webhook_url", "longer than %d characters", URL_MAX);
        } else if (has_ctl(u) || strlen(u) != json_string_length(url)) {
            sd_issues_add(errors, "/webhook_url", "contains control characters");
        } else if (sd_egress_check_url(u, schemes, sd_egress_policy_env(), &su, why, sizeof(why)) <
                   0) {
            sd_issues_add(errors, "/webhook_url", "%s", why);
        } else if (strcmp(su.scheme, "http") == 0 && !su.host_loopback) {
            sd_issues_add(errors, "/webhook_url",
                          "must be https:// (http:// is allowed for a loopback address or "
                          "localhost only)");
        }
    }
    const json_t *sec = json_object_get(body, "secret");
    unsigned char k[SECRET_KEY_MAX];
    if (sec && !json_is_null(sec) &&
        (!json_is_string(sec) || secret_key(json_string_value(sec), k) < 0)) {
        sd_issues_add(errors, "/secret",
                      "must be a Standard Webhooks secret: \"whsec_\" and the base64 of 24 to 64 "
                      "random bytes (or null to remove it)");
    }
    OPENSSL_cleanse(k, sizeof(k));
    struct rules r;
    rules_parse(json_object_get(body, "rules"), &r, errors);
    if (errors->total > 0) {
        return -EINVAL;
    }
    *ret_doc =
        json_pack("{s:O, s:o}", "webhook_url", url ? url : json_null(), "rules", rules_json(&r));
    *ret_secret = !sec                ? NULL
                  : json_is_null(sec) ? sd_strdup("")
                                      : sd_strdup(json_string_value(sec));
    return 0;
}

json_t *sd_alerts_settings_view(const char *doc, bool secret_set)
{
    json_t *d = doc ? json_loads(doc, 0, NULL) : NULL;
    struct rules r;
    rules_parse(json_object_get(d, "rules"), &r, NULL);
    const json_t *url = json_object_get(d, "webhook_url");
    json_t *o =
        json_pack("{s:O, s:b, s:o, s:b}", "webhook_url", json_is_string(url) ? url : json_null(),
                  "secret_set", secret_set, "rules", rules_json(&r), "defaults", d == NULL);
    json_decref(d);
    return o;
}

/* The tenant's rules and webhook URL (heap or NULL); defaults without settings. */
static int load_rules(struct sd_store_handle *st, int64_t tenant_id, struct rules *r,
                      char **ret_url)
{
    char *doc = NULL;
    int rc = sd_store_alert_settings_get(st, tenant_id, &doc, NULL);
    if (rc == -ENOENT) {
        *r = defaults;
        if (ret_url) {
            *ret_url = NULL;
        }
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    json_t *d = json_loads(doc, 0, NULL);
    free(doc);
    rules_parse(json_object_get(d, "rules"), r, NULL);
    if (ret_url) {
        const json_t *u = json_object_get(d, "webhook_url");
        *ret_url = json_is_string(u) ? sd_strdup(json_string_value(u)) : NULL;
    }
    json_decref(d);
    return 0;
}

/* ---- the worker's state -----------------------------------------------------------------------
 */

enum fact_kind { FACT_RUN, FACT_DEAD, FACT_QUOTA, FACT_INBOUND, FACT_INGEST };

struct fact {
    enum fact_kind kind;
    int64_t tenant_id;
    enum sd_env env;
    char *subject; /* connector / target id */
    char *run_id;  /* FACT_RUN */
    char *text;    /* FACT_RUN: error; FACT_DEAD: why; FACT_QUOTA: window */
    char *extra;   /* FACT_DEAD: delivery id */
    int status;    /* FACT_RUN: sd_run_status; FACT_INBOUND: HTTP status */
    int64_t a, b;  /* FACT_RUN: records_in, rejected; FACT_QUOTA: used, limit;
                    * FACT_INGEST: rows, rejected rows of a window */
};

/* The API ingest of one (tenant, env) in the current window. */
struct ingest_window {
    int64_t tenant_id;
    enum sd_env env;
    int64_t start_usec; /* 0: free */
    int64_t rows, rejected;
};

struct open_key {
    int64_t tenant_id;
    char rule[32];
    char subject[SD_ALERT_WORD_MAX + 1];
    int64_t until_usec;   /* 0: free */
    int64_t checked_usec; /* when the store last said it is open (raised, or already open) */
};

struct sd_alerts {
    struct sd_hub *hub;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, woken;
    struct fact q[QUEUE_MAX];
    size_t qn;
    int64_t dropped;
    struct open_key open_keys[OPEN_KEYS_MAX];
    struct ingest_window windows[INGEST_WINDOWS_MAX];
    double scale;
};

/* Open-key hints when no worker runs (the CLI): one process-wide table. */
static pthread_mutex_t solo_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_key solo_keys[OPEN_KEYS_MAX];

static void fact_release(struct fact *f)
{
    free(f->subject);
    free(f->run_id);
    free(f->text);
    free(f->extra);
}

static struct open_key *keys_of(struct sd_hub *hub, pthread_mutex_t **ret_lock)
{
    struct sd_alerts *al = hub->alerts;
    *ret_lock = al ? &al->lock : &solo_lock;
    return al ? al->open_keys : solo_keys;
}

/* Whether this process knows an open alert of (tenant, rule, subject); remove: forget it.
 * fresh_only: only if the store said so within HINT_FRESH_USEC — the test before skipping a
 * raise, since another node sharing the store may have resolved the alert since: a stale hint
 * would hide a new breach for up to a day. */
static bool key_known_since(struct sd_hub *hub, int64_t tenant_id, const char *rule,
                            const char *subject, bool remove, bool fresh_only)
{
    pthread_mutex_t *lock;
    struct open_key *k = keys_of(hub, &lock);
    int64_t now = sd_now_usec();
    bool found = false;
    pthread_mutex_lock(lock);
    for (size_t i = 0; i < OPEN_KEYS_MAX; i++) {
        if (k[i].until_usec > now && k[i].tenant_id == tenant_id && strcmp(k[i].rule, rule) == 0 &&
            strcmp(k[i].subject, subject) == 0 &&
            (!fresh_only || now - k[i].checked_usec < HINT_FRESH_USEC)) {
            found = true;
            if (remove) {
                k[i].until_usec = 0;
            }
        }
    }
    pthread_mutex_unlock(lock);
    return found;
}

static bool key_known(struct sd_hub *hub, int64_t tenant_id, const char *rule, const char *subject,
                      bool remove)
{
    return key_known_since(hub, tenant_id, rule, subject, remove, false);
}

/* An open alert this process may skip raising again (see key_known_since). */
static bool key_fresh(struct sd_hub *hub, int64_t tenant_id, const char *rule, const char *subject)
{
    return key_known_since(hub, tenant_id, rule, subject, false, true);
}

static void key_add(struct sd_hub *hub, int64_t tenant_id, const char *rule, const char *subject)
{
    pthread_mutex_t *lock;
    struct open_key *k = keys_of(hub, &lock);
    int64_t now = sd_now_usec();
    pthread_mutex_lock(lock);
    size_t pick = 0;
    for (size_t i = 0; i < OPEN_KEYS_MAX; i++) {
        if (k[i].until_usec <= now) {
            pick = i;
            break;
        }
        if (k[i].until_usec < k[pick].until_usec) {
            pick = i; /* full: the one closest to its end makes room */
        }
    }
    k[pick].tenant_id = tenant_id;
    snprintf(k[pick].rule, sizeof(k[pick].rule), "%s", rule);
    snprintf(k[pick].subject, sizeof(k[pick].subject), "%s", subject);
    k[pick].until_usec = now + DEDUPE_USEC;
    k[pick].checked_usec = now;
    pthread_mutex_unlock(lock);
}

static void wake(struct sd_hub *hub)
{
    struct sd_alerts *al = hub->alerts;
    if (al) {
        pthread_mutex_lock(&al->lock);
        al->woken = true;
        pthread_cond_signal(&al->cond);
        pthread_mutex_unlock(&al->lock);
    }
}

/* ---- raising and resolving ------------------------------------------------------------------ */

/* Open an alert of rule on subject with message and facts (moved in). Logged once stored. */
static void raise_alert(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *rule,
                        const char *subject, const char *url, char *message, json_t *facts)
{
    uint8_t rnd[8];
    if (sd_random_bytes(rnd, sizeof(rnd)) < 0) {
        free(message);
        json_decref(facts);
        return;
    }
    char id[SD_ALERT_WORD_MAX + 1];
    snprintf(id, sizeof(id), "alr_%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5], rnd[6], rnd[7]);
    json_t *d = json_pack("{s:o, s:o}", "message", sd_json_text(message), "facts", facts);
    char *doc = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    free(message);
    int64_t now = sd_now_usec();
    struct sd_alert a = {.id = id,
                         .tenant_id = tenant_id,
                         .env = env,
                         .rule = (char *)rule,
                         .subject = (char *)subject,
                         .doc = doc,
                         .created_usec = now,
                         .delivery = url ? SD_ALERT_PENDING : SD_ALERT_NOT_SENT,
                         .next_attempt_usec = now};
    int r = doc ? sd_store_alert_open(hub->store, &a, DEDUPE_USEC) : -EIO;
    if (r == 0) {
        key_add(hub, tenant_id, rule, subject);
        sd_log(SD_LOG_WARN, "alert raised", "alert=%s rule=%s subject=%s", id, rule, subject);
        wake(hub);
    } else if (r == -EEXIST) {
        key_add(hub, tenant_id, rule, subject); /* already open: remember it for the resolve */
    } else {
        sd_log(SD_LOG_ERROR, "alert not stored", "rule=%s subject=%s " SD_LOG_ERR_FMT, rule,
               subject, SD_LOG_ERR_ARGS(r));
    }
    free(doc);
}

static void resolve_alert(struct sd_hub *hub, int64_t tenant_id, const char *rule,
                          const char *subject)
{
    key_known(hub, tenant_id, rule, subject, true);
    int r = sd_store_alert_resolve(hub->store, tenant_id, rule, subject, sd_now_usec());
    if (r > 0) {
        sd_log(SD_LOG_INFO, "alert resolved", "rule=%s subject=%s", rule, subject);
    } else if (r < 0) {
        sd_log(SD_LOG_WARN, "alert not resolved", "rule=%s subject=%s " SD_LOG_ERR_FMT, rule,
               subject, SD_LOG_ERR_ARGS(r));
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A run's end: failures in a row, a record-count drop, the rejected share. */
static void judge_run(struct sd_hub *hub, const struct fact *f)
{
    struct rules r;
    char *url = NULL;
    if (load_rules(hub->store, f->tenant_id, &r, &url) < 0) {
        return;
    }
    struct sd_run *v = NULL;
    size_t n = 0;
    if (sd_store_run_list(hub->store, f->tenant_id, f->subject, 0, RECENT_RUNS, &v, &n) < 0) {
        free(url);
        return;
    }
    bool ok = f->status == SD_RUN_OK;
    /* connector_failures_in_a_row: the newest N runs all failed */
    if (r.failures_in_a_row > 0 && f->status == SD_RUN_FAILED) {
        int64_t streak = 0;
        while ((size_t)streak < n && v[streak].status == SD_RUN_FAILED) {
            streak++;
        }
        if (streak >= r.failures_in_a_row) {
            char *msg = sd_asprintf("connector %s failed %lld runs in a row; last error: %s",
                                    f->subject, (long long)streak, f->text ? f->text : "");
            raise_alert(hub, f->tenant_id, f->env, "connector_failures_in_a_row", f->subject, url,
                        msg,
                        json_pack("{s:s, s:I, s:s, s:o}", "connector_id", f->subject, "failed_runs",
                                  (json_int_t)streak, "run_id", f->run_id, "last_error",
                                  sd_json_text(f->text ? f->text : "")));
        }
    } else if (ok) {
        resolve_alert(hub, f->tenant_id, "connector_failures_in_a_row", f->subject);
    }
    /* record_count_drop: a successful run stored < X % of the median of the previous K
     * successful runs */
    if (r.drop_below_percent > 0 && ok) {
        int64_t prev[RECENT_RUNS];
        size_t k = 0;
        for (size_t i = 0; i < n && k < (size_t)r.drop_previous_runs; i++) {
            if (v[i].status == SD_RUN_OK && strcmp(v[i].run_id, f->run_id) != 0) {
                prev[k++] = v[i].records_in;
            }
        }
        if (k >= (size_t)r.drop_previous_runs) {
            qsort(prev, k, sizeof(prev[0]), cmp_i64);
            double median =
                k % 2 ? (double)prev[k / 2] : ((double)prev[k / 2 - 1] + (double)prev[k / 2]) / 2.0;
            if (median > 0 && (double)f->a < median * r.drop_below_percent / 100.0) {
                char *msg = sd_asprintf(
                    "connector %s stored %lld records, below %g%% of the median %g of its "
                    "previous %lld successful runs",
                    f->subject, (long long)f->a, r.drop_below_percent, median,
                    (long long)r.drop_previous_runs);
                raise_alert(hub, f->tenant_id, f->env, "record_count_drop", f->subject, url, msg,
                            json_pack("{s:s, s:s, s:I, s:f, s:f, s:I}", "connector_id", f->subject,
                                      "run_id", f->run_id, "records_in", (json_int_t)f->a, "median",
                                      median, "below_percent", r.drop_below_percent,
                                      "previous_runs", (json_int_t)r.drop_previous_runs));
            } else {
                resolve_alert(hub, f->tenant_id, "record_count_drop", f->subject);
            }
        }
    }
    /* rejected_share: rejected / (stored + rejected) of the run */
    int64_t rows = f->a + f->b;
    if (r.rejected_share > 0 && rows > 0 && f->status != SD_RUN_CANCELLED) {
        double share = (double)f->b / (double)rows;
        if (share > r.rejected_share) {
            char *msg = sd_asprintf("connector %s rejected %lld of %lld rows (%.1f%%, above %g%%)",
                                    f->subject, (long long)f->b, (long long)rows, share * 100,
                                    r.rejected_share * 100);
            raise_alert(hub, f->tenant_id, f->env, "rejected_share", f->subject, url, msg,
                        json_pack("{s:s, s:s, s:I, s:I, s:f, s:f}", "connector_id", f->subject,
                                  "run_id", f->run_id, "rejected", (json_int_t)f->b, "rows",
                                  (json_int_t)rows, "share", share, "threshold", r.rejected_share));
        } else {
            resolve_alert(hub, f->tenant_id, "rejected_share", f->subject);
        }
    }
    sd_runs_free(v, n);
    free(url);
}

static void judge_dead(struct sd_hub *hub, const struct fact *f)
{
    struct rules r;
    char *url = NULL;
    if (load_rules(hub->store, f->tenant_id, &r, &url) < 0) {
        return;
    }
    if (r.dead_letters) {
        char *msg = sd_asprintf("delivery %s to %s went dead: %s", f->extra, f->subject,
                                f->text ? f->text : "");
        raise_alert(hub, f->tenant_id, f->env, "dead_letters", f->subject, url, msg,
                    json_pack("{s:s, s:s, s:o}", "target_id", f->subject, "delivery_id", f->extra,
                              "last_error", sd_json_text(f->text ? f->text : "")));
    }
    free(url);
}

static void judge_quota(struct sd_hub *hub, const struct fact *f)
{
    struct rules r;
    char *url = NULL;
    if (f->b <= 0 || load_rules(hub->store, f->tenant_id, &r, &url) < 0) {
        return;
    }
    char subject[SD_ALERT_WORD_MAX + 1];
    snprintf(subject, sizeof(subject), "%s/%s", f->subject, f->text ? f->text : "");
    double used = (double)f->a / (double)f->b;
    if (r.quota_used > 0 && used >= r.quota_used) {
        if (key_fresh(hub, f->tenant_id, "quota_used", subject)) {
            free(url);
            return; /* open already: every further call of the window would only repeat it */
        }
        char *msg = sd_asprintf("connector %s used %lld of %lld calls of its %s quota window",
                                f->subject, (long long)f->a, (long long)f->b, f->text);
        raise_alert(hub, f->tenant_id, f->env, "quota_used", subject, url, msg,
                    json_pack("{s:s, s:s, s:I, s:I, s:f}", "connector_id", f->subject, "window",
                              f->text, "used", (json_int_t)f->a, "limit", (json_int_t)f->b,
                              "threshold", r.quota_used));
    } else if (key_known(hub, f->tenant_id, "quota_used", subject, false)) {
        resolve_alert(hub, f->tenant_id, "quota_used", subject);
    }
    free(url);
}

static void judge_inbound(struct sd_hub *hub, struct fact *f)
{
    struct sd_connector_conf c = {0};
    if (sd_store_connector_get(hub->store, f->subject, &c) < 0) {
        return;
    }
    f->tenant_id = c.tenant_id;
    f->env = c.env;
    sd_connector_conf_release(&c);
    if (f->status >= 200 && f->status < 300) {
        resolve_alert(hub, f->tenant_id, "vendor_webhook_non200", f->subject);
        return;
    }
    struct rules r;
    char *url = NULL;
    if (load_rules(hub->store, f->tenant_id, &r, &url) < 0) {
        return;
    }
    if (r.vendor_webhook_non200 &&
        !key_fresh(hub, f->tenant_id, "vendor_webhook_non200", f->subject)) {
        char *msg =
            sd_asprintf("the inbound webhook of connector %s answered %d", f->subject, f->status);
        raise_alert(hub, f->tenant_id, f->env, "vendor_webhook_non200", f->subject, url, msg,
                    json_pack("{s:s, s:i}", "connector_id", f->subject, "status", f->status));
    }
    free(url);
}

/* An ended ingest window of (tenant, env): its rejected share. */
static void judge_ingest(struct sd_hub *hub, const struct fact *f)
{
    struct rules r;
    char *url = NULL;
    if (load_rules(hub->store, f->tenant_id, &r, &url) < 0) {
        return;
    }
    char subject[32];
    snprintf(subject, sizeof(subject), "ingest/%s", sd_env_name(f->env));
    double share = f->a > 0 ? (double)f->b / (double)f->a : 0;
    if (r.rejected_share > 0 && f->a >= INGEST_MIN_ROWS && share > r.rejected_share) {
        char *msg = sd_asprintf("the ingest API (%s) refused %lld of %lld rows in a window "
                                "(%.1f%%, above %g%%)",
                                sd_env_name(f->env), (long long)f->b, (long long)f->a, share * 100,
                                r.rejected_share * 100);
        raise_alert(hub, f->tenant_id, f->env, "rejected_share", subject, url, msg,
                    json_pack("{s:s, s:I, s:I, s:f, s:f}", "source", "ingest", "rejected",
                              (json_int_t)f->b, "rows", (json_int_t)f->a, "share", share,
                              "threshold", r.rejected_share));
    } else if (f->a >= INGEST_MIN_ROWS) {
        resolve_alert(hub, f->tenant_id, "rejected_share", subject);
    }
    free(url);
}

static void judge(struct sd_hub *hub, struct fact *f)
{
    switch (f->kind) {
    case FACT_RUN: judge_run(hub, f); break;
    case FACT_DEAD: judge_dead(hub, f); break;
    case FACT_QUOTA: judge_quota(hub, f); break;
    case FACT_INBOUND: judge_inbound(hub, f); break;
    case FACT_INGEST: judge_ingest(hub, f); break;
    }
}

/* Queue f (moved in) for the worker, or judge it now without one. */
static void submit(struct sd_hub *hub, struct fact *f)
{
    struct sd_alerts *al = hub->alerts;
    if (!al) {
        judge(hub, f);
        fact_release(f);
        return;
    }
    bool dropped = false;
    pthread_mutex_lock(&al->lock);
    if (al->qn < QUEUE_MAX) {
        al->q[al->qn++] = *f;
        al->woken = true;
        pthread_cond_signal(&al->cond);
    } else {
        dropped = (al->dropped++ % 100) == 0;
        fact_release(f);
    }
    pthread_mutex_unlock(&al->lock);
    if (dropped) {
        sd_log(SD_LOG_WARN, "alert queue full; facts dropped", "dropped=%lld",
               (long long)al->dropped);
    }
}

/* ---- hooks ----------------------------------------------------------------------------------- */

void sd_alerts_run_end(struct sd_hub *hub, const struct sd_connector_conf *conf, const char *run_id,
                       const struct sd_run_end *end)
{
    struct fact f = {.kind = FACT_RUN,
                     .tenant_id = conf->tenant_id,
                     .env = conf->env,
                     .subject = sd_strdup(conf->id),
                     .run_id = sd_strdup(run_id),
                     .text = end->result != 0 && end->error ? sd_strdup(end->error) : NULL,
                     .status = end->result == 0 ? SD_RUN_OK
                               : end->cancelled ? SD_RUN_CANCELLED
                                                : SD_RUN_FAILED,
                     .a = (int64_t)end->records_in,
                     .b = (int64_t)end->records_rejected};
    submit(hub, &f);
}

void sd_alerts_dead_letter(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                           const char *target_id, const char *delivery_id, const char *why)
{
    if (!target_id || !delivery_id) {
        return;
    }
    struct fact f = {.kind = FACT_DEAD,
                     .tenant_id = tenant_id,
                     .env = env,
                     .subject = sd_strdup(target_id),
                     .extra = sd_strdup(delivery_id),
                     .text = why ? sd_strdup(why) : NULL};
    submit(hub, &f);
}

void sd_alerts_quota(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                     const char *connector_id, const char *window, int64_t used, int64_t limit)
{
    if (!connector_id || !window || limit <= 0) {
        return;
    }
    char subject[SD_ALERT_WORD_MAX + 1];
    snprintf(subject, sizeof(subject), "%s/%s", connector_id, window);
    /* Below every threshold a rule accepts and nothing open: the common case costs no store
     * call (the tenant's own threshold is judged on the worker). */
    if ((double)used < QUOTA_MIN * (double)limit &&
        !key_known(hub, tenant_id, "quota_used", subject, false)) {
        return;
    }
    struct fact f = {.kind = FACT_QUOTA,
                     .tenant_id = tenant_id,
                     .env = env,
                     .subject = sd_strdup(connector_id),
                     .text = sd_strdup(window),
                     .a = used,
                     .b = limit};
    submit(hub, &f);
}

void sd_alerts_quota_taken(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                           const char *connector_id)
{
    const char *window = NULL;
    int64_t used = 0, limit = 0;
    sd_quota_last_fill(&window, &used, &limit);
    if (limit > 0) {
        sd_alerts_quota(hub, tenant_id, env, connector_id, window, used, limit);
    }
}

/* Windows that ended by now_usec leave as facts into out (at most cap), their slots freed;
 * lock held. */
static size_t windows_ended(struct sd_alerts *al, int64_t now_usec, struct fact *out, size_t cap)
{
    int64_t len = (int64_t)((double)INGEST_WINDOW_USEC * al->scale);
    size_t n = 0;
    for (size_t i = 0; i < INGEST_WINDOWS_MAX && n < cap; i++) {
        struct ingest_window *w = &al->windows[i];
        if (w->start_usec && now_usec >= w->start_usec + len) {
            out[n++] = (struct fact){.kind = FACT_INGEST,
                                     .tenant_id = w->tenant_id,
                                     .env = w->env,
                                     .a = w->rows,
                                     .b = w->rejected};
            *w = (struct ingest_window){0};
        }
    }
    return n;
}

void sd_alerts_ingest(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, int status,
                      int64_t rows)
{
    struct sd_alerts *al = hub->alerts;
    if (!al || rows <= 0) {
        return;
    }
    bool refused = status < 200 || status >= 300;
    int64_t now = sd_now_usec();
    pthread_mutex_lock(&al->lock);
    struct ingest_window *w = NULL, *free_slot = NULL;
    for (size_t i = 0; i < INGEST_WINDOWS_MAX && !w; i++) {
        struct ingest_window *x = &al->windows[i];
        if (x->start_usec && x->tenant_id == tenant_id && x->env == env) {
            w = x;
        } else if (!x->start_usec && !free_slot) {
            free_slot = x;
        }
    }
    if (!w && free_slot) {
        /* a window starts with its first request; one that ended is judged by the worker */
        w = free_slot;
        *w = (struct ingest_window){.tenant_id = tenant_id, .env = env, .start_usec = now};
    }
    if (w) {
        w->rows += rows;
        w->rejected += refused ? rows : 0;
    }
    pthread_mutex_unlock(&al->lock);
}

void sd_alerts_inbound_answer(struct sd_hub *hub, const char *connector_id, int status)
{
    if (!connector_id) {
        return;
    }
    bool good = status >= 200 && status < 300;
    if (good) {
        /* The frequent case: resolve only what this process knows to be open. */
        pthread_mutex_t *lock;
        struct open_key *k = keys_of(hub, &lock);
        bool any = false;
        int64_t now = sd_now_usec();
        pthread_mutex_lock(lock);
        for (size_t i = 0; i < OPEN_KEYS_MAX && !any; i++) {
            any = k[i].until_usec > now && strcmp(k[i].subject, connector_id) == 0 &&
                  strcmp(k[i].rule, "vendor_webhook_non200") == 0;
        }
        pthread_mutex_unlock(lock);
        if (!any) {
            return;
        }
    }
    /* the tenant is looked up on the worker: the request does not wait for the store */
    struct fact f = {.kind = FACT_INBOUND, .subject = sd_strdup(connector_id), .status = status};
    submit(hub, &f);
}

/* ---- sending -----------------------------------------------------------------------------------
 */

int64_t sd_alerts_backoff_usec(int64_t failed, double scale)
{
    static const int64_t steps_s[] = {10, 60, 300, 1800, 3600};
    size_t n = sizeof(steps_s) / sizeof(steps_s[0]);
    int64_t s = failed < 1            ? steps_s[0]
                : failed > (int64_t)n ? steps_s[n - 1]
                                      : steps_s[failed - 1];
    double us = (double)s * 1e6 * scale;
    return us < 1000 ? 1000 : (int64_t)us;
}

enum sd_alert_delivery sd_alerts_after_failure(int64_t created_usec, int64_t now_usec,
                                               int64_t attempts, double scale,
                                               int64_t *ret_next_usec)
{
    /* "gives up after a day" */
    int64_t next = now_usec + sd_alerts_backoff_usec(attempts, scale);
    if (now_usec - created_usec >= GIVE_UP_USEC || next - created_usec > GIVE_UP_USEC) {
        *ret_next_usec = 0;
        return SD_ALERT_FAILED;
    }
    *ret_next_usec = next;
    return SD_ALERT_PENDING;
}

static double time_scale(void)
{
    const char *v = getenv("STAGEDOOR_ALERT_TIME_SCALE");
    char *end = NULL;
    double d = v ? strtod(v, &end) : 1.0;
    return v && end && *end == '\0' && d > 0 && d <= 1 ? d : 1.0;
}

/* The client id of tenant_id ("" if unknown). */
static char *client_of(struct sd_store_handle *st, int64_t tenant_id)
{
    struct sd_tenant *t = NULL;
    size_t n = 0;
    char *out = NULL;
    if (sd_store_tenant_list(st, &t, &n) == 0) {
        for (size_t i = 0; i < n && !out; i++) {
            if (t[i].id == tenant_id) {
                out = sd_strdup(t[i].client_id);
            }
        }
        sd_tenants_free(t, n);
    }
    return out ? out : sd_strdup("");
}

/* The webhook body of alert a: {"type", "timestamp", "data": {…}}. */
static char *alert_body(struct sd_store_handle *st, const struct sd_alert *a)
{
    json_t *doc = json_loads(a->doc ? a->doc : "{}", 0, NULL);
    char *client = client_of(st, a->tenant_id);
    char type[96];
    snprintf(type, sizeof(type), "alert.%s", a->rule);
    json_t *t = sd_json_time(a->created_usec);
    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:O, s:O, s:O}", "alert_id", a->id, "client_id", client,
        "environment", sd_env_name(a->env), "rule", a->rule, "subject", a->subject, "message",
        json_object_get(doc, "message") ? json_object_get(doc, "message") : json_null(), "facts",
        json_object_get(doc, "facts") ? json_object_get(doc, "facts") : json_object(), "created_at",
        t);
    json_t *body = json_pack("{s:s, s:O, s:o}", "type", type, "timestamp", t, "data", data);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_decref(t);
    json_decref(doc);
    free(client);
    return text;
}

static void send_one(struct sd_alerts *al, const struct sd_alert *a)
{
    struct sd_store_handle *st = al->hub->store;
    char *doc = NULL, *secret = NULL;
    int r = sd_store_alert_settings_get(st, a->tenant_id, &doc, &secret);
    json_t *d = r == 0 ? json_loads(doc, 0, NULL) : NULL;
    const char *url = json_string_value(json_object_get(d, "webhook_url"));
    int64_t now = sd_now_usec();
    if (r < 0 && r != -ENOENT) {
        /* cannot read the settings now: the claim's lease brings it back */
        goto out;
    }
    if (!url || !secret) {
        sd_store_alert_delivery_set(st, a->id, SD_ALERT_NOT_SENT, a->attempts, 0, 0,
                                    "no webhook_url and secret set");
        goto out;
    }
    char *body = alert_body(st, a);
    int64_t ts = now / 1000000;
    char sig[128];
    if (!body || sd_alerts_sign(secret, a->id, ts, body, strlen(body), sig, sizeof(sig)) < 0) {
        free(body);
        sd_store_alert_delivery_set(st, a->id, SD_ALERT_FAILED, a->attempts, 0, 0,
                                    "the stored secret cannot sign");
        goto out;
    }
    char h_id[96], h_ts[48], h_sig[160];
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", a->id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    const char *headers[] = {"Content-Type: application/json", h_id, h_ts, h_sig,
                             "User-Agent: stagedoor-alerts",   NULL};
    struct sd_http_request rq = {.method = "POST",
                                 .url = url,
                                 .headers = headers,
                                 .body = body,
                                 .body_len = strlen(body),
                                 .timeout_ms = SEND_TIMEOUT_MS,
                                 .connect_timeout_ms = SEND_TIMEOUT_MS,
                                 .max_body = 64 * 1024};
    struct sd_http_response res = {0};
    int fr = sd_http_fetch(&rq, &res);
    int64_t attempts = a->attempts + 1;
    now = sd_now_usec();
    if (fr == 0 && res.status >= 200 && res.status < 300) {
        sd_store_alert_delivery_set(st, a->id, SD_ALERT_DELIVERED, attempts, 0, now, NULL);
        sd_log(SD_LOG_INFO, "alert delivered", "alert=%s status=%ld attempt=%lld", a->id,
               res.status, (long long)attempts);
    } else {
        char err[300];
        if (fr == 0) {
            snprintf(err, sizeof(err), "HTTP %ld", res.status);
        } else {
            snprintf(err, sizeof(err), "%s", res.error[0] ? res.error : sd_log_reason(fr));
        }
        int64_t next = 0;
        enum sd_alert_delivery state =
            sd_alerts_after_failure(a->created_usec, now, attempts, al->scale, &next);
        bool give_up = state == SD_ALERT_FAILED;
        sd_store_alert_delivery_set(st, a->id, state, attempts, next, 0, err);
        sd_log(SD_LOG_WARN, give_up ? "alert delivery given up" : "alert delivery failed, retrying",
               "alert=%s attempt=%lld error=\"%s\"", a->id, (long long)attempts, err);
    }
    sd_http_response_release(&res);
    free(body);
out:
    json_decref(d);
    free(doc);
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
}

static void send_due(struct sd_alerts *al)
{
    for (;;) {
        struct sd_alert *v = NULL;
        size_t n = 0;
        if (sd_store_alert_claim(al->hub->store, sd_now_usec(), CLAIM_LEASE_USEC, CLAIM_BATCH, &v,
                                 &n) < 0 ||
            n == 0) {
            return;
        }
        for (size_t i = 0; i < n; i++) {
            send_one(al, &v[i]);
        }
        sd_alerts_free(v, n);
        pthread_mutex_lock(&al->lock);
        bool stop = al->stop;
        pthread_mutex_unlock(&al->lock);
        if (stop || n < CLAIM_BATCH) {
            return;
        }
    }
}

static void *worker(void *arg)
{
    struct sd_alerts *al = arg;
    pthread_mutex_lock(&al->lock);
    while (!al->stop) {
        if (al->qn == 0 && !al->woken) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait_ms = (int64_t)(1000 * (al->scale < 1 ? 0.25 : 1.0));
            ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&al->cond, &al->lock, &ts);
        }
        al->woken = false;
        size_t n = al->qn;
        struct fact batch[QUEUE_MAX + INGEST_WINDOWS_MAX];
        memcpy(batch, al->q, n * sizeof(batch[0]));
        al->qn = 0;
        n += windows_ended(al, sd_now_usec(), batch + n, INGEST_WINDOWS_MAX);
        pthread_mutex_unlock(&al->lock);
        for (size_t i = 0; i < n; i++) {
            judge(al->hub, &batch[i]);
            fact_release(&batch[i]);
        }
        send_due(al);
        pthread_mutex_lock(&al->lock);
    }
    /* facts still queued at the stop are judged, so nothing that happened is lost */
    size_t n = al->qn;
    struct fact rest[QUEUE_MAX];
    memcpy(rest, al->q, n * sizeof(rest[0]));
    al->qn = 0;
    pthread_mutex_unlock(&al->lock);
    for (size_t i = 0; i < n; i++) {
        judge(al->hub, &rest[i]);
        fact_release(&rest[i]);
    }
    return NULL;
}

int sd_alerts_start(struct sd_hub *hub)
{
    struct sd_alerts *al = sd_calloc(1, sizeof(*al));
    al->hub = hub;
    al->scale = time_scale();
    pthread_mutex_init(&al->lock, NULL);
    pthread_cond_init(&al->cond, NULL);
    int r = pthread_create(&al->thread, NULL, worker, al);
    if (r != 0) {
        pthread_mutex_destroy(&al->lock);
        pthread_cond_destroy(&al->cond);
        free(al);
        return -r;
    }
    hub->alerts = al;
    return 0;
}

void sd_alerts_stop(struct sd_hub *hub)
{
    struct sd_alerts *al = hub ? hub->alerts : NULL;
    if (!al) {
        return;
    }
    pthread_mutex_lock(&al->lock);
    al->stop = true;
    pthread_cond_signal(&al->cond);
    pthread_mutex_unlock(&al->lock);
    pthread_join(al->thread, NULL);
    hub->alerts = NULL;
    pthread_mutex_destroy(&al->lock);
    pthread_cond_destroy(&al->cond);
    free(al);
}
