/* fault.c — see fault.h. The variable is read once; counting is atomic. */
#include "base/fault.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char point_name[32];
static int64_t fail_from;
static _Atomic int64_t calls;

static void load(void)
{
    const char *v = getenv("STAGEDOOR_FAULT");
    if (!v) {
        return;
    }
    const char *colon = strchr(v, ':');
    int64_t n = 1; /* "POINT" alone: from the first call */
    if (!colon) {
        colon = v + strlen(v);
    } else if (sd_parse_int64(colon + 1, false, &n) < 0 || n < 1) {
        return;
    }
    if ((size_t)(colon - v) >= sizeof(point_name)) {
        return;
    }
    memcpy(point_name, v, (size_t)(colon - v));
    point_name[colon - v] = '\0';
    fail_from = n;
}

bool sd_fault_hit(const char *point)
{
    pthread_once(&once, load);
    if (fail_from == 0 || strcmp(point, point_name) != 0) {
        return false;
    }
    return atomic_fetch_add(&calls, 1) + 1 >= fail_from;
}
