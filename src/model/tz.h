/* tz.h — named IANA time zones ("Europe/Berlin", "America/New_York") read from the system's
 * tz database (TZif files under $TZDIR, default /usr/share/zoneinfo), for local times that
 * arrive without an offset: mappings, schedules and vendor connectors.
 *
 * Times are int64 seconds. A UTC instant counts seconds since 1970-01-01T00:00:00Z; a "local"
 * time counts seconds since 1970-01-01T00:00:00 of the zone's wall clock, read as if it were
 * UTC (so sd_days_from_civil and plain arithmetic turn it into a calendar date). Leap seconds
 * do not exist here (POSIX time). Both are limited to ±SD_TZ_SECONDS_MAX (about ±4.4 million
 * years); beyond that the functions return -ERANGE.
 *
 * Local → UTC is not a function on the days the clocks change:
 *  - a repeated local time (clocks go back: 02:30 happens twice in Berlin on the last Sunday of
 *    October) resolves to the EARLIER instant by default (SD_TZ_EARLIER), or the later one
 *    (SD_TZ_LATER), or is refused (SD_TZ_REJECT);
 *  - a skipped local time (clocks go forward: 02:30 never happens in Berlin on the last Sunday
 *    of March) moves FORWARD by the length of the gap (02:30 → 03:30 CEST = 01:30 UTC) with
 *    SD_TZ_EARLIER and SD_TZ_LATER, or is refused with SD_TZ_REJECT.
 *
 * Never glibc's setenv("TZ")/localtime: those are process-global and not thread-safe.
 *
 * Thread rules: a zone is immutable once loaded; every function may be called from any number
 * of threads. sd_tz_get keeps a process-wide cache (mutex-protected): each file is read once,
 * and the zones it hands out live until the process ends (never free them). */
#ifndef SD_MODEL_TZ_H
#define SD_MODEL_TZ_H

#include <stddef.h>
#include <stdint.h>

#define SD_TZ_NAME_MAX 64                       /* bytes in a zone name */
#define SD_TZ_FILE_MAX (256 * 1024)             /* bytes in a TZif file (real ones are < 4 KiB) */
#define SD_TZ_SECONDS_MAX (INT64_C(1) << 47)    /* supported range of instants, both ways */
#define SD_TZ_DEFAULT_DIR "/usr/share/zoneinfo" /* when $TZDIR is unset or empty */

struct sd_tz;

/* The zone called `name`, from the cache or loaded from $TZDIR/name. A name is 1..64 bytes of
 * [A-Za-z0-9_+-/], not absolute, without empty components, "." or ".." (the allowed set has
 * no dot); the file must be a regular TZif file (v1..v4) of at most SD_TZ_FILE_MAX bytes.
 * Returns 0 and the zone in *ret (never to be freed), or -EINVAL (bad name), -ENOENT (no such
 * zone), -EBADMSG (not a valid TZif file), -EFBIG (file too large), -ENOSPC (more than 4096
 * zone files loaded), or another -errno (reading failed), with a message naming the zone
 * (lowercase, no period) in err when err is not NULL. Failures are not cached: a zone
 * installed later is found on the next call. The cache is keyed by the file's path, so a
 * changed $TZDIR reads its own files. */
int sd_tz_get(const char *name, const struct sd_tz **ret, char *err, size_t errsz);

/* Parse a TZif file image (for tests and fuzzing; sd_tz_get uses it). The data are not kept.
 * Returns 0 and a new zone in *ret (free it with sd_tz_free), or -EBADMSG with the reason in
 * err. Every count in the file is bounds-checked against len; len must be ≤ SD_TZ_FILE_MAX.
 * Leap-second files ("right/…") are refused. */
int sd_tz_parse(const void *data, size_t len, const char *name, struct sd_tz **ret, char *err,
                size_t errsz);
/* Only for zones from sd_tz_parse. Accepts NULL. */
void sd_tz_free(struct sd_tz *tz);

/* The zone's name as given to sd_tz_get / sd_tz_parse. */
const char *sd_tz_name(const struct sd_tz *tz);

/* The zone's offset from UTC (seconds east, e.g. 3600 for CET) at the UTC instant `utc`: from
 * the file's transitions, before the first one from its first time type, after the last one
 * from the POSIX TZ rule at the file's end (so 2100 follows "CET-1CEST,M3.5.0,M10.5.0/3").
 * Returns 0 and writes *ret_offset (and *ret_isdst when not NULL), or -ERANGE. */
int sd_tz_offset_at(const struct sd_tz *tz, int64_t utc, int32_t *ret_offset, int *ret_isdst);

/* UTC instant → local wall-clock seconds (utc + offset). 0 or -ERANGE. */
int sd_tz_utc_to_local(const struct sd_tz *tz, int64_t utc, int64_t *ret_local);

enum sd_tz_policy {
    SD_TZ_EARLIER = 0, /* default: repeated → earlier instant; skipped → forward by the gap */
    SD_TZ_LATER,       /* repeated → later instant; skipped → forward by the gap */
    SD_TZ_REJECT,      /* repeated or skipped → -ERANGE */
};

/* What a local time was on the zone's clock. */
enum sd_tz_local_kind {
    SD_TZ_UNIQUE = 0,   /* happened once */
    SD_TZ_REPEATED = 1, /* happened twice (or more): resolved by the policy */
    SD_TZ_SKIPPED = 2,  /* never happened: moved forward by the gap */
};

/* Local wall-clock seconds → the UTC instant, as described at the top. Returns the kind
 * (≥ 0) and writes *ret_utc, or -ERANGE (out of range, or refused by SD_TZ_REJECT; *ret_utc
 * untouched). */
int sd_tz_local_to_utc(const struct sd_tz *tz, int64_t local, enum sd_tz_policy policy,
                       int64_t *ret_utc);

#endif
