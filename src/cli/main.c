/* main.c — `stagedoor <command>`: the command table. Each command lives in cli/cmd_<name>.c. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static int cmd_man(int argc, char **argv);

static const struct sd_cli_command commands[] = {
    {"serve", sd_cmd_serve, "run the hub (HTTP API)"},
    {"tenant", sd_cmd_tenant, "create and list tenants, set their rate limits"},
    {"key", sd_cmd_key, "create, list and revoke API keys"},
    {"demo", sd_cmd_demo, "create a demo tenant with a season of data, then serve"},
    {"connector", sd_cmd_connector, "configure and run connectors; types:"},
    {"profile", sd_cmd_profile, "link rules, suppressions, show/find/split/erase profiles"},
    /* COMMANDS-PROFILES */
    {"target", sd_cmd_target, "configure audience push targets (URL, app key, rate limit)"},
    {"delivery", sd_cmd_delivery, "list, show and replay audience push deliveries"},
    /* COMMANDS-OUTBOX */
    {"quarantine", sd_cmd_quarantine, "list and replay vendor webhook objects that did not map"},
    {"migrate", sd_cmd_migrate, "move a venue's SQLite store into an empty PostgreSQL database"},
    {"backup", sd_cmd_backup, "copy the SQLite store, online and verified, into a new directory"},
    {"version", sd_cmd_version, "print the version, git commit and library versions"},
    {"man", cmd_man, "print the manual page of stagedoor or of one command (troff)"},
};

/* The manual pages are generated from this table, so `man` sees it. */
static int cmd_man(int argc, char **argv)
{
    return sd_cli_man(commands, sizeof(commands) / sizeof(commands[0]), argc, argv);
}

static void usage(FILE *f)
{
    fputs("usage: stagedoor <command> [options]   (stagedoor <command> --help for details)\n\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(f, "  %-8s %s", commands[i].name, commands[i].help);
        if (commands[i].fn == sd_cmd_connector) { /* the types come from the registry */
            fprintf(f, " %s", sd_cli_connector_types());
        }
        fputc('\n', f);
    }
}

int main(int argc, char **argv)
{
    /* The data directory holds personal data and key hashes: files are the owner's only. */
    umask(077);
    if (argc < 2) {
        usage(stderr);
        return SD_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0) {
        return sd_cmd_version(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return SD_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].fn(argc - 2, argv + 2);
        }
    }
    fprintf(stderr, "stagedoor: unknown command '%s' (see stagedoor --help)\n", argv[1]);
    return SD_EXIT_USAGE;
}
