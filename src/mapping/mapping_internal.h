/* mapping_internal.h — private to src/mapping: the model field table the mapping knows, and the
 * value conversions (mapping_convert.c) that mapping.c applies per field type. Nothing outside
 * src/mapping includes this; the public API is mapping.h. */
#ifndef SD_MAPPING_INTERNAL_H
#define SD_MAPPING_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mapping/mapping.h"

struct sd_tz;

/* The type a mapping must produce for a model field (see the validators in model/validate.c). */
enum map_type {
    MT_STRING,   /* trimmed string */
    MT_DATE,     /* "YYYY-MM-DD" */
    MT_TIME,     /* "HH:MM:SS" */
    MT_DATETIME, /* RFC 3339 */
    MT_INTEGER,  /* JSON integer */
    MT_BOOL,     /* JSON boolean */
    MT_DECIMAL,  /* plain decimal string "1234.50" */
    MT_CAST,     /* array of {"name","role"} */
};

#define MAP_KIND_BIT(k) (1u << (unsigned)(k))

struct map_field {
    const char *name;
    enum map_type type;
    unsigned kinds; /* MAP_KIND_BIT of every kind that has the field */
};

/* Every model field once (event_id and customer_id belong to two kinds). Must list exactly the
 * fields validate.c knows; test_mapping checks that against the validators. */
#define MAP_N_FIELDS 34
extern const struct map_field sd_map_fields[MAP_N_FIELDS];
/* Index into sd_map_fields, or -1. */
int sd_map_field_find(const char *name, size_t len);

/* ---- date and time formats ------------------------------------------------------------------ */
enum map_fmt_class { MAP_FMT_DATE, MAP_FMT_TIME, MAP_FMT_DATETIME };

struct map_fmt {
    char text[SD_MAPPING_MAX_FORMAT + 1]; /* as configured, for messages */
    uint8_t n;
    struct {
        uint8_t tok; /* enum in mapping_convert.c; 0 is a literal text[off..off+len) */
        uint8_t off, len;
    } it[SD_MAPPING_MAX_FORMAT];
};

/* Everything a conversion needs from the spec's "formats", plus the built-in ISO forms. */
struct map_formats {
    struct map_fmt date, time, datetime;
    bool has_date, has_time, has_datetime;
    bool decimal_comma;
    char offset[8]; /* "Z" or "+HH:MM" */
    /* A named zone for date-times without offset (instead of `offset`), or NULL; from
     * model/tz.h's cache, never freed. */
    const struct sd_tz *tz;
    int amount_scale; /* decimals arrive as integers in units of 10^-amount_scale; -1: as
                         decimals (the default) */
    struct map_fmt iso_date, iso_time, iso_time_hm, iso_dt_t, iso_dt_sp;
};

/* Compile a format; 0, or -EINVAL with a message (lowercase, no period) in why. */
int sd_map_fmt_compile(const char *text, size_t len, enum map_fmt_class cls, struct map_fmt *ret,
                       char *why, size_t whysz);
/* Defaults (no configured formats, offset "Z") and the ISO forms. */
void sd_map_formats_init(struct map_formats *f);

/* Conversions of a trimmed, valid UTF-8 value s[0..len). Each returns 0 with the model form in
 * out (NUL-terminated), or -EINVAL when the value does not match. */
int sd_map_date(const struct map_formats *f, const char *s, size_t len, char out[11]);
int sd_map_time(const struct map_formats *f, const char *s, size_t len, char out[9]);
/* A date-time without offset gets f->offset, or with f->tz becomes the UTC instant of that
 * wall-clock time in the zone ("…Z"; a repeated time is the earlier instant, a skipped one
 * moves forward by the gap). */
int sd_map_datetime(const struct map_formats *f, const char *s, size_t len, char out[48]);

/* ---- other conversions ---------------------------------------------------------------------- */
/* Trim ASCII whitespace and U+00A0 at both ends (in place: moves *s, shortens *len). */
void sd_map_trim(const char **s, size_t *len);
/* Optional sign and digits only. 0, -EINVAL (not an integer) or -ERANGE. */
int sd_map_integer(const char *s, size_t len, json_int_t *ret);
/* 1 true, 0 false, -1 not a recognized boolean word. */
int sd_map_bool(const char *s, size_t len);
/* A decimal in the configured notation → plain "1234.50" in out (outsz ≥ 72). Returns 1 when
 * converted, 0 when the value holds other characters than digits, sign and separators (left
 * to the validator), -EINVAL when it is made of those but malformed (or too long). */
int sd_map_decimal(const char *s, size_t len, bool comma, char *out, size_t outsz);
/* "Name (Role); Name2" → new array of {"name","role"?}; NULL when there is no entry. */
json_t *sd_map_cast(const char *s, size_t len);

#endif
