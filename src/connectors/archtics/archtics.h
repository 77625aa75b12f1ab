/* archtics.h — the `archtics` connector's shared parts: one Ticketmaster Archtics database
 * (DSN) reached through Archtics Transaction Services (ats.h).
 *
 *  - ats.c               the ATS client: envelope, tolerant answers, 202 polling with saved
 *                        cookies, quota before every request.
 *  - archtics.c          the type (settings table, quotas, registry entry) and the pull streams:
 *                        accounts, events, sales and returns, attendance, plan seats;
 *                        the incremental commands' table.
 *  - archtics_out.c, archtics_reconcile.c   customers out, reconciliation (their own header
 *                        lines below, added with them).
 *
 * Every part reads the one settings struct below, filled by core (ctx->conf). */
#ifndef SD_CONNECTORS_ARCHTICS_H
#define SD_CONNECTORS_ARCHTICS_H

#include <stdbool.h>
#include <stdint.h>

#include "connectors/archtics/ats.h"
#include "core/connector.h"

struct archtics_conf {
    /* the service (credential_settings: base_url, api_key, dsn) */
    const char *base_url; /* https://app.ticketmaster.com/archtics-ats, or a test server */
    const char *product;  /* "sth-customer" */
    const char *dsn;
    const char *api_key; /* SECRET */
    const char *src_sys_name;
    const char *archtics_version;
    const char *uid;
    const char *venue_time_zone; /* IANA: every ATS date and time is venue-local */
    const char *currency;        /* ISO 4217 of every price */
    const char *event_city;      /* the venue's city (events need one) */

    /* patience */
    int64_t timeout_seconds;      /* per request */
    int64_t poll_interval_ms;     /* between polls of a queued (202) command */
    int64_t poll_timeout_seconds; /* a poll older than this is submitted again */
    int64_t max_attempts;         /* transport errors / 5xx per request */
    int64_t retry_initial_ms;
    int64_t max_wait_seconds; /* longest quota wait inside a run; longer: pause the run */
    int64_t no_data_result;   /* `result` of an expired poll ("No data for token") */

    /* streams */
    bool pull_accounts, pull_events, pull_sales, pull_attendance, pull_seats;
    const char *history_from;     /* "YYYY-MM-DD HH:MM" venue-local: a stream's first since */
    const char *bootstrap_cutoff; /* "YYYY-MM-DD HH:MM" venue-local, or "": streams without a
                                     cursor start here (the file extract covers what is older) */
    int64_t page_size;            /* rows per incremental page (count) */
    int64_t event_page_size;      /* event_details count (halved on 11075) */
    int64_t event_refresh_hours;  /* the events list is read again after this long */
    int64_t seats_refresh_hours;  /* the plan seat blocks (seats_sold) are read again after this */
    int64_t scan_window_hours;    /* an event's scans are counted from this long before the
                                     first one seen */
    int64_t max_calls_per_run;    /* 0: no bound; else the run ends (checkpointed) after it */

    /* reconciliation and out (archtics_reconcile.c, archtics_out.c) */
    int64_t reconcile_days;          /* days between reconciliation runs; 0: never */
    int64_t reconcile_calls_per_run; /* calls one run may spend on the sweep */
    bool push_customers;             /* customers of other sources go to Archtics */
    const char *alt_id_type; /* alt_id_type that carries the stagedoor customer id; "" none */

    /* quota overrides (sd_quota_effective: quota_<name>_calls) */
    int64_t quota_10s_calls;
    int64_t quota_day_calls;
};

/* The connector type (registry.c). */
extern const struct sd_connector sd_connector_archtics;

/* The client parameters of cf (strings borrowed from cf). */
void archtics_ats_params(const struct archtics_conf *cf, struct ats_params *ret);

/* Customers out (archtics_out.c): the outbox operations, the change → item hook (customers of
 * other sources, when push_customers is on) and the delivery (customer_add, or customer_query
 * + customer_update). */
struct sd_change;
struct sd_outbox_adder;
struct sd_outbox_item;
struct sd_delivery_result;
extern const char *const archtics_operations[];
void archtics_on_change(const struct sd_connector_ctx *ctx, const struct sd_change *chg,
                        struct sd_outbox_adder *out);
/* Reconciliation (archtics_reconcile.c): one step of the sweep — first the hub's Archtics
 * events (event_details by name, 50 a call; not listed → deleted), then the hub's accounts of
 * this source (customer_query each; 5024 → merged into the account that holds its sale now, or
 * deleted) — within reconcile_calls_per_run calls, every reconcile_days; its checkpoint is kept
 * in the saved state. Called by the run after its streams, with the run's client. 0 (also when
 * not due, or when a call failed: the next run goes on from the checkpoint), or a negative
 * errno of the store. */
struct archtics_reconcile_report {
    bool ran, finished;
    int64_t calls;
    size_t checked, deleted, merged, events_deleted;
};
int archtics_reconcile_step(struct sd_connector_ctx *ctx, struct ats_client *cl,
                            struct archtics_reconcile_report *rep);
enum sd_verdict archtics_deliver(struct sd_connector_ctx *ctx, void *state,
                                 const struct sd_outbox_item *item, struct sd_delivery_result *res);

#endif
