/* money.c — currencies (ISO 4217) and exact decimal amounts.
 *
 * Amounts are int64 counts of the currency's minor unit; no floating point value is ever stored.
 * A JSON real arrives as a double, so we recover the shortest decimal text that reads back as
 * the same double (what the sender most likely wrote) and accept it only when that needs at
 * most 15 significant digits, the precision every double represents faithfully; anything
 * longer may already have been rounded by the parser and must be sent as a string instead.
 * Decimal places are judged by value: trailing zeros beyond the minor unit are fine.
 *
 * The table lists the codes active in ISO 4217 (list one, as amended up to 2025) that have a
 * minor unit; fund/metal/testing codes without one (XAU, XDR, XTS, …) cannot price a ticket
 * and are left out, as are withdrawn codes (HRK 2023, SLL 2024, ZWL 2024, VEF, MRO, STD, …).
 * Keep it sorted: lookup is a binary search. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

struct currency {
    char code[4];
    int minor;
};

static const struct currency currencies[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2},
    {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0},
    {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BOV", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2},
    {"BYN", 2}, {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHE", 2}, {"CHF", 2}, {"CHW", 2}, {"CLF", 4},
    {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"COU", 2}, {"CRC", 2}, {"CUC", 2}, {"CUP", 2}, {"CVE", 2},
    {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2}, {"ERN", 2}, {"ETB", 2},
    {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2}, {"GMD", 2},
    {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2}, {"HTG", 2}, {"HUF", 2}, {"IDR", 2},
    {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0}, {"JMD", 2}, {"JOD", 3}, {"JPY", 0},
    {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2},
    {"KZT", 2}, {"LAK", 2}, {"LBP", 2}, {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2},
    {"MDL", 2}, {"MGA", 2}, {"MKD", 2}, {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2},
    {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MXV", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2},
    {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2},
    {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"RUB", 2},
    {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2}, {"SHP", 2},
    {"SLE", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2}, {"SZL", 2},
    {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2}, {"TWD", 2},
    {"TZS", 2}, {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"USN", 2}, {"UYI", 0}, {"UYU", 2}, {"UYW", 4},
    {"UZS", 2}, {"VED", 2}, {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0}, {"XCD", 2},
    {"XCG", 2}, {"XOF", 0}, {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
};

static int currency_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct currency *)elem)->code);
}

int sd_currency_minor_units(const char *code)
{
    if (!code || strlen(code) != 3) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (code[i] < 'A' || code[i] > 'Z') {
            return -1;
        }
    }
    const struct currency *c = bsearch(code, currencies, sizeof(currencies) / sizeof(*currencies),
                                       sizeof(*currencies), currency_cmp);
    return c ? c->minor : -1;
}

#define MINOR_MAX 18 /* 10^18 still fits int64 */

static const char *places_why(int minor)
{
    static const char *const why[] = {
        "must be a whole amount: the currency has no minor unit",
        "must have at most 1 decimal place for the currency",
        "must have at most 2 decimal places for the currency",
        "must have at most 3 decimal places for the currency",
        "must have at most 4 decimal places for the currency",
    };
    if (minor >= 0 && minor < 5) {
        return why[minor];
    }
    return "has more decimal places than the currency allows";
}

static bool mul_add(int64_t *acc, int digit)
{
    if (*acc > (INT64_MAX - digit) / 10) {
        return false;
    }
    *acc = *acc * 10 + digit;
    return true;
}

/* Plain decimal text, ^[0-9]+(\.[0-9]+)?$, to minor units. */
static int parse_plain(const char *s, size_t len, int minor, int64_t *ret, const char **why)
{
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    size_t int_len = i, frac_start = 0, frac_len = 0;
    bool ok = int_len > 0;
    if (ok && i < len && s[i] == '.') {
        frac_start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        frac_len = i - frac_start;
        ok = frac_len > 0;
    }
    if (!ok || i != len) {
        if (len > 0 && s[0] == '-') {
            *why = "must not be negative";
        } else if (memchr(s, 'e', len) || memchr(s, 'E', len)) {
            *why = "must be a plain decimal like \"89.00\": exponent notation is not allowed";
        } else {
            *why = "must be a plain decimal like \"89.00\"";
        }
        return -EINVAL;
    }
    while (frac_len > 0 && s[frac_start + frac_len - 1] == '0') {
        frac_len--;
    }
    if (minor >= 0 && frac_len > (size_t)minor) {
        *why = places_why(minor);
        return -EINVAL;
    }
    int64_t acc = 0;
    for (size_t k = 0; k < int_len; k++) {
        if (!mul_add(&acc, s[k] - '0')) {
            *why = "is too large";
            return -EINVAL;
        }
    }
    for (int k = 0; k < minor; k++) {
        int digit = (size_t)k < frac_len ? s[frac_start + (size_t)k] - '0' : 0;
        if (!mul_add(&acc, digit)) {
            *why = "is too large";
            return -EINVAL;
        }
    }
    *ret = acc;
    return 0;
}

/* The shortest decimal text that reads back as d (d finite, ≥ 0), written plainly (no
 * exponent) into out. Returns the number of significant digits used. */
static int real_to_plain(double d, char *out, size_t outsz)
{
    char e[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, d);
        if (strtod(e, NULL) == d) {
            break;
        }
    }
    if (p > 17) {
        p = 17;
        snprintf(e, sizeof(e), "%.*e", p - 1, d);
    }
    /* "d.ddde±xx"; the decimal point may be locale-specific, so take the digits only. */
    char digits[24];
    size_t nd = 0;
    const char *q = e;
    for (; *q && *q != 'e' && *q != 'E'; q++) {
        if (*q >= '0' && *q <= '9' && nd < sizeof(digits) - 1) {
            digits[nd++] = *q;
        }
    }
    long exp10 = *q ? strtol(q + 1, NULL, 10) : 0;
    /* value = digits[0].digits[1..] × 10^exp10; doubles keep exp10 within -324..308. */
    size_t o = 0;
    long int_digits = exp10 + 1;
    if (int_digits <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (long z = 0; z < -int_digits && o < outsz - 1; z++) {
            out[o++] = '0';
        }
        for (size_t k = 0; k < nd && o < outsz - 1; k++) {
            out[o++] = digits[k];
        }
    } else {
        for (long k = 0; k < int_digits && o < outsz - 1; k++) {
            out[o++] = (size_t)k < nd ? digits[k] : '0';
        }
        if ((size_t)int_digits < nd) {
            out[o++] = '.';
            for (size_t k = (size_t)int_digits; k < nd && o < outsz - 1; k++) {
                out[o++] = digits[k];
            }
        }
    }
    out[o] = '\0';
    return p;
}

int sd_decimal_parse(const json_t *v, int minor, int64_t *ret_minor, const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    if (minor > MINOR_MAX) {
        minor = MINOR_MAX;
    }
    int64_t amount = 0;
    int r;
    if (json_is_string(v)) {
        r = parse_plain(json_string_value(v), json_string_length(v), minor, &amount, why);
    } else if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0) {
            *why = "must not be negative";
            return -EINVAL;
        }
        char text[32];
        int n = snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, i);
        r = parse_plain(text, (size_t)n, minor, &amount, why);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d)) {
            *why = "must be a finite number";
            return -EINVAL;
        }
        if (d < 0) {
            *why = "must not be negative";
            return -EINVAL;
        }
        if (d == 0) {
            d = 0; /* -0.0 is zero */
        }
        char text[512];
        if (real_to_plain(d, text, sizeof(text)) > 15) {
            *why = "has too many digits to be exact; send the price as a string";
            return -EINVAL;
        }
        r = parse_plain(text, strlen(text), minor, &amount, why);
    } else {
        *why = "must be a number or a numeric string";
        return -EINVAL;
    }
    if (r < 0) {
        return r;
    }
    *ret_minor = amount;
    return 0;
}

void sd_decimal_format(int64_t amount_minor, int minor, char out[32])
{
    if (minor < 0) {
        minor = 0;
    }
    if (minor > MINOR_MAX) {
        minor = MINOR_MAX;
    }
    bool neg = amount_minor < 0;
    uint64_t u = neg ? (uint64_t)0 - (uint64_t)amount_minor : (uint64_t)amount_minor;
    char digits[24];
    int nd = snprintf(digits, sizeof(digits), "%" PRIu64, u);
    size_t o = 0;
    if (neg) {
        out[o++] = '-';
    }
    if (minor == 0) {
        memcpy(out + o, digits, (size_t)nd);
        out[o + (size_t)nd] = '\0';
        return;
    }
    int int_digits = nd - minor;
    if (int_digits <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int z = 0; z < -int_digits; z++) {
            out[o++] = '0';
        }
        memcpy(out + o, digits, (size_t)nd);
        o += (size_t)nd;
    } else {
        memcpy(out + o, digits, (size_t)int_digits);
        o += (size_t)int_digits;
        out[o++] = '.';
        memcpy(out + o, digits + int_digits, (size_t)minor);
        o += (size_t)minor;
    }
    out[o] = '\0';
}

int sd_money_scaled_to_minor(int64_t amount, int scale, int minor, int64_t *ret_minor,
                             const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    if (scale < 0 || scale > MINOR_MAX || minor < 0 || minor > MINOR_MAX) {
        *why = "has a unit the hub does not know";
        return -EINVAL;
    }
    int64_t p = 1;
    for (int i = 0; i < (scale > minor ? scale - minor : minor - scale); i++) {
        p *= 10; /* at most 10^18: fits */
    }
    if (scale >= minor) {
        /* Fewer digits in the target: the dropped ones must all be zero. */
        if (amount % p != 0) {
            *why = "cannot be represented exactly in the currency's minor unit";
            return -EINVAL;
        }
        *ret_minor = amount / p;
        return 0;
    }
    if (amount > INT64_MAX / p || amount < INT64_MIN / p) {
        *why = "is too large";
        return -ERANGE;
    }
    *ret_minor = amount * p;
    return 0;
}
