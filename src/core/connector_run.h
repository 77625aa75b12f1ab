/* connector_run.h — one run of a connector instance configured in the store (the scheduler's
 * unit of work), and the committed state it leaves behind. */
#ifndef SD_CORE_CONNECTOR_RUN_H
#define SD_CORE_CONNECTOR_RUN_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/connector.h"
#include "store/store.h"

/* What the scheduler can see of a running instance: the progress counter the connector
 * updates (ctx->progress points here). */
struct sd_connector_live {
    _Atomic uint64_t progress;
};

/* Run conf once: check its settings and mapping, init/run/fini, then store the run's outcome
 * (state, last_run_usec, last_success_usec or last_error, counters) in its state document.
 * fence: the token of the run lease the caller holds (store run_lease_take), named in every
 * commit of the run, so that a run whose lease was taken over stores nothing more (its
 * commits fail with -ESTALE); 0 for a caller that holds no lease. Returns the connector's
 * result (0 or negative errno; -ESTALE when the lease was lost). */
int sd_connector_run_instance(struct sd_hub *hub, const struct sd_connector_conf *conf,
                              int64_t fence, const atomic_bool *stop,
                              struct sd_connector_live *live);

/* The committed state document of an instance ({} if it never ran). */
int sd_connector_state_load(struct sd_hub *hub, const char *id, json_t **ret);

#endif
