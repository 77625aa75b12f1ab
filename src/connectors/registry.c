/* registry.c — the one table of connectors. Adding a connector: write connectors/<name>/,
 * export its `const struct sd_connector`, and add one line here. */
#include "core/connector.h"

extern const struct sd_connector sd_connector_demo_season;
extern const struct sd_connector sd_connector_csv_drop;
extern const struct sd_connector sd_connector_sftp_pull;
extern const struct sd_connector sd_connector_feed;
extern const struct sd_connector sd_connector_rest_pull;
extern const struct sd_connector sd_connector_webhook_in;
extern const struct sd_connector sd_connector_tradablebits;
extern const struct sd_connector sd_connector_audience_push;
extern const struct sd_connector sd_connector_s360;
extern const struct sd_connector sd_connector_archtics;
#ifdef SD_TEST_CONNECTORS
extern const struct sd_connector sd_connector_test_contacts; /* tests/connectors/, not shipped */
extern const struct sd_connector sd_connector_test_runs;
#endif

const struct sd_connector *const sd_connectors[] = {
    &sd_connector_demo_season,
    &sd_connector_csv_drop,
    &sd_connector_sftp_pull,
    &sd_connector_feed,
    &sd_connector_rest_pull,
    &sd_connector_webhook_in,
    &sd_connector_tradablebits,
    &sd_connector_audience_push,
    &sd_connector_s360,
    &sd_connector_archtics,
#ifdef SD_TEST_CONNECTORS
    &sd_connector_test_contacts,
    &sd_connector_test_runs,
#endif
    NULL,
};
