/* seg_members.c — the backend-neutral part of the segments store (store/seg_members.h): member
 * pages filled from the rows a backend reads, and the numbering and chunking of snapshots.
 *
 * Invariants both backends rely on: a page never holds more than its limit (one more row only
 * sets has_more); a member's sources are sorted with strcmp, so both backends' pages are byte
 * for byte the same whatever their databases' collations; a snapshot's chunks are written in id
 * order and only the last one completes it. */
#include "store/seg_members.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

bool sd_seg_page_add(struct sd_seg_member_page *page, size_t limit, int64_t profile_id)
{
    if (page->n == limit) {
        page->has_more = true;
        return false;
    }
    page->v[page->n++].profile_id = profile_id;
    return true;
}

void sd_seg_page_done(struct sd_seg_member_page *page)
{
    if (page->n > 0) {
        page->next_after = page->v[page->n - 1].profile_id;
    }
}

void sd_seg_sources_add(struct sd_seg_member_page *page, struct sd_seg_sources_cursor *cur,
                        int64_t profile_id, const char *source, const char *customer_id,
                        const char *email)
{
    while (cur->at < page->n && page->v[cur->at].profile_id < profile_id) {
        cur->at++;
        cur->cap = 0;
    }
    if (cur->at == page->n || page->v[cur->at].profile_id != profile_id) {
        return; /* not a member of the page: cannot happen, the ids came from it */
    }
    struct sd_seg_member *m = &page->v[cur->at];
    if (m->n_sources == cur->cap) {
        cur->cap = cur->cap ? cur->cap * 2 : 2;
        m->sources = sd_realloc(m->sources, cur->cap * sizeof(*m->sources));
    }
    struct sd_seg_member_source *src = &m->sources[m->n_sources++];
    src->source = sd_strdup(source ? source : "");
    src->customer_id = sd_strdup(customer_id ? customer_id : "");
    if (!m->email && email) {
        m->email = sd_strdup(email);
    }
}

int sd_seg_page_hand(int r, struct sd_seg_member_page *page, struct sd_seg_member_page *ret)
{
    if (r == 0) {
        *ret = *page;
    } else {
        sd_seg_member_page_release(page);
    }
    return r;
}

static int cmp_source(const void *a, const void *b)
{
    const struct sd_seg_member_source *x = a, *y = b;
    int r = strcmp(x->source, y->source);
    return r ? r : strcmp(x->customer_id, y->customer_id);
}

void sd_seg_sources_sort(struct sd_seg_member_page *page)
{
    for (size_t i = 0; i < page->n; i++) {
        struct sd_seg_member *m = &page->v[i];
        if (m->n_sources > 1) {
            qsort(m->sources, m->n_sources, sizeof(*m->sources), cmp_source);
        }
    }
}

int sd_seg_snapshot_create(const struct sd_seg_snapshot_io *io, struct sd_store *s,
                           int64_t tenant_id, enum sd_env env, const char *segment_id,
                           const struct sd_seg_rule *rule, int64_t now_usec, int64_t ttl_usec,
                           const struct sd_seg_budget *budget, int64_t *ret_id, int64_t *ret_count)
{
    if (!rule || !segment_id || (env != SD_ENV_TEST && env != SD_ENV_PROD) || ttl_usec <= 0) {
        return -EINVAL;
    }
    int64_t *v = NULL;
    size_t n = 0;
    int r = io->members(s, tenant_id, env, rule, now_usec, budget, &v, &n);
    if (r < 0) {
        return r;
    }
    struct sd_seg_snapshot_req q = {.tenant_id = tenant_id,
                                    .env = env,
                                    .segment_id = segment_id,
                                    .count = (int64_t)n,
                                    .now_usec = now_usec,
                                    .ttl_usec = ttl_usec};
    uint64_t raw = 0;
    r = sd_random_bytes(&raw, sizeof(raw));
    int64_t id = (int64_t)(raw >> 1);
    id = id ? id : 1;
    if (r == 0) {
        r = io->open(s, &q, id);
    }
    for (size_t at = 0; r == 0 && (at < n || at == 0);) {
        size_t k = n - at < SD_SEGMENT_SNAPSHOT_CHUNK ? n - at : SD_SEGMENT_SNAPSHOT_CHUNK;
        r = io->chunk(s, id, n ? v + at : NULL, k, at + k == n); /* no members: v is NULL */
        at += k;
        if (n == 0) {
            break;
        }
    }
    free(v);
    if (r < 0) {
        return r;
    }
    *ret_id = id;
    *ret_count = (int64_t)n;
    return 0;
}
