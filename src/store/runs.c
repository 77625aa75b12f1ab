/* runs.c — the run history wrappers (store/runs.h) and the checks both backends share. Like
 * store.c's wrappers they add nothing but a check that the backend keeps a history. */
#include "store/runs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OPS(h) (sd_store_handle_ops(h)->runs)
#define CALL(op, ...)                                                                              \
    (OPS(h) && OPS(h)->op ? OPS(h)->op(sd_store_handle_backend(h), __VA_ARGS__) : -ENOTSUP)

const char *sd_run_status_name(enum sd_run_status st)
{
    switch (st) {
    case SD_RUN_OK: return "ok";
    case SD_RUN_FAILED: return "failed";
    case SD_RUN_CANCELLED: return "cancelled";
    }
    return "failed";
}

void sd_runs_free(struct sd_run *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].run_id);
        free(v[i].connector_id);
        free(v[i].trigger);
        free(v[i].error);
    }
    free(v);
}

static bool word_ok(const char *s, size_t max)
{
    return s && s[0] && strnlen(s, max + 1) <= max;
}

bool sd_run_valid(const struct sd_run *run)
{
    return run && word_ok(run->run_id, SD_RUN_WORD_MAX) && word_ok(run->trigger, SD_RUN_WORD_MAX) &&
           word_ok(run->connector_id, 64) && (run->env == SD_ENV_TEST || run->env == SD_ENV_PROD) &&
           (unsigned)run->status <= SD_RUN_CANCELLED && run->records_in >= 0 &&
           run->records_rejected >= 0 && run->records_unchanged >= 0 && run->started_usec > 0 &&
           run->finished_usec >= run->started_usec &&
           (!run->error || strnlen(run->error, SD_RUN_ERROR_MAX + 1) <= SD_RUN_ERROR_MAX);
}

int sd_store_run_record(struct sd_store_handle *h, const struct sd_run *run, int64_t fence)
{
    return CALL(record, run, fence);
}

int sd_store_run_list(struct sd_store_handle *h, int64_t tenant_id, const char *connector_id,
                      int64_t before_seq, size_t limit, struct sd_run **ret, size_t *ret_n)
{
    return CALL(list, tenant_id, connector_id, before_seq, limit, ret, ret_n);
}
