/* profile_rules.c — the linking decisions and flag rules of profiles, one copy for both
 * backends (see profile_rules.h for the rules). Nothing here knows SQL: the backend's steps
 * read and write, this file decides which step runs and with what.
 *
 * Link keys: under `email` a record's e-mail key; under `email_and_last_name` the e-mail key,
 * a unit separator and the folded last name (an empty one when the record has none); under
 * `none`, or for a record without an e-mail, no key: nothing links to it by itself. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "store/profile_rules.h"

/* The record's link key under rule (heap), or NULL: nothing links to it. */
static char *link_key(enum sd_link_rule rule, const struct sd_customer_rec *cu)
{
    if (rule == SD_LINK_NONE || !cu->email_key || !*cu->email_key) {
        return NULL;
    }
    if (rule == SD_LINK_EMAIL) {
        return sd_strdup(cu->email_key);
    }
    /* The validated document holds last_name as sent (a string, if present). */
    char *folded = NULL;
    json_t *doc = cu->doc ? json_loads(cu->doc, 0, NULL) : NULL;
    const char *last = json_string_value(json_object_get(doc, "last_name"));
    if (last) {
        folded = sd_text_fold(last);
    }
    char *key = sd_asprintf("%s\x1f%s", cu->email_key, folded ? folded : "");
    free(folded);
    json_decref(doc);
    return key;
}

int sd_profile_flags_add(struct sd_profile_flags *f, struct sd_store *s,
                         const struct sd_profile_steps *st, int64_t tenant_id, enum sd_env env,
                         const struct sd_link_ctx *ctx, int opt_out, const char *email_key)
{
    if (opt_out > 0) {
        f->opt_out = true;
    }
    if (ctx->any_suppression && !f->suppressed && email_key) {
        int r = st->sup_has(s, tenant_id, env, email_key);
        if (r < 0) {
            return r;
        }
        f->suppressed = r == 1;
    }
    return 0;
}

int sd_profile_link(struct sd_store *s, const struct sd_profile_steps *st, int64_t tenant_id,
                    enum sd_env env, struct sd_link_ctx *ctx, const char *source,
                    const struct sd_customer_rec *cu, int64_t now)
{
    int r = st->ctx_load(s, tenant_id, env, ctx);
    if (r < 0) {
        return r;
    }
    int64_t seq = 0, profile_id = 0;
    int opt_out = -1;
    r = st->record(s, tenant_id, env, source, cu->customer_id, &seq, &profile_id, &opt_out);
    if (r <= 0) {
        if (r == 0) {
            sd_log(SD_LOG_ERROR, "upserted customer not found for linking", "tenant=%lld",
                   (long long)tenant_id);
            r = -EIO;
        }
        return r;
    }
    if (profile_id > 0) {
        return st->recompute(s, tenant_id, env, ctx, profile_id, now, NULL);
    }
    char *key = link_key(ctx->rule, cu);
    int64_t target = 0;
    r = key ? st->by_key(s, tenant_id, env, key, &target) : 0;
    if (r < 0) {
        goto out;
    }
    if (r == 0) {
        /* A new person: the flags are this record's own, no recompute needed. */
        bool suppressed = false;
        if (ctx->any_suppression && cu->email_key) {
            r = st->sup_has(s, tenant_id, env, cu->email_key);
            if (r < 0) {
                goto out;
            }
            suppressed = r == 1;
        }
        r = st->create(s, tenant_id, env, key, opt_out == 1, suppressed, now, &target);
        if (r == 0) {
            r = st->move(s, tenant_id, env, seq, target, false);
        }
        goto out;
    }
    r = st->move(s, tenant_id, env, seq, target, false);
    if (r == 0) {
        r = st->recompute(s, tenant_id, env, ctx, target, now, NULL);
    }
out:
    free(key);
    return r;
}

int sd_profile_member_gone(struct sd_store *s, const struct sd_profile_steps *st, int64_t tenant_id,
                           enum sd_env env, int64_t profile_id, int64_t now)
{
    struct sd_link_ctx ctx = {0};
    size_t left = 0;
    int r = st->ctx_load(s, tenant_id, env, &ctx);
    if (r == 0) {
        r = st->recompute(s, tenant_id, env, &ctx, profile_id, now, &left);
    }
    if (r == 0 && left == 0) {
        r = st->remove(s, tenant_id, env, profile_id);
    }
    return r;
}

int sd_profile_split(struct sd_store *s, const struct sd_profile_steps *st, int64_t tenant_id,
                     enum sd_env env, int64_t profile_id, const char *source,
                     const char *customer_id, int64_t *ret_new_id)
{
    struct sd_link_ctx ctx = {0};
    int r = st->ctx_load(s, tenant_id, env, &ctx);
    if (r < 0) {
        return r;
    }
    int64_t seq = 0, current = 0;
    int opt_out = -1;
    r = st->record(s, tenant_id, env, source, customer_id, &seq, &current, &opt_out);
    if (r < 0) {
        return r;
    }
    if (r == 0 || current != profile_id) {
        return -ENOENT;
    }
    int64_t now = sd_now_usec();
    size_t members = 0;
    /* Counting through recompute keeps one members query; the flags are rewritten below. */
    r = st->recompute(s, tenant_id, env, &ctx, profile_id, now, &members);
    if (r < 0) {
        return r;
    }
    if (members <= 1) {
        return -EBUSY;
    }
    int64_t new_id = 0;
    r = st->create(s, tenant_id, env, NULL, false, false, now, &new_id);
    if (r == 0) {
        r = st->move(s, tenant_id, env, seq, new_id, true);
    }
    if (r == 0) {
        r = st->recompute(s, tenant_id, env, &ctx, profile_id, now, NULL);
    }
    if (r == 0) {
        r = st->recompute(s, tenant_id, env, &ctx, new_id, now, NULL);
    }
    if (r == 0 && ret_new_id) {
        *ret_new_id = new_id;
    }
    return r;
}

/* ---- erasure ----------------------------------------------------------------------------- */

void sd_erase_member_release(struct sd_erase_member *m)
{
    free(m->source);
    free(m->customer_id);
    free(m->email_key);
    *m = (struct sd_erase_member){0};
}

void sd_erase_members_free(struct sd_erase_member *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sd_erase_member_release(&v[i]);
    }
    free(v);
}

char *sd_profile_answer_needle(const char *text, bool quoted)
{
    char *raw = quoted ? sd_asprintf("'%s'", text) : sd_strdup(text);
    json_t *j = json_string(raw);
    free(raw);
    char *enc = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!enc) {
        return NULL;
    }
    /* Without the surrounding quotes of the JSON string. */
    size_t len = strlen(enc);
    enc[len - 1] = '\0';
    memmove(enc, enc + 1, len - 1);
    return enc;
}

/* Purge the answers naming text (nothing to purge when it is not valid UTF-8). */
static int purge_answers(struct sd_store *s, const struct sd_erase_steps *st, int64_t tenant_id,
                         enum sd_env env, const char *text, bool quoted, int64_t *count)
{
    char *needle = sd_profile_answer_needle(text, quoted);
    if (!needle) {
        return 0; /* not valid UTF-8: could not have been stored in a JSON answer either */
    }
    int r = st->purge_answers(s, tenant_id, env, needle, count);
    free(needle);
    return r;
}

int sd_profile_erase(struct sd_store *s, const struct sd_erase_steps *st, int64_t tenant_id,
                     enum sd_env env, const char *source, const char *customer_id,
                     struct sd_erasure_result *ret)
{
    struct sd_erase_member first = {0};
    struct sd_erase_member *v = NULL;
    size_t n = 0;
    int64_t profile_id = 0, now = sd_now_usec();
    struct sd_erasure_result res = {0};
    int r = st->find(s, tenant_id, env, source, customer_id, &first, &profile_id);
    if (r <= 0) {
        return r == 0 ? -ENOENT : r;
    }
    if (profile_id > 0) {
        r = st->members(s, tenant_id, env, profile_id, &v, &n);
        if (r < 0) {
            goto out;
        }
    } else {
        /* Stored before profiles existed and never updated since: the person is this record. */
        v = sd_calloc(1, sizeof(*v));
        v[0] = first;
        n = 1;
        first = (struct sd_erase_member){0};
    }
    res.profile_id = profile_id;
    for (size_t i = 0; i < n; i++) {
        /* Its sales become ANON (each taken out of the purchase facts), so deleting the record
         * afterwards changes no facts. */
        r = st->anonymize_sales(s, tenant_id, env, &v[i], now, &res.sales_anonymized);
        if (r == 0) {
            r = st->record_delete(s, tenant_id, env, v[i].seq);
        }
        if (r == 0) {
            /* Followers of the change feed learn that the record is gone, without its data. */
            r = st->tombstone_put(s, tenant_id, env, SD_KIND_CUSTOMER, v[i].customer_id,
                                  v[i].source, SD_TOMBSTONE_ERASED, NULL, NULL, now);
        }
        if (r == 0) {
            r = purge_answers(s, st, tenant_id, env, v[i].customer_id, true,
                              &res.idempotency_purged);
        }
        if (r < 0) {
            goto out;
        }
        res.records_erased++;
    }
    for (size_t i = 0; i < n; i++) {
        const char *email = v[i].email_key;
        if (!email || !*email) {
            continue;
        }
        r = purge_answers(s, st, tenant_id, env, email, false, &res.idempotency_purged);
        if (r == 0) {
            r = st->address_erased(s, tenant_id, env, email, now);
        }
        if (r < 0) {
            goto out;
        }
    }
    if (profile_id > 0) {
        r = st->remove(s, tenant_id, env, profile_id);
        if (r < 0) {
            goto out;
        }
    }
    r = st->erasure_log(s, tenant_id, env, profile_id, res.records_erased, res.sales_anonymized,
                        now);
    if (r == 0) {
        sd_log(SD_LOG_INFO, "profile erased", "tenant=%lld env=%s profile=%lld records=%lld",
               (long long)tenant_id, sd_env_name(env), (long long)profile_id,
               (long long)res.records_erased);
        if (ret) {
            *ret = res;
        }
    }
out:
    sd_erase_member_release(&first);
    sd_erase_members_free(v, n);
    return r < 0 ? r : 0;
}
