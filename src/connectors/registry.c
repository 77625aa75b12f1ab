/* registry.c — the one table of connectors. Adding a connector: write connectors/<name>/,
 * export its `const struct sd_connector`, and add one line here. */
#include "core/connector.h"

extern const struct sd_connector sd_connector_demo_season;
extern const struct sd_connector sd_connector_csv_drop;
extern const struct sd_connector sd_connector_sftp_pull;
extern const struct sd_connector sd_connector_feed;
extern const struct sd_connector sd_connector_rest_pull;
extern const struct sd_connector sd_connector_tradablebits;

const struct sd_connector *const sd_connectors[] = {
    &sd_connector_demo_season,
    &sd_connector_csv_drop,
    &sd_connector_sftp_pull,
    &sd_connector_feed,
    &sd_connector_rest_pull,
    &sd_connector_tradablebits,
    NULL,
};
