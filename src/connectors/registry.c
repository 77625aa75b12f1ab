/* registry.c — the one table of connectors. Adding a connector: write connectors/<name>/,
 * export its `const struct sd_connector`, and add one line here. */
#include "core/connector.h"

extern const struct sd_connector sd_connector_demo_season;

const struct sd_connector *const sd_connectors[] = {
    &sd_connector_demo_season,
    NULL,
};
