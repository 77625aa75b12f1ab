/* guard.c — the connection table behind guard.h: phase deadlines and free slots.
 *
 * One mutex guards the table, every connection's phase and deadline, and every shutdown() the
 * guard makes: a connection is removed (under the mutex) before libmicrohttpd closes its fd, so
 * an fd the guard shuts down is always the connection it belongs to. The table is a list in
 * accept order; a sweep and an eviction walk it (at most the connection limit, a thousand
 * entries by default, and evictions only happen near the limit). A connection is closed at
 * most once (`closing`); it stays in the table, and counts against the limits, until
 * libmicrohttpd has closed it, as it does in libmicrohttpd's own counts. */
#include "server/guard.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"

enum phase { PH_HEAD, PH_REQUEST, PH_HOLD, PH_IDLE };

struct sd_guard_conn {
    struct sd_guard_conn *prev, *next;
    int fd;
    unsigned char addr[16]; /* the client's address (IPv4 in the first 4 bytes), for per-IP */
    unsigned char family;   /* 0 = unknown */
    enum phase phase;
    bool closing;
    int64_t since_usec;    /* entered the phase */
    int64_t deadline_usec; /* PH_HOLD: the time that was left instead */
};

struct sd_guard {
    struct sd_guard_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool has_thread;
    pthread_t thread;
    struct sd_guard_conn *head, *tail;
    unsigned n;
    unsigned evicted; /* since the last sweep */
};

/* A slot reserve of a tenth of the limit (at least one): past limit - reserve, an accept closes
 * the oldest connection that has not sent a complete request head yet, or sits idle. */
static unsigned threshold(unsigned limit)
{
    unsigned reserve = limit / 10 ? limit / 10 : 1;
    return limit > reserve ? limit - reserve : 1;
}

static bool same_ip(const struct sd_guard_conn *a, const struct sd_guard_conn *b)
{
    return a->family != 0 && a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
}

static void close_conn(struct sd_guard_conn *c)
{
    c->closing = true;
    shutdown(c->fd, SHUT_RDWR);
}

/* The connection to close for a free slot: the oldest in the head or idle phase; failing that,
 * the oldest that has been in a request for longer than the head deadline (sending its body or
 * reading its answer slowly). Never `except`; only from the address of `ip` if given. */
static struct sd_guard_conn *victim(struct sd_guard *g, int64_t now,
                                    const struct sd_guard_conn *except,
                                    const struct sd_guard_conn *ip)
{
    struct sd_guard_conn *waiting = NULL, *slow = NULL;
    for (struct sd_guard_conn *c = g->head; c; c = c->next) {
        if (c == except || c->closing || (ip && !same_ip(c, ip))) {
            continue;
        }
        if (c->phase == PH_HEAD || c->phase == PH_IDLE) {
            if (!waiting || c->since_usec < waiting->since_usec) {
                waiting = c;
            }
        } else if (c->phase == PH_REQUEST && now - c->since_usec > g->cfg.head_usec) {
            if (!slow || c->since_usec < slow->since_usec) {
                slow = c;
            }
        }
    }
    return waiting ? waiting : slow;
}

/* Open (not closing) connections, all or from the address of `ip`. */
static unsigned count_open(struct sd_guard *g, const struct sd_guard_conn *ip)
{
    unsigned n = 0;
    for (struct sd_guard_conn *c = g->head; c; c = c->next) {
        n += !c->closing && (!ip || same_ip(c, ip));
    }
    return n;
}

/* Close victims until `ip`'s address (or, without ip, the server) is back under the threshold
 * of `limit`. Returns how many were closed. */
static unsigned make_room(struct sd_guard *g, int64_t now, unsigned limit,
                          const struct sd_guard_conn *except, const struct sd_guard_conn *ip)
{
    unsigned closed = 0;
    unsigned open = count_open(g, ip);
    while (open > threshold(limit)) {
        struct sd_guard_conn *v = victim(g, now, except, ip);
        if (!v) {
            break;
        }
        close_conn(v);
        open--;
        closed++;
    }
    return closed;
}

static int by_address(const void *a, const void *b)
{
    const struct sd_guard_conn *x = *(struct sd_guard_conn *const *)a;
    const struct sd_guard_conn *y = *(struct sd_guard_conn *const *)b;
    if (x->family != y->family) {
        return x->family < y->family ? -1 : 1;
    }
    return memcmp(x->addr, y->addr, sizeof(x->addr));
}

/* The reserve for every address over it, found by sorting the open connections by address
 * (only when there are more open connections than one address may keep). */
static unsigned enforce_per_ip(struct sd_guard *g, int64_t now)
{
    unsigned t = threshold(g->cfg.max_per_ip);
    unsigned n = count_open(g, NULL);
    if (n <= t) {
        return 0;
    }
    struct sd_guard_conn **v = sd_calloc(n, sizeof(*v));
    size_t k = 0;
    for (struct sd_guard_conn *c = g->head; c; c = c->next) {
        if (!c->closing && c->family) {
            v[k++] = c;
        }
    }
    qsort(v, k, sizeof(*v), by_address);
    unsigned closed = 0;
    for (size_t i = 0; i < k;) {
        size_t j = i + 1;
        while (j < k && same_ip(v[i], v[j])) {
            j++;
        }
        if (j - i > t) {
            closed += make_room(g, now, g->cfg.max_per_ip, NULL, v[i]);
        }
        i = j;
    }
    free(v);
    return closed;
}

/* The reserve, for addresses and for the server. An accept enforces it for the new
 * connection's address; the sweep for every address, since libmicrohttpd refuses connections
 * at its limit without telling us (requests that went idle, or slow ones, can hold it there). */
static unsigned enforce_reserve(struct sd_guard *g, int64_t now, const struct sd_guard_conn *fresh)
{
    unsigned closed = 0;
    if (g->cfg.max_per_ip) {
        if (fresh) {
            closed += fresh->family ? make_room(g, now, g->cfg.max_per_ip, fresh, fresh) : 0;
        } else {
            closed += enforce_per_ip(g, now);
        }
    }
    if (g->cfg.max_connections) {
        closed += make_room(g, now, g->cfg.max_connections, fresh, NULL);
    }
    return closed;
}

struct sd_guard_conn *sd_guard_add(struct sd_guard *g, int fd, const struct sockaddr *addr)
{
    struct sd_guard_conn *c = sd_calloc(1, sizeof(*c));
    c->fd = fd;
    if (addr && addr->sa_family == AF_INET) {
        c->family = AF_INET;
        memcpy(c->addr, &((const struct sockaddr_in *)addr)->sin_addr, 4);
    } else if (addr && addr->sa_family == AF_INET6) {
        c->family = AF_INET6;
        memcpy(c->addr, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
    }
    c->phase = PH_HEAD;
    c->since_usec = sd_mono_usec();
    c->deadline_usec = c->since_usec + g->cfg.head_usec;

    pthread_mutex_lock(&g->lock);
    c->prev = g->tail;
    if (g->tail) {
        g->tail->next = c;
    } else {
        g->head = c;
    }
    g->tail = c;
    g->n++;
    g->evicted += enforce_reserve(g, c->since_usec, c);
    pthread_mutex_unlock(&g->lock);
    return c;
}

void sd_guard_remove(struct sd_guard *g, struct sd_guard_conn *c)
{
    if (!c) {
        return;
    }
    pthread_mutex_lock(&g->lock);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        g->head = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    } else {
        g->tail = c->prev;
    }
    g->n--;
    pthread_mutex_unlock(&g->lock);
    free(c);
}

static void set_phase(struct sd_guard *g, struct sd_guard_conn *c, enum phase from, enum phase to)
{
    if (!c) {
        return;
    }
    pthread_mutex_lock(&g->lock);
    int64_t now = sd_mono_usec();
    if (c->phase == from) {
        switch (to) {
        case PH_HEAD: c->deadline_usec = now + g->cfg.head_usec; break;
        case PH_REQUEST:
            c->deadline_usec = from == PH_HOLD ? now + c->deadline_usec /* the time left */
                                               : now + g->cfg.request_usec;
            break;
        case PH_HOLD: c->deadline_usec = c->deadline_usec - now; break;
        case PH_IDLE: c->deadline_usec = now + g->cfg.idle_usec; break;
        }
        c->phase = to;
        c->since_usec = now;
    }
    pthread_mutex_unlock(&g->lock);
}

void sd_guard_request_line(struct sd_guard *g, struct sd_guard_conn *c)
{
    set_phase(g, c, PH_IDLE, PH_HEAD);
}

void sd_guard_request(struct sd_guard *g, struct sd_guard_conn *c)
{
    set_phase(g, c, PH_HEAD, PH_REQUEST);
}

void sd_guard_hold(struct sd_guard *g, struct sd_guard_conn *c)
{
    set_phase(g, c, PH_REQUEST, PH_HOLD);
}

void sd_guard_unhold(struct sd_guard *g, struct sd_guard_conn *c)
{
    set_phase(g, c, PH_HOLD, PH_REQUEST);
}

void sd_guard_idle(struct sd_guard *g, struct sd_guard_conn *c)
{
    if (!c) {
        return;
    }
    /* From any phase: a request can end (refused, or its connection failing) in each. */
    pthread_mutex_lock(&g->lock);
    c->phase = PH_IDLE;
    c->since_usec = sd_mono_usec();
    c->deadline_usec = c->since_usec + g->cfg.idle_usec;
    pthread_mutex_unlock(&g->lock);
}

void sd_guard_sweep(struct sd_guard *g, int64_t now_usec, struct sd_guard_closed *ret)
{
    struct sd_guard_closed out = {0};
    pthread_mutex_lock(&g->lock);
    for (struct sd_guard_conn *c = g->head; c; c = c->next) {
        if (c->closing || c->phase == PH_HOLD || now_usec < c->deadline_usec) {
            continue;
        }
        close_conn(c);
        switch (c->phase) {
        case PH_HEAD: out.head++; break;
        case PH_REQUEST: out.request++; break;
        case PH_IDLE: out.idle++; break;
        case PH_HOLD: break;
        }
    }
    out.evicted = g->evicted + enforce_reserve(g, now_usec, NULL);
    g->evicted = 0;
    pthread_mutex_unlock(&g->lock);
    *ret = out;
}

static void *watchdog(void *arg)
{
    struct sd_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250L * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
        if (g->stop) {
            break;
        }
        pthread_mutex_unlock(&g->lock);
        struct sd_guard_closed k;
        sd_guard_sweep(g, sd_mono_usec(), &k);
        if (k.head || k.request || k.idle) {
            sd_log(SD_LOG_WARN, "closed connections past their deadline",
                   "head=%u request=%u idle=%u", k.head, k.request, k.idle);
        }
        if (k.evicted) {
            sd_log(SD_LOG_WARN, "closed waiting connections to keep slots for new clients",
                   "count=%u", k.evicted);
        }
        pthread_mutex_lock(&g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int sd_guard_new(const struct sd_guard_config *cfg, struct sd_guard **ret)
{
    struct sd_guard *g = sd_calloc(1, sizeof(*g));
    g->cfg = *cfg;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!cfg->no_thread) {
        int r = pthread_create(&g->thread, NULL, watchdog, g);
        if (r != 0) {
            pthread_cond_destroy(&g->cond);
            pthread_mutex_destroy(&g->lock);
            free(g);
            return -r;
        }
        g->has_thread = true;
    }
    *ret = g;
    return 0;
}

void sd_guard_free(struct sd_guard *g)
{
    if (!g) {
        return;
    }
    if (g->has_thread) {
        pthread_mutex_lock(&g->lock);
        g->stop = true;
        pthread_cond_signal(&g->cond);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
    }
    struct sd_guard_conn *c = g->head;
    while (c) {
        struct sd_guard_conn *next = c->next;
        free(c);
        c = next;
    }
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    free(g);
}
