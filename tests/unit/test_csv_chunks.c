/* test_csv_chunks.c — the CSV import's reading thread (connectors/csv_drop/csv_chunks.c):
 * chunk sizes and order, the line of every record, rows refused on the way (encoding, field
 * count, mapping, validation) as errors.csv rows, positions, and stopping early. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "connectors/csv_drop/csv_chunks.h"
#include "formats/csv_reader.h"
#include "mapping/mapping.h"

#define HEADER "invoice_number,event_id,customer_id,purchase_datetime,ticket_category,quantity," \
               "sales_price,currency\n"

static char *sale_row(int i, const char *category)
{
    char *s = NULL;
    if (asprintf(&s, "INV-%d,E1,ANON,2025-04-15T11:08:42Z,%s,1,10.00,EUR\n", i, category) < 0) {
        abort();
    }
    return s;
}

struct fixture {
    char *text;
    struct sd_csv_reader *rd;
    struct sd_mapping *m;
    char **header;
    size_t nh;
};

/* Open text, read its header like the importer does. */
static void open_text(struct fixture *f, const char *text)
{
    f->text = strdup(text);
    assert_int_equal(sd_csv_open_mem(f->text, strlen(f->text), NULL, &f->rd), 0);
    struct sd_csv_row row;
    assert_int_equal(sd_csv_next(f->rd, &row), 1);
    f->nh = row.n;
    f->header = calloc(row.n + 1, sizeof(char *));
    for (size_t i = 0; i < row.n; i++) {
        f->header[i] = strdup(row.fields[i]);
    }
    assert_int_equal(sd_mapping_new(NULL, &f->m, NULL), 0);
}

static void close_text(struct fixture *f)
{
    sd_csv_free(f->rd);
    sd_mapping_free(f->m);
    for (size_t i = 0; i < f->nh; i++) {
        free(f->header[i]);
    }
    free(f->header);
    free(f->text);
}

static struct sd_csv_chunks *start(struct fixture *f, size_t chunk_rows, bool validate)
{
    struct sd_csv_chunks_options o = {.reader = f->rd,
                                      .kind = SD_KIND_SALE,
                                      .mapping = f->m,
                                      .header = (const char *const *)f->header,
                                      .n_header = f->nh,
                                      .chunk_rows = chunk_rows,
                                      .validate = validate};
    struct sd_csv_chunks *cs = NULL;
    assert_int_equal(sd_csv_chunks_start(&o, &cs), 0);
    return cs;
}

/* 25 good rows in chunks of 10: 10, 10, 5 (the last with eof), lines 2..26 in order. */
static void test_chunks_in_order(void **state)
{
    (void)state;
    char *text = strdup(HEADER);
    for (int i = 0; i < 25; i++) {
        char *r = sale_row(i, "regular");
        text = realloc(text, strlen(text) + strlen(r) + 1);
        strcat(text, r);
        free(r);
    }
    struct fixture f = {0};
    open_text(&f, text);
    struct sd_csv_chunks *cs = start(&f, 10, true);
    size_t want[] = {10, 10, 5};
    uint64_t line = 2;
    for (int k = 0; k < 3; k++) {
        struct sd_csv_chunk *ch = sd_csv_chunks_next(cs);
        assert_non_null(ch);
        assert_int_equal(ch->n, want[k]);
        assert_true(ch->validated);
        assert_null(ch->body); /* freed once validated */
        assert_int_equal(ch->batch.n_sales, want[k]);
        for (size_t i = 0; i < ch->n; i++) {
            assert_int_equal(ch->lines[i], line++);
            assert_int_equal(ch->batch.sales[i].index, i);
        }
        assert_int_equal(ch->rejected, 0);
        assert_int_equal(ch->errs_len, 0);
        assert_int_equal(ch->rows_end, (uint64_t)(k == 2 ? 25 : 10 * (k + 1)));
        assert_int_equal(ch->eof, k == 2);
        if (k == 2) {
            assert_int_equal(ch->offset_end, strlen(text));
        }
        sd_csv_chunks_done(cs, ch);
    }
    assert_null(sd_csv_chunks_next(cs));
    sd_csv_chunks_stop(cs);
    close_text(&f);
    free(text);
}

/* Bad rows of every kind stay out of the records and come back as errors.csv rows. */
static void test_refused_rows(void **state)
{
    (void)state;
    const char *text = HEADER
        "A-1,E1,ANON,2025-04-15T11:08:42Z,regular,1,10.00,EUR\n"   /* line 2: good */
        "A-2,E1,ANON,2025-04-15T11:08:42Z,regular,1\n"             /* 3: too few fields */
        "A-3,E1,ANON,2025-04-15T11:08:42Z,Stehplatz,1,10.00,EUR\n" /* 4: category */
        "A-4,E1,ANON,\"2025-04-15T11:08:42Z,regular,1,10.00,EUR\n" /* 5: quoting, to the end */
        ;
    struct fixture f = {0};
    open_text(&f, text);
    struct sd_csv_chunks *cs = start(&f, 100, true);
    struct sd_csv_chunk *ch = sd_csv_chunks_next(cs);
    assert_non_null(ch);
    assert_true(ch->eof);
    assert_int_equal(ch->n, 1);
    assert_int_equal(ch->lines[0], 2);
    assert_string_equal(ch->batch.sales[0].invoice_number, "A-1");
    assert_true(ch->rejected >= 2);
    char *errs = strndup(ch->errs, ch->errs_len);
    assert_non_null(strstr(errs, "3,\"\",\"the row has 6 fields, the header has 8\""));
    assert_non_null(strstr(errs, "4,\"ticket_category\",\"must be one of"));
    free(errs);
    sd_csv_chunks_done(cs, ch);
    assert_null(sd_csv_chunks_next(cs));
    sd_csv_chunks_stop(cs);
    close_text(&f);
}

/* Error rows name the file's own columns: the one the mapping took the field from. */
static void test_error_columns_are_the_files(void **state)
{
    (void)state;
    const char *text = "invoice_number,EventNo,customer_id,purchase_datetime,Kategorie,quantity,"
                       "sales_price,currency\n"
                       "K-1,E1,ANON,2025-04-15T11:08:42Z,Stehplatz,1,10.00,EUR\n"
                       "K-2,E1,ANON,2025-04-15T11:08:42Z,VIP,1,10.00,EURO\n";
    struct fixture f = {0};
    open_text(&f, text);
    sd_mapping_free(f.m);
    json_t *spec = json_loads("{\"fields\":{\"EventNo\":\"event_id\","
                              "\"Kategorie\":\"ticket_category\"}}",
                              0, NULL);
    assert_int_equal(sd_mapping_new(spec, &f.m, NULL), 0);
    json_decref(spec);
    struct sd_csv_chunks *cs = start(&f, 10, true);
    struct sd_csv_chunk *ch = sd_csv_chunks_next(cs);
    assert_non_null(ch);
    assert_int_equal(ch->n, 0);
    assert_int_equal(ch->rejected, 2);
    char *errs = strndup(ch->errs, ch->errs_len);
    assert_non_null(strstr(errs, "2,\"Kategorie\",\"must be one of"));
    assert_non_null(strstr(errs, "3,\"currency\","));
    free(errs);
    /* the store's issues are translated the same way */
    struct sd_issues iss;
    sd_issues_init(&iss, 10);
    sd_issues_add(&iss, "/sales/0/event_id", "event 'E1' does not exist in test");
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    uint64_t lines[1] = {7};
    assert_int_equal(sd_csv_record_issues(mf, cs, lines, 1, &iss, NULL), 1);
    fclose(mf);
    assert_string_equal(buf, "7,\"EventNo\",\"event 'E1' does not exist in test\"\n");
    free(buf);
    sd_issues_release(&iss);
    sd_csv_chunks_done(cs, ch);
    sd_csv_chunks_stop(cs);
    close_text(&f);
}

/* Without validation the mapped records stay in body and nothing is in batch. */
static void test_no_validation(void **state)
{
    (void)state;
    char *r1 = sale_row(1, "Stehplatz");
    char *text = NULL;
    assert_true(asprintf(&text, "%s%s", HEADER, r1) > 0);
    struct fixture f = {0};
    open_text(&f, text);
    struct sd_csv_chunks *cs = start(&f, 10, false);
    struct sd_csv_chunk *ch = sd_csv_chunks_next(cs);
    assert_non_null(ch);
    assert_false(ch->validated);
    assert_int_equal(ch->n, 1);
    assert_int_equal(json_array_size(json_object_get(ch->body, "sales")), 1);
    assert_int_equal(ch->batch.n_sales, 0);
    sd_csv_chunk_free(ch);
    sd_csv_chunks_stop(cs);
    close_text(&f);
    free(text);
    free(r1);
}

/* Stopping with chunks queued and unread frees everything (ASan checks) and returns. */
static void test_stop_early(void **state)
{
    (void)state;
    size_t cap = 1 << 20, len = strlen(HEADER);
    char *text = malloc(cap);
    memcpy(text, HEADER, len + 1);
    for (int i = 0; i < 5000; i++) {
        char *r = sale_row(i, "VIP");
        size_t rl = strlen(r);
        assert_true(len + rl + 1 < cap);
        memcpy(text + len, r, rl + 1);
        len += rl;
        free(r);
    }
    struct fixture f = {0};
    open_text(&f, text);
    struct sd_csv_chunks *cs = start(&f, 100, true);
    struct sd_csv_chunk *ch = sd_csv_chunks_next(cs);
    assert_non_null(ch);
    assert_int_equal(ch->n, 100);
    sd_csv_chunks_done(cs, ch);
    sd_csv_chunks_stop(cs);
    sd_csv_chunks_stop(NULL);
    close_text(&f);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_in_order),
        cmocka_unit_test(test_refused_rows),
        cmocka_unit_test(test_error_columns_are_the_files),
        cmocka_unit_test(test_no_validation),
        cmocka_unit_test(test_stop_early),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
