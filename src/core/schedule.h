/* schedule.h — when a connector runs: the schedule strings an operator writes, parsed once and
 * asked for the next run time.
 *
 * Accepted forms (keywords case-insensitive, surrounding spaces ignored; at most
 * SD_SCHEDULE_MAX bytes):
 *   "manual"                 only when asked (POST …/run, `stagedoor connector run`)
 *   "every 30s" | "every 15m" | "every 2h" | "every 1d"   a fixed interval (10 s … 7 d)
 *   "hourly" | "hourly at :05"                              minute 0 (or 5) of every hour
 *   "daily" | "daily at 02:00"                              once a day at that time
 *   cron: five fields "m h dom mon dow" with *, lists, ranges and steps ("*\/15 2-5 * * 1-5");
 *         dom and dow both restricted means either matches (Vixie cron)
 * The calendar forms (hourly, daily, cron) are in UTC, or in the IANA time zone named as their
 * last word: "daily at 02:00 Europe/Berlin", "hourly at :05 America/New_York",
 * "0 2 * * 1-5 Europe/Berlin" (names are case-sensitive, as in the tz database; "UTC" is UTC).
 * A bad or unknown zone refuses the schedule; an interval or "manual" takes no zone. In a zone
 * the fields are read on its wall clock across daylight-saving changes:
 *  - a time the clocks skip (02:30 on the spring-forward day in Berlin) runs when it would
 *    have been, moved forward by the gap: 03:30 local;
 *  - a time the clocks repeat (02:30 on the autumn day) runs once, at its first occurrence;
 *    schedules that run every hour (hour field "*", "hourly") run in both passes of the
 *    repeated hour, so they keep running once per real hour.
 *
 * Thread rules: a parsed schedule is immutable; every function is reentrant (zones come from
 * model/tz.h's process-wide cache and are never freed). */
#ifndef SD_CORE_SCHEDULE_H
#define SD_CORE_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#define SD_SCHEDULE_MAX 100 /* bytes in a schedule string */

struct sd_tz;

struct sd_schedule {
    enum { SD_SCHED_MANUAL, SD_SCHED_EVERY, SD_SCHED_CRON } kind;
    int64_t every_usec;
    /* cron: bit sets of allowed values */
    uint64_t minutes; /* bits 0..59 */
    uint32_t hours;   /* bits 0..23 */
    uint32_t mdays;   /* bits 1..31 */
    uint16_t months;  /* bits 1..12 */
    uint8_t wdays;    /* bits 0..6, Sunday = 0 */
    bool mday_any, wday_any;
    const struct sd_tz *tz; /* calendar fields are read in this zone; NULL = UTC */
};

/* Parse s; on failure returns -EINVAL and a static reason in *why. */
int sd_schedule_parse(const char *s, struct sd_schedule *ret, const char **why);
/* The first run time after `last_usec` (the start of the previous run; 0 = never ran, then an
 * interval schedule is due at once and a calendar schedule at its next slot after now).
 * Returns INT64_MAX for "manual". */
int64_t sd_schedule_next(const struct sd_schedule *sc, int64_t last_usec, int64_t now_usec);

#endif
