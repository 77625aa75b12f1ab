/* actions.c — connector actions: an operator's request becomes one outbox item (actions.h). */
#include "core/actions.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "core/outbox.h"

#define WAIT_STEP_USEC 50000

const struct sd_connector_action *sd_connector_action_find(const struct sd_connector *c,
                                                           const char *name)
{
    for (const struct sd_connector_action *a = c && name ? c->actions : NULL; a && a->name; a++) {
        if (strcmp(a->name, name) == 0) {
            return a;
        }
    }
    return NULL;
}

/* The item an earlier request with this key created: 1 (*ret_id) if it was for the same
 * instance and operation, -EEXIST if for another, 0 if none. */
static int earlier(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *key,
                   const char *connector_id, const char *operation, char **ret_id)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_by_request(hub->store, tenant_id, env, key, &d);
    if (r == -ENOENT) {
        return 0;
    }
    if (r == 0) {
        if (strcmp(d.connector_id, connector_id) == 0 && d.operation &&
            strcmp(d.operation, operation) == 0) {
            *ret_id = d.id;
            d.id = NULL;
            r = 1;
        } else {
            r = -EEXIST;
        }
    }
    sd_outbox_item_release(&d);
    return r;
}

int sd_action_submit(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                     const char *connector_id, const char *action, const json_t *body,
                     const char *request_key, char **ret_id, bool *ret_replayed,
                     const char **ret_what, struct sd_issues *errors)
{
    *ret_replayed = false;
    *ret_what = NULL;
    if (!request_key || !*request_key) {
        return -EINVAL;
    }
    struct sd_target t = {0};
    json_t *settings = NULL, *payload = NULL;
    void *conf = NULL;
    char *id = NULL, *key = NULL, *text = NULL;
    const struct sd_connector *c = NULL;
    const struct sd_connector_action *a = NULL;
    int r = sd_store_target_get(hub->store, connector_id, &t);
    if (r == 0 && (t.tenant_id != tenant_id || t.env != env || !(c = sd_connector_find(t.type)))) {
        r = -ENOENT;
    }
    if (r < 0) {
        *ret_what = r == -ENOENT ? "connector" : NULL;
        goto out;
    }
    if (!(a = sd_connector_action_find(c, action)) || !a->prepare) {
        *ret_what = "action";
        r = -ENOENT;
        goto out;
    }
    r = earlier(hub, tenant_id, env, request_key, connector_id, a->operation, ret_id);
    if (r != 0) {
        *ret_replayed = r == 1;
        r = r < 0 ? r : 0;
        goto out;
    }
    /* The instance's settings as its type reads them (defaults filled). */
    struct sd_issues serr;
    sd_issues_init(&serr, 4);
    json_t *stored = t.doc ? json_loads(t.doc, 0, NULL) : NULL;
    settings = stored ? sd_connector_check_settings(c, stored, &serr) : NULL;
    json_decref(stored);
    sd_issues_release(&serr);
    if (!settings || sd_connector_settings_new(c, settings, &conf) < 0) {
        sd_issues_add(errors, "", "connector '%s' has settings its type cannot hold", connector_id);
        r = -EINVAL;
        goto out;
    }
    if (a->prepare(conf, body, &payload, errors) < 0 || !payload) {
        r = -EINVAL;
        goto out;
    }
    id = sd_outbox_new_id("act_");
    key = sd_outbox_new_idem_key();
    text = json_dumps(payload, JSON_COMPACT);
    if (!id || !key || !text) {
        r = -EIO;
        goto out;
    }
    struct sd_outbox_item d = {
        .id = id,
        .tenant_id = tenant_id,
        .env = env,
        .connector_id = (char *)connector_id,
        .operation = (char *)a->operation,
        .subject_kind = (char *)a->subject_kind,
        .subject_id = id,
        .payload = text,
        .idem_key = key,
        .request_key = (char *)request_key,
        .doc = "{}",
    };
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    r = sd_store_delivery_insert(hub->store, &d, &clk, NULL);
    if (r == -EEXIST) {
        /* The same key in a request racing with this one: its item is the answer. */
        int e = earlier(hub, tenant_id, env, request_key, connector_id, a->operation, ret_id);
        *ret_replayed = e == 1;
        r = e == 1 ? 0 : e < 0 ? e : -EIO;
        goto out;
    }
    if (r < 0) {
        goto out;
    }
    sd_log(SD_LOG_INFO, "connector action queued", "delivery=%s connector=%s action=%s", id,
           connector_id, action);
    sd_outbox_wake(hub->outbox);
    *ret_id = id;
    id = NULL;
    r = 0;
out:
    sd_target_release(&t);
    json_decref(settings);
    json_decref(payload);
    free(conf);
    free(id);
    free(key);
    if (text) {
        explicit_bzero(text, strlen(text));
    }
    free(text);
    return r;
}

int sd_action_wait(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id,
                   int64_t wait_usec, struct sd_outbox_item *ret)
{
    int64_t end = sd_mono_usec() + (wait_usec > 0 ? wait_usec : 0);
    for (;;) {
        *ret = (struct sd_outbox_item){0};
        int r = sd_store_delivery_get(hub->store, tenant_id, env, id, ret);
        if (r < 0) {
            return r;
        }
        bool ended = ret->state == SD_DELIVERY_DELIVERED || ret->state == SD_DELIVERY_DEAD ||
                     ret->state == SD_DELIVERY_CANCELLED;
        if (ended || sd_mono_usec() >= end) {
            return 0;
        }
        sd_outbox_item_release(ret);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = WAIT_STEP_USEC * 1000};
        nanosleep(&ts, NULL);
    }
}
