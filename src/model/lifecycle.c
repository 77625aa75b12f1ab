/* lifecycle.c — the order lifecycle rules (model.h "order lifecycle"): order types and
 * statuses by name, amounts net of refunds, which status changes a stored sale may go through,
 * and how a refund record adds to the sale it refunds.
 *
 * Pure functions over struct sd_sale_state: the store reads a stored sale's state and asks
 * here before it writes, so the rules are one table of code with unit tests of their own and
 * every backend applies the same ones. Invariants:
 *  - Refunded quantity and amount only grow, and never exceed what was sold (quantity and
 *    quantity × sales_price); a refund is never rounded or capped into range: it is refused.
 *  - Cancelled and exchanged sales, refund records and freed reservations are final; a sale
 *    never turns back into sold once refunded.
 *  - Each refusal is one issue naming the field that breaks the rule. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const char *const order_names[] = {
    [SD_ORDER_SALE] = "sale",     [SD_ORDER_RESERVATION] = "reservation",
    [SD_ORDER_OPTION] = "option", [SD_ORDER_ABANDONED] = "abandoned",
    [SD_ORDER_REFUND] = "refund",
};
static const char *const status_names[] = {
    [SD_STATUS_SOLD] = "sold",           [SD_STATUS_REFUNDED] = "refunded",
    [SD_STATUS_CANCELLED] = "cancelled", [SD_STATUS_EXCHANGED] = "exchanged",
    [SD_STATUS_OPEN] = "open",           [SD_STATUS_FREED] = "freed",
    [SD_STATUS_ABANDONED] = "abandoned", [SD_STATUS_APPLIED] = "applied",
};
#define N_ORDER (sizeof(order_names) / sizeof(*order_names))
#define N_STATUS (sizeof(status_names) / sizeof(*status_names))

const char *sd_order_type_name(enum sd_order_type t)
{
    return (unsigned)t < N_ORDER ? order_names[t] : "sale";
}

const char *sd_sale_status_name(enum sd_sale_status st)
{
    return (unsigned)st < N_STATUS ? status_names[st] : "sold";
}

int sd_order_type_parse(const char *s, enum sd_order_type *ret)
{
    for (unsigned i = 0; s && i < N_ORDER; i++) {
        if (strcmp(s, order_names[i]) == 0) {
            *ret = (enum sd_order_type)i;
            return 0;
        }
    }
    return -EINVAL;
}

int sd_sale_status_parse(const char *s, enum sd_sale_status *ret)
{
    for (unsigned i = 0; s && i < N_STATUS; i++) {
        if (strcmp(s, status_names[i]) == 0) {
            *ret = (enum sd_sale_status)i;
            return 0;
        }
    }
    return -EINVAL;
}

static bool counts(const struct sd_sale_state *st)
{
    return st->order_type == SD_ORDER_SALE &&
           (st->status == SD_STATUS_SOLD || st->status == SD_STATUS_REFUNDED);
}

int64_t sd_sale_net_quantity(const struct sd_sale_state *st)
{
    return counts(st) ? st->quantity - st->refunded_quantity : 0;
}

int64_t sd_sale_net_minor(const struct sd_sale_state *st)
{
    return counts(st) ? st->total_minor - st->refunded_minor : 0;
}

bool sd_sale_wholly_refunded(const struct sd_sale_state *st)
{
    return st->order_type == SD_ORDER_SALE && st->status == SD_STATUS_REFUNDED &&
           st->refunded_quantity >= st->quantity && st->refunded_minor >= st->total_minor;
}

static void issue(struct sd_issues *errors, const char *ptr, const char *field, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));
static void issue(struct sd_issues *errors, const char *ptr, const char *field, const char *fmt,
                  ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char where[128];
    snprintf(where, sizeof(where), "%s/%s", ptr ? ptr : "", field);
    sd_issues_add(errors, where, "%s", msg);
}

static bool same_amounts(const struct sd_sale_state *a, const struct sd_sale_state *b)
{
    return a->status == b->status && a->quantity == b->quantity &&
           a->total_minor == b->total_minor && a->refunded_quantity == b->refunded_quantity &&
           a->refunded_minor == b->refunded_minor;
}

int sd_sale_transition_check(const struct sd_sale_state *old, const struct sd_sale_state *next,
                             const char *ptr, struct sd_issues *errors)
{
    const char *was = sd_sale_status_name(old->status);
    if (old->order_type == SD_ORDER_REFUND) {
        if (next->order_type != SD_ORDER_REFUND || !same_amounts(old, next)) {
            issue(errors, ptr, "quantity",
                  "a stored refund cannot be changed: send a new refund record");
            return -EINVAL;
        }
        return 0;
    }
    if (next->order_type == SD_ORDER_REFUND) {
        issue(errors, ptr, "order_type",
              "a stored %s cannot become a refund: send the refund "
              "with an invoice_number of its own",
              sd_order_type_name(old->order_type));
        return -EINVAL;
    }
    if (old->order_type == SD_ORDER_SALE && next->order_type != SD_ORDER_SALE) {
        issue(errors, ptr, "order_type", "a stored sale cannot become a%s %s",
              next->order_type == SD_ORDER_OPTION || next->order_type == SD_ORDER_ABANDONED ? "n"
                                                                                            : "",
              sd_order_type_name(next->order_type));
        return -EINVAL;
    }
    if (old->order_type != SD_ORDER_SALE) {
        /* A reservation, option or basket may be bought (becomes a sale) or, for the holds,
         * be freed; a freed one stays freed. */
        if (old->status == SD_STATUS_FREED && next->order_type == old->order_type &&
            next->status != SD_STATUS_FREED) {
            issue(errors, ptr, "status", "the %s is freed: it cannot become %s again",
                  sd_order_type_name(old->order_type), sd_sale_status_name(next->status));
            return -EINVAL;
        }
        return 0;
    }
    /* sale → sale */
    if (old->status == SD_STATUS_CANCELLED || old->status == SD_STATUS_EXCHANGED) {
        if (next->status != old->status) {
            issue(errors, ptr, "status", "the sale is %s: it cannot become %s", was,
                  sd_sale_status_name(next->status));
            return -EINVAL;
        }
        return 0;
    }
    if (old->status == SD_STATUS_REFUNDED) {
        if (next->status == SD_STATUS_SOLD) {
            issue(errors, ptr, "status", "the sale is refunded: it cannot become sold again");
            return -EINVAL;
        }
        if (next->refunded_quantity < old->refunded_quantity) {
            issue(errors, ptr, "refunded_quantity",
                  "must not be less than the %" PRId64 " tickets refunded already",
                  old->refunded_quantity);
            return -EINVAL;
        }
        if (next->refunded_minor < old->refunded_minor) {
            issue(errors, ptr, "refunded_amount",
                  "must not be less than the amount refunded already");
            return -EINVAL;
        }
        if (sd_sale_wholly_refunded(old) && !same_amounts(old, next)) {
            issue(errors, ptr, "status",
                  "the sale is refunded wholly: it cannot become %s or change its amounts",
                  sd_sale_status_name(next->status));
            return -EINVAL;
        }
    }
    return 0;
}

int sd_sale_refund_apply(struct sd_sale_state *st, const char *invoice, int64_t quantity,
                         int64_t amount_minor, const char *currency, const char *ptr,
                         struct sd_issues *errors)
{
    invoice = invoice ? invoice : "";
    if (st->order_type != SD_ORDER_SALE) {
        issue(errors, ptr, "refund_of", "'%.64s' is a%s %s, not a sale: only sales are refunded",
              invoice,
              st->order_type == SD_ORDER_OPTION || st->order_type == SD_ORDER_ABANDONED ? "n" : "",
              sd_order_type_name(st->order_type));
        return -EINVAL;
    }
    if (st->status != SD_STATUS_SOLD && st->status != SD_STATUS_REFUNDED) {
        issue(errors, ptr, "refund_of", "sale '%.64s' is %s: it cannot be refunded", invoice,
              sd_sale_status_name(st->status));
        return -EINVAL;
    }
    if (!currency || strncmp(currency, st->currency, 3) != 0) {
        issue(errors, ptr, "currency", "must be %.3s, the currency of sale '%.64s'", st->currency,
              invoice);
        return -EINVAL;
    }
    if (quantity < 0 || quantity > st->quantity - st->refunded_quantity) {
        issue(errors, ptr, "quantity",
              "refunds more than was sold: %" PRId64 " of the %" PRId64
              " tickets of sale '%.64s' are refunded already",
              st->refunded_quantity, st->quantity, invoice);
        return -EINVAL;
    }
    if (amount_minor < 0 || amount_minor > st->total_minor - st->refunded_minor) {
        issue(errors, ptr, "sales_price",
              "refunds more than was paid for sale '%.64s' (quantity × sales_price beyond what "
              "is left to refund)",
              invoice);
        return -EINVAL;
    }
    st->refunded_quantity += quantity;
    st->refunded_minor += amount_minor;
    st->status = SD_STATUS_REFUNDED;
    return 0;
}
