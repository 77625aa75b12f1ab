/* cmd_key.c — `stagedoor key create|list|revoke`: API keys. A new key is printed once, alone on
 * the last line of stdout; afterwards only its id, environment and dates are ever shown. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/auth.h"
#include "store/store.h"

static const char usage_key[] = "usage: stagedoor key <create|list|revoke> ...\n"
                                "  key create CLIENT_ID --env test|prod [--data DIR]\n"
                                "  key list CLIENT_ID [--data DIR]\n"
                                "  key revoke KEY_ID [--data DIR]\n";
static const char usage_create[] =
    "usage: stagedoor key create CLIENT_ID --env test|prod [--data DIR]\n"
    "Creates an API key for one environment. The key is printed once, alone on the last line;\n"
    "only its SHA-256 is stored.\n";
static const char usage_list[] = "usage: stagedoor key list CLIENT_ID [--data DIR]\n"
                                 "Lists key ids, environment, created, revoked and last used\n"
                                 "(UTC; a server records a key's use within a minute).\n";
static const char usage_revoke[] = "usage: stagedoor key revoke KEY_ID [--data DIR]\n"
                                   "Revokes a key; a running server refuses it within a "
                                   "second.\n";

static int key_create(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *env_s = NULL, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {"--env", true, &env_s, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_create);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("key create needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    enum sd_env env;
    if (!env_s) {
        return sd_cli_usage_error("key create needs --env test|prod");
    }
    if (sd_env_parse(env_s, &env) < 0) {
        return sd_cli_usage_error("--env must be test or prod (got '%s')", env_s);
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    char *key = NULL, *key_id = NULL;
    r = sd_key_create(st, pos[0], env, &key, &key_id);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no tenant '%s'", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot create key: %s", strerror(-r));
    }
    printf("key_id: %s\nenv: %s\nclient_id: %s\n"
           "The key below is shown only this once; store it now.\n%s\n",
           key_id, sd_env_name(env), pos[0], key);
    explicit_bzero(key, strlen(key));
    free(key);
    free(key_id);
    return SD_EXIT_OK;
}

static int key_list(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_list);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("key list needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_key_info *k = NULL;
    size_t nk = 0;
    r = sd_store_key_list(st, pos[0], &k, &nk);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no tenant '%s'", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot list keys: %s", strerror(-r));
    }
    printf("%-22s %-5s %-21s %-21s %s\n", "KEY_ID", "ENV", "CREATED", "REVOKED", "LAST_USED");
    for (size_t i = 0; i < nk; i++) {
        char c[32], rv[32], lu[32];
        sd_cli_format_time(k[i].created_usec, c);
        sd_cli_format_time(k[i].revoked_usec, rv);
        sd_cli_format_time(k[i].last_used_usec, lu);
        printf("%-22s %-5s %-21s %-21s %s\n", k[i].key_id, sd_env_name(k[i].env), c, rv, lu);
    }
    sd_keys_free(k, nk);
    return SD_EXIT_OK;
}

static int key_revoke(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_revoke);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("key revoke needs a KEY_ID");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    r = sd_store_key_revoke(st, pos[0]);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no key '%s'", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot revoke key: %s", strerror(-r));
    }
    printf("revoked %s\n", pos[0]);
    return SD_EXIT_OK;
}

int sd_cmd_key(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"create", key_create},
        {"list", key_list},
        {"revoke", key_revoke},
        {NULL, NULL},
    };
    return sd_cli_dispatch("key", subs, usage_key, argc, argv);
}
