/* season.h — a deterministic demo data set: one season of a fictional opera house.
 *
 * The generator produces the records a ticketing system would push to the hub: the season's
 * performances ("events"), the house's customers and their ticket sales, as ingest bodies for
 * POST /v1/{client_id}/ingest. The house is the fictional "Staatsoper Lindenhof" (Berlin) with
 * a studio stage and two partner venues; the repertoire is real (Verdi, Mozart, Wagner, …) with
 * the operas' real role names, sung by fictional singers. Customers and addresses are
 * invented; e-mail addresses use reserved example domains (RFC 2606).
 *
 * Guarantees, for any seed:
 *   - Same seed and sizes → the same records in the same order (an own PRNG, no rand()).
 *     Record k of a kind does not depend on how the records are cut into bodies.
 *   - Every record is valid under the model's rules (model.h): ids, invoice numbers and e-mail
 *     addresses are unique; no two events share date + time + hall (hall names are unique
 *     across venues, so date + time + venue + hall is unique too); every sale names an event
 *     and a customer produced before it, or "ANON" (about 5 %); purchases happen before the
 *     day of the performance; prices are decimal strings with two places, base_price ≤
 *     sales_price, comps cost "0.00". Prices are per ticket.
 *   - Events fall between 2026-09-01 and 2027-06-30; only when n_events exceeds what that
 *     season can hold (about 300 performances) does the calendar run on past June 2027.
 *   - Memory stays small: events are kept (a few hundred bytes each, sales refer to them);
 *     customers and sales are made on demand, one body at a time.
 *
 * Thread rules: a struct sd_season belongs to one thread at a time; separate generators are
 * independent. */
#ifndef SD_DEMO_SEASON_H
#define SD_DEMO_SEASON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct sd_season;

/* Sizes of the house's standard demo season. */
#define SD_SEASON_DEFAULT_EVENTS 200
#define SD_SEASON_DEFAULT_CUSTOMERS 20000
#define SD_SEASON_DEFAULT_SALES 150000

/* A generator for n_events performances, n_customers customers and n_sales sales, all derived
 * from seed. Returns NULL if the sizes cannot be honoured: sales need at least one event, and
 * every size is capped at 100,000,000. Free with sd_season_free(). */
struct sd_season *sd_season_new(uint64_t seed, size_t n_events, size_t n_customers, size_t n_sales);

/* Next ingest body: a new json_t object {"events":[…]} or {"customers":[…]} or {"sales":[…]}
 * (one kind per body) with at most max_records records (0 counts as 1); all events come first,
 * then all customers, then all sales. Returns NULL when everything was produced (and on every
 * later call). Caller json_decref()s. */
json_t *sd_season_next(struct sd_season *s, size_t max_records);

/* Frees the generator; s may be NULL. Bodies already returned stay valid. */
void sd_season_free(struct sd_season *s);

#endif
