/* env.c — the two environments a hub serves (seed §4: one API key per environment, TEST and
 * PROD). Names are lowercase on output; parsing accepts any case so "PROD" from a config file
 * or a header works the same as "prod". */
#include <errno.h>
#include <strings.h>

#include "model/model.h"

const char *sd_env_name(enum sd_env env)
{
    switch (env) {
    case SD_ENV_TEST: return "test";
    case SD_ENV_PROD: return "prod";
    }
    return "unknown";
}

int sd_env_parse(const char *s, enum sd_env *ret)
{
    if (!s) {
        return -EINVAL;
    }
    if (strcasecmp(s, "test") == 0) {
        *ret = SD_ENV_TEST;
        return 0;
    }
    if (strcasecmp(s, "prod") == 0) {
        *ret = SD_ENV_PROD;
        return 0;
    }
    return -EINVAL;
}
