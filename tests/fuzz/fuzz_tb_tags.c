/* fuzz_tb_tags.c — fuzz target for the answers the segment → fan tag sync reads from Tradable
 * Bits (connectors/tradablebits/tb_tags.h): the tag_create answer and the tag add/remove answer,
 * then the diff over ids taken from the input. For any input: nothing crashes or leaks; a
 * tag_create answer accepted names a tag id the sync can put in a path (a fan-id-shaped
 * decimal); the fans a batch answer says failed are ids that were sent, each once; the diff's
 * figures add up (added + unchanged = distinct wanted ids, removed + unchanged ≤ have) and its
 * lists are disjoint, ascending and free of repeats. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/tradablebits/tb_tags.h"

#define MAX_IDS 64

static int cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char why[160];
    char *tag = NULL;
    bool dup = false;
    if (tb_tags_parse_create(body, size, &tag, &dup, why, sizeof(why)) == 0) {
        if (!tb_tags_is_fan_id(tag)) {
            abort();
        }
        free(tag);
    }

    /* Ids "1".."9" and some from the input's bytes, as the sync would send them. */
    char store[MAX_IDS][8];
    const char *sent[MAX_IDS];
    size_t n_sent = 0;
    for (size_t i = 0; i < size && n_sent < MAX_IDS; i += 7) {
        snprintf(store[n_sent], sizeof(store[n_sent]), "%u", (unsigned)data[i] % 40 + 1);
        sent[n_sent] = store[n_sent];
        n_sent++;
    }
    char **failed = NULL;
    size_t n_failed = 0;
    if (tb_tags_parse_batch(body, size, sent, n_sent, &failed, &n_failed, why, sizeof(why)) == 0) {
        if (n_failed > n_sent) {
            abort();
        }
        for (size_t i = 0; i < n_failed; i++) {
            bool known = false;
            for (size_t k = 0; k < n_sent && !known; k++) {
                known = strcmp(sent[k], failed[i]) == 0;
            }
            for (size_t k = 0; k < i; k++) {
                if (strcmp(failed[k], failed[i]) == 0) {
                    abort();
                }
            }
            if (!known) {
                abort();
            }
            free(failed[i]);
        }
        free(failed);
    }

    size_t half = n_sent / 2;
    struct tb_tag_diff d;
    tb_tags_diff(sent, half, sent + half, n_sent - half, &d);
    if (d.n_add + d.n_same != d.n_want || d.n_del + d.n_same > n_sent - half) {
        abort();
    }
    for (size_t i = 0; i < d.n_add; i++) {
        if (i > 0 && cmp(d.add[i - 1], d.add[i]) >= 0) {
            abort();
        }
        for (size_t k = 0; k < d.n_del; k++) {
            if (strcmp(d.add[i], d.del[k]) == 0) {
                abort();
            }
        }
    }
    for (size_t i = 1; i < d.n_del; i++) {
        if (cmp(d.del[i - 1], d.del[i]) >= 0) {
            abort();
        }
    }
    tb_tag_diff_release(&d);
    return 0;
}
