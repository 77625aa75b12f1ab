/* facts_plan.h — the in-memory part of the per-profile purchase facts (profile_facts), shared
 * by the backends (sqlite_facts.c, pg_facts.c): a batch's new sales summed per profile and
 * currency before the backend writes one UPSERT per sum, with the profile of each customer key
 * looked up once per batch. Backend-neutral: the profile of a key the batch does not know yet
 * comes from the backend's lookup; writing the sums is the backend's (it walks fb->sums, a
 * slot is used when its currency is not NULL, then calls sd_facts_batch_sums_free).
 *
 * What a sale adds (0013_profile_facts.sql): nothing for ANON or a sale with no net left;
 * else purchases +1 if tickets are left, tickets and spend its net figures, sales +1, and its
 * purchase time widens the live first / last purchase (compared as bytes). Allocation failure
 * aborts. Writer thread only. */
#ifndef SD_STORE_FACTS_PLAN_H
#define SD_STORE_FACTS_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* The statements each backend's facts keep, the same set on both (each backend numbers its
 * statement slots from a first slot of its own). */
enum sd_facts_stmt {
    SD_FACTS_CUSTOMER,   /* a customer key's profile */
    SD_FACTS_PROFILE_OF, /* a record's profile, and whether its key has sales */
    SD_FACTS_SALE_ROW,   /* a sale as the facts see it */
    SD_FACTS_ADD,        /* add to a row (upsert) */
    SD_FACTS_SUB,        /* take a sale out of its row */
    SD_FACTS_DROP_EMPTY, /* delete a row that sums no sale */
    SD_FACTS_BOUNDS,     /* first / last purchase again from the other sales */
    SD_FACTS_CLEAR,      /* delete a profile's rows */
    SD_FACTS_RECOMPUTE,  /* a profile's rows from its sales */
    SD_FACTS_N_STMT
};

/* A stored sale as the facts see it (sale_in / sale_out): its currency and purchase time
 * (owned), net figures and its customer record's profile. */
struct sd_facts_sale_row {
    char *currency, *purchased;
    int64_t net_quantity, net_minor, profile_id;
};
void sd_facts_sale_row_release(struct sd_facts_sale_row *r);

/* Zero-initialised; sd_facts_batch_release frees it. */
struct sd_facts_key {
    char *source, *customer_id; /* NULL: free slot */
    int64_t profile_id;         /* 0: none */
};
struct sd_facts_sum {
    int64_t profile_id;
    char *currency; /* NULL: free slot */
    int64_t purchases, tickets, spend_minor, sales;
    char *first, *last; /* live purchase times, NULL: none */
};
struct sd_facts_batch {
    struct sd_facts_key *keys;
    size_t keys_cap, n_keys;
    struct sd_facts_sum *sums;
    size_t sums_cap, n_sums;
};

/* The backend's lookup of the profile of customer key (source, customer_id) on its writer: 0
 * and *ret (0 if the record has none or does not exist), or negative errno. */
typedef int sd_facts_profile_fn(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const char *source, const char *customer_id, int64_t *ret);

/* Add a sale just inserted to the batch's sums, a key the batch does not know yet looked up
 * with profile_of. 0, or the lookup's negative errno. */
int sd_facts_batch_add(struct sd_facts_batch *fb, struct sd_store *s,
                       sd_facts_profile_fn *profile_of, int64_t tenant_id, enum sd_env env,
                       const char *source, const char *customer_id, const char *currency,
                       const char *purchased, int64_t net_quantity, int64_t net_minor);

/* Tell the batch the profile of customer key (source, customer_id) (0: none), looked up by the
 * caller with others in one statement, so batch_add need not ask the store. */
void sd_facts_batch_known(struct sd_facts_batch *fb, const char *source, const char *customer_id,
                          int64_t profile_id);

/* Forget the sums (written, or given up); the keys' profiles stay known. */
void sd_facts_batch_sums_free(struct sd_facts_batch *fb);

void sd_facts_batch_release(struct sd_facts_batch *fb);

#endif
