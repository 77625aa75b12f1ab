/* season.c — the demo season generator (see season.h for what it promises).
 *
 * Design invariants that are not obvious from the code:
 *   - Randomness is splitmix64, seeded per record: record k of a kind draws from
 *     stream(seed, kind, k). That makes customers pure functions of their index (they are
 *     never stored) and keeps bodies identical however they are cut. Sales additionally read
 *     the per-event seat counter, which is why sales are made strictly in order.
 *   - Events are planned in sd_season_new(): each one takes a free "slot" — (day, hall,
 *     evening) or (day, hall, matinee) — from a bitmap, so a hall never has two evening shows
 *     on one day, and date + time + hall is unique. Hall names are unique across venues, so
 *     the store's "date|time|venue|hall" key and the seed's "date + time + hall" both hold.
 *     The calendar has at least n_events days and 4 halls × 2 slots per day, so at most an
 *     eighth of the slots are ever taken and the random probe terminates; a linear scan is
 *     the fallback. Events are then sorted by date, time and hall, and numbered in that order.
 *   - E-mail local parts end in the customer number preceded by a non-digit, and transliterated
 *     names contain no digits, so the number can be read back from the address: addresses are
 *     unique by construction, whatever the name pools produce.
 *   - All money is integer cents; strings are formatted from cents, never from doubles. */
#include "demo/season.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"

#define MAX_EVENTS 1000000u
#define MAX_RECORDS 100000000u

/* ---- randomness ------------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

/* Uniform in [0, n); n > 0. The modulo bias is below 2^-40 for every n used here. */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

/* Uniform in [0, 1). */
static double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

enum stream_kind { STREAM_PLAN = 1, STREAM_CAST, STREAM_CUSTOMER, STREAM_SALE };

static struct rng stream(uint64_t seed, enum stream_kind kind, uint64_t index)
{
    struct rng r = {mix64(mix64(seed ^ ((uint64_t)kind * 0xd1b54a32d192ed03ULL)) ^ index)};
    return r;
}

/* Index into a table by weight; weights sum to total. */
static size_t pick_weighted(struct rng *r, const unsigned *weights, size_t n, unsigned total)
{
    unsigned x = (unsigned)rng_below(r, total);
    for (size_t i = 0; i < n; i++) {
        if (x < weights[i]) {
            return i;
        }
        x -= weights[i];
    }
    return n - 1;
}

/* ---- calendar (proleptic Gregorian, days since 1970-01-01; H. Hinnant's algorithms) -------- */

static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
    return (int32_t)sd_days_from_civil(y, (int)m, (int)d);
}

static void civil_from_days(int32_t z, int *ret_y, unsigned *ret_m, unsigned *ret_d)
{
    int64_t y;
    int m, d;
    sd_civil_from_days(z, &y, &m, &d);
    *ret_y = (int)y;
    *ret_m = (unsigned)m;
    *ret_d = (unsigned)d;
}

/* 0 = Sunday … 6 = Saturday; 1970-01-01 was a Thursday. */
static unsigned weekday(int32_t days)
{
    return (unsigned)(((days % 7) + 7 + 4) % 7);
}

static void format_date(int32_t days, char out[32])
{
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, 32, "%04d-%02u-%02u", y, m, d);
}

/* ---- the house ------------------------------------------------------------------------------- */

#define SEASON_FIRST_DAY days_from_civil(2026, 9, 1)
#define SEASON_LAST_DAY days_from_civil(2027, 6, 30)
#define PRESALE_FIRST_DAY days_from_civil(2026, 3, 2)
#define BOOKING_FEE_CENTS 250

struct hall {
    const char *venue;
    const char *name; /* unique across venues (see the file comment) */
    const char *city;
    unsigned capacity;
    unsigned tier_eur[5]; /* regular price categories, cheapest first */
    unsigned vip_eur;
};

static const struct hall HALLS[] = {
    {"Staatsoper Lindenhof", "Großer Saal", "Berlin", 1862, {24, 48, 76, 112, 158}, 235},
    {"Staatsoper Lindenhof", "Studio", "Berlin", 236, {16, 22, 28, 34, 42}, 65},
    {"Kammeroper am Spreeufer", "Kammersaal", "Berlin", 468, {22, 34, 46, 58, 72}, 110},
    {"Schlosstheater Lindenhof", "Rokokosaal", "Potsdam", 312, {28, 42, 56, 68, 84}, 125},
};
#define N_HALLS (sizeof(HALLS) / sizeof(HALLS[0]))
static const unsigned HALL_WEIGHT[N_HALLS] = {62, 14, 13, 11};

enum { TIME_MATINEE = 0, TIME_EARLY = 1, TIME_EVENING = 2 }; /* in clock order */
static const char *const TIMES[] = {"11:00:00", "18:00:00", "19:30:00"};

enum voice { SOPRANO, MEZZO, TENOR, BARITONE, BASS, N_VOICES };

struct role {
    const char *name;
    enum voice voice;
};

enum work_flag {
    WORK_LONG = 1,   /* starts at 18:00 */
    WORK_GRAND = 2,  /* only on the main stage */
    WORK_FAMILY = 4, /* Sunday matinees possible */
};

#define MAX_ROLES 6
struct work {
    const char *title;
    const char *composer;
    unsigned weight;
    unsigned flags;
    struct role roles[MAX_ROLES]; /* leading roles; unused entries have name NULL */
};

static const struct work WORKS[] = {
    {"Otello", "Giuseppe Verdi", 5, WORK_GRAND,
     {{"Otello", TENOR}, {"Desdemona", SOPRANO}, {"Jago", BARITONE}, {"Emilia", MEZZO},
      {"Cassio", TENOR}}},
    {"La traviata", "Giuseppe Verdi", 9, 0,
     {{"Violetta Valéry", SOPRANO}, {"Alfredo Germont", TENOR}, {"Giorgio Germont", BARITONE},
      {"Flora Bervoix", MEZZO}}},
    {"Aida", "Giuseppe Verdi", 6, WORK_GRAND,
     {{"Aida", SOPRANO}, {"Radamès", TENOR}, {"Amneris", MEZZO}, {"Amonasro", BARITONE},
      {"Ramfis", BASS}}},
    {"Rigoletto", "Giuseppe Verdi", 6, 0,
     {{"Rigoletto", BARITONE}, {"Gilda", SOPRANO}, {"Il Duca di Mantova", TENOR},
      {"Sparafucile", BASS}, {"Maddalena", MEZZO}}},
    {"Die Zauberflöte", "Wolfgang Amadeus Mozart", 10, WORK_FAMILY,
     {{"Tamino", TENOR}, {"Pamina", SOPRANO}, {"Papageno", BARITONE},
      {"Königin der Nacht", SOPRANO}, {"Sarastro", BASS}}},
    {"Tosca", "Giacomo Puccini", 7, 0,
     {{"Floria Tosca", SOPRANO}, {"Mario Cavaradossi", TENOR}, {"Il Barone Scarpia", BARITONE},
      {"Cesare Angelotti", BASS}}},
    {"Carmen", "Georges Bizet", 8, 0,
     {{"Carmen", MEZZO}, {"Don José", TENOR}, {"Escamillo", BARITONE}, {"Micaëla", SOPRANO},
      {"Zuniga", BASS}}},
    {"Fidelio", "Ludwig van Beethoven", 4, 0,
     {{"Leonore", SOPRANO}, {"Florestan", TENOR}, {"Don Pizarro", BARITONE}, {"Rocco", BASS},
      {"Marzelline", SOPRANO}}},
    {"Tristan und Isolde", "Richard Wagner", 3, WORK_LONG | WORK_GRAND,
     {{"Tristan", TENOR}, {"Isolde", SOPRANO}, {"Brangäne", MEZZO}, {"König Marke", BASS},
      {"Kurwenal", BARITONE}}},
    {"Le nozze di Figaro", "Wolfgang Amadeus Mozart", 7, 0,
     {{"Figaro", BARITONE}, {"Susanna", SOPRANO}, {"Il Conte d'Almaviva", BARITONE},
      {"La Contessa d'Almaviva", SOPRANO}, {"Cherubino", MEZZO}}},
    {"Don Giovanni", "Wolfgang Amadeus Mozart", 6, 0,
     {{"Don Giovanni", BARITONE}, {"Leporello", BASS}, {"Donna Anna", SOPRANO},
      {"Donna Elvira", SOPRANO}, {"Don Ottavio", TENOR}, {"Zerlina", SOPRANO}}},
    {"La bohème", "Giacomo Puccini", 8, 0,
     {{"Mimì", SOPRANO}, {"Rodolfo", TENOR}, {"Marcello", BARITONE}, {"Musetta", SOPRANO},
      {"Colline", BASS}}},
    {"Madama Butterfly", "Giacomo Puccini", 6, 0,
     {{"Cio-Cio-San", SOPRANO}, {"B. F. Pinkerton", TENOR}, {"Suzuki", MEZZO},
      {"Sharpless", BARITONE}}},
    {"Der Rosenkavalier", "Richard Strauss", 3, WORK_LONG | WORK_GRAND,
     {{"Die Feldmarschallin", SOPRANO}, {"Octavian", MEZZO}, {"Sophie", SOPRANO},
      {"Baron Ochs auf Lerchenau", BASS}, {"Herr von Faninal", BARITONE}}},
    {"Salome", "Richard Strauss", 3, WORK_GRAND,
     {{"Salome", SOPRANO}, {"Herodes", TENOR}, {"Herodias", MEZZO}, {"Jochanaan", BARITONE},
      {"Narraboth", TENOR}}},
    {"Die Walküre", "Richard Wagner", 2, WORK_LONG | WORK_GRAND,
     {{"Brünnhilde", SOPRANO}, {"Siegmund", TENOR}, {"Sieglinde", SOPRANO}, {"Wotan", BARITONE},
      {"Fricka", MEZZO}, {"Hunding", BASS}}},
    {"Der fliegende Holländer", "Richard Wagner", 3, WORK_GRAND,
     {{"Der Holländer", BARITONE}, {"Senta", SOPRANO}, {"Daland", BASS}, {"Erik", TENOR},
      {"Mary", MEZZO}}},
    {"Il barbiere di Siviglia", "Gioachino Rossini", 6, WORK_FAMILY,
     {{"Figaro", BARITONE}, {"Rosina", MEZZO}, {"Il Conte d'Almaviva", TENOR},
      {"Don Bartolo", BASS}, {"Don Basilio", BASS}}},
    {"Hänsel und Gretel", "Engelbert Humperdinck", 5, WORK_FAMILY,
     {{"Hänsel", MEZZO}, {"Gretel", SOPRANO}, {"Die Knusperhexe", MEZZO}, {"Peter", BARITONE},
      {"Gertrud", SOPRANO}}},
    {"Eugen Onegin", "Pjotr Iljitsch Tschaikowsky", 4, 0,
     {{"Eugen Onegin", BARITONE}, {"Tatjana", SOPRANO}, {"Lenski", TENOR}, {"Olga", MEZZO},
      {"Fürst Gremin", BASS}}},
};
#define N_WORKS (sizeof(WORKS) / sizeof(WORKS[0]))

/* Fictional singers; at least four per voice so no work needs one singer twice. */
#define POOL 8
static const char *const SINGERS[N_VOICES][POOL] = {
    [SOPRANO] = {"Henrike Aldermann", "Marisol Quintero", "Ilka Sommerfeld", "Anouk Verbeeck",
                 "Teodora Ilieva", "Zoë Achterberg", "Chiara Lanzoni", "Signe Halvorsen"},
    [MEZZO] = {"Ragna Thorsdóttir", "Beatrice Fumagalli", "Elsbeth Krähenbühl", "Dilara Aksoy",
               "Hélène Marchetti", "Wiebke Osterkamp", "Nadja Perić", "Greta Lindqvist-Maier"},
    [TENOR] = {"Matteo Cavallaro", "Jonas Wittenbrink", "Aurelio Santangelo", "Piotr Zawadzki",
               "Lars-Erik Fjeldstad", "Benedikt Hollerbach", "Ruy Carvalhal", "Sung-min Kwak"},
    [BARITONE] = {"Friedemann Ulbrich", "Gianluca Ferrandi", "Tomasz Kędzior", "Ole Brandvik",
                  "Vincent Mirabeau", "Kilian Eschweiler", "Ansgar Thiessenhusen",
                  "Émile Rousseaux"},
    [BASS] = {"Anselm Grünwaldt", "Dmitri Volkonin", "Giacomo Pellizzari", "Hallvard Ruud",
              "Ferdinand Obermoser", "Kwame Asante-Bauer", "Jorge Villalonga", "Till Ossenkopp"},
};

/* ---- customers' names and addresses --------------------------------------------------------- */

enum gender { FEMALE, MALE, NEUTRAL };
struct first_name {
    const char *name;
    enum gender gender;
};
static const struct first_name FIRST_NAMES[] = {
    {"Anna", FEMALE},     {"Zoë", FEMALE},      {"Marie", FEMALE},     {"Sophie", FEMALE},
    {"Lena", FEMALE},     {"Emilia", FEMALE},   {"Hannah", FEMALE},    {"Sabine", FEMALE},
    {"Heike", FEMALE},    {"Dörte", FEMALE},    {"Chloé", FEMALE},     {"Renée", FEMALE},
    {"Ayşe", FEMALE},     {"Małgorzata", FEMALE}, {"Inés", FEMALE},    {"Birgit", FEMALE},
    {"Ursula", FEMALE},   {"Charlotte", FEMALE}, {"Fatma", FEMALE},    {"Ingrid", FEMALE},
    {"Jürgen", MALE},     {"Björn", MALE},      {"Søren", MALE},       {"Lukas", MALE},
    {"Felix", MALE},      {"Jonas", MALE},      {"Paul", MALE},        {"Karl", MALE},
    {"Günter", MALE},     {"Uwe", MALE},        {"Jörg", MALE},        {"Mehmet", MALE},
    {"Ömer", MALE},       {"José", MALE},       {"Jiří", MALE},        {"Noël", MALE},
    {"Wolfgang", MALE},   {"Matthias", MALE},   {"Konstantin", MALE},  {"Thomas", MALE},
    {"Kai", NEUTRAL},     {"Alex", NEUTRAL},    {"Robin", NEUTRAL},    {"Kim", NEUTRAL},
    {"Sascha", NEUTRAL},  {"Luca", NEUTRAL},
};
#define N_FIRST_NAMES (sizeof(FIRST_NAMES) / sizeof(FIRST_NAMES[0]))

static const char *const LAST_NAMES[] = {
    "Müller",     "Schröder",   "Schmidt",    "Schneider", "Fischer",     "Weber",
    "Meyer",      "Wagner",     "Becker",     "Schulz",    "Hoffmann",    "Schäfer",
    "Koch",       "Bauer",      "Richter",    "Klein",     "Wolf",        "Neumann",
    "Schwarz",    "Zimmermann", "Braun",      "Krüger",    "Hofmann",     "Hartmann",
    "Lange",      "Weiß",       "Großmann",   "Köhler",    "Jäger",       "Bäcker",
    "Lößner",     "Yılmaz",     "Kaya",       "Öztürk",    "Kowalczyk",   "Nowak",
    "Łukasiewicz", "Dvořák",    "Åberg",      "Øvergaard", "García",      "Núñez",
    "Lefèvre",    "Fontaine",   "O'Connor",   "Nguyen",    "Popescu",     "Meyer-Lüdenscheid",
    "von Bülow",  "de Vries",
};
#define N_LAST_NAMES (sizeof(LAST_NAMES) / sizeof(LAST_NAMES[0]))

static const char *const STREETS[] = {
    "Schönhauser Allee", "Kastanienallee",   "Friedrichstraße",  "Müllerstraße",
    "Kurfürstendamm",    "Bergmannstraße",   "Oranienstraße",    "Greifswalder Straße",
    "Prenzlauer Allee",  "Boxhagener Straße", "Sonnenallee",     "Karl-Marx-Allee",
    "Uhlandstraße",      "Gneisenaustraße",  "Lindenstraße",     "Am Weidendamm",
    "Fasanenstraße",     "Kantstraße",       "Breite Straße",    "Brandenburger Straße",
    "Straße der Pariser Kommune", "Torstraße", "Weserstraße",    "Dörpfeldstraße",
};
#define N_STREETS (sizeof(STREETS) / sizeof(STREETS[0]))

static const char *const FAR_POST_CODES[] = {"01067", "04109", "20095", "80331",
                                             "50667", "60311", "70173", "24103"};
#define N_FAR_POST_CODES (sizeof(FAR_POST_CODES) / sizeof(FAR_POST_CODES[0]))

static const char *const MAIL_DOMAINS[] = {"example.org", "example.com", "example.net",
                                           "mail.example.org", "post.example.com"};
#define N_MAIL_DOMAINS (sizeof(MAIL_DOMAINS) / sizeof(MAIL_DOMAINS[0]))

/* UTF-8 letters in the name pools and their ASCII spelling for e-mail addresses. */
static const struct {
    const char *utf8;
    const char *ascii;
} TRANSLIT[] = {
    {"ä", "ae"}, {"ö", "oe"}, {"ü", "ue"}, {"Ä", "ae"}, {"Ö", "oe"}, {"Ü", "ue"}, {"ß", "ss"},
    {"é", "e"},  {"è", "e"},  {"ê", "e"},  {"ë", "e"},  {"É", "e"},  {"á", "a"},  {"à", "a"},
    {"í", "i"},  {"ì", "i"},  {"ï", "i"},  {"ı", "i"},  {"ó", "o"},  {"ú", "u"},  {"ñ", "n"},
    {"ç", "c"},  {"ş", "s"},  {"ğ", "g"},  {"ł", "l"},  {"Ł", "l"},  {"ń", "n"},  {"ř", "r"},
    {"č", "c"},  {"ě", "e"},  {"š", "s"},  {"ž", "z"},  {"ý", "y"},  {"ę", "e"},  {"ø", "oe"},
    {"Ø", "oe"}, {"å", "aa"}, {"Å", "aa"}, {"æ", "ae"}, {"ő", "o"},  {"ű", "u"},
};

/* Lowercase ASCII letters of name (other characters dropped, known UTF-8 letters spelled out),
 * at most outsz-1 bytes; "kunde" if nothing is left. */
static void ascii_name(const char *name, char *out, size_t outsz)
{
    size_t n = 0;
    const char *p = name;
    while (*p && n + 3 < outsz) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x80) {
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                out[n++] = (char)(c | 0x20);
            }
            p++;
            continue;
        }
        size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        for (size_t i = 0; i < sizeof(TRANSLIT) / sizeof(TRANSLIT[0]); i++) {
            if (strncmp(p, TRANSLIT[i].utf8, len) == 0 && TRANSLIT[i].utf8[len] == '\0') {
                for (const char *a = TRANSLIT[i].ascii; *a; a++) {
                    out[n++] = *a;
                }
                break;
            }
        }
        for (size_t i = 0; i < len && *p; i++) {
            p++;
        }
    }
    if (n == 0) {
        snprintf(out, outsz, "kunde");
        return;
    }
    out[n] = '\0';
}

/* ---- the generator --------------------------------------------------------------------------- */

struct event {
    int32_t day;
    uint8_t time;
    uint8_t hall;
    uint16_t work;
    uint32_t sold; /* tickets sold so far, to spread sales over performances that have seats */
};

struct sd_season {
    uint64_t seed;
    size_t n_events, n_customers, n_sales;
    size_t next_event, next_customer, next_sale;
    struct event *events;
};

static int event_cmp(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->day != y->day) {
        return x->day < y->day ? -1 : 1;
    }
    if (x->time != y->time) {
        return x->time < y->time ? -1 : 1;
    }
    return x->hall < y->hall ? -1 : x->hall > y->hall;
}

/* Slots: (day, hall, matinee?) → one bit. */
static size_t slot_of(int32_t day_index, unsigned hall, bool matinee)
{
    return ((size_t)day_index * N_HALLS + hall) * 2 + (matinee ? 1 : 0);
}

static bool bit_test_set(uint8_t *bits, size_t i)
{
    bool was = bits[i / 8] & (1u << (i % 8));
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
    return was;
}

static void plan_events(struct sd_season *s)
{
    size_t n_days = (size_t)(SEASON_LAST_DAY - SEASON_FIRST_DAY + 1);
    if (n_days < s->n_events) {
        n_days = s->n_events;
    }
    size_t n_slots = n_days * N_HALLS * 2;
    uint8_t *taken = sd_calloc(n_slots / 8 + 1, 1);
    unsigned work_weights[N_WORKS], work_total = 0, hall_total = 0;
    for (size_t i = 0; i < N_WORKS; i++) {
        work_weights[i] = WORKS[i].weight;
        work_total += WORKS[i].weight;
    }
    for (size_t i = 0; i < N_HALLS; i++) {
        hall_total += HALL_WEIGHT[i];
    }
    struct rng r = stream(s->seed, STREAM_PLAN, 0);
    for (size_t k = 0; k < s->n_events; k++) {
        struct event *e = &s->events[k];
        e->work = (uint16_t)pick_weighted(&r, work_weights, N_WORKS, work_total);
        const struct work *w = &WORKS[e->work];
        e->hall = (w->flags & WORK_GRAND) ? 0
                                          : (uint8_t)pick_weighted(&r, HALL_WEIGHT, N_HALLS,
                                                                   hall_total);
        bool matinee = (w->flags & WORK_FAMILY) && rng_unit(&r) < 0.35;
        bool placed = false;
        for (int attempt = 0; attempt < 64 && !placed; attempt++) {
            size_t d = (size_t)rng_below(&r, n_days);
            if (matinee) {
                /* Move to that week's Sunday (or the one before, at the calendar's end). */
                d += (7 - weekday(SEASON_FIRST_DAY + (int32_t)d)) % 7;
                if (d >= n_days) {
                    d -= 7;
                }
            }
            if (!bit_test_set(taken, slot_of((int32_t)d, e->hall, matinee))) {
                e->day = SEASON_FIRST_DAY + (int32_t)d;
                placed = true;
            }
        }
        if (!placed) {
            /* Crowded calendar: take the first free slot of any kind after a random start.
             * At most an eighth of the slots are taken, so this always finds one. */
            size_t start = (size_t)rng_below(&r, n_slots);
            for (size_t i = 0; i < n_slots; i++) {
                size_t slot = (start + i) % n_slots;
                if (!bit_test_set(taken, slot)) {
                    matinee = slot % 2;
                    e->hall = (uint8_t)((slot / 2) % N_HALLS);
                    e->day = SEASON_FIRST_DAY + (int32_t)(slot / 2 / N_HALLS);
                    break;
                }
            }
        }
        e->time = matinee ? TIME_MATINEE : (w->flags & WORK_LONG) ? TIME_EARLY : TIME_EVENING;
        e->sold = 0;
    }
    free(taken);
    qsort(s->events, s->n_events, sizeof(*s->events), event_cmp);
}

struct sd_season *sd_season_new(uint64_t seed, size_t n_events, size_t n_customers,
                                size_t n_sales)
{
    if (n_events > MAX_EVENTS || n_customers > MAX_RECORDS || n_sales > MAX_RECORDS ||
        (n_sales > 0 && n_events == 0)) {
        return NULL;
    }
    struct sd_season *s = sd_calloc(1, sizeof(*s));
    s->seed = seed;
    s->n_events = n_events;
    s->n_customers = n_customers;
    s->n_sales = n_sales;
    s->events = sd_calloc(n_events ? n_events : 1, sizeof(*s->events));
    plan_events(s);
    return s;
}

void sd_season_free(struct sd_season *s)
{
    if (!s) {
        return;
    }
    free(s->events);
    free(s);
}

/* ---- records --------------------------------------------------------------------------------- */

static void set_str(json_t *o, const char *key, const char *value)
{
    json_object_set_new(o, key, json_string(value));
}

static void format_event_id(size_t k, char out[32])
{
    snprintf(out, 32, "EVT-2026-%04zu", k + 1);
}

static void format_customer_id(size_t i, char out[32])
{
    snprintf(out, 32, "C-%06zu", i + 1);
}

static void format_cents(uint64_t cents, char out[32])
{
    snprintf(out, 32, "%llu.%02llu", (unsigned long long)(cents / 100),
             (unsigned long long)(cents % 100));
}

/* A production keeps its premiere cast; about one performance in five has a role covered by
 * another singer of the voice. */
static json_t *make_cast(const struct sd_season *s, size_t k, const struct work *w, size_t wi)
{
    struct rng r = stream(s->seed, STREAM_CAST, k);
    bool used[N_VOICES][POOL] = {{false}};
    json_t *cast = json_array();
    for (size_t i = 0; i < MAX_ROLES && w->roles[i].name; i++) {
        enum voice v = w->roles[i].voice;
        size_t pick = (size_t)(mix64(s->seed ^ (wi * 64 + i + 1)) % POOL);
        if (rng_unit(&r) < 0.2) {
            pick = (pick + 1 + (size_t)rng_below(&r, POOL - 1)) % POOL;
        }
        while (used[v][pick]) {
            pick = (pick + 1) % POOL;
        }
        used[v][pick] = true;
        json_t *member = json_object();
        set_str(member, "name", SINGERS[v][pick]);
        set_str(member, "role", w->roles[i].name);
        json_array_append_new(cast, member);
    }
    return cast;
}

static json_t *make_event(const struct sd_season *s, size_t k)
{
    const struct event *e = &s->events[k];
    const struct work *w = &WORKS[e->work];
    const struct hall *h = &HALLS[e->hall];
    char id[32], date[32];
    format_event_id(k, id);
    format_date(e->day, date);
    json_t *o = json_object();
    set_str(o, "event_id", id);
    set_str(o, "title", w->title);
    set_str(o, "work_title", w->title);
    set_str(o, "composer", w->composer);
    json_object_set_new(o, "cast", make_cast(s, k, w, e->work));
    set_str(o, "date", date);
    set_str(o, "time", TIMES[e->time]);
    set_str(o, "venue", h->venue);
    set_str(o, "hall", h->name);
    set_str(o, "city", h->city);
    json_object_set_new(o, "capacity", json_integer(h->capacity));
    return o;
}

static json_t *make_customer(const struct sd_season *s, size_t i)
{
    struct rng r = stream(s->seed, STREAM_CUSTOMER, i);
    const struct first_name *fn = &FIRST_NAMES[rng_below(&r, N_FIRST_NAMES)];
    const char *last = LAST_NAMES[rng_below(&r, N_LAST_NAMES)];
    char id[32], first_ascii[32], last_ascii[32], local[96], email[160], street[96], post[16];
    format_customer_id(i, id);
    ascii_name(fn->name, first_ascii, sizeof(first_ascii));
    ascii_name(last, last_ascii, sizeof(last_ascii));
    /* Every format ends in the customer number after a non-digit: unique by construction. */
    switch (rng_below(&r, 4)) {
    case 0:
        snprintf(local, sizeof(local), "%s.%s.%zu", first_ascii, last_ascii, i + 1);
        break;
    case 1:
        snprintf(local, sizeof(local), "%c.%s%zu", first_ascii[0], last_ascii, i + 1);
        break;
    case 2:
        snprintf(local, sizeof(local), "%s%s%zu", first_ascii, last_ascii, i + 1);
        break;
    default:
        snprintf(local, sizeof(local), "%s_%zu", last_ascii, i + 1);
        break;
    }
    snprintf(email, sizeof(email), "%s@%s", local, MAIL_DOMAINS[rng_below(&r, N_MAIL_DOMAINS)]);

    json_t *o = json_object();
    set_str(o, "customer_id", id);
    set_str(o, "email", email);
    /* A few customers left only an e-mail address (newsletter sign-ups). */
    bool email_only = rng_unit(&r) < 0.02;
    if (!email_only) {
        if (fn->gender != NEUTRAL && rng_unit(&r) < 0.92) {
            set_str(o, "salutation", fn->gender == FEMALE ? "Frau" : "Herr");
        }
        set_str(o, "first_name", fn->name);
        set_str(o, "last_name", last);
        unsigned number = 1 + (unsigned)rng_below(&r, 180);
        if (rng_unit(&r) < 0.1) {
            snprintf(street, sizeof(street), "%s %u%c", STREETS[rng_below(&r, N_STREETS)],
                     number, (char)('A' + rng_below(&r, 4)));
        } else {
            snprintf(street, sizeof(street), "%s %u", STREETS[rng_below(&r, N_STREETS)], number);
        }
        set_str(o, "street", street);
        double where = rng_unit(&r);
        if (where < 0.8) {
            snprintf(post, sizeof(post), "%05u", 10115 + (unsigned)rng_below(&r, 14199 - 10115));
        } else if (where < 0.9) {
            snprintf(post, sizeof(post), "%05u", 14467 + (unsigned)rng_below(&r, 16));
        } else {
            snprintf(post, sizeof(post), "%s", FAR_POST_CODES[rng_below(&r, N_FAR_POST_CODES)]);
        }
        set_str(o, "post_code", post);
    }
    if (rng_unit(&r) < 0.75) {
        json_object_set_new(o, "ad_opt_out", json_boolean(rng_unit(&r) < 0.3));
    }
    return o;
}

static json_t *make_sale(struct sd_season *s, size_t i)
{
    struct rng r = stream(s->seed, STREAM_SALE, i);
    double u = rng_unit(&r);
    const char *category = u < 0.05 ? "comp" : u < 0.15 ? "subscription" : u < 0.21 ? "VIP"
                                                                                 : "regular";
    unsigned quantity;
    if (category[0] == 'r') {
        static const unsigned qty_weights[6] = {40, 46, 6, 6, 1, 1};
        quantity = 1 + (unsigned)pick_weighted(&r, qty_weights, 6, 100);
    } else {
        quantity = 1 + (unsigned)rng_below(&r, 2);
    }

    /* Prefer performances with seats left; a sold-out season overbooks (returns, resales). */
    size_t k = (size_t)rng_below(&r, s->n_events);
    for (int attempt = 0; attempt < 6; attempt++) {
        const struct event *e = &s->events[k];
        if (e->sold + quantity <= HALLS[e->hall].capacity) {
            break;
        }
        k = (size_t)rng_below(&r, s->n_events);
    }
    struct event *e = &s->events[k];
    e->sold += quantity;
    const struct hall *h = &HALLS[e->hall];

    char invoice[32], event_id[32], customer_id[32], when[64], price[32], base[32];
    snprintf(invoice, sizeof(invoice), "INV-%07zu", i + 1);
    format_event_id(k, event_id);
    /* Subscribers and invitees are known; about 6 % of the rest buy anonymously. */
    bool anon = s->n_customers == 0 ||
                ((category[0] == 'r' || category[0] == 'V') && rng_unit(&r) < 0.06);
    if (anon) {
        snprintf(customer_id, sizeof(customer_id), "ANON");
    } else if (rng_unit(&r) < 0.35) {
        /* Regulars (the oldest tenth of the customer base) buy a third of the tickets. */
        size_t regulars = s->n_customers / 10 ? s->n_customers / 10 : 1;
        format_customer_id((size_t)rng_below(&r, regulars), customer_id);
    } else {
        format_customer_id((size_t)rng_below(&r, s->n_customers), customer_id);
    }

    /* Bought on a day before the performance; single tickets mostly in the last weeks,
     * subscriptions in the spring renewal window. */
    int32_t window = e->day - PRESALE_FIRST_DAY; /* ≥ 1: the season starts after presale */
    int32_t day;
    if (category[0] == 's') {
        day = PRESALE_FIRST_DAY + (int32_t)rng_below(&r, (uint64_t)(window < 90 ? window : 90));
    } else {
        double x = rng_unit(&r);
        day = e->day - 1 - (int32_t)((double)(window - 1) * x * x);
    }
    unsigned secs = 6 * 3600 + (unsigned)rng_below(&r, 17 * 3600);
    char date[32];
    format_date(day, date);
    snprintf(when, sizeof(when), "%sT%02u:%02u:%02uZ", date, secs / 3600, secs / 60 % 60,
             secs % 60);

    uint64_t base_cents, price_cents;
    static const unsigned tier_weights[5] = {15, 25, 30, 20, 10};
    unsigned tier = (unsigned)pick_weighted(&r, tier_weights, 5, 100);
    switch (category[0]) {
    case 'c':
        base_cents = price_cents = 0;
        break;
    case 's': /* 20 % off the category price, rounded down to 50 cents; no booking fee */
        base_cents = price_cents = (uint64_t)h->tier_eur[tier] * 80 / 50 * 50;
        break;
    case 'V':
        base_cents = (uint64_t)h->vip_eur * 100;
        price_cents = base_cents + BOOKING_FEE_CENTS;
        break;
    default:
        base_cents = (uint64_t)h->tier_eur[tier] * 100;
        price_cents = base_cents + BOOKING_FEE_CENTS;
        break;
    }
    format_cents(price_cents, price);
    format_cents(base_cents, base);

    json_t *o = json_object();
    set_str(o, "invoice_number", invoice);
    set_str(o, "event_id", event_id);
    set_str(o, "customer_id", customer_id);
    set_str(o, "purchase_datetime", when);
    set_str(o, "ticket_category", category);
    json_object_set_new(o, "quantity", json_integer(quantity));
    set_str(o, "sales_price", price);
    /* base_price is only recommended; some box-office systems do not send it. */
    if (rng_unit(&r) < 0.97) {
        set_str(o, "base_price", base);
    }
    set_str(o, "currency", "EUR");
    return o;
}

json_t *sd_season_next(struct sd_season *s, size_t max_records)
{
    if (max_records == 0) {
        max_records = 1;
    }
    const char *key;
    json_t *records = json_array();
    if (s->next_event < s->n_events) {
        key = "events";
        for (size_t n = 0; n < max_records && s->next_event < s->n_events; n++) {
            json_array_append_new(records, make_event(s, s->next_event++));
        }
    } else if (s->next_customer < s->n_customers) {
        key = "customers";
        for (size_t n = 0; n < max_records && s->next_customer < s->n_customers; n++) {
            json_array_append_new(records, make_customer(s, s->next_customer++));
        }
    } else if (s->next_sale < s->n_sales) {
        key = "sales";
        for (size_t n = 0; n < max_records && s->next_sale < s->n_sales; n++) {
            json_array_append_new(records, make_sale(s, s->next_sale++));
        }
    } else {
        json_decref(records);
        return NULL;
    }
    json_t *body = json_object();
    json_object_set_new(body, key, records);
    return body;
}
