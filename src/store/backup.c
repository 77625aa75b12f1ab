/* backup.c — the wrapper of the store's backup op (store/backup.h): the report starts zeroed,
 * and a backend without the op answers -ENOTSUP in words. */
#include "store/backup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/store.h"

int sd_store_backup(struct sd_store_handle *h, const char *dest, struct sd_store_backup_report *ret)
{
    memset(ret, 0, sizeof(*ret));
    const struct sd_store_ops *ops = sd_store_handle_ops(h);
    if (!ops->backup) {
        snprintf(ret->message, sizeof(ret->message), "the %s store has no online backup",
                 ops->name);
        return -ENOTSUP;
    }
    if (!dest || !*dest) {
        snprintf(ret->message, sizeof(ret->message), "no backup directory given");
        return -EINVAL;
    }
    return ops->backup(sd_store_handle_backend(h), dest, ret);
}
