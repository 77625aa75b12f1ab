/* lifecycle_plan.h — the order-lifecycle planning of a batch's sales, shared by the backends.
 * A sales record's lifecycle columns (0010_order_lifecycle.sql) are decided before any sale of
 * the batch is written, in one planning pass: the stored state of each invoice is read through
 * the backend's lookup (struct sd_write_lookup), the model's rules (model/lifecycle.c) judge
 * the change, and refund records are added to the sales they name — in this batch or stored —
 * so that a refusal writes nothing. The backend then writes the batch's rows with the figures
 * planned, and afterwards the refund targets' new figures.
 *
 * Errors: negative errno as the backend's lookup returned it; a refusal is an issue in
 * res->errors at the record's JSON Pointer, counted in the return value. Allocation failure
 * aborts. Only the writer thread calls these. */
#ifndef SD_STORE_LIFECYCLE_PLAN_H
#define SD_STORE_LIFECYCLE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/write_plan.h"

/* What planning decided for one sales record of the batch. */
struct sd_sale_plan {
    struct sd_sale_state st;       /* to store: the record's own figures plus refund records' */
    int64_t rr_quantity, rr_minor; /* refund records' part, kept from the stored row */
    char *changed;                 /* status_changed to store, or NULL (owned) */
    bool stored;                   /* the invoice is stored already */
    bool unchanged;                /* ... with this very document */
};
/* Free plans[0..n) and the array (NULL is fine). */
void sd_sale_plans_free(struct sd_sale_plan *plans, size_t n);

/* A sale that refund records of this batch refund: its new figures. */
struct sd_refund_target {
    char *invoice;
    char *customer_id; /* the sale's customer (owned) */
    struct sd_sale_state st;
    int64_t rr_quantity, rr_minor;
    char *changed; /* the latest refund's time, owned */
};

/* The refund targets of a batch, in the order refund records first named them. */
struct sd_refund_targets {
    struct sd_refund_target *v;
    size_t n, cap;
};
void sd_refund_targets_release(struct sd_refund_targets *t);

/* usec as stored UTC text, "YYYY-MM-DDTHH:MM:SSZ". */
void sd_lifecycle_utc_text(int64_t usec, char out[32]);

/* Plan one record against its stored row (if any): *p gets the figures to store (p->changed
 * owned by the caller even on refusal). Adds an issue at ptr and returns 1 when the rules do
 * not allow the change; 0; negative errno. With check_stored false the stored row is not looked
 * at (the webhook answers a stored invoice 409). now_text: sd_lifecycle_utc_text of now. */
int sd_lifecycle_plan_one(struct sd_store *s, const struct sd_write_lookup *lk, int64_t tenant_id,
                          enum sd_env env, const struct sd_sale_rec *rec, const char *ptr,
                          bool check_stored, const char *now_text, struct sd_sale_plan *p,
                          struct sd_apply_result *res);

/* The planning pass over a batch's sales: plans[i] for each (an array of b->n_sales, zeroed),
 * refund targets collected into *t. Returns the number of issues added (each refuses the
 * batch) or negative errno. */
int sd_lifecycle_plan_sales(struct sd_store *s, const struct sd_write_lookup *lk, int64_t tenant_id,
                            enum sd_env env, const struct sd_batch *b, int64_t now,
                            struct sd_sale_plan *plans, struct sd_refund_targets *t,
                            struct sd_apply_result *res);

#endif
