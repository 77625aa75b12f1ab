/* args.c — the option parser shared by all subcommands: `--name value`, `--name=value`,
 * switches, positionals, `--help`. Unknown options and missing values are usage errors with a
 * one-line reason, never a guess. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"
#include "cli/cli.h"
#include "http/egress.h"
#include "model/model.h"
#include "store/store.h"

__attribute__((format(printf, 2, 0))) static int vmsg(int code, const char *fmt, va_list ap)
{
    fputs("stagedoor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    return code;
}

int sd_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vmsg(SD_EXIT_USAGE, fmt, ap);
    va_end(ap);
    return r;
}

int sd_cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vmsg(SD_EXIT_FAIL, fmt, ap);
    va_end(ap);
    return r;
}

int sd_cli_bad_client_id(const char *client_id)
{
    return sd_cli_usage_error("invalid CLIENT_ID '%s': use 1 to 64 of A-Z a-z 0-9 _ -", client_id);
}

long long sd_cli_positive(const char *name, const char *v, long long max)
{
    int64_t n = 0;
    if (!v || sd_parse_int64(v, false, &n) < 0 || n < 1 || n > max) {
        sd_cli_usage_error("%s must be an integer from 1 to %lld (got '%s')", name, max,
                           v ? v : "");
        return -1;
    }
    return n;
}

static const char *store_option; /* --store, set by sd_cli_parse */

const char *sd_cli_store_location(void)
{
    if (store_option) {
        return store_option;
    }
    const char *env = getenv("STAGEDOOR_STORE");
    return env && *env ? env : NULL;
}

int sd_cli_parse(int argc, char **argv, const struct sd_cli_opt *opts, const char **pos,
                 size_t max_pos, const char *usage)
{
    size_t n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        if (strncmp(a, "--", 2) == 0) {
            const char *eq = strchr(a, '=');
            size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            const struct sd_cli_opt *o = opts;
            for (; o && o->name; o++) {
                if (strlen(o->name) == nl && strncmp(o->name, a, nl) == 0) {
                    break;
                }
            }
            if ((!o || !o->name) && nl == 7 && strncmp(a, "--store", 7) == 0) {
                /* Every command takes --store (where the store is), like --data. */
                const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!v || !*v) {
                    sd_cli_usage_error("option '--store' needs a value");
                    return -2;
                }
                store_option = v;
                continue;
            }
            if (!o || !o->name) {
                sd_cli_usage_error("unknown option '%.*s' (see --help)", (int)nl, a);
                return -2;
            }
            if (o->takes_value) {
                const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!v) {
                    sd_cli_usage_error("option '%s' needs a value", o->name);
                    return -2;
                }
                *o->value = v;
            } else {
                if (eq) {
                    sd_cli_usage_error("option '%s' takes no value", o->name);
                    return -2;
                }
                *o->flag = true;
            }
            continue;
        }
        if (n_pos >= max_pos) {
            sd_cli_usage_error("unexpected argument '%s' (see --help)", a);
            return -2;
        }
        pos[n_pos++] = a;
    }
    return (int)n_pos;
}

void sd_cli_format_time(int64_t usec, char out[32])
{
    if (usec == 0) {
        snprintf(out, 32, "-");
        return;
    }
    time_t t = (time_t)(usec / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int sd_cli_dispatch(const char *command, const struct sd_cli_subcommand *subs, const char *usage,
                    int argc, char **argv)
{
    if (argc < 1) {
        fputs(usage, stderr);
        return SD_EXIT_USAGE;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(usage, stdout);
        return SD_EXIT_OK;
    }
    char choices[128] = "";
    size_t used = 0;
    for (const struct sd_cli_subcommand *c = subs; c->name; c++) {
        if (strcmp(argv[0], c->name) == 0) {
            return c->fn(argc - 1, argv + 1);
        }
        int w = snprintf(choices + used, sizeof(choices) - used, "%s%s", used ? ", " : "", c->name);
        if (w > 0 && (size_t)w < sizeof(choices) - used) {
            used += (size_t)w;
        }
    }
    return sd_cli_usage_error("unknown %s command '%s' (%s)", command, argv[0], choices);
}

int sd_cli_open_store(const char *data, struct sd_store_handle **ret)
{
    const char *store = sd_cli_store_location();
    if (store) {
        /* PostgreSQL: the location is the database; the libpq message was logged. */
        int r = sd_store_open("postgresql", store, ret);
        if (r < 0) {
            return sd_cli_fail("cannot open the PostgreSQL store: %s", strerror(-r));
        }
        sd_egress_set_data_dir(data);
        return 0;
    }
    /* Only `serve` and `demo` create a data directory (they do not come here): a mistyped
     * --data must not turn into an empty store and a listing that says "no tenants". */
    struct stat sb;
    if (stat(data, &sb) < 0) {
        return sd_cli_fail("data directory '%s' does not exist (%s); 'stagedoor serve' or "
                           "'stagedoor demo' creates one",
                           data, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        return sd_cli_fail("data directory '%s' is not a directory", data);
    }
    int r = sd_store_open("sqlite", data, ret);
    if (r < 0) {
        return sd_cli_fail("cannot open the store in '%s': %s", data, strerror(-r));
    }
    sd_egress_set_data_dir(data); /* path settings may never name it */
    return 0;
}

int sd_cli_print_issues(const struct sd_issues *errors)
{
    for (size_t i = 0; i < errors->n; i++) {
        fprintf(stderr, "stagedoor: %s: %s\n",
                errors->items[i].pointer[0] ? errors->items[i].pointer : "(body)",
                errors->items[i].message);
    }
    return SD_EXIT_USAGE;
}

int sd_cli_parse_id(int argc, char **argv, const char *usage, const char *command,
                    const char *subcommand, const char *id_name, const char **data, const char **id)
{
    const char *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("%s %s needs a %s", command, subcommand, id_name);
    }
    *id = pos[0];
    return -1;
}
