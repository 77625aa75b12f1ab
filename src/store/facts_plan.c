/* facts_plan.c — a batch's new sales summed per profile and currency in memory, one copy for
 * both backends (sqlite_facts.c, pg_facts.c) so that both write the same profile_facts rows.
 * Why sums per batch: one UPSERT per inserted sale cost 1 s more server CPU in a 200,000-row
 * CSV import than the sums (bench/README.md "Per-profile facts").
 *
 * Two open-addressing tables, at most half full: the customer keys' profiles (hashed over
 * source and customer id) and the sums (over profile and currency). FNV-1a, with a separator
 * after each text so that ("ab","c") and ("a","bc") differ. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "store/facts_plan.h"

#define FNV_OFFSET 14695981039346656037ull

static uint64_t hash_text(uint64_t h, const char *t)
{
    for (; *t; t++) {
        h = (h ^ (unsigned char)*t) * 1099511628211ull;
    }
    return (h ^ 0xff) * 1099511628211ull; /* a separator, so ("ab","c") ≠ ("a","bc") */
}

/* Grow a table of `size`-byte slots to hold one more (at most half full), rehashing with
 * `hash_of` (a slot is free when its first pointer is NULL). */
static void grow(void **v, size_t *cap, size_t n, size_t size, uint64_t (*hash_of)(const void *))
{
    if ((n + 1) * 2 <= *cap) {
        return;
    }
    size_t ncap = *cap ? *cap * 2 : 64;
    char *nv = sd_calloc(ncap, size);
    char *old = *v;
    for (size_t i = 0; i < *cap; i++) {
        const void *slot = old + i * size;
        if (*(void *const *)slot) {
            size_t j = hash_of(slot) & (ncap - 1);
            while (*(void **)(nv + j * size)) {
                j = (j + 1) & (ncap - 1);
            }
            memcpy(nv + j * size, slot, size);
        }
    }
    free(old);
    *v = nv;
    *cap = ncap;
}

static uint64_t key_hash(const void *slot)
{
    const struct sd_facts_key *k = slot;
    return hash_text(hash_text(FNV_OFFSET, k->source), k->customer_id);
}

static uint64_t sum_hash(const void *slot)
{
    const struct sd_facts_sum *f = slot;
    return hash_text(FNV_OFFSET ^ (uint64_t)f->profile_id, f->currency);
}

/* The profile of customer key (source, customer_id) from the batch's cache or the backend: 0
 * if the record has none (or does not exist). */
static int profile_of(struct sd_facts_batch *fb, struct sd_store *s, sd_facts_profile_fn *lookup,
                      int64_t tenant_id, enum sd_env env, const char *source,
                      const char *customer_id, int64_t *ret)
{
    uint64_t h = hash_text(hash_text(FNV_OFFSET, source), customer_id);
    for (size_t i = fb->keys_cap ? h & (fb->keys_cap - 1) : 0; fb->keys_cap;
         i = (i + 1) & (fb->keys_cap - 1)) {
        struct sd_facts_key *k = &fb->keys[i];
        if (!k->source) {
            break;
        }
        if (strcmp(k->source, source) == 0 && strcmp(k->customer_id, customer_id) == 0) {
            *ret = k->profile_id;
            return 0;
        }
    }
    int64_t profile_id = 0;
    int r = lookup(s, tenant_id, env, source, customer_id, &profile_id);
    if (r < 0) {
        return r;
    }
    sd_facts_batch_known(fb, source, customer_id, profile_id);
    *ret = profile_id;
    return 0;
}

void sd_facts_batch_known(struct sd_facts_batch *fb, const char *source, const char *customer_id,
                          int64_t profile_id)
{
    uint64_t h = hash_text(hash_text(FNV_OFFSET, source), customer_id);
    grow((void **)&fb->keys, &fb->keys_cap, fb->n_keys, sizeof(*fb->keys), key_hash);
    size_t i = h & (fb->keys_cap - 1);
    for (; fb->keys[i].source; i = (i + 1) & (fb->keys_cap - 1)) {
        if (strcmp(fb->keys[i].source, source) == 0 &&
            strcmp(fb->keys[i].customer_id, customer_id) == 0) {
            fb->keys[i].profile_id = profile_id;
            return;
        }
    }
    fb->keys[i] = (struct sd_facts_key){sd_strdup(source), sd_strdup(customer_id), profile_id};
    fb->n_keys++;
}

static void text_min(char **cur, const char *v, bool min)
{
    if (!*cur || (min ? strcmp(v, *cur) < 0 : strcmp(v, *cur) > 0)) {
        free(*cur);
        *cur = sd_strdup(v);
    }
}

int sd_facts_batch_add(struct sd_facts_batch *fb, struct sd_store *s,
                       sd_facts_profile_fn *profile_of_fn, int64_t tenant_id, enum sd_env env,
                       const char *source, const char *customer_id, const char *currency,
                       const char *purchased, int64_t net_quantity, int64_t net_minor)
{
    if (strcmp(customer_id, SD_ANON_CUSTOMER) == 0 || (net_quantity == 0 && net_minor == 0)) {
        return 0;
    }
    int64_t profile_id = 0;
    int r = profile_of(fb, s, profile_of_fn, tenant_id, env, source, customer_id, &profile_id);
    if (r < 0 || profile_id <= 0) {
        return r;
    }
    uint64_t h = hash_text(FNV_OFFSET ^ (uint64_t)profile_id, currency);
    grow((void **)&fb->sums, &fb->sums_cap, fb->n_sums, sizeof(*fb->sums), sum_hash);
    size_t i = h & (fb->sums_cap - 1);
    struct sd_facts_sum *f;
    for (;; i = (i + 1) & (fb->sums_cap - 1)) {
        f = &fb->sums[i];
        if (!f->currency) {
            *f = (struct sd_facts_sum){.profile_id = profile_id, .currency = sd_strdup(currency)};
            fb->n_sums++;
            break;
        }
        if (f->profile_id == profile_id && strcmp(f->currency, currency) == 0) {
            break;
        }
    }
    f->purchases += net_quantity > 0;
    f->tickets += net_quantity;
    f->spend_minor += net_minor;
    f->sales++;
    if (net_quantity > 0) {
        text_min(&f->first, purchased, true);
        text_min(&f->last, purchased, false);
    }
    return 0;
}

void sd_facts_batch_sums_free(struct sd_facts_batch *fb)
{
    for (size_t i = 0; i < fb->sums_cap; i++) {
        free(fb->sums[i].currency);
        free(fb->sums[i].first);
        free(fb->sums[i].last);
    }
    free(fb->sums);
    fb->sums = NULL;
    fb->sums_cap = fb->n_sums = 0;
}

void sd_facts_sale_row_release(struct sd_facts_sale_row *r)
{
    free(r->currency);
    free(r->purchased);
    *r = (struct sd_facts_sale_row){0};
}

void sd_facts_batch_release(struct sd_facts_batch *fb)
{
    sd_facts_batch_sums_free(fb);
    for (size_t i = 0; i < fb->keys_cap; i++) {
        free(fb->keys[i].source);
        free(fb->keys[i].customer_id);
    }
    free(fb->keys);
    *fb = (struct sd_facts_batch){0};
}
