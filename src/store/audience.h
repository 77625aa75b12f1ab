/* audience.h — the store's audience interface (issue #4): unified profiles, segments and the
 * delivery outbox. Part of the one store interface (store.h): sd_store_ops points to one ops
 * table per part, each backend fills them, and callers use the sd_store_profile_* /
 * sd_store_segment_* / sd_store_outbox_* wrappers (store/audience.c). Thread rules and error
 * conventions are those of store.h; each op says which path (control, write, read) it is on.
 *
 * Each part is declared in its own section below. */
#ifndef SD_STORE_AUDIENCE_H
#define SD_STORE_AUDIENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "store/store.h"

/* ==== profiles ================================================================================ */
/* PROFILES-BEGIN (owned by the profiles work) */
struct sd_store_profile_ops {
    int unused_;
};
/* PROFILES-END */

/* ==== segments ================================================================================ */
/* SEGMENTS-BEGIN (owned by the segments work) */
struct sd_store_segment_ops {
    int unused_;
};
/* SEGMENTS-END */

/* ==== outbox ================================================================================== */
/* OUTBOX-BEGIN (owned by the outbox work) */
struct sd_store_outbox_ops {
    int unused_;
};
/* OUTBOX-END */

#endif
