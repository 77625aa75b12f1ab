/* cmd_man.c — `stagedoor man [CMD | --list]`: the manual pages, generated from the command table
 * (main.c) and each command's usage text, so they cannot drift from what the binary accepts.
 *
 * A command's usage text is what `stagedoor CMD --help` prints; it is captured by running the
 * command's function with "--help" in a child process whose stdout is a pipe (the functions
 * print their usage and return at --help; a child keeps anything else they might touch out of
 * this process). The text has one shape everywhere, which the pages rely on:
 *   "usage: stagedoor CMD ..."                 first line: the synopsis
 *   "  CMD SUB ..." / deeper-indented lines   more synopsis (subcommands, wrapped options)
 *   "  --opt[ VALUE]  help"                   an option, continued by deeper-indented lines
 *   anything else                             description prose
 * The environment variables are the ones the program reads (every getenv in src/, which
 * tests/e2e/test_backup.py checks against this table).
 *
 * Output is man(7) troff: `stagedoor man | man -l -` shows it; scripts/package installs
 * `stagedoor man` as stagedoor.1 and `stagedoor man CMD` as stagedoor-CMD.1. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "cli/cli.h"

#define HELP_MAX (64 * 1024)

static const char usage_man[] =
    "usage: stagedoor man [CMD | --list]\n"
    "Prints the manual page stagedoor(1), with every command, its options and the environment,\n"
    "as troff (view it with: stagedoor man | man -l -). With CMD, the page stagedoor-CMD(1) of\n"
    "that command alone.\n"
    "  --list  the names of the commands that have a page, one a line\n";

static const struct {
    const char *name;
    const char *help;
} environment[] = {
    {"STAGEDOOR_STORE",
     "The PostgreSQL store every command opens instead of the SQLite store in --data: a libpq "
     "conninfo or postgresql:// URL. The --store option overrides it."},
    {"STAGEDOOR_EGRESS_ALLOW",
     "Where connectors and push targets may connect besides public addresses: a comma list of "
     "loopback, private, or none (default private). Link-local and cloud metadata addresses "
     "never."},
    {"STAGEDOOR_FILE_ROOTS",
     "Colon-separated folders under which connector path settings (drop folders, key files, "
     "known_hosts) must lie (default /srv:/home)."},
    {"STAGEDOOR_RUN_LEASE_SECONDS",
     "The run lease of a connector on a store several nodes share, 1 to 86400 (default 900); "
     "keep it above the longest connector HTTP timeout."},
    {"TZDIR", "The time zone database for named zones (default /usr/share/zoneinfo)."},
    {"STAGEDOOR_OUTBOX_POLL_MS",
     "The longest an outbox worker sleeps before looking for work it was not woken for, in "
     "milliseconds, 5 to 3600000 (default 1000)."},
    {"STAGEDOOR_ALERT_TIME_SCALE",
     "Tests only: a factor above 0 and at most 1 that shortens the alert sender's retry schedule."},
    {"STAGEDOOR_OUTBOX_TIME_SCALE",
     "Tests only: a factor from 0.000001 to 1 that shortens the outbox's retry schedule."},
    {"STAGEDOOR_WAL_RESTART_FRAMES",
     "Tests only: the WAL size in pages (2 to 49999) at which a reset of the log is tried."},
    {"STAGEDOOR_FAULT",
     "Tests only: injected faults (commit:N, max_pages, csv_slow_chunk and others). Never set in "
     "production."},
};

/* Text as troff: backslashes escaped, '-' as \- (options stay ASCII minus signs), a line that
 * would start with a control character ('.' or '\'') made plain with \&, and UTF-8 as \[uXXXX]
 * so that the page is ASCII (troff without preconv reads it too). */
static void put_text(FILE *f, const char *s, size_t n)
{
    if (n > 0 && (s[0] == '.' || s[0] == '\'')) {
        fputs("\\&", f);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            fputs("\\e", f);
        } else if (c == '-') {
            fputs("\\-", f);
        } else if (c < 0x80) {
            fputc(c, f);
        } else {
            /* a UTF-8 sequence: its length from the lead byte, continuation bytes 10xxxxxx */
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            uint32_t cp = len == 4 ? c & 0x07u : len == 3 ? c & 0x0fu : c & 0x1fu;
            size_t k = 1;
            for (; len > 1 && k < len && i + k < n && ((unsigned char)s[i + k] & 0xc0) == 0x80;
                 k++) {
                cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3fu);
            }
            if (len == 1 || k != len) {
                fputc('?', f); /* not UTF-8: never pass a stray byte to troff */
                continue;
            }
            fprintf(f, "\\[u%04X]", (unsigned)cp);
            i += len - 1;
        }
    }
}

static void put_line(FILE *f, const char *s)
{
    put_text(f, s, strlen(s));
    fputc('\n', f);
}

/* The command's --help text (heap, NUL-terminated), or NULL after printing why. */
static char *capture_help(const struct sd_cli_command *c)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        sd_cli_fail("man: pipe: %s", strerror(errno));
        return NULL;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        sd_cli_fail("man: fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return NULL;
    }
    if (pid == 0) {
        if (dup2(p[1], STDOUT_FILENO) < 0) {
            _exit(SD_EXIT_FAIL);
        }
        char arg[] = "--help";
        char *argv[] = {arg, NULL};
        int code = c->fn(1, argv);
        fflush(stdout);
        _exit(code);
    }
    close(p[1]);
    struct sd_buf b;
    sd_buf_init(&b);
    char chunk[4096];
    bool too_long = false;
    for (;;) {
        ssize_t n = read(p[0], chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if (b.len + (size_t)n > HELP_MAX) {
            too_long = true; /* keep reading so the child is never stuck on a full pipe */
            continue;
        }
        sd_buf_append(&b, chunk, (size_t)n);
    }
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || too_long || b.len == 0 ||
        strncmp(b.data, "usage: ", 7) != 0) {
        sd_buf_release(&b);
        sd_cli_fail("man: '%s --help' did not print a usage text", c->name);
        return NULL;
    }
    return sd_buf_steal(&b);
}

/* One command's usage text as troff: on its own page as SYNOPSIS, DESCRIPTION and OPTIONS
 * sections, within stagedoor(1) as paragraphs under the command's heading. One pass over the
 * lines: the synopsis first, then prose and options in the order the text has them. */
static void put_usage(FILE *f, const char *help, bool own_page)
{
    enum { SYNOPSIS, BODY } part = SYNOPSIS;
    bool prose_open = false, options_open = false, in_option = false;
    size_t option_indent = 0;
    fputs(own_page ? ".SH SYNOPSIS\n.nf\n" : ".PP\n.RS\n.nf\n", f);
    for (const char *l = help; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        const char *next = nl ? nl + 1 : l + len;
        size_t in = 0;
        while (in < len && l[in] == ' ') {
            in++;
        }
        if (in == len) { /* a blank line */
            l = next;
            continue;
        }
        bool option = in > 0 && l[in] == '-';
        if (part == SYNOPSIS) {
            if (l == help) { /* "usage: stagedoor ..." */
                put_text(f, l + 7, len - 7);
                fputc('\n', f);
                l = next;
                continue;
            }
            if (in > 0 && !option) {
                put_text(f, l, len);
                fputc('\n', f);
                l = next;
                continue;
            }
            fputs(own_page ? ".fi\n" : ".fi\n.RE\n", f);
            part = BODY;
        }
        if (option) {
            if (!options_open && own_page) {
                fputs(".SH OPTIONS\n", f);
            }
            options_open = in_option = true;
            option_indent = in;
            /* "  --opt VALUE  help": the term ends at the first run of two spaces */
            const char *term = l + in;
            size_t term_len = len - in;
            const char *gap = memmem(term, term_len, "  ", 2);
            if (gap) {
                term_len = (size_t)(gap - term);
            }
            fputs(".TP\n.B ", f);
            put_text(f, term, term_len);
            fputc('\n', f);
            if (gap) {
                while (*gap == ' ') {
                    gap++;
                }
                put_text(f, gap, (size_t)(l + len - gap));
                fputc('\n', f);
            }
        } else if (in_option && in > option_indent) {
            put_text(f, l + in, len - in); /* an option's help, continued */
            fputc('\n', f);
        } else {
            if (!prose_open) {
                fputs(own_page ? ".SH DESCRIPTION\n" : ".PP\n", f);
                prose_open = true;
            } else if (in_option) {
                fputs(".PP\n", f);
            }
            in_option = false;
            put_text(f, l + in, len - in);
            fputc('\n', f);
        }
        l = next;
    }
    if (part == SYNOPSIS) {
        fputs(own_page ? ".fi\n" : ".fi\n.RE\n", f);
    }
}

static void put_header(FILE *f, const char *page)
{
    fprintf(f, ".TH %s 1 \"\" \"stagedoor %s\" \"stagedoor manual\"\n.nh\n", page,
            sd_cli_version());
}

static const char *types_note(const struct sd_cli_command *c)
{
    return c->fn == sd_cmd_connector ? sd_cli_connector_types() : NULL;
}

static int page_main(const struct sd_cli_command *commands, size_t n)
{
    FILE *f = stdout;
    put_header(f, "STAGEDOOR");
    fputs(".SH NAME\n"
          "stagedoor \\- data hub for live entertainment: events, customers and sales\n"
          ".SH SYNOPSIS\n"
          ".B stagedoor\n.I command\n.RI [ options ]\n.br\n"
          ".B stagedoor \\-\\-version\n.br\n.B stagedoor \\-\\-help\n"
          ".SH DESCRIPTION\n"
          "stagedoor receives events, customers and sales from ticketing systems over a webhook, "
          "CSV files, feeds and REST pulls, checks them against one data model, stores them "
          "durably (SQLite in a data directory, or PostgreSQL) and serves them back over an "
          "HTTP API, with change cursors, audiences and pushes to marketing tools.\n"
          ".PP\n"
          "Every command takes \\-\\-help. Each command is described below and on its own page, "
          "stagedoor\\-\\fIcommand\\fR(1).\n"
          ".SH COMMON OPTIONS\n"
          ".TP\n.BI \\-\\-data \" DIR\"\n"
          "The data directory (default ./stagedoor\\-data): the SQLite store (stagedoor.db, "
          "control.db) and local folders. Only serve and demo create it.\n"
          ".TP\n.BI \\-\\-store \" LOCATION\"\n"
          "A PostgreSQL store (libpq conninfo or postgresql:// URL) instead of the SQLite store "
          "in \\-\\-data; also STAGEDOOR_STORE.\n"
          ".TP\n.B \\-\\-help\nThe command's usage text.\n"
          ".SH COMMANDS\n",
          f);
    for (size_t i = 0; i < n; i++) {
        char *help = capture_help(&commands[i]);
        if (!help) {
            return SD_EXIT_FAIL;
        }
        fputs(".SS ", f);
        put_line(f, commands[i].name);
        put_text(f, commands[i].help, strlen(commands[i].help));
        const char *types = types_note(&commands[i]);
        if (types) {
            fputc(' ', f);
            put_text(f, types, strlen(types));
        }
        fputs(".\n", f);
        put_usage(f, help, false);
        free(help);
    }
    fputs(".SH ENVIRONMENT\n", f);
    for (size_t i = 0; i < sizeof(environment) / sizeof(environment[0]); i++) {
        fputs(".TP\n.B ", f);
        put_line(f, environment[i].name);
        put_line(f, environment[i].help);
    }
    fputs(".SH EXIT STATUS\n"
          "0 success, 1 failure (the reason on stderr), 2 misuse (a one\\-line reason on "
          "stderr).\n"
          ".SH FILES\n"
          ".TP\n.I DATA/stagedoor.db\nThe records, connectors, audiences and outbox "
          "(SQLite, WAL mode).\n"
          ".TP\n.I DATA/control.db\nTenants, API key hashes and limits.\n"
          ".TP\n.I /etc/default/stagedoor\nThe packaged service's settings (listen address, "
          "STAGEDOOR_STORE).\n"
          ".SH SEE ALSO\n",
          f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, ".BR stagedoor\\-%s (1)%s\n", commands[i].name, i + 1 < n ? "," : "");
    }
    return SD_EXIT_OK;
}

static int page_command(const struct sd_cli_command *c)
{
    char *help = capture_help(c);
    if (!help) {
        return SD_EXIT_FAIL;
    }
    FILE *f = stdout;
    char upper[64];
    size_t k = 0;
    for (const char *p = c->name; *p && k + 1 < sizeof(upper); p++) {
        upper[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    }
    upper[k] = '\0';
    fprintf(f, ".TH STAGEDOOR\\-%s 1 \"\" \"stagedoor %s\" \"stagedoor manual\"\n.nh\n", upper,
            sd_cli_version());
    fputs(".SH NAME\nstagedoor\\-", f);
    put_text(f, c->name, strlen(c->name));
    fputs(" \\- ", f);
    put_text(f, c->help, strlen(c->help));
    const char *types = types_note(c);
    if (types) {
        fputc(' ', f);
        put_text(f, types, strlen(types));
    }
    fputc('\n', f);
    put_usage(f, help, true);
    free(help);
    fputs(".SH SEE ALSO\n.BR stagedoor (1)\n", f);
    return SD_EXIT_OK;
}

int sd_cli_man(const struct sd_cli_command *commands, size_t n, int argc, char **argv)
{
    bool list = false;
    struct sd_cli_opt opts[] = {{"--list", false, NULL, &list}, {0}};
    const char *pos[1];
    int np = sd_cli_parse(argc, argv, opts, pos, 1, usage_man);
    if (np < 0) {
        return np == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (list) {
        if (np != 0) {
            return sd_cli_usage_error("man --list takes no command");
        }
        for (size_t i = 0; i < n; i++) {
            printf("%s\n", commands[i].name);
        }
        return SD_EXIT_OK;
    }
    if (np == 0) {
        return page_main(commands, n);
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(commands[i].name, pos[0]) == 0) {
            return page_command(&commands[i]);
        }
    }
    return sd_cli_usage_error("man: unknown command '%s' (stagedoor man --list names them)",
                              pos[0]);
}
