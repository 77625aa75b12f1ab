/* test_seg_sql.c — the segment rule compiler (store/seg_sql.c) in both of its dialects.
 *
 * Every rule of the segment tests (test_segments_store.c's tables, plus the shapes only the
 * parser tests name) is compiled for SQLite and for PostgreSQL; the table is checked to reach
 * every node kind, field, operator, measure and time kind the compiler handles. Without a
 * database: each text numbers its parameters 1..n without a gap, in its own placeholder
 * spelling, and holds nothing of the other dialect; malformed trees are refused.
 *
 * With STAGEDOOR_TEST_PG set (scripts/pg-cluster start DIR), against a database made for this
 * run from every file of src/store/postgres/schema (applied in order with PQexec, dropped at
 * the end):
 *  - every PostgreSQL query (count and members) is EXPLAINed with its parameters bound, so each
 *    one parses and plans;
 *  - the box office of test_segments_store.c (plus activity fields and the order lifecycle) is
 *    written through the SQLite store's real write path, its rows copied into PostgreSQL as
 *    they are, and every rule run on both in every scope: the SQLite store's counts and members
 *    and PostgreSQL's rows must be the same profile ids;
 *  - PostgreSQL's sd_fold (0004_fold.sql) equals the model's sd_text_fold on a table of strings
 *    (ASCII, German, French, Turkish, Greek, whitespace of every kind, empty) and on every
 *    Unicode scalar value. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "base/base.h"
#include "core/segment_rules.h"
#include "model/model.h"
#include "store/audience.h"
#include "store/seg_sql.h"
#include "store/store.h"
#include "store_fixture.h"

#define NOW_USEC (1767225600LL * 1000000) /* 2026-01-01T00:00:00Z */

/* The PostgreSQL schema, as the backend embeds it (cmake/embed_sql.cmake). */
extern const char *const sd_pg_schema[];
extern const unsigned sd_pg_schema_count;

// clang-format off
#define B(x) "{\"bought\":{" x "}}"
/* The rules of test_segments_store.c, in its order, each once. */
static const char *const store_rules[] = {
    B("\"composer\":{\"eq\":\"GIUSEPPE  verdi\"}"),
    B("\"composer\":\"giuseppe verdi\""),
    B("\"composer\":{\"contains\":\"VERDI\"}"),
    B("\"composer\":{\"prefix\":\"wolfgang\"}"),
    B("\"composer\":{\"prefix\":\"amadeus\"}"),
    B("\"composer\":{\"ne\":\"giuseppe verdi\"}"),
    B("\"composer\":{\"in\":[\"Mozart\",\"Wolfgang Amadeus Mozart\"]}"),
    B("\"composer\":{\"exists\":false}"),
    B("\"composer\":{\"exists\":true}"),
    B("\"title\":{\"eq\":\"otello\"}"),
    B("\"title\":{\"contains\":\"ZAUBERFLÖTE\"}"),
    B("\"work_title\":{\"exists\":false}"),
    B("\"work_title\":{\"eq\":\"otello\"}"),
    B("\"cast\":{\"eq\":\"anna netrebko\"}"),
    B("\"cast\":{\"contains\":\"pape\"}"),
    B("\"cast\":{\"prefix\":\"jonas\"}"),
    B("\"cast\":{\"in\":[\"René Pape\",\"Nobody\"]}"),
    B("\"cast\":{\"ne\":\"anna netrebko\"}"),
    B("\"cast\":{\"exists\":false}"),
    B("\"cast\":{\"exists\":true}"),
    B("\"venue\":{\"eq\":\"staatsoper\"}"),
    B("\"hall\":{\"eq\":\"GROSSER SAAL\"}"),
    B("\"hall\":{\"eq\":\"großer saal\"}"),
    B("\"hall\":{\"contains\":\"hall\"}"),
    B("\"city\":\"Berlin\""),
    B("\"city\":[\"wien\",\"hamburg\"]"),
    B("\"event_id\":{\"eq\":\"E2\"}"),
    B("\"event_id\":{\"eq\":\"e2\"}"),
    B("\"event_id\":{\"prefix\":\"E\"}"),
    B("\"event_id\":{\"in\":[\"E3\",\"E4\"]}"),
    B("\"event_id\":{\"ne\":\"E1\"}"),
    B(""),
    B("\"date\":{\"eq\":\"2025-10-05\"}"),
    B("\"date\":\"2025-10-05\""),
    B("\"date\":{\"before\":\"2025-01-01\"}"),
    B("\"date\":{\"lt\":\"2025-10-03\"}"),
    B("\"date\":{\"lte\":\"2025-10-03\"}"),
    B("\"date\":{\"after\":\"2025-10-03\"}"),
    B("\"date\":{\"gt\":\"2025-10-05\"}"),
    B("\"date\":{\"gte\":\"2025-10-05\"}"),
    B("\"date\":{\"between\":[\"2025-10-03\",\"2025-10-05\"]}"),
    B("\"date\":{\"between\":[\"2025-10-04\",\"2025-10-04\"]}"),
    B("\"date\":{\"ne\":\"2025-10-03\"}"),
    B("\"date\":{\"eq\":\"2025-10-05T23:59:59Z\"}"),
    B("\"date\":{\"after\":\"30 days ago\"}"),
    B("\"date\":{\"after\":\"today\"}"),
    B("\"date\":{\"eq\":\"in 9 days\"}"),
    B("\"date\":{\"before\":\"yesterday\"}"),
    B("\"weekday\":\"saturday\""),
    B("\"weekday\":{\"in\":[\"fri\",\"sun\"]}"),
    B("\"weekday\":{\"eq\":\"friday\"}"),
    B("\"weekday\":{\"ne\":\"saturday\"}"),
    B("\"weekday\":\"monday\""),
    B("\"time\":{\"between\":[\"11:00\",\"16:00\"]}"),
    B("\"time\":{\"eq\":\"19:30\"}"),
    B("\"time\":{\"gt\":\"19:30\"}"),
    B("\"time\":{\"gte\":\"19:30\"}"),
    B("\"time\":{\"lt\":\"15:00\"}"),
    B("\"time\":{\"lte\":\"15:00\"}"),
    B("\"time\":{\"in\":[\"11:00:00\"]}"),
    B("\"time\":{\"ne\":\"19:30\"}"),
    B("\"ticket_category\":\"vip\""),
    B("\"ticket_category\":{\"in\":[\"comp\",\"subscription\"]}"),
    B("\"ticket_category\":{\"ne\":\"regular\"}"),
    B("\"purchased\":{\"after\":\"2025-06-30\"}"),
    B("\"purchased\":{\"before\":\"2024-01-01\"}"),
    B("\"purchased\":{\"between\":[\"2024-01-01\",\"2024-12-31\"]}"),
    B("\"purchased\":{\"eq\":\"2025-06-01\"}"),
    B("\"purchased\":{\"ne\":\"2025-06-01\"}"),
    B("\"purchased\":{\"gt\":\"2025-06-01T10:00:00Z\"}"),
    B("\"purchased\":{\"gte\":\"2025-07-01T10:00:00Z\"}"),
    B("\"purchased\":{\"gt\":\"2025-07-01T10:00:00Z\"}"),
    B("\"purchased\":{\"eq\":\"2025-07-01T12:00:00+02:00\"}"),
    B("\"purchased\":{\"lte\":\"2023-12-01T18:00:00Z\"}"),
    B("\"purchased\":{\"lt\":\"2023-12-01T18:00:00Z\"}"),
    B("\"purchased\":{\"after\":\"45 days ago\"}"),
    B("\"purchased\":{\"after\":\"2 weeks ago\"}"),
    B("\"purchased\":{\"after\":\"1 week ago\"}"),
    B("\"purchased\":{\"before\":\"in 1 day\",\"after\":\"730 days ago\"}"),
    B("\"price\":{\"currency\":\"EUR\",\"gte\":\"89.00\"}"),
    B("\"price\":{\"currency\":\"EUR\",\"lt\":5000}"),
    B("\"price\":{\"currency\":\"EUR\",\"between\":[\"30.00\",\"40.00\"]}"),
    B("\"price\":{\"currency\":\"EUR\",\"eq\":0}"),
    B("\"price\":{\"currency\":\"EUR\",\"ne\":0}"),
    B("\"price\":{\"currency\":\"EUR\",\"gt\":\"89.00\"}"),
    B("\"price\":{\"currency\":\"EUR\",\"lte\":\"30.00\"}"),
    B("\"price\":{\"currency\":\"EUR\",\"in\":[\"250.00\",3000]}"),
    B("\"price\":{\"currency\":\"CHF\",\"gte\":1}"),
    B("\"price\":{\"currency\":\"USD\",\"gte\":0}"),
    B("\"currency\":\"chf\""),
    B("\"currency\":{\"ne\":\"EUR\"}"),
    B("\"currency\":{\"in\":[\"EUR\"]}"),
    B("\"quantity\":{\"gte\":4}"),
    B("\"quantity\":{\"in\":[2]}"),
    B("\"quantity\":{\"eq\":1}"),
    B("\"quantity\":{\"between\":[3,9]}"),
    B("\"quantity\":{\"lt\":2}"),
    B("\"quantity\":{\"ne\":2}"),
    B("\"composer\":\"giuseppe verdi\",\"ticket_category\":\"comp\""),
    B("\"city\":\"berlin\",\"purchased\":{\"after\":\"2024-01-01\"}"),
    B("\"city\":\"hamburg\",\"quantity\":{\"gte\":4}"),
    B("\"city\":\"hamburg\",\"ticket_category\":\"VIP\",\"quantity\":{\"gte\":4}"),
    "{\"count\":{\"of\":\"purchases\",\"gte\":3}}",
    "{\"count\":{\"of\":\"purchases\",\"eq\":2}}",
    "{\"count\":{\"of\":\"purchases\",\"lt\":2}}",
    "{\"count\":{\"of\":\"purchases\",\"eq\":0}}",
    "{\"count\":{\"of\":\"purchases\",\"between\":[1,2]}}",
    "{\"count\":{\"of\":\"purchases\",\"between\":[0,1]}}",
    "{\"count\":{\"of\":\"purchases\",\"in\":[0,3]}}",
    "{\"count\":{\"of\":\"purchases\",\"in\":[2]}}",
    "{\"count\":{\"of\":\"purchases\",\"ne\":1}}",
    "{\"count\":{\"of\":\"purchases\",\"ne\":0}}",
    "{\"count\":{\"of\":\"purchases\",\"lte\":1}}",
    "{\"count\":{\"of\":\"purchases\",\"gt\":2}}",
    "{\"count\":{\"of\":\"purchases\",\"gte\":0}}",
    "{\"count\":{\"of\":\"purchases\",\"gte\":2,\"lte\":2}}",
    "{\"count\":{\"of\":\"tickets\",\"gte\":5}}",
    "{\"count\":{\"of\":\"tickets\",\"eq\":6}}",
    "{\"count\":{\"of\":\"tickets\",\"lt\":5}}",
    "{\"count\":{\"of\":\"events\",\"eq\":3}}",
    "{\"count\":{\"of\":\"events\",\"gte\":2}}",
    "{\"count\":{\"of\":\"events\",\"lt\":2}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"gte\":\"300.00\"}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"eq\":\"428\"}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"lt\":20000}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"between\":[\"30.00\",\"160.00\"]}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"CHF\",\"eq\":\"120.00\"}}",
    "{\"count\":{\"of\":\"purchases\",\"where\":{\"composer\":\"giuseppe verdi\"}," "\"gte\":2}}",
    "{\"count\":{\"of\":\"purchases\",\"where\":{\"city\":\"hamburg\"},\"eq\":0}}",
    "{\"count\":{\"of\":\"tickets\",\"where\":{\"ticket_category\":\"regular\"},\"gte\":2}}",
    "{\"count\":{\"of\":\"events\",\"where\":{\"purchased\":{\"after\":\"2025-01-01\"}}," "\"eq\":2}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"where\":{\"event_id\":\"E2\"}," "\"gte\":\"160.00\"}}",
    "{\"first_purchase\":{\"before\":\"2023-01-01\"}}",
    "{\"first_purchase\":{\"after\":\"2024-01-01\"}}",
    "{\"first_purchase\":{\"eq\":\"2024-01-15\"}}",
    "{\"first_purchase\":{\"ne\":\"2024-01-15\"}}",
    "{\"first_purchase\":{\"between\":[\"2023-01-01\",\"2023-12-01\"]}}",
    "{\"first_purchase\":{\"gte\":\"2023-12-01T18:00:00Z\"}}",
    "{\"first_purchase\":{\"lte\":\"2023-12-01\"}}",
    "{\"first_purchase\":{\"exists\":true}}",
    "{\"first_purchase\":{\"exists\":false}}",
    "{\"last_purchase\":{\"after\":\"2025-10-01\"}}",
    "{\"last_purchase\":{\"after\":\"365 days ago\"}}",
    "{\"last_purchase\":{\"before\":\"2024-06-01\"}}",
    "{\"last_purchase\":{\"before\":\"730 days ago\"}}",
    "{\"last_purchase\":{\"between\":[\"2025-01-01\",\"2025-07-31\"]}}",
    "{\"last_purchase\":{\"eq\":\"2025-07-01\"}}",
    "{\"last_purchase\":{\"ne\":\"2025-07-01\"}}",
    "{\"last_purchase\":{\"lt\":\"2025-07-01T10:00:00Z\"}}",
    "{\"last_purchase\":{\"lte\":\"2025-07-01T10:00:00Z\"}}",
    "{\"last_purchase\":{\"gt\":\"2025-07-01T10:00:00Z\"}}",
    "{\"last_purchase\":{\"exists\":false}}",
    "{\"last_purchase\":{\"after\":\"2023-01-01\",\"before\":\"2025-10-01\"}}",
    "{\"last_purchase\":{\"where\":{\"composer\":\"giuseppe verdi\"}," "\"after\":\"2025-01-01\"}}",
    "{\"last_purchase\":{\"where\":{\"composer\":\"giuseppe verdi\"}," "\"before\":\"2025-01-01\"}}",
    "{\"first_purchase\":{\"where\":{\"city\":\"hamburg\"},\"exists\":false}}",
    "{\"customer\":{\"post_code\":{\"prefix\":\"10\"}}}",
    "{\"customer\":{\"post_code\":{\"eq\":\"20095\"}}}",
    "{\"customer\":{\"post_code\":{\"exists\":false}}}",
    "{\"customer\":{\"post_code\":{\"in\":[\"80331\",\"10999\"]}}}",
    "{\"customer\":{\"post_code\":{\"contains\":\"09\"}}}",
    "{\"customer\":{\"city\":{\"eq\":\"HAMBURG\"}}}",
    "{\"customer\":{\"city\":\"münchen\"}}",
    "{\"customer\":{\"city\":{\"ne\":\"berlin\"}}}",
    "{\"customer\":{\"salutation\":{\"in\":[\"ms\",\"frau\"]}}}",
    "{\"customer\":{\"salutation\":{\"exists\":false}}}",
    "{\"customer\":{\"source\":\"csv\"}}",
    "{\"customer\":{\"source\":{\"ne\":\"csv\"}}}",
    "{\"customer\":{\"source\":\"webhook\",\"post_code\":{\"prefix\":\"1\"}}}",
    "{\"customer\":{}}",
    "{\"all\":[]}",
    "{\"any\":[]}",
    "{\"all\":[" B("\"composer\":\"giuseppe verdi\"") "," "{\"customer\":{\"post_code\":{" "\"prefix\":\"10\"}}}]}",
    "{\"all\":[" B( "\"composer\":\"giuseppe verdi\"") "," "{\"customer\":{\"salutation\":\"frau\"}}]}",
    "{\"any\":[{\"count\":{\"of\":\"tickets\",\"gte\":6}}," "{\"customer\":{\"salutation\":\"frau\"}}]}",
    "{\"not\":" B("") "}",
    "{\"not\":{\"not\":" B("") "}}",
    "{\"all\":[" B("\"city\":\"berlin\"") ",{\"not\":" B("\"city\":\"hamburg\"") "}]}",
    "{\"any\":[" B("\"event_id\":\"E4\"") ",{\"all\":[" B( "\"event_id\":\"E3\"") "," "{\"last_purchase\":{\"before\":\"2024-01-01\"}}]}]}",
    "{\"customer\":{\"post_code\":{\"prefix\":\"1\"}}}",
    "{\"customer\":{\"post_code\":{\"prefix\":\"8\"}}}",
    "{\"customer\":{\"post_code\":{\"ne\":\"20095\"}}}",
    "{\"customer\":{\"city\":\"berlin mitte\"}}",
    "{\"customer\":{\"city\":{\"prefix\":\"BERLIN\"}}}",
    "{\"customer\":{\"city\":{\"in\":[\"MÜNCHEN\",\"hamburg\"]}}}",
    "{\"customer\":{\"city\":{\"prefix\":\"MÜ\"}}}",
    "{\"customer\":{\"city\":{\"prefix\":\"mün\"},\"post_code\":{\"prefix\":\"80\"}}}",
    "{\"customer\":{\"post_code\":{\"prefix\":\"2\"},\"city\":{\"prefix\":\"ham\"}}}",
    "{\"customer\":{\"post_code\":{\"prefix\":\"9\"}}}",
    "{\"customer\":{\"city\":{\"prefix\":\"mü\"}}}",
    "{\"customer\":{\"activities\":{\"gte\":2}}}",
    "{\"customer\":{\"activities\":0}}",
    "{\"customer\":{\"activities\":{\"between\":[1,2]}}}",
    "{\"customer\":{\"last_activity\":{\"after\":\"2026-01-31\"}}}",
    "{\"customer\":{\"last_activity\":{\"after\":\"2026-02-01\"}}}",
    "{\"customer\":{\"last_activity\":{\"gte\":\"2026-02-10T12:00:00Z\"}}}",
    "{\"customer\":{\"last_activity\":{\"gt\":\"2026-02-10T12:00:00Z\"}}}",
    "{\"customer\":{\"last_activity\":{\"exists\":false}}}",
    "{\"customer\":{\"last_activity\":{\"eq\":\"2025-11-01\"}}}",
    "{\"customer\":{\"last_activity_type\":\"CONTEST\"}}",
    "{\"customer\":{\"last_activity_campaign\":{\"contains\":\"trivia\"}}}",
    "{\"all\":[{\"customer\":{\"last_activity\":{\"after\":\"2026-01-01\"}}}," "{\"not\":{\"bought\":{}}}]}",
    "{\"all\":[{\"customer\":{\"activities\":{\"gte\":1}}},{\"count\":{\"of\":" "\"purchases\",\"gte\":2}}]}",
    "{\"bought\":{}}",
    "{\"count\":{\"of\":\"purchases\",\"gte\":1}}",
    "{\"count\":{\"of\":\"events\",\"gte\":1}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"gte\":\"90.00\"}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"eq\":\"75.00\"}}",
    "{\"count\":{\"of\":\"tickets\",\"gte\":3}}",
    "{\"count\":{\"of\":\"tickets\",\"eq\":0}}",
    "{\"last_purchase\":{\"after\":\"2025-11-15\"}}",
    "{\"refunded\":{}}",
    "{\"refunded\":{\"status_changed\":{\"after\":\"30 days ago\"}}}",
    "{\"bought\":{\"status\":\"refunded\"}}",
    "{\"holds\":{}}",
    "{\"holds\":{\"order_type\":\"option\"}}",
    "{\"holds\":{\"expires\":{\"before\":\"2026-01-10\"}}}",
    "{\"abandoned\":{\"purchased\":{\"after\":\"7 days ago\"},\"bought_since\":false}}",
    "{\"abandoned\":{\"purchased\":{\"after\":\"7 days ago\"}}}",
    "{\"abandoned\":{}}",
    "{\"bought\":{\"date\":{\"before\":\"today\"},\"attended\":0}}",
    "{\"bought\":{\"attended\":{\"gte\":1}}}",
    "{\"all\":[{\"bought\":{}},{\"not\":{\"refunded\":{}}}]}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"eq\":\"100.00\"}}",
    "{\"refunded\":{\"event_id\":\"G2\"}}",
    "{\"count\":{\"of\":\"tickets\",\"eq\":2}}",
    "{\"bought\":{\"event_id\":\"G1\"}}",
    "{\"bought\":{\"status\":\"sold\"}}",
};

/* Shapes only the parser's tests name, and rules on the text this test's data folds (its
 * tenant beta). */
static const char *const parser_rules[] = {
    "{\"customer\":{\"salutation\":\"Herr Dr.\"}}",
    "{\"customer\":{\"post_code\":\"1011 5\"}}",
    "{\"bought\":{\"title\":{\"prefix\":\"ΣΟΦΊΑ OTELLO\"}}}",
    "{\"bought\":{\"venue\":\"istanbul opera\",\"composer\":\"giuseppe verdi\"}}",
    "{\"last_purchase\":{\"eq\":\"2025-06-01T10:00:00Z\"}}",
    "{\"customer\":{\"last_activity_type\":\"1\"}}",
    "{\"customer\":{\"last_activity_type\":{\"in\":[\"7\",\"0\",\"quiz\"]}}}",
    "{\"customer\":{\"last_activity_campaign\":{\"exists\":false}}}",
    "{\"customer\":{\"activities\":{\"gt\":1000}}}",
    "{\"customer\":{\"activities\":{\"ne\":1}}}",
    "{\"customer\":{\"activities\":{\"between\":[2,3]}}}",
    "{\"customer\":{\"activities\":{\"lt\":3}}}",
    "{\"customer\":{\"last_activity\":{\"before\":\"2026-01-01\"}}}",
    "{\"customer\":{\"last_activity\":{\"ne\":\"2026-02-01\"}}}",
    "{\"customer\":{\"last_activity\":{\"exists\":true}}}",
    "{\"all\":[{\"bought\":{}},{\"any\":[{\"not\":{\"customer\":{}}},{\"all\":[]}]}]}",
    "{\"bought\":{\"composer\":{\"eq\":\"  Giuseppe   VERDI \"},\"city\":\"Berlin\","
    "\"title\":[\"Otello\",\"AIDA\"],\"purchased\":{\"after\":\"730 days ago\","
    "\"before\":\"2026-01-01\"}}}",
    "{\"bought\":{\"event_id\":{\"prefix\":\"EVT-\"}}}",
    "{\"bought\":{\"title\":{\"contains\":\"otel\"}}}",
    "{\"bought\":{\"cast\":{\"in\":[\"A\",\"B\"]}}}",
    "{\"bought\":{\"hall\":{\"prefix\":\"Main\"}}}",
    "{\"bought\":{\"city\":{\"in\":[\"Berlin\"]}}}",
    "{\"bought\":{\"weekday\":{\"in\":[\"sat\",\"Sunday\"]}}}",
    "{\"bought\":{\"ticket_category\":[\"vip\",\"COMP\"],\"currency\":\"chf\","
    "\"time\":{\"between\":[\"18:00\",\"20:30:15\"]},\"weekday\":\"Sat\","
    "\"price\":{\"currency\":\"JPY\",\"eq\":\"1200\",\"ne\":5}}}",
    "{\"bought\":{\"price\":{\"currency\":\"EUR\",\"between\":[\"9.5\",10000]}}}",
    "{\"customer\":{\"salutation\":{\"in\":[\"Ms\",\"Frau\"]}}}",
    "{\"customer\":{\"last_activity_campaign\":{\"contains\":\"give\"}}}",
    "{\"customer\":{\"city\":{\"prefix\":\"\xc2\xbf\"}}}", /* "¿": its last byte is 0xBF */
    "{\"customer\":{\"post_code\":{\"prefix\":\"1\x7f\"}}}",
    "{\"last_purchase\":{\"after\":\"2024-01-01T02:00:10+02:00\"}}",
    "{\"last_purchase\":{\"after\":\"now\"}}",
    "{\"last_purchase\":{\"after\":\"tomorrow\"}}",
    "{\"last_purchase\":{\"after\":\"in 30 days\"}}",
    "{\"last_purchase\":{\"after\":\"36500 days ago\"}}",
    "{\"count\":{\"of\":\"purchases\",\"gte\":3,\"lt\":10,\"where\":{\"composer\":\"Verdi\"}}}",
    "{\"count\":{\"of\":\"events\",\"ne\":0}}",
    "{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"where\":{\"quantity\":{\"gte\":2}},"
    "\"in\":[0,5000]}}",
    "{\"count\":{\"of\":\"tickets\",\"where\":{\"event_id\":[\"E1\",\"E2\"],"
    "\"ticket_category\":\"vip\"},\"between\":[0,3]}}",
    "{\"first_purchase\":{\"where\":{\"city\":\"Berlin\"},\"exists\":true,"
    "\"between\":[\"2020-01-01\",\"1 day ago\"],\"ne\":\"2021-05-05\"}}",
    "{\"holds\":{\"expires\":{\"exists\":true},\"order_type\":{\"ne\":\"option\"}}}",
    "{\"refunded\":{\"status_changed\":{\"exists\":false}}}",
    "{\"bought\":{\"attended\":{\"in\":[0,1]},\"status\":{\"in\":[\"sold\",\"refunded\"]}}}",
    "{\"abandoned\":{\"date\":{\"after\":\"today\"},\"bought_since\":false}}",
};
// clang-format on

#define N_STORE (sizeof(store_rules) / sizeof(store_rules[0]))
#define N_PARSER (sizeof(parser_rules) / sizeof(parser_rules[0]))
#define N_RULES (N_STORE + N_PARSER)

static const char *rule_text(size_t i)
{
    return i < N_STORE ? store_rules[i] : parser_rules[i - N_STORE];
}

static struct sd_seg_rule *rule_of(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) {
        fail_msg("bad rule JSON %s: %s", text, jerr.text);
    }
    struct sd_issues errors;
    sd_issues_init(&errors, 5);
    struct sd_seg_rule *r = NULL;
    if (sd_seg_rule_parse(j, "", &r, &errors) != 0) {
        fail_msg("rule %s: %s %s", text, errors.items[0].pointer, errors.items[0].message);
    }
    sd_issues_release(&errors);
    json_decref(j);
    return r;
}

static struct sd_seg_sql compile(const char *text, bool count_only, const struct sd_seg_dialect *d)
{
    struct sd_seg_rule *r = rule_of(text);
    struct sd_seg_sql q = {0};
    int rc = sd_seg_sql_build(r, NOW_USEC, count_only, d, &q);
    if (rc != 0) {
        fail_msg("rule %s: %s compile failed: %d", text, sd_seg_dialect_name(d), rc);
    }
    sd_seg_rule_free(r);
    return q;
}

/* ---- without a database ---------------------------------------------------------------------- */

struct coverage {
    bool kind[SD_SEG_ABANDONED + 1];
    bool field[SD_SEG_F_MEASURE + 1];
    bool op[SD_SEG_EXISTS + 1];
    bool measure[SD_SEG_M_SPEND + 1];
    bool time[SD_SEG_T_DAYS_AGO + 1];
    bool not_bought_since;
};

static bool is_time_field(enum sd_seg_field f)
{
    return f == SD_SEG_F_DATE || f == SD_SEG_F_PURCHASED || f == SD_SEG_F_LAST_ACTIVITY ||
           f == SD_SEG_F_STATUS_CHANGED || f == SD_SEG_F_EXPIRES;
}

static void cover_conds(struct coverage *c, const struct sd_seg_cond *v, size_t n, bool times)
{
    for (size_t i = 0; i < n; i++) {
        c->field[v[i].field] = true;
        c->op[v[i].op] = true;
        if (times || is_time_field(v[i].field)) {
            for (size_t k = 0; k < v[i].n; k++) {
                c->time[v[i].v[k].time.kind] = true;
            }
        }
    }
}

static void cover(struct coverage *c, const struct sd_seg_rule *r)
{
    c->kind[r->kind] = true;
    if (r->kind == SD_SEG_COUNT) {
        c->measure[r->measure] = true;
    }
    c->not_bought_since = c->not_bought_since || r->not_bought_since;
    cover_conds(c, r->where, r->n_where, false);
    cover_conds(c, r->cmp, r->n_cmp,
                r->kind == SD_SEG_FIRST_PURCHASE || r->kind == SD_SEG_LAST_PURCHASE);
    for (size_t i = 0; i < r->n_kids; i++) {
        cover(c, r->kids[i]);
    }
}

/* The table reaches every kind, filter field, operator, measure and time kind. */
static void test_rules_cover_every_shape(void **state)
{
    (void)state;
    struct coverage c = {0};
    for (size_t i = 0; i < N_RULES; i++) {
        struct sd_seg_rule *r = rule_of(rule_text(i));
        cover(&c, r);
        sd_seg_rule_free(r);
    }
    for (int k = 0; k <= SD_SEG_ABANDONED; k++) {
        if (!c.kind[k]) {
            fail_msg("no rule of kind %d", k);
        }
    }
    for (int f = 0; f < SD_SEG_F_MEASURE; f++) {
        if (!c.field[f]) {
            fail_msg("no rule filters on field %d", f);
        }
    }
    for (int o = 0; o <= SD_SEG_EXISTS; o++) {
        if (!c.op[o]) {
            fail_msg("no rule uses operator %d", o);
        }
    }
    for (int m = 0; m <= SD_SEG_M_SPEND; m++) {
        if (!c.measure[m]) {
            fail_msg("no count of measure %d", m);
        }
    }
    for (int t = 0; t <= SD_SEG_T_DAYS_AGO; t++) {
        if (!c.time[t]) {
            fail_msg("no time value of kind %d", t);
        }
    }
    assert_true(c.not_bought_since);
}

/* Placeholders of q: numbered 1..n without a gap in the dialect's spelling (n = the fixed ones
 * and every listed parameter), none in the other's. */
static void check_placeholders(const char *rule, const struct sd_seg_sql *q, bool count_only,
                               bool pg)
{
    unsigned fixed = count_only ? 2 : 4;
    assert_int_equal(q->first_param, fixed + 1);
    size_t n = fixed + q->n_params;
    bool *seen = sd_calloc(n + 1, sizeof(*seen));
    char mark = pg ? '$' : '?', other = pg ? '?' : '$';
    for (const char *p = q->sql; *p; p++) {
        if ((*p == mark || *p == other) && p[1] >= '0' && p[1] <= '9') {
            if (*p == other) {
                fail_msg("rule %s: placeholder of the other dialect in %s", rule, q->sql);
            }
            char *end = NULL;
            unsigned long v = strtoul(p + 1, &end, 10);
            if (v < 1 || v > n) {
                fail_msg("rule %s: placeholder %lu beyond %zu in %s", rule, v, n, q->sql);
            }
            seen[v] = true;
        }
    }
    for (size_t k = 1; k <= n; k++) {
        if (!seen[k]) {
            fail_msg("rule %s: parameter %zu never used in %s", rule, k, q->sql);
        }
    }
    free(seen);
    for (size_t k = 0; k < q->n_params; k++) {
        assert_true(q->params[k].type == SD_SEG_P_INT || q->params[k].text != NULL);
    }
    assert_int_equal(strlen(q->sql), q->len);
}

static void test_both_dialects_compile(void **state)
{
    (void)state;
    static const char *const sqlite_only[] = {"::",   "COLLATE", "jsonb",         "strpos(",
                                              "TRUE", "FALSE",   "DISTINCT FROM", "extract(dow"};
    static const char *const pg_only[] = {"INDEXED BY",        "json_extract", "json_each",
                                          "json_array_length", "instr(",       "strftime",
                                          " IS NOT ?",         " IS NOT $"};
    for (size_t i = 0; i < N_RULES; i++) {
        for (int count_only = 0; count_only < 2; count_only++) {
            struct sd_seg_sql lite = compile(rule_text(i), count_only, &sd_seg_dialect_sqlite);
            struct sd_seg_sql pg = compile(rule_text(i), count_only, &sd_seg_dialect_pg);
            check_placeholders(rule_text(i), &lite, count_only, false);
            check_placeholders(rule_text(i), &pg, count_only, true);
            for (size_t k = 0; k < sizeof(sqlite_only) / sizeof(*sqlite_only); k++) {
                if (strstr(lite.sql, sqlite_only[k])) {
                    fail_msg("rule %s: SQLite text holds \"%s\": %s", rule_text(i), sqlite_only[k],
                             lite.sql);
                }
            }
            for (size_t k = 0; k < sizeof(pg_only) / sizeof(*pg_only); k++) {
                if (strstr(pg.sql, pg_only[k])) {
                    fail_msg("rule %s: PostgreSQL text holds \"%s\": %s", rule_text(i), pg_only[k],
                             pg.sql);
                }
            }
            /* the same values in the same order: one compiler, two spellings */
            assert_int_equal(lite.n_params, pg.n_params);
            for (size_t k = 0; k < lite.n_params; k++) {
                assert_int_equal(lite.params[k].type, pg.params[k].type);
                assert_int_equal(lite.params[k].i, pg.params[k].i);
                if (lite.params[k].type == SD_SEG_P_TEXT) {
                    assert_string_equal(lite.params[k].text, pg.params[k].text);
                }
            }
            sd_seg_sql_release(&lite);
            sd_seg_sql_release(&pg);
        }
    }
}

/* Trees the parser never makes are refused in both dialects; nothing is written to *ret. */
static void test_malformed_trees(void **state)
{
    (void)state;
    struct sd_seg_value two[2] = {{.num = 1}, {.num = 2}};
    struct sd_seg_cond eq_two = {.field = SD_SEG_F_QUANTITY, .op = SD_SEG_EQ, .v = two, .n = 2};
    struct sd_seg_cond between_one = {
        .field = SD_SEG_F_QUANTITY, .op = SD_SEG_BETWEEN, .v = two, .n = 1};
    struct sd_seg_cond contains_num = {
        .field = SD_SEG_F_QUANTITY, .op = SD_SEG_CONTAINS, .v = two, .n = 1};
    struct sd_seg_cond measure = {.field = SD_SEG_F_MEASURE, .op = SD_SEG_EQ, .v = two, .n = 1};
    struct sd_seg_cond bad_field = {
        .field = (enum sd_seg_field)999, .op = SD_SEG_EQ, .v = two, .n = 1};
    struct sd_seg_rule bought = {.kind = SD_SEG_BOUGHT};
    struct sd_seg_rule *kids2[] = {&bought, &bought};
    struct sd_seg_rule cases[] = {
        {.kind = SD_SEG_BOUGHT, .where = &eq_two, .n_where = 1},
        {.kind = SD_SEG_BOUGHT, .where = &between_one, .n_where = 1},
        {.kind = SD_SEG_BOUGHT, .where = &contains_num, .n_where = 1},
        {.kind = SD_SEG_CUSTOMER, .where = &measure, .n_where = 1},
        {.kind = SD_SEG_CUSTOMER, .where = &bad_field, .n_where = 1},
        {.kind = SD_SEG_NOT, .kids = kids2, .n_kids = 2},
        {.kind = SD_SEG_COUNT, .measure = SD_SEG_M_PURCHASES}, /* no comparison */
        {.kind = SD_SEG_LAST_PURCHASE},                        /* likewise */
        {.kind = (enum sd_seg_kind)99},
    };
    const struct sd_seg_dialect *ds[] = {&sd_seg_dialect_sqlite, &sd_seg_dialect_pg};
    for (size_t d = 0; d < 2; d++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
            struct sd_seg_sql q = {.sql = (char *)"untouched"};
            assert_int_equal(sd_seg_sql_build(&cases[i], NOW_USEC, false, ds[d], &q), -EINVAL);
            assert_string_equal(q.sql, "untouched");
        }
        /* nesting deeper than 64 */
        struct sd_seg_rule nots[70];
        struct sd_seg_rule *links[70];
        for (size_t i = 0; i < 70; i++) {
            links[i] = &nots[i];
        }
        for (size_t i = 0; i < 69; i++) {
            nots[i] = (struct sd_seg_rule){.kind = SD_SEG_NOT, .kids = &links[i + 1], .n_kids = 1};
        }
        nots[69] = bought;
        struct sd_seg_sql q = {0};
        assert_int_equal(sd_seg_sql_build(&nots[0], NOW_USEC, true, ds[d], &q), -EINVAL);
        assert_int_equal(sd_seg_sql_build(NULL, NOW_USEC, true, ds[d], &q), -EINVAL);
    }
}

/* ---- against PostgreSQL ---------------------------------------------------------------------- */

struct pgfx {
    char admin[256]; /* STAGEDOOR_TEST_PG */
    char db[64];     /* this run's database */
    PGconn *pg;      /* connected to it; NULL without STAGEDOOR_TEST_PG */
};

/* The admin URL with its database name replaced by db ("scheme://auth@host:port/db?q"). */
static void url_for(char *out, size_t cap, const char *admin, const char *db)
{
    const char *host = strstr(admin, "://");
    assert_non_null(host);
    const char *slash = strchr(host + 3, '/');
    const char *query = strchr(host + 3, '?');
    size_t head = slash ? (size_t)(slash - admin) : query ? (size_t)(query - admin) : strlen(admin);
    int n = snprintf(out, cap, "%.*s/%s%s", (int)head, admin, db, query ? query : "");
    assert_true(n > 0 && (size_t)n < cap);
}

static void admin_exec(const char *admin, const char *sql)
{
    PGconn *c = PQconnectdb(admin);
    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("cannot connect to STAGEDOOR_TEST_PG: %s", PQerrorMessage(c));
    }
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
    PQfinish(c);
}

/* A database of its own for this run, holding every schema file applied in order. */
static int group_setup(void **state)
{
    struct pgfx *f = sd_calloc(1, sizeof(*f));
    *state = f;
    const char *admin = getenv("STAGEDOOR_TEST_PG");
    if (!admin || !*admin) {
        return 0;
    }
    snprintf(f->admin, sizeof(f->admin), "%s", admin);
    uint32_t rnd = 0;
    assert_int_equal(sd_random_bytes(&rnd, sizeof(rnd)), 0);
    snprintf(f->db, sizeof(f->db), "sd_segsql_%ld_%08x", (long)getpid(), (unsigned)rnd);
    char sql[128], url[512];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    admin_exec(f->admin, sql);
    url_for(url, sizeof(url), f->admin, f->db);
    f->pg = PQconnectdb(url);
    if (PQstatus(f->pg) != CONNECTION_OK) {
        fail_msg("cannot connect to %s: %s", f->db, PQerrorMessage(f->pg));
    }
    PGresult *res = PQexec(f->pg, "SET client_min_messages = warning");
    PQclear(res);
    for (unsigned i = 0; i < sd_pg_schema_count; i++) {
        res = PQexec(f->pg, sd_pg_schema[i]);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fail_msg("schema file %u: %s", i + 1, PQerrorMessage(f->pg));
        }
        PQclear(res);
    }
    return 0;
}

static int group_teardown(void **state)
{
    struct pgfx *f = *state;
    if (f->pg) {
        PQfinish(f->pg);
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", f->db);
        admin_exec(f->admin, sql);
    }
    free(f);
    return 0;
}

/* Run prefix + q with the scope (and, for members, after 0 and no limit) and q's values bound;
 * the result must be rows. */
static PGresult *pg_query(PGconn *pg, const char *prefix, const struct sd_seg_sql *q,
                          int64_t tenant, enum sd_env env, bool count_only, const char *rule)
{
    size_t n = q->first_param - 1 + q->n_params;
    const char **v = sd_calloc(n, sizeof(*v));
    char(*num)[24] = sd_calloc(n, sizeof(*num));
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)tenant);
    snprintf(num[1], sizeof(num[1]), "%d", (int)env);
    v[0] = num[0];
    v[1] = num[1];
    if (!count_only) {
        v[2] = "0";
        v[3] = NULL; /* LIMIT NULL: all */
    }
    for (size_t k = 0; k < q->n_params; k++) {
        size_t at = q->first_param - 1 + k;
        if (q->params[k].type == SD_SEG_P_INT) {
            snprintf(num[at], sizeof(num[at]), "%lld", (long long)q->params[k].i);
            v[at] = num[at];
        } else {
            v[at] = q->params[k].text;
        }
    }
    char *sql = sd_asprintf("%s%s", prefix, q->sql);
    PGresult *res = PQexecParams(pg, sql, (int)n, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("rule %s: %s%s\n%s", rule, prefix, PQresultErrorMessage(res), q->sql);
    }
    free(sql);
    free(num);
    free(v);
    return res;
}

/* Every PostgreSQL query parses and plans against the schema, its values bound. */
static void test_pg_explain_every_query(void **state)
{
    struct pgfx *f = *state;
    if (!f->pg) {
        skip();
    }
    for (size_t i = 0; i < N_RULES; i++) {
        for (int count_only = 0; count_only < 2; count_only++) {
            struct sd_seg_sql q = compile(rule_text(i), count_only, &sd_seg_dialect_pg);
            PGresult *res =
                pg_query(f->pg, "EXPLAIN ", &q, 1, SD_ENV_TEST, count_only, rule_text(i));
            assert_true(PQntuples(res) > 0);
            PQclear(res);
            sd_seg_sql_release(&q);
        }
    }
}

/* ---- the same members on both ---------------------------------------------------------------- */

struct lite {
    struct sd_test_store st;
    struct sd_store_handle *h;
};

/* Apply an ingest body through the SQLite store's write path, as the writer does. */
static void ingest(struct lite *l, int64_t tenant, enum sd_env env, const char *source,
                   const char *body_text)
{
    json_error_t jerr;
    json_t *body = json_loads(body_text, 0, &jerr);
    if (!body) {
        fail_msg("bad fixture JSON: %s", jerr.text);
    }
    sd_json_exact_prices(body, body_text, strlen(body_text));
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, 10);
    sd_issues_init(&warnings, 100);
    struct sd_batch b = {0};
    if (sd_validate_ingest(body, &b, &errors, &warnings) != 0) {
        fail_msg("body invalid: %s %s", errors.items[0].pointer, errors.items[0].message);
    }
    b.source = source;
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(l->h), 0);
    assert_int_equal(sd_store_apply_ingest(l->h, tenant, env, &b, &res), 0);
    if (res.outcome != SD_APPLY_OK) {
        fail_msg("fixture refused: %s %s", res.errors.n ? res.errors.items[0].pointer : "",
                 res.errors.n ? res.errors.items[0].message : "");
    }
    assert_int_equal(sd_store_write_commit(l->h), 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

// clang-format off
#define EV(id, extra) "{\"event_id\":\"" id "\",\"capacity\":100," extra "}"
#define CU(id, email, extra) "{\"customer_id\":\"" id "\",\"email\":\"" email "\"" extra "}"
#define SA(inv, ev, cu, when, cat, qty, price, cur)                                            \
    "{\"invoice_number\":\"" inv "\",\"event_id\":\"" ev "\",\"customer_id\":\"" cu           \
    "\",\"purchase_datetime\":\"" when "\",\"ticket_category\":\"" cat "\",\"quantity\":" qty \
    ",\"sales_price\":\"" price "\",\"currency\":\"" cur "\"}"
#define SX(inv, ev, cu, when, qty, price, extra)                                               \
    "{\"invoice_number\":\"" inv "\",\"event_id\":\"" ev "\",\"customer_id\":\"" cu           \
    "\",\"purchase_datetime\":\"" when "\",\"ticket_category\":\"regular\",\"quantity\":" qty \
    ",\"sales_price\":\"" price "\",\"currency\":\"EUR\"" extra "}"

/* test_segments_store.c's box office (its load_fixture, the activity fields of
 * test_customer_activity, its load_lifecycle), with text that folds differently in places. */
static void load(struct lite *l, int64_t acme, int64_t beta, int64_t gamma)
{
    ingest(l, acme, SD_ENV_TEST, NULL,
           "{\"events\":["
           EV("E1", "\"title\":\"Otello\",\"work_title\":\"Otello\","
                    "\"composer\":\"Giuseppe Verdi\","
                    "\"cast\":[{\"name\":\"Anna Netrebko\",\"role\":\"Desdemona\"},"
                    "{\"name\":\"Jonas Kaufmann\",\"role\":\"Otello\"}],\"venue\":\"Staatsoper\","
                    "\"hall\":\"Main Hall\",\"city\":\"Berlin\",\"date\":\"2025-10-03\","
                    "\"time\":\"19:30:00\"") ","
           EV("E2", "\"title\":\"Die Zauberflöte\",\"work_title\":\"Die Zauberflöte\","
                    "\"composer\":\"Wolfgang Amadeus Mozart\",\"cast\":[{\"name\":\"René Pape\"}],"
                    "\"venue\":\"Opera House\",\"hall\":\"Great Hall\",\"city\":\"Hamburg\","
                    "\"date\":\"2025-10-05\",\"time\":\"15:00:00\"") ","
           EV("E3", "\"title\":\"Requiem\",\"composer\":\"Giuseppe Verdi\","
                    "\"venue\":\"Staatsoper\","
                    "\"hall\":\"Apollo Hall\",\"city\":\"Berlin\",\"date\":\"2024-03-02\","
                    "\"time\":\"11:00:00\"") ","
           EV("E4", "\"title\":\"Gala\",\"venue\":\"Konzerthaus\",\"hall\":\"Großer Saal\","
                    "\"city\":\"Wien\",\"date\":\"2026-01-10\",\"time\":\"20:00:00\"")
           "],\"customers\":["
           CU("A", "a@x.org", ",\"salutation\":\"Ms\",\"post_code\":\"10115\",\"city\":\"Berlin\","
                              "\"ad_opt_out\":false") ","
           CU("B", "b@x.org", ",\"salutation\":\"Mr\",\"post_code\":\"20095\","
                              "\"city\":\"Hamburg\"") ","
           CU("C", "c@x.org", ",\"salutation\":\"Frau\",\"post_code\":\"10999\"") ","
           CU("D", "d@x.org", ",\"post_code\":\"10117\",\"ad_opt_out\":true") ","
           CU("E", "e@x.org", ",\"post_code\":\"80331\",\"city\":\"München\"")
           "],\"sales\":["
           SA("S1", "E1", "A", "2025-06-01T10:00:00Z", "regular", "2", "89.00", "EUR") ","
           SA("S2", "E2", "A", "2025-07-01T10:00:00Z", "VIP", "1", "250.00", "EUR") ","
           SA("S3", "E2", "B", "2024-01-15T09:00:00Z", "regular", "4", "40.00", "EUR") ","
           SA("S4", "E3", "C", "2023-12-01T18:00:00Z", "subscription", "1", "30.00", "EUR") ","
           SA("S5", "E1", "D", "2025-06-02T10:00:00Z", "regular", "1", "89.00", "EUR") ","
           SA("S6", "E1", "ANON", "2025-06-03T10:00:00Z", "regular", "9", "89.00", "EUR") ","
           SA("S8", "E4", "B", "2025-12-20T20:00:00Z", "regular", "2", "60.00", "CHF")
           "]}");
    ingest(l, acme, SD_ENV_TEST, "csv",
           "{\"customers\":[" CU("A2", "A@X.org", "") "],\"sales\":["
           SA("S7", "E3", "A2", "2022-05-05T12:00:00Z", "comp", "2", "0.00", "EUR") "]}");
    ingest(l, acme, SD_ENV_PROD, NULL,
           "{\"events\":[" EV("E1", "\"title\":\"Otello\",\"composer\":\"Giuseppe Verdi\","
                                    "\"venue\":\"Staatsoper\",\"hall\":\"Main Hall\","
                                    "\"city\":\"Berlin\",\"date\":\"2025-10-03\","
                                    "\"time\":\"19:30:00\"")
           "],\"customers\":[" CU("P", "p@x.org", ",\"post_code\":\"10115\"")
           "],\"sales\":[" SA("P1", "E1", "P", "2025-06-01T10:00:00Z", "regular", "5", "89.00",
                              "EUR") "]}");
    ingest(l, beta, SD_ENV_TEST, NULL,
           "{\"events\":[" EV("E1", "\"title\":\"ΣΟΦΊΑ  Otello\",\"composer\":\"GIUSEPPE VERDI\","
                                    "\"venue\":\"İstanbul Opera\",\"hall\":\"Main Hall\","
                                    "\"city\":\"Berlin\",\"date\":\"2025-10-03\","
                                    "\"time\":\"19:30:00\"")
           "],\"customers\":[" CU("Q", "q@x.org", ",\"post_code\":\" 1011\\t5 \","
                                                  "\"salutation\":\"HERR\\u3000Dr.\"")
           /* activity fields of other JSON types than a source writes: kept as sent */
           "," CU("Q3", "q3@x.org", ",\"activity_count\":\"many\",\"last_activity_at\":5,"
                                    "\"last_activity_type\":true")
           "," CU("Q4", "q4@x.org", ",\"activity_count\":true,\"last_activity_at\":true,"
                                    "\"last_activity_type\":7,\"last_activity_campaign\":false")
           "," CU("Q5", "q5@x.org", ",\"activity_count\":2.5,\"last_activity_at\":{\"a\":1},"
                                    "\"last_activity_type\":\"Quiz\"")
           "," CU("Q6", "q6@x.org", ",\"activity_count\":{\"a\":1},\"last_activity_at\":[1],"
                                    "\"last_activity_campaign\":null")
           "," CU("Q7", "q7@x.org", ",\"activity_count\":null,"
                                    "\"last_activity_at\":\"2026-02-01T00:00:00Z\"")
           "],\"sales\":[" SA("Q1", "E1", "Q", "2025-06-01T10:00:00.250Z", "regular", "5", "89.00",
                              "EUR") "," SA("Q2", "E1", "Q", "2025-06-01T10:00:00Z", "regular",
                              "1", "9.00", "EUR") "]}");
    ingest(l, acme, SD_ENV_TEST, NULL,
           "{\"customers\":["
           CU("B", "b@x.org", ",\"activity_count\":3,\"last_activity_at\":\"2026-02-10T12:00:00Z\","
                              "\"last_activity_type\":\"contest\","
                              "\"last_activity_campaign\":\"Spring Giveaway\"") ","
           CU("C", "c@x.org", ",\"activity_count\":1,\"last_activity_at\":\"2025-11-01T08:00:00Z\","
                              "\"last_activity_type\":\"quiz\","
                              "\"last_activity_campaign\":\"Trivia Night\"") ","
           CU("D", "d@x.org", ",\"activity_count\":9,\"last_activity_at\":\"2026-02-10T12:00:00Z\"")
           "]}");
    ingest(l, acme, SD_ENV_TEST, "csv",
           "{\"customers\":[" CU("A2", "A@X.org", ",\"activity_count\":2,"
                                               "\"last_activity_at\":\"2026-02-01T00:00:00Z\","
                                               "\"last_activity_type\":\"Contest\"") "]}");
    ingest(l, gamma, SD_ENV_TEST, NULL,
           "{\"events\":["
           EV("G1", "\"title\":\"Past\",\"venue\":\"V\",\"hall\":\"H\",\"city\":\"C\","
                    "\"date\":\"2025-10-03\",\"time\":\"19:30:00\"") ","
           EV("G2", "\"title\":\"Next\",\"venue\":\"V\",\"hall\":\"H\",\"city\":\"C\","
                    "\"date\":\"2026-02-01\",\"time\":\"19:30:00\"")
           "],\"customers\":["
           CU("K1", "k1@x.org", "") "," CU("K2", "k2@x.org", "") "," CU("K3", "k3@x.org", "") ","
           CU("K4", "k4@x.org", "") "," CU("K5", "k5@x.org", "") "," CU("K6", "k6@x.org", "") ","
           CU("K7", "k7@x.org", "") "," CU("K8", "k8@x.org", "")
           "],\"sales\":["
           SX("X1", "G1", "K1", "2025-09-01T10:00:00Z", "2", "50.00", ",\"attended_quantity\":2") ","
           SX("X2", "G1", "K2", "2025-09-01T10:00:00Z", "1", "50.00", ",\"attended_quantity\":0") ","
           SX("X3", "G2", "K3", "2025-12-01T10:00:00Z", "2", "100.00", "") ","
           SX("X4", "G2", "K4", "2025-12-01T10:00:00Z", "4", "25.00",
              ",\"status\":\"refunded\",\"refunded_quantity\":1,"
              "\"status_changed_at\":\"2025-10-01T00:00:00Z\"") ","
           SX("X5", "G2", "K5", "2025-12-01T10:00:00Z", "1", "300.00", ",\"status\":\"cancelled\"") ","
           SX("V6", "G2", "K6", "2025-12-30T10:00:00Z", "2", "100.00",
              ",\"order_type\":\"reservation\",\"expires_at\":\"2026-01-05T00:00:00Z\"") ","
           SX("V7", "G2", "K7", "2025-12-20T10:00:00Z", "2", "100.00",
              ",\"order_type\":\"option\",\"expires_at\":\"2025-12-30T00:00:00Z\"") ","
           SX("V8", "G2", "K8", "2025-12-20T10:00:00Z", "2", "100.00",
              ",\"order_type\":\"reservation\",\"status\":\"freed\"") ","
           SX("A7", "G2", "K7", "2025-12-28T10:00:00Z", "1", "100.00", ",\"order_type\":\"abandoned\"") ","
           SX("A8", "G2", "K8", "2025-12-27T10:00:00Z", "1", "100.00", ",\"order_type\":\"abandoned\"") ","
           SX("A1", "G2", "K1", "2025-12-01T10:00:00Z", "1", "100.00", ",\"order_type\":\"abandoned\"") ","
           SX("X8", "G2", "K8", "2025-12-29T10:00:00Z", "1", "120.00", "")
           "]}");
    ingest(l, gamma, SD_ENV_TEST, NULL,
           "{\"sales\":[" SX("R3", "G2", "K3", "2025-12-20T09:00:00Z", "2", "100.00",
                             ",\"refund_of\":\"X3\"") "]}");
}
// clang-format on

/* Copy every row of `table` from the SQLite file into PostgreSQL, column for column (the
 * PostgreSQL schema is the final form of SQLite's; its column list decides). */
static void copy_table(sqlite3 *db, PGconn *pg, const char *table)
{
    const char *tv[1] = {table};
    PGresult *cols = PQexecParams(pg,
                                  "SELECT column_name FROM information_schema.columns"
                                  " WHERE table_schema = 'public' AND table_name = $1"
                                  " ORDER BY ordinal_position",
                                  1, NULL, tv, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(cols), PGRES_TUPLES_OK);
    int n = PQntuples(cols);
    assert_true(n > 0);
    struct sd_buf sel, ins;
    sd_buf_init(&sel);
    sd_buf_init(&ins);
    sd_buf_puts(&sel, "SELECT ");
    sd_buf_printf(&ins, "INSERT INTO %s (", table);
    for (int i = 0; i < n; i++) {
        sd_buf_printf(&sel, "%s%s", i ? ", " : "", PQgetvalue(cols, i, 0));
        sd_buf_printf(&ins, "%s%s", i ? ", " : "", PQgetvalue(cols, i, 0));
    }
    sd_buf_printf(&sel, " FROM %s", table);
    sd_buf_puts(&ins, ") VALUES (");
    for (int i = 0; i < n; i++) {
        sd_buf_printf(&ins, "%s$%d", i ? ", " : "", i + 1);
    }
    sd_buf_puts(&ins, ")");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sel.data, -1, &st, NULL) != SQLITE_OK) {
        fail_msg("%s: %s", sel.data, sqlite3_errmsg(db));
    }
    const char **v = sd_calloc((size_t)n, sizeof(*v));
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < n; i++) {
            v[i] = (const char *)sqlite3_column_text(st, i);
        }
        PGresult *res = PQexecParams(pg, ins.data, n, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fail_msg("%s: %s", table, PQresultErrorMessage(res));
        }
        PQclear(res);
        rows++;
    }
    assert_true(rows > 0);
    free(v);
    sqlite3_finalize(st);
    sd_buf_release(&sel);
    sd_buf_release(&ins);
    PQclear(cols);
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The rows of the SQLite store's count and members for rule, and PostgreSQL's, are the same
 * profile ids in the same order. */
static void same_members(struct lite *l, PGconn *pg, const char *text, int64_t tenant,
                         enum sd_env env)
{
    struct sd_seg_rule *r = rule_of(text);
    int64_t n = -1;
    assert_int_equal(sd_store_segment_count(l->h, tenant, env, r, NOW_USEC, NULL, &n), 0);
    struct sd_seg_member_page page = {0};
    assert_int_equal(sd_store_segment_members(l->h, tenant, env, r, NOW_USEC, 0,
                                              SD_SEGMENT_MEMBERS_MAX, NULL, &page),
                     0);
    assert_false(page.has_more);
    assert_int_equal((int64_t)page.n, n);
    sd_seg_rule_free(r);

    struct sd_seg_sql cq = compile(text, true, &sd_seg_dialect_pg);
    PGresult *res = pg_query(pg, "", &cq, tenant, env, true, text);
    assert_int_equal(PQntuples(res), 1);
    int64_t pn = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    sd_seg_sql_release(&cq);
    struct sd_seg_sql mq = compile(text, false, &sd_seg_dialect_pg);
    res = pg_query(pg, "", &mq, tenant, env, false, text);
    int rows = PQntuples(res);
    int64_t *ids = sd_calloc((size_t)rows + 1, sizeof(*ids));
    for (int i = 0; i < rows; i++) {
        ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    }
    PQclear(res);
    sd_seg_sql_release(&mq);

    bool same = pn == n && rows == (int)page.n;
    for (size_t i = 0; same && i < page.n; i++) {
        same = ids[i] == page.v[i].profile_id;
    }
    if (!same) {
        struct sd_buf got;
        sd_buf_init(&got);
        sd_buf_printf(&got, "SQLite count %lld [", (long long)n);
        for (size_t i = 0; i < page.n; i++) {
            sd_buf_printf(&got, "%s%lld", i ? "," : "", (long long)page.v[i].profile_id);
        }
        sd_buf_printf(&got, "], PostgreSQL count %lld [", (long long)pn);
        for (int i = 0; i < rows; i++) {
            sd_buf_printf(&got, "%s%lld", i ? "," : "", (long long)ids[i]);
        }
        fail_msg("rule %s, tenant %lld env %d: %s]", text, (long long)tenant, (int)env, got.data);
    }
    /* PostgreSQL's ids are in order, as ORDER BY p.id promises */
    int64_t *sorted = sd_calloc((size_t)rows + 1, sizeof(*sorted));
    memcpy(sorted, ids, (size_t)rows * sizeof(*ids));
    qsort(sorted, (size_t)rows, sizeof(*sorted), cmp_id);
    assert_memory_equal(sorted, ids, (size_t)rows * sizeof(*ids));
    free(sorted);
    free(ids);
    sd_seg_member_page_release(&page);
}

static void test_pg_same_members_as_sqlite(void **state)
{
    struct pgfx *f = *state;
    if (!f->pg) {
        skip();
    }
    if (!sd_test_store_is_sqlite()) {
        skip(); /* the reference is the SQLite store */
    }
    struct lite l = {0};
    sd_test_store_setup(&l.st, "segsql", &l.h);
    int64_t acme = sd_test_store_tenant(l.h, "acme", "Acme");
    int64_t beta = sd_test_store_tenant(l.h, "beta", "Beta");
    int64_t gamma = sd_test_store_tenant(l.h, "gamma", "Gamma");
    load(&l, acme, beta, gamma);

    char path[160];
    snprintf(path, sizeof(path), "%s/stagedoor.db", l.st.dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    static const char *const tables[] = {"events", "customers", "sales", "profiles",
                                         "profile_facts"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
        copy_table(db, f->pg, tables[i]);
    }
    sqlite3_close(db);

    const struct {
        int64_t tenant;
        enum sd_env env;
    } scopes[] = {{acme, SD_ENV_TEST},
                  {acme, SD_ENV_PROD},
                  {beta, SD_ENV_TEST},
                  {gamma, SD_ENV_TEST},
                  {gamma, SD_ENV_PROD}};
    int64_t members_seen = 0;
    for (size_t i = 0; i < N_RULES; i++) {
        for (size_t k = 0; k < sizeof(scopes) / sizeof(*scopes); k++) {
            same_members(&l, f->pg, rule_text(i), scopes[k].tenant, scopes[k].env);
        }
        int64_t n = 0;
        struct sd_seg_rule *r = rule_of(rule_text(i));
        assert_int_equal(sd_store_segment_count(l.h, acme, SD_ENV_TEST, r, NOW_USEC, NULL, &n), 0);
        sd_seg_rule_free(r);
        members_seen += n;
    }
    assert_true(members_seen > 0); /* the rules select someone, not only nobody */
    sd_test_store_release(&l.st, l.h);
}

/* ---- sd_fold -----------------------------------------------------------------------------------
 */

/* PostgreSQL's sd_fold(text) of s equals sd_text_fold(s); false (after printing both) if not. */
static bool fold_same(PGconn *pg, const char *s)
{
    const char *v[1] = {s};
    PGresult *res = PQexecParams(pg, "SELECT sd_fold($1)", 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("sd_fold: %s", PQresultErrorMessage(res));
    }
    char *want = sd_text_fold(s);
    bool same = !PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 0), want) == 0;
    if (!same) {
        print_error("sd_fold(\"%s\") = \"%s\", sd_text_fold: \"%s\"\n", s, PQgetvalue(res, 0, 0),
                    want);
    }
    free(want);
    PQclear(res);
    return same;
}

static void test_pg_fold_strings(void **state)
{
    struct pgfx *f = *state;
    if (!f->pg) {
        skip();
    }
    static const char *const cases[] = {
        "",
        " ",
        "\t\n\v\f\r ",
        "Hello World",
        "  Hello \t\r\n  WORLD  ",
        "x",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 "
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\x7f",
        /* German */
        "ÄÖÜ äöü ß ẞ STRAẞE Straße GROSSER SAAL Großer Saal",
        /* French */
        "ÉCOLE Ça Œuvre Ÿ ÀÂÆÇÈÊËÎÏÔÙÛÜ àâæçèéêëîïôùûüÿœ",
        /* Turkish: İ folds to i (one code point), I to i, ı stays */
        "İSTANBUL IŞIK ıi ĞÜŞÖÇ ğüşöç",
        /* Greek: Σ to σ everywhere (simple mapping, no final ς), accents kept */
        "ΣΟΦΊΑ ΟΔΥΣΣΕΥΣ Ωμέγα ς ΆΈΉΊΌΎΏ ΪΫ",
        /* whitespace: Unicode spaces fold to one space; no-break spaces are not whitespace */
        "a\u00a0b\u2007c\u202fd",
        "a\u1680b\u2000c\u2001d\u2002e\u2003f\u2004g\u2005h\u2006i\u2008j\u2009k\u200al",
        "\u2028x\u2029y\u205fz\u3000",
        "\u3000\u3000 lead and trail \u2003\u2003",
        "a\xc2\x85"
        "b\u200bc\ufeffd",
        /* letters off the usual path */
        "ǅ ǈ ǋ ǲ Ⅻ Ⓐ Ａｂｃ \u212a \u2126 \u212b \U00010400 \U0001E900 \U00010C80",
        "Ꭰ ꭰ Ա ա Ⴀ ⴀ Ａ",
        "\U0001F600 emoji \u4e2d\u6587 \u0915\u094d",
    };
    bool all = true;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        all = fold_same(f->pg, cases[i]) && all;
    }
    assert_true(all);
}

/* Every Unicode scalar value, in strings of 2048 (with a space before each, so a code point
 * that folds to whitespace or to nothing shows): one mismatch names the chunk, then each of its
 * code points is tried alone. */
static void test_pg_fold_every_code_point(void **state)
{
    struct pgfx *f = *state;
    if (!f->pg) {
        skip();
    }
    bool all = true;
    for (uint32_t start = 1; start < 0x110000; start += 2048) {
        struct sd_buf b;
        sd_buf_init(&b);
        for (uint32_t cp = start; cp < start + 2048 && cp < 0x110000; cp++) {
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                continue;
            }
            char u[5] = {0};
            if (cp < 0x80) {
                u[0] = (char)cp;
            } else if (cp < 0x800) {
                u[0] = (char)(0xC0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                u[0] = (char)(0xE0 | (cp >> 12));
                u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (char)(0x80 | (cp & 0x3F));
            } else {
                u[0] = (char)(0xF0 | (cp >> 18));
                u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[3] = (char)(0x80 | (cp & 0x3F));
            }
            sd_buf_printf(&b, "x%s", u);
        }
        if (b.len > 0 && !fold_same(f->pg, b.data)) {
            all = false;
            print_error("code points U+%04X..U+%04X differ\n", start, start + 2047);
        }
        sd_buf_release(&b);
    }
    assert_true(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_cover_every_shape),
        cmocka_unit_test(test_both_dialects_compile),
        cmocka_unit_test(test_malformed_trees),
        cmocka_unit_test(test_pg_explain_every_query),
        cmocka_unit_test(test_pg_same_members_as_sqlite),
        cmocka_unit_test(test_pg_fold_strings),
        cmocka_unit_test(test_pg_fold_every_code_point),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
