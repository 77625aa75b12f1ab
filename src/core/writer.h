/* writer.h — the single writer thread and its group commit.
 *
 * Every change to records goes through here. Callers submit a job; the writer takes every
 * job waiting, opens one transaction, runs each job inside its own savepoint (so one request's
 * 409 does not undo another's work), commits once (one fsync for the whole group) and only then
 * calls each job's `done`. A failed commit marks the writer broken: the jobs of that group and
 * every later submission get -EIO until restart — a failed fsync is never retried. A failed
 * begin (nothing written yet, e.g. the write lock held too long by another process) fails only
 * that group. Running out of space (-ENOSPC from a job or the commit: SQLite rolled the
 * transaction back cleanly) is not broken either: the whole group gets -ENOSPC, nothing of it
 * is kept, sd_writer_disk_full() says so until a later group commits.
 *
 * Thread rules: submit from any thread; `run` executes on the writer thread and is the only
 * code allowed to use the store's write path; `done` executes on the writer thread too and must
 * be quick (resume a connection, signal a condition). Job memory belongs to the caller and must
 * stay valid until `done` has been called. */
#ifndef SD_CORE_WRITER_H
#define SD_CORE_WRITER_H

#include <stdbool.h>

#include "store/store.h"

/* run returns: 0 keep (savepoint released), 1 undo (savepoint rolled back, job still ok),
 * negative errno: undo and fail the job. */
struct sd_write_job;
typedef int (*sd_write_run_fn)(struct sd_store_handle *st, struct sd_write_job *job);
/* result: 0 committed (or undone as asked), negative errno on failure (-EIO store broken,
 * -ENOSPC out of space: nothing kept, retry later). */
typedef void (*sd_write_done_fn)(struct sd_write_job *job, int result);

/* Embed in the caller's own struct; `arg` is free for the caller. `after_undo` (optional) runs
 * when `run` returned 1, after its savepoint was rolled back, still inside the group's
 * transaction: to record something about a refused request (e.g. its idempotent answer). */
/* `alone`: a long job (a loader's, e.g. one write job of a file being stored) runs in a group
 * of its own: the jobs queued before it commit first in their group, the ones queued after it
 * go into the next group, so that no request's answer waits for a long job besides the one in
 * progress. sd_writer_run_sync sets it. */
struct sd_write_job {
    sd_write_run_fn run;
    sd_write_done_fn done;
    sd_write_run_fn after_undo;
    void *arg;
    bool alone;
    int run_result;            /* writer-private */
    struct sd_write_job *next; /* writer-private */
};

struct sd_writer;

int sd_writer_new(struct sd_store_handle *st, struct sd_writer **ret);
/* Finishes every queued job, then stops the thread. NULL is fine. */
void sd_writer_free(struct sd_writer *w);
/* Queue a job. Returns 0, or -EIO if the writer is broken / -ESHUTDOWN while stopping (then
 * `done` is never called). */
int sd_writer_submit(struct sd_writer *w, struct sd_write_job *job);
/* Submit and wait: runs `run` with a job whose arg is `arg`, alone in its group; returns run's
 * result if it failed, else the commit result. For the CLI and loaders, not for request
 * handlers. */
int sd_writer_run_sync(struct sd_writer *w, sd_write_run_fn run, void *arg);
bool sd_writer_broken(struct sd_writer *w);
/* True when jobs are queued behind the group in progress, or a settings write (connectors,
 * segments: the store's write_waiting) waits for the write lock: a long job called on the
 * writer thread (a file being stored) ends early for them. Any thread; a hint, not a lock. */
bool sd_writer_others_waiting(struct sd_writer *w);
/* True while the last group failed for lack of space (cleared by the next commit; an idle
 * writer probes for space every 5 s meanwhile). */
bool sd_writer_disk_full(struct sd_writer *w);

/* The group hook: called on the writer thread once at the end of every group, after its COMMIT
 * returned (committed true: its work is durable and visible to readers) or after it failed or
 * was rolled back (committed false: nothing of it is kept). It runs before the jobs' `done`
 * and must be quick and must not submit (the outbox wakes its workers here, so an item a change
 * queued is claimed as soon as it is committed, never before). One hook per writer; fn NULL
 * removes it. Set from any thread: when sd_writer_set_group_hook returns, the previous hook
 * is not running and is never called again. */
typedef void (*sd_writer_group_fn)(void *arg, bool committed);
void sd_writer_set_group_hook(struct sd_writer *w, sd_writer_group_fn fn, void *arg);

#endif
