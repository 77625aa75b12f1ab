/* audience_push.c — target connector "audience_push": a segment's members POSTed to a CRM or
 * ad platform. Its instances are configured through the targets API and CLI (core/targets.h,
 * an alias over connector instances of this type, which also checks the URL against the egress
 * policy and keeps the secrets); the table below documents the same settings so that the
 * generic connector views show them with the secrets hidden. Each push is an outbox item
 * (operation "push_segment", subject the segment) queued by POST …/segments/{id}/push. */
#include "core/connector.h"
#include "core/outbox.h"
#include "core/targets.h"

static const struct sd_setting settings[] = {
    {"url", SD_SETTING_URL, NULL, 1, 2048,
     "https:// URL the segment is POSTed to (http:// only for a loopback address or localhost)",
     SD_CHOICES("https", "http")},
    {"app_key", SD_SETTING_SECRET, NULL, 1, 1024, "sent as X-App-Key", NULL},
    {"secure_token", SD_SETTING_SECRET, NULL, 1, 1024, "sent as X-Secure-Token", NULL},
    {"segments_per_hour", SD_SETTING_INT, "50", 1, 10000,
     "pushes started per rolling hour (the outbox plans them)", NULL},
    {"timeout_seconds", SD_SETTING_INT, "30", 1, 300, "HTTP timeout per attempt", NULL},
    {"source", SD_SETTING_STRING, "\"\"", 0, 64,
     "the source whose customer ids the receiver understands (others go by e-mail only)", NULL},
    {"name", SD_SETTING_STRING, "\"\"", 0, 200, "a label", NULL},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const operations[] = {SD_OUTBOX_OP_PUSH_SEGMENT, NULL};

const struct sd_connector sd_connector_audience_push = {
    .name = SD_TARGET_TYPE_PUSH,
    .kind = SD_CONNECTOR_TARGET,
    .help = "pushes segments to a CRM or ad platform (configure with the targets API)",
    .settings = settings,
    .default_schedule = "manual",
    .operations = operations,
};
