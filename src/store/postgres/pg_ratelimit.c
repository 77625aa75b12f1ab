/* pg_ratelimit.c — the shared token buckets of store.h's rate_take on PostgreSQL
 * (0006_rate_buckets.sql). One statement per take: INSERT … ON CONFLICT DO UPDATE evaluates the
 * refill and the take against the row it has locked, so two nodes taking at once are applied
 * one after the other and never grant a token twice. The refill uses the caller's clock;
 * GREATEST keeps a node whose clock lags from taking tokens back out of the refill. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "pg_internal.h"

enum { S_RATE_TAKE = 56 };

/* $1 key, $2 per_minute, $3 burst, $4 want, $5 now */
#define AVAIL                                                                                     \
    "LEAST($3::float8, b.tokens + GREATEST(0, $5::bigint - b.updated_usec) * $2::float8 / 6e7)"

int sd_pg_rate_take(struct sd_store *s, uint64_t key, int64_t per_minute, int64_t burst,
                    int64_t want, int64_t now_usec, int64_t *ret_granted, double *ret_left)
{
    if (per_minute < 1 || burst < 1 || want < 1) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, (int64_t)key);
    sd_pg_p_int(&p, per_minute);
    sd_pg_p_int(&p, burst);
    sd_pg_p_int(&p, want);
    sd_pg_p_int(&p, now_usec);
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_RATE_TAKE,
                   "INSERT INTO rate_buckets AS b (bucket_key, tokens, updated_usec, last_grant)"
                   " VALUES ($1, $3::float8 - LEAST($4, $3), $5, LEAST($4, $3))"
                   " ON CONFLICT (bucket_key) DO UPDATE SET"
                   " tokens = " AVAIL " - LEAST($4::float8, floor(" AVAIL ")),"
                   " last_grant = LEAST($4::float8, floor(" AVAIL "))::bigint,"
                   " updated_usec = GREATEST(b.updated_usec, $5::bigint)"
                   " RETURNING last_grant, tokens",
                   &p, &res);
    if (r == 1) {
        *ret_granted = sd_pg_int64(res, 0, 0);
        *ret_left = strtod(PQgetvalue(res, 0, 1), NULL);
        r = 0;
    } else if (r >= 0) {
        r = -EIO;
    }
    PQclear(res);
    sd_pg_pool_put(s, c);
    return r;
}
