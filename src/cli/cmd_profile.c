/* cmd_profile.c — `stagedoor profile link-rule|suppress|show|find|split|erase`: the operator's
 * side of unified customers (issue #4 §1), with the same rules as the admin and tenant APIs
 * (core/profiles.c). Reads and the link rule work on the store directly; operations that change
 * profiles (suppress, split, erase) open a hub and run as jobs of its single writer, exactly as
 * the HTTP handlers do — safe while a server runs on the same data directory (SQLite's write
 * lock orders the two writers). Addresses given on the command line are never printed back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli/cli.h"
#include "core/hub.h"
#include "core/profiles.h"
#include "store/audience.h"
#include "store/store.h"

#define CLI_SUPPRESS_MAX 1000 /* addresses per command line */

static const char usage_profile[] =
    "usage: stagedoor profile <link-rule|suppress|show|find|split|erase> ...\n"
    "  profile link-rule CLIENT_ID [email|email_and_last_name|none] [--data DIR]\n"
    "  profile suppress CLIENT_ID --env test|prod EMAIL... [--data DIR]\n"
    "  profile show CLIENT_ID --env test|prod PROFILE_ID [--data DIR]\n"
    "  profile find CLIENT_ID --env test|prod (--email ADDRESS | --customer-id ID\n"
    "               [--source SOURCE]) [--data DIR]\n"
    "  profile split CLIENT_ID --env test|prod PROFILE_ID --source SOURCE --customer-id ID\n"
    "  profile erase CLIENT_ID --env test|prod CUSTOMER_ID [--source SOURCE] --yes\n";
static const char usage_link_rule[] =
    "usage: stagedoor profile link-rule CLIENT_ID [RULE] [--data DIR]\n"
    "Shows the tenant's rule for linking records of different sources into one profile, or\n"
    "sets it: email (same e-mail address, the default), email_and_last_name (same address and\n"
    "same last name) or none (every record its own profile). A new rule applies to records\n"
    "that arrive afterwards; existing links stay.\n";
static const char usage_suppress[] =
    "usage: stagedoor profile suppress CLIENT_ID --env test|prod EMAIL... [--data DIR]\n"
    "Puts the addresses (stored as SHA-256 hashes only) on the suppression list: profiles\n"
    "using them are never pushed. At most 1000 addresses per call.\n";
static const char usage_show[] =
    "usage: stagedoor profile show CLIENT_ID --env test|prod PROFILE_ID [--data DIR]\n"
    "Prints the profile and its source records as JSON.\n";
static const char usage_find[] =
    "usage: stagedoor profile find CLIENT_ID --env test|prod (--email ADDRESS |\n"
    "                              --customer-id ID [--source SOURCE]) [--data DIR]\n"
    "Prints {\"data\": [profiles]} as JSON (empty when nothing matches).\n";
static const char usage_split[] =
    "usage: stagedoor profile split CLIENT_ID --env test|prod PROFILE_ID --source SOURCE\n"
    "                               --customer-id ID [--data DIR]\n"
    "Moves that source record out of the profile into a new one of its own, for good (a\n"
    "later update from its source does not link it back). Prints the new profile id.\n";
static const char usage_erase[] =
    "usage: stagedoor profile erase CLIENT_ID --env test|prod CUSTOMER_ID [--source SOURCE]\n"
    "                               --yes [--data DIR]\n"
    "GDPR erasure of the person behind the record: every record of its profile is deleted,\n"
    "their sales re-pointed to ANON, the addresses suppressed for good. Cannot be undone.\n";

/* The common head of every subcommand but link-rule: CLIENT_ID, --env, the tenant. */
struct scope {
    const char *data;
    const char *env_name;
    enum sd_env env;
    struct sd_tenant tenant;
};

/* Check CLIENT_ID and --env; usage error (returned) or 0. */
static int scope_check(const char *client_id, struct scope *sc)
{
    if (!sd_client_id_valid(client_id)) {
        return sd_cli_bad_client_id(client_id);
    }
    if (!sc->env_name) {
        return sd_cli_usage_error("--env test|prod is required");
    }
    if (sd_env_parse(sc->env_name, &sc->env) < 0) {
        return sd_cli_usage_error("--env must be test or prod");
    }
    return 0;
}

static int tenant_fetch(struct sd_store_handle *st, const char *client_id, struct sd_tenant *t)
{
    int r = sd_store_tenant_get(st, client_id, t);
    if (r == -ENOENT) {
        return sd_cli_fail("no tenant '%s'", client_id);
    }
    if (r < 0) {
        return sd_cli_fail("cannot read tenant: %s", strerror(-r));
    }
    return 0;
}

static void print_json(json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "null");
    free(text);
    json_decref(v);
}

static int profile_link_rule(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *pos[2];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 2, usage_link_rule);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n < 1) {
        return sd_cli_usage_error("profile link-rule needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    enum sd_link_rule rule = SD_LINK_EMAIL;
    if (n == 2 && sd_link_rule_parse(pos[1], &rule) < 0) {
        return sd_cli_usage_error("RULE must be email, email_and_last_name or none");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    if (n == 2) {
        r = sd_store_profile_link_rule_set(st, pos[0], rule);
    }
    if (r == 0) {
        r = sd_store_profile_link_rule_get(st, pos[0], &rule);
    }
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no tenant '%s'", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot %s the link rule: %s", n == 2 ? "set" : "read", strerror(-r));
    }
    printf("%s\n", sd_link_rule_name(rule));
    return SD_EXIT_OK;
}

static int profile_suppress(int argc, char **argv)
{
    struct scope sc = {.data = SD_DEFAULT_DATA_DIR};
    const char **pos = sd_calloc(CLI_SUPPRESS_MAX + 1, sizeof(*pos));
    struct sd_cli_opt opts[] = {
        {"--data", true, &sc.data, NULL}, {"--env", true, &sc.env_name, NULL}, {0}};
    char **keys = NULL;
    size_t nk = 0;
    struct sd_hub *hub = NULL;
    int rc = SD_EXIT_OK;
    int n = sd_cli_parse(argc, argv, opts, pos, CLI_SUPPRESS_MAX + 1, usage_suppress);
    if (n < 0) {
        rc = n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
        goto out;
    }
    if (n < 2) {
        rc = sd_cli_usage_error("profile suppress needs a CLIENT_ID and at least one EMAIL");
        goto out;
    }
    if ((rc = scope_check(pos[0], &sc)) != 0) {
        goto out;
    }
    keys = sd_calloc((size_t)n - 1, sizeof(*keys));
    for (int i = 1; i < n; i++) {
        keys[nk] = sd_profiles_email_key(pos[i]);
        if (!keys[nk]) {
            rc = sd_cli_usage_error("argument %d is not a valid e-mail address", i + 1);
            goto out;
        }
        nk++;
    }
    int r = sd_hub_open(sc.data, sd_cli_store_location(), &hub);
    if (r < 0) {
        rc = sd_cli_fail("cannot open the store in '%s': %s", sc.data, strerror(-r));
        goto out;
    }
    if ((rc = tenant_fetch(hub->store, pos[0], &sc.tenant)) != 0) {
        goto out;
    }
    struct sd_suppress_result res = {0};
    r = sd_profiles_suppress(hub->writer, sc.tenant.id, sc.env, keys, nk, &res);
    if (r < 0) {
        rc = sd_cli_fail("cannot store the suppressions: %s", strerror(-r));
        goto out;
    }
    printf("added %zu, already suppressed %zu, profiles newly suppressed %zu\n", res.added,
           nk - res.added, res.profiles_suppressed);
out:
    sd_hub_close(hub);
    sd_tenant_release(&sc.tenant);
    sd_profiles_keys_free(keys, nk);
    free(pos);
    return rc;
}

static int profile_show(int argc, char **argv)
{
    struct scope sc = {.data = SD_DEFAULT_DATA_DIR};
    const char *pos[2];
    struct sd_cli_opt opts[] = {
        {"--data", true, &sc.data, NULL}, {"--env", true, &sc.env_name, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 2, usage_show);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 2) {
        return sd_cli_usage_error("profile show needs a CLIENT_ID and a PROFILE_ID");
    }
    int rc = scope_check(pos[0], &sc);
    if (rc) {
        return rc;
    }
    int64_t id = 0;
    if (sd_profiles_parse_id(pos[1], &id) < 0) {
        return sd_cli_usage_error("PROFILE_ID must be a positive integer");
    }
    struct sd_store_handle *st = NULL;
    if ((rc = sd_cli_open_store(sc.data, &st)) != 0) {
        return rc;
    }
    struct sd_profile p = {0};
    rc = tenant_fetch(st, pos[0], &sc.tenant);
    if (rc == 0) {
        int r = sd_store_profile_get(st, sc.tenant.id, sc.env, id, &p);
        if (r == -ENOENT) {
            rc = sd_cli_fail("no profile %lld in %s", (long long)id, sd_env_name(sc.env));
        } else if (r < 0) {
            rc = sd_cli_fail("cannot read the profile: %s", strerror(-r));
        } else {
            print_json(sd_profile_view(&p));
        }
    }
    sd_profile_release(&p);
    sd_tenant_release(&sc.tenant);
    sd_store_close(st);
    return rc;
}

static int profile_find(int argc, char **argv)
{
    struct scope sc = {.data = SD_DEFAULT_DATA_DIR};
    const char *pos[1], *email = NULL, *cid = NULL, *source = NULL;
    struct sd_cli_opt opts[] = {
        {"--data", true, &sc.data, NULL},  {"--env", true, &sc.env_name, NULL},
        {"--email", true, &email, NULL},   {"--customer-id", true, &cid, NULL},
        {"--source", true, &source, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_find);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("profile find needs a CLIENT_ID");
    }
    int rc = scope_check(pos[0], &sc);
    if (rc) {
        return rc;
    }
    if ((email != NULL) == (cid != NULL) || (source && !cid)) {
        return sd_cli_usage_error("give --email, or --customer-id (with --source if wanted)");
    }
    char *key = NULL;
    if (email && !(key = sd_profiles_email_key(email))) {
        return sd_cli_usage_error("--email is not a valid e-mail address");
    }
    struct sd_store_handle *st = NULL;
    if ((rc = sd_cli_open_store(sc.data, &st)) != 0) {
        free(key);
        return rc;
    }
    struct sd_profile *v = NULL;
    size_t nv = 0;
    rc = tenant_fetch(st, pos[0], &sc.tenant);
    if (rc == 0) {
        int r =
            key ? sd_store_profile_find_by_email(st, sc.tenant.id, sc.env, key, &v, &nv)
                : sd_store_profile_find_by_source(st, sc.tenant.id, sc.env, source, cid, &v, &nv);
        if (r < 0) {
            rc = sd_cli_fail("cannot look profiles up: %s", strerror(-r));
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; i < nv; i++) {
                json_array_append_new(arr, sd_profile_view(&v[i]));
            }
            print_json(json_pack("{s:o}", "data", arr));
        }
    }
    sd_profiles_free(v, nv);
    sd_tenant_release(&sc.tenant);
    sd_store_close(st);
    free(key);
    return rc;
}

static int profile_split(int argc, char **argv)
{
    struct scope sc = {.data = SD_DEFAULT_DATA_DIR};
    const char *pos[2], *cid = NULL, *source = NULL;
    struct sd_cli_opt opts[] = {{"--data", true, &sc.data, NULL},
                                {"--env", true, &sc.env_name, NULL},
                                {"--customer-id", true, &cid, NULL},
                                {"--source", true, &source, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 2, usage_split);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 2) {
        return sd_cli_usage_error("profile split needs a CLIENT_ID and a PROFILE_ID");
    }
    int rc = scope_check(pos[0], &sc);
    if (rc) {
        return rc;
    }
    int64_t id = 0;
    if (sd_profiles_parse_id(pos[1], &id) < 0) {
        return sd_cli_usage_error("PROFILE_ID must be a positive integer");
    }
    if (!source || !*source || !cid || !*cid) {
        return sd_cli_usage_error("--source and --customer-id name the record to split out");
    }
    struct sd_hub *hub = NULL;
    int r = sd_hub_open(sc.data, sd_cli_store_location(), &hub);
    if (r < 0) {
        return sd_cli_fail("cannot open the store in '%s': %s", sc.data, strerror(-r));
    }
    rc = tenant_fetch(hub->store, pos[0], &sc.tenant);
    if (rc == 0) {
        int64_t new_id = 0;
        r = sd_profiles_split(hub->writer, sc.tenant.id, sc.env, id, source, cid, &new_id);
        if (r == -ENOENT) {
            rc = sd_cli_fail("profile %lld in %s has no record '%s' from source '%s'",
                             (long long)id, sd_env_name(sc.env), cid, source);
        } else if (r == -EBUSY) {
            rc = sd_cli_fail("that record is the only one of profile %lld", (long long)id);
        } else if (r < 0) {
            rc = sd_cli_fail("cannot split: %s", strerror(-r));
        } else {
            printf("%lld\n", (long long)new_id);
        }
    }
    sd_tenant_release(&sc.tenant);
    sd_hub_close(hub);
    return rc;
}

static int profile_erase(int argc, char **argv)
{
    struct scope sc = {.data = SD_DEFAULT_DATA_DIR};
    const char *pos[2], *source = NULL;
    bool yes = false;
    struct sd_cli_opt opts[] = {{"--data", true, &sc.data, NULL},
                                {"--env", true, &sc.env_name, NULL},
                                {"--source", true, &source, NULL},
                                {"--yes", false, NULL, &yes},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 2, usage_erase);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 2) {
        return sd_cli_usage_error("profile erase needs a CLIENT_ID and a CUSTOMER_ID");
    }
    int rc = scope_check(pos[0], &sc);
    if (rc) {
        return rc;
    }
    if (!yes) {
        return sd_cli_usage_error("erasure cannot be undone; confirm with --yes");
    }
    if (source && !*source) {
        return sd_cli_usage_error("--source must not be empty");
    }
    struct sd_hub *hub = NULL;
    int r = sd_hub_open(sc.data, sd_cli_store_location(), &hub);
    if (r < 0) {
        return sd_cli_fail("cannot open the store in '%s': %s", sc.data, strerror(-r));
    }
    rc = tenant_fetch(hub->store, pos[0], &sc.tenant);
    if (rc == 0) {
        struct sd_erasure_result res = {0};
        r = sd_profiles_erase(hub->writer, sc.tenant.id, sc.env, source, pos[1], &res);
        if (r == -ENOENT) {
            rc = sd_cli_fail("no customer '%s'%s%s in %s", pos[1], source ? " from source " : "",
                             source ? source : "", sd_env_name(sc.env));
        } else if (r == -ENOTUNIQ) {
            rc = sd_cli_fail("customer '%s' exists in several sources; name one with --source",
                             pos[1]);
        } else if (r < 0) {
            rc = sd_cli_fail("cannot erase: %s", strerror(-r));
        } else {
            print_json(json_pack("{s:b, s:I, s:I, s:I}", "erased", 1, "profile_id",
                                 (json_int_t)res.profile_id, "records_erased",
                                 (json_int_t)res.records_erased, "sales_anonymized",
                                 (json_int_t)res.sales_anonymized));
        }
    }
    sd_tenant_release(&sc.tenant);
    sd_hub_close(hub);
    return rc;
}

int sd_cmd_profile(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"link-rule", profile_link_rule},
        {"suppress", profile_suppress},
        {"show", profile_show},
        {"find", profile_find},
        {"split", profile_split},
        {"erase", profile_erase},
        {NULL, NULL},
    };
    return sd_cli_dispatch("profile", subs, usage_profile, argc, argv);
}
