/* deletions.c — deleting records through the writer, each leaving its tombstone (see
 * deletions.h). The deletions of one call share one transaction: a page of another hub's
 * tombstones is applied whole or not at all, and re-applying it after a crash finds the records
 * gone already (missing, nothing written), so a follower may always re-read a page. */
#include "core/deletions.h"

#include <errno.h>

#include "base/log.h"
#include "core/writer.h"

struct delete_job {
    int64_t tenant_id;
    enum sd_env env;
    const struct sd_deletion *v;
    size_t n;
    const char *origin;
    int64_t fence; /* the origin connector's run lease token, 0 = not a leased run */
    struct sd_deletion_outcome out;
};

int sd_delete_records_in_writer(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                                const struct sd_deletion *v, size_t n, const char *origin,
                                struct sd_deletion_outcome *ret)
{
    struct sd_deletion_outcome out = {0};
    for (size_t i = 0; i < n; i++) {
        const struct sd_deletion *d = &v[i];
        int r = sd_store_delete_record(st, tenant_id, env, d->kind, d->id, d->source, d->reason,
                                       d->merged_into, origin);
        if (r == 1) {
            out.n_deleted++;
        } else if (r == 0) {
            out.n_missing++;
        } else if (r == -ENOTUNIQ) {
            out.n_ambiguous++;
        } else {
            return r;
        }
    }
    *ret = out;
    return 0;
}

static int delete_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct delete_job *j = wj->arg;
    if (j->fence) {
        /* A run that lost its lease (another node runs the connector now) writes nothing. */
        int r = sd_store_run_lease_check(st, j->origin, j->fence);
        if (r < 0) {
            return r;
        }
    }
    return sd_delete_records_in_writer(st, j->tenant_id, j->env, j->v, j->n, j->origin, &j->out);
}

int sd_hub_delete_records(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                          const struct sd_deletion *v, size_t n, const char *origin,
                          struct sd_deletion_outcome *ret)
{
    return sd_hub_delete_records_fenced(hub, tenant_id, env, v, n, origin, 0, ret);
}

int sd_hub_delete_records_fenced(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                                 const struct sd_deletion *v, size_t n, const char *origin,
                                 int64_t fence, struct sd_deletion_outcome *ret)
{
    if (fence && !origin) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!v[i].id || !*v[i].id || (unsigned)v[i].kind > SD_KIND_SALE ||
            (v[i].reason == SD_TOMBSTONE_MERGED) != (v[i].merged_into != NULL)) {
            return -EINVAL;
        }
    }
    struct delete_job j = {
        .tenant_id = tenant_id, .env = env, .v = v, .n = n, .origin = origin, .fence = fence};
    if (n == 0) {
        *ret = j.out;
        return 0;
    }
    int r = sd_writer_run_sync(hub->writer, delete_run, &j);
    if (r < 0) {
        return r;
    }
    if (j.out.n_deleted > 0) {
        sd_log(SD_LOG_INFO, "records deleted", "tenant=%lld env=%s deleted=%zu missing=%zu",
               (long long)tenant_id, sd_env_name(env), j.out.n_deleted, j.out.n_missing);
    }
    *ret = j.out;
    return 0;
}
