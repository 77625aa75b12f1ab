/* cli.h — the command-line interface: the command table's entries and the one option parser
 * every subcommand uses. Exit codes: 0 ok, 1 failed, 2 misuse (with a one-line reason). */
#ifndef SD_CLI_H
#define SD_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_EXIT_OK 0
#define SD_EXIT_FAIL 1
#define SD_EXIT_USAGE 2

struct sd_cli_opt {
    const char *name; /* "--data" */
    bool takes_value;
    const char **value; /* for options with a value */
    bool *flag;         /* for switches */
};

/* Parse argv (after the subcommand words). Positionals go to pos (at most max_pos).
 * Returns -1 after printing usage for --help (exit 0), -2 after printing a one-line reason to
 * stderr (exit 2), else the number of positionals. */
int sd_cli_parse(int argc, char **argv, const struct sd_cli_opt *opts, const char **pos,
                 size_t max_pos, const char *usage);
/* A command's subcommands ("tenant create", "key revoke", ...), terminated by {NULL}. */
struct sd_cli_subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
};
/* Run argv[0] from the table with the rest of argv; --help prints usage; anything else is a
 * usage error naming the choices. */
int sd_cli_dispatch(const char *command, const struct sd_cli_subcommand *subs, const char *usage,
                    int argc, char **argv);

struct sd_store_handle;
/* Open the store in data for a CLI command: 0, or SD_EXIT_FAIL after printing why. */
int sd_cli_open_store(const char *data, struct sd_store_handle **ret);
/* Where the store is: the --store option any command takes, else $STAGEDOOR_STORE, else NULL
 * (the SQLite store in --data). A value is a PostgreSQL conninfo or postgresql:// URL. */
const char *sd_cli_store_location(void);

/* Print "stagedoor: <msg>" to stderr and return SD_EXIT_USAGE. */
int sd_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "stagedoor: <msg>" to stderr and return SD_EXIT_FAIL. */
int sd_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage error for a CLIENT_ID that breaks the rules; returns SD_EXIT_USAGE. */
int sd_cli_bad_client_id(const char *client_id);
/* Positive integer option value, or -1 with a usage error printed. */
long long sd_cli_positive(const char *name, const char *v, long long max);

struct sd_issues;
/* Print each issue as "stagedoor: POINTER: message" to stderr; returns SD_EXIT_USAGE. */
int sd_cli_print_issues(const struct sd_issues *errors);
/* Parse "COMMAND SUBCOMMAND ID [--data DIR]": -1 with *id set to go on, else the exit code
 * (after --help, or the usage error "COMMAND SUBCOMMAND needs a ID_NAME"). */
int sd_cli_parse_id(int argc, char **argv, const char *usage, const char *command,
                    const char *subcommand, const char *id_name, const char **data,
                    const char **id);

/* "YYYY-MM-DDTHH:MM:SSZ", or "-" for 0. */
void sd_cli_format_time(int64_t usec, char out[32]);

#define SD_DEFAULT_DATA_DIR "./stagedoor-data"

int sd_cmd_serve(int argc, char **argv);
int sd_cmd_tenant(int argc, char **argv);
int sd_cmd_key(int argc, char **argv);
int sd_cmd_demo(int argc, char **argv);
int sd_cmd_connector(int argc, char **argv);
/* The source connector types of the registry, "csv_drop, sftp_pull, …" (static text). */
const char *sd_cli_connector_types(void);
int sd_cmd_profile(int argc, char **argv);
/* CLI-PROFILES */
int sd_cmd_target(int argc, char **argv);
int sd_cmd_delivery(int argc, char **argv);
/* CLI-OUTBOX */
/* Raw-first vendor webhooks (cmd_quarantine.c): the quarantine command, `connector
 * rotate-token`, printing a door once, and making the door of a connector just added (exit
 * code; nothing for a type without a door). */
int sd_cmd_quarantine(int argc, char **argv);
/* `stagedoor migrate` (cmd_migrate.c). */
int sd_cmd_migrate(int argc, char **argv);
/* `stagedoor backup` (cmd_backup.c), `stagedoor version` and `--version` (cmd_version.c),
 * `stagedoor man` (cmd_man.c). */
int sd_cmd_backup(int argc, char **argv);
int sd_cmd_version(int argc, char **argv);
const char *sd_cli_version(void); /* "X.Y.Z" */
/* One entry of main.c's command table: `stagedoor NAME` runs fn with the words after NAME. */
struct sd_cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};
/* `stagedoor man [CMD|--list]` over the command table (each command's usage text is its
 * --help output). */
int sd_cli_man(const struct sd_cli_command *commands, size_t n, int argc, char **argv);
int sd_cmd_connector_rotate_token(int argc, char **argv);
void sd_cmd_print_door(const char *connector_id, const char *token);
int sd_cmd_connector_open_door(const char *data, const char *connector_id);

#endif
