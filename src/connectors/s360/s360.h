/* s360.h — the `s360` connector's shared parts: stagedoor as the CRM ("ExtCRM") of one S-360
 * (SecuTix) institution in one environment.
 *
 *  - s360.c        the type (settings table, checks, registry entry) and the inbound half:
 *                  contacts, orders and access-control checks received at the instance's
 *                  inbound doors, mapped to customers, sales and events, and scans.
 *  - s360_out.c    the outbound half: the token exchange, contacts out through the outbox
 *                  (saveIndividualContactData) and offers (createOrUpdateOrder).
 *
 * Both halves read the one settings struct below, filled by core (ctx->conf). */
#ifndef SD_CONNECTORS_S360_H
#define SD_CONNECTORS_S360_H

#include <stdbool.h>
#include <stdint.h>

#include "core/connector.h"
#include "core/inbound.h"

struct s360_conf {
    /* the institution and how to reach its backend APIs */
    const char *institution;   /* institution code (`myvenue`): in the inbound URLs */
    const char *api_base;      /* https://{institution}.ws.secutix.com, or a test server */
    const char *operator_name; /* setting "operator" */
    const char *partner;
    const char *secret;        /* SECRET */
    const char *contact_service; /* "v2_21" */
    const char *order_facade;    /* "v1_33" */
    int64_t point_of_sales_id;
    int64_t timeout_seconds;
    int64_t quota_minute_calls; /* read by core (sd_quota_effective): 0 = the declared 180 */

    /* inbound */
    const char *time_zone;       /* the institution's IANA zone: referenceDate and local times */
    const char *history_from;    /* YYYY-MM-DD, or "": older contacts/orders are counted, not stored */
    const char *abandoned_states; /* comma-separated orderState literals meaning an abandoned basket */

    /* outbound */
    bool push_contacts;   /* customers linked to an S-360 contact, changed elsewhere, go out */
    bool create_contacts; /* new customers of other sources become S-360 contacts */

    struct sd_inbound_conf inbound; /* the doors' settings (SD_INBOUND_SETTINGS) */

    /* inbound mapping details (s360.c) */
    const char *optin_authorizations; /* authorizationType values that are advertising consent */
    const char *event_venue;          /* events' venue ("" = the institution code) */
    const char *event_hall;
    const char *event_city;
    const char *access_ok_results;    /* scan `result` values that count as an entry */
    const char *access_fields;        /* the scan payload's field names (s360.c) */
    bool attendance;                  /* sales start with attended_quantity 0 (scans count up) */
};

/* The outbound half (s360_out.c), referred to by sd_connector_s360. */
enum sd_verdict s360_deliver(struct sd_connector_ctx *, void *, const struct sd_outbox_item *,
                             struct sd_delivery_result *);
void s360_on_change(const struct sd_connector_ctx *, const struct sd_change *,
                    struct sd_outbox_adder *);
extern const char *const s360_operations[];
extern const struct sd_connector_action s360_actions[]; /* "offers": createOrUpdateOrder */

/* Is word one of the comma-separated list (spaces around items ignored; an empty word or list
 * matches nothing)? The settings' lists (optin_authorizations, abandoned_states …) read so. */
bool s360_in_list(const char *list, const char *word);

/* The inbound mapping of one object of a stream ("contacts", "orders", "access") into body's
 * "customers"/"events"/"sales" (inbound_map; pure, exposed for tests and fuzzing). 0,
 * SD_INBOUND_SKIP (older than history_from), or -EINVAL with the reasons in issues. */
int s360_map_object(const struct s360_conf *cf, const char *stream, const json_t *object,
                    json_t *body, struct sd_issues *issues);

#endif
