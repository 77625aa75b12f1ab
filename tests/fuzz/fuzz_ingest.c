/* fuzz_ingest.c — fuzz target for the ingest body: JSON text → jansson → sd_validate_ingest,
 * under the hub's contract and with SD_VALIDATE_EMAIL_OPTIONAL (a superset).
 * Besides "no crash, no leak" (ASan/LSan) it checks the layer's promises and aborts when one
 * breaks: success means no errors and at least one record, each doc is a JSON object; failure
 * leaves the batch untouched; every issue encodes to JSON (valid UTF-8 pointers/messages).
 * \u0000 is allowed in the parse so strings with NUL reach the validators. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/model.h"

static void check_issues(const struct sd_issues *l)
{
    json_t *arr = sd_issues_to_json(l);
    if (json_array_size(arr) != l->n || l->n > SD_MAX_ISSUES || l->total < l->n) {
        abort();
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    if (!s) {
        abort();
    }
    free(s);
    json_decref(arr);
}

static void check_doc(const char *doc)
{
    json_t *v = json_loads(doc, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(v)) {
        abort();
    }
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!body) {
        return 0;
    }
    /* As the API does: prices sent as decimal literals are taken from the raw text. */
    sd_json_exact_prices(body, (const char *)data, size);
    /* The hub's contract, then a vendor's whose customers may lack an e-mail: the second
     * admits everything the first does (a superset). */
    int strict = -1;
    for (unsigned flags = 0; flags <= SD_VALIDATE_EMAIL_OPTIONAL;
         flags += SD_VALIDATE_EMAIL_OPTIONAL) {
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_batch b = {0};
        int rc = sd_validate_ingest_flags(body, flags, &b, &errors, &warnings);
        if (flags == 0) {
            strict = rc;
        } else if (strict == 0 && rc != 0) {
            abort();
        }
        if (rc == 0) {
            if (errors.total != 0 || sd_batch_count(&b) == 0) {
                abort();
            }
            for (size_t i = 0; i < b.n_events; i++) {
                check_doc(b.events[i].doc);
            }
            for (size_t i = 0; i < b.n_customers; i++) {
                check_doc(b.customers[i].doc);
                if (!flags && !b.customers[i].email_key) {
                    abort(); /* the hub's contract: every customer has an e-mail */
                }
            }
            for (size_t i = 0; i < b.n_sales; i++) {
                check_doc(b.sales[i].doc);
            }
        } else if (errors.total == 0 || sd_batch_count(&b) != 0 || b.events || b.sales) {
            abort();
        }
        check_issues(&errors);
        check_issues(&warnings);
        sd_batch_release(&b);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
    }
    json_decref(body);
    return 0;
}
