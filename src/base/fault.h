/* fault.h — fault injection for tests of failure paths that real hardware rarely shows (a
 * failed fsync, a crash at one exact point). STAGEDOOR_FAULT="POINT:N" makes the Nth and every
 * later call of sd_fault_hit(POINT) return true; "POINT" alone means "POINT:1". Points:
 * "commit" (core/writer.c), "outbox_after_send", "outbox_after_claim" (core/outbox.c),
 * "sftp_before_move" (connectors/sftp_pull: exits after a file's import, before its remote move),
 * "inbound_after_commit" (api/inbound.c: exits after a vendor payload's commit, before its 200),
 * "csv_publish_exit" (connectors/csv_drop: exits right after a publish's write job committed),
 * "csv_after_check" (connectors/csv_drop: a checked sales file waits for DATA/connectors/ID/
 * fault-csv-go before its publish), "csv_slow_chunk" (connectors/csv_drop: every 1,000-row chunk
 * of an import's write job takes 80 ms more, holding the write lock),
 * "max_pages" (the SQLite store caps its size at the page count in DATA/fault-max-pages before
 * each write transaction: writes then fail with SQLITE_FULL like on a full disk; no file, no
 * cap). Unset (always, in production)
 * it costs one load. */
#ifndef SD_BASE_FAULT_H
#define SD_BASE_FAULT_H

#include <stdbool.h>

bool sd_fault_hit(const char *point);

#endif
