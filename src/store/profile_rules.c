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
