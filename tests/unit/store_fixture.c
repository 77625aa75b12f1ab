/* store_fixture.c — the shared store fixture of the unit tests (API in store_fixture.h). Built
 * once as a small library linked into every unit test; tests that do not call it pull nothing.
 * Removal walks TMP depth first without following links, so a symlink a test planted is removed,
 * never what it points at; TMP itself always comes from mkdtemp, never from the caller. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "store_fixture.h"

void sd_test_store_make(struct sd_test_store *s, const char *tag)
{
    int n = snprintf(s->tmp, sizeof(s->tmp), "/tmp/sd_%s_test.XXXXXX", tag);
    assert_true(n > 0 && (size_t)n < sizeof(s->tmp));
    assert_non_null(mkdtemp(s->tmp));
    n = snprintf(s->dir, sizeof(s->dir), "%s/data", s->tmp);
    assert_true(n > 0 && (size_t)n < sizeof(s->dir));
}

void sd_test_store_open(const struct sd_test_store *s, struct sd_store_handle **ret)
{
    assert_int_equal(sd_store_open(SD_TEST_STORE_KIND, s->dir, ret), 0);
}

void sd_test_store_setup(struct sd_test_store *s, const char *tag, struct sd_store_handle **ret)
{
    sd_test_store_make(s, tag);
    sd_test_store_open(s, ret);
}

int64_t sd_test_store_tenant(struct sd_store_handle *h, const char *client_id, const char *name)
{
    assert_int_equal(sd_store_tenant_create(h, client_id, name), 0);
    struct sd_tenant t = {0};
    assert_int_equal(sd_store_tenant_get(h, client_id, &t), 0);
    int64_t id = t.id;
    sd_tenant_release(&t);
    return id;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path) == 0 ? 0 : -errno;
}

void sd_test_store_release(struct sd_test_store *s, struct sd_store_handle *h)
{
    sd_store_close(h);
    if (s->tmp[0] == '\0') {
        return;
    }
    int rc = nftw(s->tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) {
        fail_msg("cannot remove %s: %s", s->tmp, strerror(rc < 0 ? -rc : errno));
    }
    assert_int_equal(access(s->tmp, F_OK), -1);
    memset(s, 0, sizeof(*s));
}
