/* test_tz.c — named time zones from the system tz database and from hand-built TZif images:
 * both clock changes each way (the skipped and the repeated hour) in Berlin, New York, Sydney
 * and Dublin (negative DST), the footer rule far in the future (2100), the local mean time far
 * in the past, a non-hour offset (Kolkata), UTC, every POSIX rule form (Mm.w.d, Jn, n, negative
 * and over-24h times, DST all year), round trips over a whole year, bad names, and damaged
 * files in a temporary $TZDIR. Expected instants were checked against Python's zoneinfo and
 * glibc's date(1) on the same tz database. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/model.h"
#include "model/tz.h"

/* "YYYY-MM-DDTHH:MM:SS" → seconds (as UTC, or as a zone's local clock). */
static int64_t secs(const char *s)
{
    int y, mo, d, h, mi, se;
    if (sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &se) != 6) {
        fail_msg("bad test time '%s'", s);
    }
    return sd_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
}

static const struct sd_tz *zone(const char *name)
{
    const struct sd_tz *tz = NULL;
    char err[200] = "";
    int r = sd_tz_get(name, &tz, err, sizeof(err));
    if (r != 0) {
        fail_msg("zone '%s': %d %s", name, r, err);
    }
    return tz;
}

struct conv_case {
    const char *zone, *local;
    int kind;
    const char *earlier, *later; /* UTC; for a skipped time both are the forward instant */
};

static void test_local_to_utc(void **state)
{
    (void)state;
    static const struct conv_case cases[] = {
        /* Berlin: CET → CEST on 2026-03-29 at 01:00 UTC, back on 2026-10-25 at 01:00 UTC */
        {"Europe/Berlin", "2026-03-29T02:30:00", SD_TZ_SKIPPED, "2026-03-29T01:30:00",
         "2026-03-29T01:30:00"},
        {"Europe/Berlin", "2026-03-29T01:59:59", SD_TZ_UNIQUE, "2026-03-29T00:59:59",
         "2026-03-29T00:59:59"},
        {"Europe/Berlin", "2026-03-29T03:00:00", SD_TZ_UNIQUE, "2026-03-29T01:00:00",
         "2026-03-29T01:00:00"},
        {"Europe/Berlin", "2026-10-25T02:30:00", SD_TZ_REPEATED, "2026-10-25T00:30:00",
         "2026-10-25T01:30:00"},
        {"Europe/Berlin", "2026-10-25T01:59:59", SD_TZ_UNIQUE, "2026-10-24T23:59:59",
         "2026-10-24T23:59:59"},
        {"Europe/Berlin", "2026-10-25T03:00:00", SD_TZ_UNIQUE, "2026-10-25T02:00:00",
         "2026-10-25T02:00:00"},
        /* past the last transition of the file: the footer rule */
        {"Europe/Berlin", "2100-03-28T02:30:00", SD_TZ_SKIPPED, "2100-03-28T01:30:00",
         "2100-03-28T01:30:00"},
        {"Europe/Berlin", "2100-10-31T02:30:00", SD_TZ_REPEATED, "2100-10-31T00:30:00",
         "2100-10-31T01:30:00"},
        {"Europe/Berlin", "2100-07-01T12:00:00", SD_TZ_UNIQUE, "2100-07-01T10:00:00",
         "2100-07-01T10:00:00"},
        /* local mean time +00:53:28 before 1893; double summer time in 1945 */
        {"Europe/Berlin", "1800-01-01T12:00:00", SD_TZ_UNIQUE, "1800-01-01T11:06:32",
         "1800-01-01T11:06:32"},
        {"Europe/Berlin", "1945-06-01T12:00:00", SD_TZ_UNIQUE, "1945-06-01T09:00:00",
         "1945-06-01T09:00:00"},
        {"America/New_York", "2026-03-08T02:30:00", SD_TZ_SKIPPED, "2026-03-08T07:30:00",
         "2026-03-08T07:30:00"},
        {"America/New_York", "2026-11-01T01:30:00", SD_TZ_REPEATED, "2026-11-01T05:30:00",
         "2026-11-01T06:30:00"},
        {"America/New_York", "2100-03-14T02:30:00", SD_TZ_SKIPPED, "2100-03-14T07:30:00",
         "2100-03-14T07:30:00"},
        {"America/New_York", "1800-01-01T00:00:00", SD_TZ_UNIQUE, "1800-01-01T04:56:02",
         "1800-01-01T04:56:02"},
        /* southern hemisphere: the repeated hour in April, the skipped one in October */
        {"Australia/Sydney", "2026-04-05T02:30:00", SD_TZ_REPEATED, "2026-04-04T15:30:00",
         "2026-04-04T16:30:00"},
        {"Australia/Sydney", "2026-10-04T02:30:00", SD_TZ_SKIPPED, "2026-10-03T16:30:00",
         "2026-10-03T16:30:00"},
        {"Australia/Sydney", "2026-01-15T12:00:00", SD_TZ_UNIQUE, "2026-01-15T01:00:00",
         "2026-01-15T01:00:00"},
        /* a half-hour offset, a half-hour DST, UTC */
        {"Asia/Kolkata", "2026-06-01T12:00:00", SD_TZ_UNIQUE, "2026-06-01T06:30:00",
         "2026-06-01T06:30:00"},
        {"Australia/Lord_Howe", "2100-04-04T01:45:00", SD_TZ_REPEATED, "2100-04-03T14:45:00",
         "2100-04-03T15:15:00"},
        {"UTC", "2026-03-29T02:30:00", SD_TZ_UNIQUE, "2026-03-29T02:30:00", "2026-03-29T02:30:00"},
        /* Dublin's footer has negative DST ("IST-1GMT0,M10.5.0,M3.5.0/1"); Nuuk's rules have
         * negative transition times (M3.5.0/-1) */
        {"Europe/Dublin", "2026-03-29T01:30:00", SD_TZ_SKIPPED, "2026-03-29T01:30:00",
         "2026-03-29T01:30:00"},
        {"Europe/Dublin", "2026-10-25T01:30:00", SD_TZ_REPEATED, "2026-10-25T00:30:00",
         "2026-10-25T01:30:00"},
        {"America/Nuuk", "2100-03-27T23:30:00", SD_TZ_SKIPPED, "2100-03-28T01:30:00",
         "2100-03-28T01:30:00"},
        {"America/Nuuk", "2100-10-30T23:30:00", SD_TZ_REPEATED, "2100-10-31T00:30:00",
         "2100-10-31T01:30:00"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct conv_case *c = &cases[i];
        const struct sd_tz *tz = zone(c->zone);
        int64_t local = secs(c->local), u = 0;
        int k = sd_tz_local_to_utc(tz, local, SD_TZ_EARLIER, &u);
        if (k != c->kind || u != secs(c->earlier)) {
            fail_msg("%s %s earlier: kind %d (want %d), utc off by %lld s", c->zone, c->local, k,
                     c->kind, (long long)(u - secs(c->earlier)));
        }
        k = sd_tz_local_to_utc(tz, local, SD_TZ_LATER, &u);
        if (k != c->kind || u != secs(c->later)) {
            fail_msg("%s %s later: kind %d, utc off by %lld s", c->zone, c->local, k,
                     (long long)(u - secs(c->later)));
        }
        int64_t untouched = 42;
        k = sd_tz_local_to_utc(tz, local, SD_TZ_REJECT, &untouched);
        if (c->kind == SD_TZ_UNIQUE) {
            assert_int_equal(k, SD_TZ_UNIQUE);
            assert_int_equal(untouched, secs(c->earlier));
        } else {
            assert_int_equal(k, -ERANGE);
            assert_int_equal(untouched, 42);
        }
    }
}

static void test_offsets(void **state)
{
    (void)state;
    const struct sd_tz *berlin = zone("Europe/Berlin");
    int32_t off = 0;
    int dst = -1;
    assert_int_equal(sd_tz_offset_at(berlin, secs("2026-03-29T00:59:59"), &off, &dst), 0);
    assert_int_equal(off, 3600);
    assert_int_equal(dst, 0);
    assert_int_equal(sd_tz_offset_at(berlin, secs("2026-03-29T01:00:00"), &off, &dst), 0);
    assert_int_equal(off, 7200);
    assert_int_equal(dst, 1);
    assert_int_equal(sd_tz_offset_at(berlin, secs("2100-10-31T00:59:59"), &off, NULL), 0);
    assert_int_equal(off, 7200);
    assert_int_equal(sd_tz_offset_at(berlin, secs("2100-10-31T01:00:00"), &off, NULL), 0);
    assert_int_equal(off, 3600);
    int64_t local = 0;
    assert_int_equal(sd_tz_utc_to_local(zone("Asia/Kolkata"), secs("2026-01-01T20:00:00"), &local),
                     0);
    assert_int_equal(local, secs("2026-01-02T01:30:00"));
    assert_int_equal(sd_tz_offset_at(berlin, SD_TZ_SECONDS_MAX + 1, &off, NULL), -ERANGE);
    assert_int_equal(sd_tz_local_to_utc(berlin, -SD_TZ_SECONDS_MAX - 1, SD_TZ_EARLIER, &local),
                     -ERANGE);
    assert_string_equal(sd_tz_name(berlin), "Europe/Berlin");
    /* one load per name: the cache hands out the same zone */
    assert_ptr_equal(zone("Europe/Berlin"), berlin);
}

/* Every UTC hour (and half hour) of two years maps to a local time that maps back to it, or,
 * in a repeated hour, to one of the two instants the policies choose between. */
static void test_round_trip(void **state)
{
    (void)state;
    const char *zones[] = {"Europe/Berlin", "America/New_York", "Australia/Sydney",
                           "Australia/Lord_Howe", "Europe/Dublin"};
    for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
        const struct sd_tz *tz = zone(zones[z]);
        for (int64_t u = secs("2026-01-01T00:00:00"); u < secs("2028-01-01T00:00:00"); u += 1800) {
            int64_t local, e, l;
            assert_int_equal(sd_tz_utc_to_local(tz, u, &local), 0);
            int k = sd_tz_local_to_utc(tz, local, SD_TZ_EARLIER, &e);
            assert_int_equal(sd_tz_local_to_utc(tz, local, SD_TZ_LATER, &l), k);
            if (k == SD_TZ_UNIQUE) {
                assert_int_equal(e, u);
                assert_int_equal(l, u);
            } else {
                assert_int_equal(k, SD_TZ_REPEATED);
                assert_true(e < l && (u == e || u == l));
            }
        }
    }
}

static void test_bad_names(void **state)
{
    (void)state;
    const char *invalid[] = {"",
                             "../etc/passwd",
                             "Europe/../../etc/passwd",
                             "/usr/share/zoneinfo/UTC",
                             "Europe//Berlin",
                             "Europe/Berlin/",
                             "Europe/Berlin ",
                             "Europe/Berlin\n",
                             "Europe\\Berlin",
                             "Eur*",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        const struct sd_tz *tz = NULL;
        char err[200] = "";
        if (sd_tz_get(invalid[i], &tz, err, sizeof(err)) != -EINVAL) {
            fail_msg("'%s' accepted", invalid[i]);
        }
        assert_null(tz);
        assert_non_null(strstr(err, "not a time zone name"));
    }
    const char *unknown[] = {"Europe/Atlantis", "Europe", "Nowhere"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const struct sd_tz *tz = NULL;
        char err[200] = "";
        assert_int_equal(sd_tz_get(unknown[i], &tz, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, unknown[i]));
    }
    assert_int_equal(sd_tz_get(NULL, &(const struct sd_tz *){NULL}, NULL, 0), -EINVAL);
}

/* ---- hand-built TZif images ---------------------------------------------------------------- */

struct img {
    unsigned char b[4096];
    size_t n;
};

static void put(struct img *im, const void *p, size_t n)
{
    assert_true(im->n + n <= sizeof(im->b));
    memcpy(im->b + im->n, p, n);
    im->n += n;
}

static void put32(struct img *im, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    put(im, b, 4);
}

static void put64(struct img *im, int64_t v)
{
    put32(im, (uint32_t)((uint64_t)v >> 32));
    put32(im, (uint32_t)v);
}

struct spec {
    char version; /* 0, '2', '3', '4' */
    size_t n_trans;
    int64_t trans[4];
    unsigned char idx[4];
    size_t n_types;
    int32_t off[3];
    unsigned char dst[3];
    const char *footer; /* NULL: no footer at all */
    uint32_t leap;      /* leap-second count to claim (data written as zeros) */
};

static void put_header(struct img *im, const struct spec *s, uint32_t timecnt)
{
    put(im, "TZif", 4);
    put(im, &s->version, 1);
    put(im, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15);
    put32(im, 0);
    put32(im, 0);
    put32(im, s->leap);
    put32(im, timecnt);
    put32(im, (uint32_t)s->n_types);
    put32(im, 4);
}

static void put_block(struct img *im, const struct spec *s, unsigned tsize)
{
    for (size_t i = 0; i < s->n_trans; i++) {
        if (tsize == 8) {
            put64(im, s->trans[i]);
        } else {
            put32(im, (uint32_t)(int32_t)s->trans[i]);
        }
    }
    put(im, s->idx, s->n_trans);
    for (size_t i = 0; i < s->n_types; i++) {
        put32(im, (uint32_t)s->off[i]);
        put(im, &s->dst[i], 1);
        put(im, "\0", 1);
    }
    put(im, "AAA", 4);
    for (uint32_t i = 0; i < s->leap * (tsize + 4); i++) {
        put(im, "\0", 1);
    }
}

static void build(struct img *im, const struct spec *s)
{
    im->n = 0;
    put_header(im, s, (uint32_t)s->n_trans);
    put_block(im, s, 4);
    if (s->version == 0) {
        return;
    }
    put_header(im, s, (uint32_t)s->n_trans);
    put_block(im, s, 8);
    if (s->footer) {
        put(im, "\n", 1);
        put(im, s->footer, strlen(s->footer));
        put(im, "\n", 1);
    }
}

static struct sd_tz *parse_ok(const struct img *im)
{
    struct sd_tz *tz = NULL;
    char err[200] = "";
    int r = sd_tz_parse(im->b, im->n, "Test/Zone", &tz, err, sizeof(err));
    if (r != 0) {
        fail_msg("parse failed: %s", err);
    }
    return tz;
}

static int32_t off_at(const struct sd_tz *tz, const char *utc)
{
    int32_t off = 0;
    assert_int_equal(sd_tz_offset_at(tz, secs(utc), &off, NULL), 0);
    return off;
}

static void test_footer_rules(void **state)
{
    (void)state;
    struct img im;
    /* Jn never counts Feb 29, n does; times may be negative or past 24:00 */
    struct spec s = {.version = '3',
                     .n_types = 2,
                     .off = {-10800, -7200},
                     .dst = {0, 1},
                     .footer = "AAA3BBB,J60/-2,100/26"};
    build(&im, &s);
    struct sd_tz *tz = parse_ok(&im);
    assert_int_equal(off_at(tz, "2028-03-01T00:59:59"), -10800);
    assert_int_equal(off_at(tz, "2028-03-01T01:00:00"), -7200);
    assert_int_equal(off_at(tz, "2028-04-11T03:59:59"), -7200);
    assert_int_equal(off_at(tz, "2028-04-11T04:00:00"), -10800);
    assert_int_equal(off_at(tz, "2027-03-01T00:59:59"), -10800);
    assert_int_equal(off_at(tz, "2027-03-01T01:00:00"), -7200);
    assert_int_equal(off_at(tz, "2027-04-12T03:59:59"), -7200);
    assert_int_equal(off_at(tz, "2027-04-12T04:00:00"), -10800);
    sd_tz_free(tz);
    /* DST all year (the RFC 8536 example): the end of one year meets the next start */
    s.footer = "EST5EDT,0/0,J365/25";
    s.off[0] = -18000;
    s.off[1] = -14400;
    build(&im, &s);
    tz = parse_ok(&im);
    assert_int_equal(off_at(tz, "2030-01-01T04:59:59"), -14400);
    assert_int_equal(off_at(tz, "2030-01-01T05:00:00"), -14400);
    assert_int_equal(off_at(tz, "2030-06-01T00:00:00"), -14400);
    sd_tz_free(tz);
    /* quoted abbreviations, minutes and seconds in offsets, no DST */
    s.footer = "<+0530>-5:30:15";
    build(&im, &s);
    tz = parse_ok(&im);
    assert_int_equal(off_at(tz, "2030-06-01T00:00:00"), 19815);
    sd_tz_free(tz);
    /* v1: transitions only, the last type stays */
    struct spec v1 = {.version = 0,
                      .n_trans = 2,
                      .trans = {1000000, 2000000},
                      .idx = {1, 0},
                      .n_types = 2,
                      .off = {3600, 7200},
                      .dst = {0, 1}};
    build(&im, &v1);
    tz = parse_ok(&im);
    int32_t off;
    assert_int_equal(sd_tz_offset_at(tz, 999999, &off, NULL), 0);
    assert_int_equal(off, 3600); /* before the first transition: type 0 */
    assert_int_equal(sd_tz_offset_at(tz, 1000000, &off, NULL), 0);
    assert_int_equal(off, 7200);
    assert_int_equal(sd_tz_offset_at(tz, 4000000000, &off, NULL), 0);
    assert_int_equal(off, 3600);
    sd_tz_free(tz);
}

static void test_corrupt_images(void **state)
{
    (void)state;
    struct spec good = {.version = '2',
                        .n_trans = 2,
                        .trans = {1000000, 2000000},
                        .idx = {1, 0},
                        .n_types = 2,
                        .off = {3600, 7200},
                        .dst = {0, 1},
                        .footer = "CET-1CEST,M3.5.0,M10.5.0/3"};
    struct img im;
    build(&im, &good);
    sd_tz_free(parse_ok(&im));
    /* every prefix of a valid image is refused */
    for (size_t n = 0; n < im.n; n++) {
        struct sd_tz *tz = NULL;
        assert_int_equal(sd_tz_parse(im.b, n, "t", &tz, NULL, 0), -EBADMSG);
        assert_null(tz);
    }
    struct {
        const char *what;
        struct spec s;
    } bad[] = {
        {"descending", {'2', 2, {2000000, 1000000}, {1, 0}, 2, {3600, 7200}, {0, 1}, "UTC0", 0}},
        {"equal times", {'2', 2, {5, 5}, {1, 0}, 2, {3600, 7200}, {0, 1}, "UTC0", 0}},
        {"type index", {'2', 1, {5}, {2}, 2, {3600, 7200}, {0, 1}, "UTC0", 0}},
        {"no types", {'2', 0, {0}, {0}, 0, {0}, {0}, "UTC0", 0}},
        {"offset", {'2', 0, {0}, {0}, 1, {27 * 3600}, {0}, "UTC0", 0}},
        {"isdst", {'2', 0, {0}, {0}, 1, {0}, {2}, "UTC0", 0}},
        {"leap seconds", {'2', 0, {0}, {0}, 1, {0}, {0}, "UTC0", 1}},
        {"no footer", {'2', 0, {0}, {0}, 1, {0}, {0}, NULL, 0}},
        {"dst without rule", {'2', 0, {0}, {0}, 1, {0}, {0}, "CET-1CEST", 0}},
        {"month 13", {'2', 0, {0}, {0}, 1, {0}, {0}, "CET-1CEST,M13.5.0,M10.5.0", 0}},
        {"week 6", {'2', 0, {0}, {0}, 1, {0}, {0}, "CET-1CEST,M3.6.0,M10.5.0", 0}},
        {"J0", {'2', 0, {0}, {0}, 1, {0}, {0}, "CET-1CEST,J0,J100", 0}},
        {"day 366", {'2', 0, {0}, {0}, 1, {0}, {0}, "CET-1CEST,366,100", 0}},
        {"time 168h", {'2', 0, {0}, {0}, 1, {0}, {0}, "CET-1CEST,M3.5.0/168,M10.5.0", 0}},
        {"offset 25h", {'2', 0, {0}, {0}, 1, {0}, {0}, "XXX25", 0}},
        {"short name", {'2', 0, {0}, {0}, 1, {0}, {0}, "UT0", 0}},
        {"open quote", {'2', 0, {0}, {0}, 1, {0}, {0}, "<+01-1", 0}},
        {"trailing", {'2', 0, {0}, {0}, 1, {0}, {0}, "UTC0 ", 0}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        build(&im, &bad[i].s);
        struct sd_tz *tz = NULL;
        char err[200] = "";
        if (sd_tz_parse(im.b, im.n, "t", &tz, err, sizeof(err)) != -EBADMSG) {
            fail_msg("%s: accepted", bad[i].what);
        }
        assert_true(err[0] != '\0');
    }
    /* counts that claim more than the file holds, including ones whose products overflow
     * 32 bits */
    build(&im, &good);
    const uint32_t huge[] = {0xffffffffu, 0x40000000u, 0x10000000u};
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        for (size_t field = 20; field < 44; field += 4) {
            struct img copy = im;
            copy.b[field] = (unsigned char)(huge[i] >> 24);
            copy.b[field + 1] = (unsigned char)(huge[i] >> 16);
            copy.b[field + 2] = (unsigned char)(huge[i] >> 8);
            copy.b[field + 3] = (unsigned char)huge[i];
            struct sd_tz *tz = NULL;
            assert_int_equal(sd_tz_parse(copy.b, copy.n, "t", &tz, NULL, 0), -EBADMSG);
        }
    }
    struct img other = im;
    memcpy(other.b, "TZiX", 4);
    assert_int_equal(sd_tz_parse(other.b, other.n, "t", &(struct sd_tz *){NULL}, NULL, 0),
                     -EBADMSG);
    other = im;
    other.b[4] = '5';
    assert_int_equal(sd_tz_parse(other.b, other.n, "t", &(struct sd_tz *){NULL}, NULL, 0),
                     -EBADMSG);
}

/* Files in a temporary $TZDIR: a good copy loads, damaged ones are refused with the zone's
 * name in the message, a directory is no zone. */
static void test_tzdir_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/sd-test-tz-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/Test", dir);
    assert_int_equal(mkdir(path, 0700), 0);

    FILE *src = fopen("/usr/share/zoneinfo/Europe/Berlin", "rb");
    assert_non_null(src);
    static unsigned char berlin[8192];
    size_t n = fread(berlin, 1, sizeof(berlin), src);
    fclose(src);
    assert_true(n > 100 && n < sizeof(berlin));

    struct {
        const char *name;
        size_t len;
        int want;
    } files[] = {{"Test/Good", n, 0},
                 {"Test/Truncated", n / 2, -EBADMSG},
                 {"Test/HeaderOnly", 30, -EBADMSG},
                 {"Test/Empty", 0, -EBADMSG},
                 {"Test/Big", SD_TZ_FILE_MAX + 1, -EFBIG}};
    static unsigned char big[SD_TZ_FILE_MAX + 1];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        const unsigned char *data = files[i].len > n ? big : berlin;
        if (files[i].len > n) {
            memcpy(big, berlin, n);
        }
        assert_int_equal(fwrite(data, 1, files[i].len, f), files[i].len);
        fclose(f);
    }
    const char *old = getenv("TZDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TZDIR", dir, 1);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const struct sd_tz *tz = NULL;
        char err[300] = "";
        int r = sd_tz_get(files[i].name, &tz, err, sizeof(err));
        if (r != files[i].want) {
            fail_msg("%s: %d (want %d) %s", files[i].name, r, files[i].want, err);
        }
        if (r == 0) {
            int64_t u;
            assert_int_equal(sd_tz_local_to_utc(tz, secs("2026-03-29T02:30:00"), SD_TZ_EARLIER, &u),
                             SD_TZ_SKIPPED);
            assert_int_equal(u, secs("2026-03-29T01:30:00"));
        } else {
            assert_non_null(strstr(err, files[i].name));
        }
    }
    const struct sd_tz *tz = NULL;
    assert_int_equal(sd_tz_get("Test", &tz, NULL, 0), -ENOENT);
    /* the system's zones are not in this directory */
    assert_int_equal(sd_tz_get("Europe/Berlin", &tz, NULL, 0), -ENOENT);
    if (saved) {
        setenv("TZDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TZDIR");
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/Test", dir);
    rmdir(path);
    rmdir(dir);
}

/* Threads loading and using zones at once get one zone per name (the cache's mutex; TSan in
 * CI checks the rest). */
struct race {
    const struct sd_tz *got[4];
    int failures;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    static const char *names[] = {"Europe/Paris", "America/Chicago", "Pacific/Auckland",
                                  "Asia/Tokyo"};
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 4; i++) {
            const struct sd_tz *tz = NULL;
            int64_t u;
            if (sd_tz_get(names[i], &tz, NULL, 0) != 0 ||
                sd_tz_local_to_utc(tz, 1790000000 + round * 3600, SD_TZ_EARLIER, &u) < 0) {
                r->failures++;
            }
            r->got[i] = tz;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    struct race races[4] = {{{NULL}, 0}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, racer, &races[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(races[i].failures, 0);
        for (int z = 0; z < 4; z++) {
            assert_non_null(races[i].got[z]);
            assert_ptr_equal(races[i].got[z], races[0].got[z]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_to_utc), cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_footer_rules), cmocka_unit_test(test_corrupt_images),
        cmocka_unit_test(test_tzdir_files),  cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
