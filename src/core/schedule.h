/* schedule.h — when a connector runs: the schedule strings an operator writes, parsed once and
 * asked for the next run time.
 *
 * Accepted forms (case-insensitive, surrounding spaces ignored):
 *   "manual"                 only when asked (POST …/run, `stagedoor connector run`)
 *   "every 30s" | "every 15m" | "every 2h" | "every 1d"   a fixed interval (10 s … 7 d)
 *   "hourly" | "hourly at :05"                              minute 0 (or 5) of every hour, UTC
 *   "daily" | "daily at 02:00"                              once a day at that time, UTC
 *   cron: five fields "m h dom mon dow" with *, lists, ranges and steps ("*\/15 2-5 * * 1-5"),
 *         UTC; dom and dow both restricted means either matches (Vixie cron)
 * Times are UTC: a venue's 02:00 in Berlin is "daily at 01:00" in winter; named zones are not
 * supported in this version.
 *
 * Thread rules: a parsed schedule is immutable; every function is reentrant. */
#ifndef SD_CORE_SCHEDULE_H
#define SD_CORE_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

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
};

/* Parse s; on failure returns -EINVAL and a static reason in *why. */
int sd_schedule_parse(const char *s, struct sd_schedule *ret, const char **why);
/* The first run time after `last_usec` (the start of the previous run; 0 = never ran, then an
 * interval schedule is due at once and a calendar schedule at its next slot after now).
 * Returns INT64_MAX for "manual". */
int64_t sd_schedule_next(const struct sd_schedule *sc, int64_t last_usec, int64_t now_usec);

#endif
