/* fuzz_tzif.c — fuzz target for the TZif reader: bytes → sd_tz_parse. Besides "no crash, no
 * leak, no hang" it checks the promises and aborts when one breaks: failure is -EBADMSG with a
 * non-empty message and *ret untouched; a parsed zone answers every instant of a spread from
 * the far past to the far future, and the local time it shows there converts back to an
 * instant that shows the same local time (never "refused" or "skipped": it did happen). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SD_TZ_FILE_MAX) {
        return 0;
    }
    struct sd_tz *tz = (struct sd_tz *)(uintptr_t)1;
    char err[200] = "";
    int r = sd_tz_parse(data, size, "fuzz", &tz, err, sizeof(err));
    if (r < 0) {
        if (r != -EBADMSG || err[0] == '\0' || tz != (struct sd_tz *)(uintptr_t)1) {
            abort();
        }
        return 0;
    }
    /* Instants near the ends of the range are left out: their local time may lie beyond it. */
    static const int64_t probes[] = {-SD_TZ_SECONDS_MAX + 200000,
                                     -4000000000LL,
                                     -1,
                                     0,
                                     1,
                                     1774746000, /* Berlin's spring change of 2026 */
                                     1792890000, /* and its autumn change */
                                     4102444800LL,
                                     90000000000LL,
                                     SD_TZ_SECONDS_MAX - 200000};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        for (int64_t d = -7200; d <= 7200; d += 1800) {
            int64_t u = probes[i] + d, local, back, again;
            if (sd_tz_utc_to_local(tz, u, &local) != 0) {
                abort();
            }
            int k = sd_tz_local_to_utc(tz, local, SD_TZ_EARLIER, &back);
            if (k != SD_TZ_UNIQUE && k != SD_TZ_REPEATED) {
                abort();
            }
            if (sd_tz_utc_to_local(tz, back, &again) != 0 || again != local ||
                (k == SD_TZ_UNIQUE && back != u) || back > u) {
                abort();
            }
        }
    }
    sd_tz_free(tz);
    return 0;
}
