/* pg_json.c — record documents made as the SQLite backend makes them (pg_json.h).
 *
 * A document is parsed into a small tree whose leaves (strings, numbers, literals) and member
 * names point into the text as written, so rendering copies every token unchanged and only
 * drops the whitespace between them — exactly what SQLite 3.40's json_patch and json_set
 * return. The merge follows SQLite's jsonMergePatch: a patch that is not an object replaces
 * the target; a target that is not an object is replaced by the patch without its null
 * members (recursively through objects, never inside arrays); otherwise each patch member
 * finds the target's first member of the same name (compared as written): null removes it,
 * anything else merges into it; a new member is appended without its null members. Values
 * that SQLite writes from SQL text (json_set's value) are escaped as SQLite escapes them.
 *
 * json_extract's text of a number (the folded post code and city of a customer) is SQLite's
 * too: an integer in decimal, a real printed as SQLite prints a REAL. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "pg_json.h"

enum jt { J_OBJECT, J_ARRAY, J_STRING, J_NULL, J_OTHER };

struct jv;
struct jmember {
    const char *key; /* as written, quotes included */
    size_t key_len;
    struct jv *val;
    bool removed;
};

struct jv {
    enum jt type;
    const char *raw; /* leaves: the token as written */
    size_t len;
    char *own;         /* a leaf whose text is ours (json_set's value) */
    struct jmember *m; /* object members */
    struct jv **el;    /* array elements */
    size_t n, cap;
};

static void jv_free(struct jv *v)
{
    if (!v) {
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->type == J_OBJECT) {
            jv_free(v->m[i].val);
        } else if (v->type == J_ARRAY) {
            jv_free(v->el[i]);
        }
    }
    free(v->m);
    free(v->el);
    free(v->own);
    free(v);
}

struct parser {
    const char *p, *end;
    int depth;
};

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) {
        ps->p++;
    }
}

/* A string token at ps->p: its length (quotes included), or 0 if malformed. */
static size_t string_len(const struct parser *ps)
{
    const char *q = ps->p + 1;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') {
            q++;
        }
        q++;
    }
    return q < ps->end ? (size_t)(q + 1 - ps->p) : 0;
}

static struct jv *parse_value(struct parser *ps);

static struct jv *parse_object(struct parser *ps, struct jv *v)
{
    ps->p++; /* { */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return v;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            goto fail;
        }
        size_t kl = string_len(ps);
        if (!kl) {
            goto fail;
        }
        const char *key = ps->p;
        ps->p += kl;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            goto fail;
        }
        ps->p++;
        struct jv *val = parse_value(ps);
        if (!val) {
            goto fail;
        }
        if (v->n == v->cap) {
            v->cap = v->cap ? v->cap * 2 : 8;
            v->m = sd_realloc(v->m, v->cap * sizeof(*v->m));
        }
        v->m[v->n++] = (struct jmember){.key = key, .key_len = kl, .val = val};
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return v;
        }
        goto fail;
    }
fail:
    jv_free(v);
    return NULL;
}

static struct jv *parse_array(struct parser *ps, struct jv *v)
{
    ps->p++; /* [ */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return v;
    }
    for (;;) {
        struct jv *el = parse_value(ps);
        if (!el) {
            goto fail;
        }
        if (v->n == v->cap) {
            v->cap = v->cap ? v->cap * 2 : 8;
            v->el = sd_realloc(v->el, v->cap * sizeof(*v->el));
        }
        v->el[v->n++] = el;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return v;
        }
        goto fail;
    }
fail:
    jv_free(v);
    return NULL;
}

static struct jv *parse_value(struct parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end || ++ps->depth > 2000) {
        return NULL;
    }
    struct jv *v = sd_calloc(1, sizeof(*v));
    struct jv *ret = v;
    char ch = *ps->p;
    if (ch == '{') {
        v->type = J_OBJECT;
        ret = parse_object(ps, v);
    } else if (ch == '[') {
        v->type = J_ARRAY;
        ret = parse_array(ps, v);
    } else if (ch == '"') {
        v->type = J_STRING;
        v->raw = ps->p;
        v->len = string_len(ps);
        ps->p += v->len;
        if (!v->len) {
            jv_free(v);
            ret = NULL;
        }
    } else {
        const char *q = ps->p;
        while (q < ps->end &&
               (strchr("-+.eE", *q) || (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z'))) {
            q++;
        }
        v->raw = ps->p;
        v->len = (size_t)(q - ps->p);
        ps->p = q;
        v->type = v->len == 4 && memcmp(v->raw, "null", 4) == 0 ? J_NULL : J_OTHER;
        if (!v->len) {
            jv_free(v);
            ret = NULL;
        }
    }
    ps->depth--;
    return ret;
}

static int parse(const char *text, struct jv **ret)
{
    struct parser ps = {.p = text, .end = text + strlen(text)};
    struct jv *v = parse_value(&ps);
    if (v) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            jv_free(v);
            v = NULL;
        }
    }
    if (!v) {
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static void render(struct sd_buf *b, const struct jv *v)
{
    bool first = true;
    switch (v->type) {
    case J_OBJECT:
        sd_buf_append(b, "{", 1);
        for (size_t i = 0; i < v->n; i++) {
            if (v->m[i].removed) {
                continue;
            }
            if (!first) {
                sd_buf_append(b, ",", 1);
            }
            first = false;
            sd_buf_append(b, v->m[i].key, v->m[i].key_len);
            sd_buf_append(b, ":", 1);
            render(b, v->m[i].val);
        }
        sd_buf_append(b, "}", 1);
        break;
    case J_ARRAY:
        sd_buf_append(b, "[", 1);
        for (size_t i = 0; i < v->n; i++) {
            if (i) {
                sd_buf_append(b, ",", 1);
            }
            render(b, v->el[i]);
        }
        sd_buf_append(b, "]", 1);
        break;
    default: sd_buf_append(b, v->raw, v->len); break;
    }
}

/* Drop null members, recursively through objects (jsonRemoveAllNulls). */
static void remove_all_nulls(struct jv *v)
{
    if (v->type != J_OBJECT) {
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->m[i].val->type == J_NULL) {
            v->m[i].removed = true;
        } else {
            remove_all_nulls(v->m[i].val);
        }
    }
}

static struct jmember *find(struct jv *obj, const char *key, size_t key_len)
{
    for (size_t i = 0; i < obj->n; i++) {
        if (!obj->m[i].removed && obj->m[i].key_len == key_len &&
            memcmp(obj->m[i].key, key, key_len) == 0) {
            return &obj->m[i];
        }
    }
    return NULL;
}

static void append_member(struct jv *obj, const char *key, size_t key_len, struct jv *val)
{
    if (obj->n == obj->cap) {
        obj->cap = obj->cap ? obj->cap * 2 : 8;
        obj->m = sd_realloc(obj->m, obj->cap * sizeof(*obj->m));
    }
    obj->m[obj->n++] = (struct jmember){.key = key, .key_len = key_len, .val = val};
}

/* Merge patch into target; both are consumed, the result is returned. */
static struct jv *merge(struct jv *target, struct jv *patch)
{
    if (patch->type != J_OBJECT) {
        jv_free(target);
        return patch;
    }
    if (target->type != J_OBJECT) {
        jv_free(target);
        remove_all_nulls(patch);
        return patch;
    }
    for (size_t i = 0; i < patch->n; i++) {
        struct jmember *pm = &patch->m[i];
        struct jmember *tm = find(target, pm->key, pm->key_len);
        if (tm) {
            if (pm->val->type == J_NULL) {
                tm->removed = true;
            } else {
                tm->val = merge(tm->val, pm->val);
                pm->val = NULL;
            }
        } else if (pm->val->type != J_NULL) {
            remove_all_nulls(pm->val);
            append_member(target, pm->key, pm->key_len, pm->val);
            pm->val = NULL;
        }
    }
    /* The members moved into target are gone from patch; the rest is freed with it. Member
     * names still point into the patch text, which the caller keeps until rendering. */
    for (size_t i = 0; i < patch->n; i++) {
        jv_free(patch->m[i].val);
    }
    patch->n = 0;
    jv_free(patch);
    return target;
}

void sd_pg_json_string(struct sd_buf *b, const char *s)
{
    static const char special[32] = {
        ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r'};
    static const char hex[] = "0123456789abcdef";
    sd_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sd_buf_append(b, e, 2);
        } else if (*p < 0x20) {
            if (special[*p]) {
                char e[2] = {'\\', special[*p]};
                sd_buf_append(b, e, 2);
            } else {
                char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
                sd_buf_append(b, e, 6);
            }
        } else {
            sd_buf_append(b, p, 1);
        }
    }
    sd_buf_append(b, "\"", 1);
}

/* json_set(v, '$.key', value) on a parsed object; the key text is built into keybuf, which
 * must live until rendering. A non-object is left as it is (SQLite sets nothing then). */
static void set_member(struct jv *v, const char *key, const char *value, struct sd_buf *keybuf)
{
    if (v->type != J_OBJECT) {
        return;
    }
    struct sd_buf t;
    sd_buf_init(&t);
    sd_pg_json_string(&t, value);
    struct jv *val = sd_calloc(1, sizeof(*val));
    val->type = J_STRING;
    val->len = t.len;
    val->own = sd_buf_steal(&t);
    val->raw = val->own;
    sd_buf_release(&t);
    sd_buf_reset(keybuf);
    sd_buf_append(keybuf, "\"", 1);
    sd_buf_puts(keybuf, key);
    sd_buf_append(keybuf, "\"", 1);
    struct jmember *m = find(v, keybuf->data, keybuf->len);
    if (m) {
        jv_free(m->val);
        m->val = val;
    } else {
        append_member(v, keybuf->data, keybuf->len, val);
    }
}

int sd_pg_json_patch(const char *target, const char *patch, const char *set_key,
                     const char *set_value, char **ret)
{
    struct jv *t = NULL, *p = NULL;
    int r = parse(target ? target : "{}", &t);
    if (r == 0) {
        r = parse(patch, &p);
    }
    if (r < 0) {
        jv_free(t);
        return r;
    }
    t = merge(t, p);
    struct sd_buf keybuf, out;
    sd_buf_init(&keybuf);
    sd_buf_init(&out);
    if (set_key) {
        set_member(t, set_key, set_value, &keybuf);
    }
    render(&out, t);
    jv_free(t);
    sd_buf_release(&keybuf);
    *ret = sd_buf_steal(&out);
    sd_buf_release(&out);
    return 0;
}

int sd_pg_json_set(const char *doc, const char *key, const char *value, char **ret)
{
    struct jv *v = NULL;
    int r = parse(doc, &v);
    if (r < 0) {
        return r;
    }
    struct sd_buf keybuf, out;
    sd_buf_init(&keybuf);
    sd_buf_init(&out);
    set_member(v, key, value, &keybuf);
    render(&out, v);
    jv_free(v);
    sd_buf_release(&keybuf);
    *ret = sd_buf_steal(&out);
    sd_buf_release(&out);
    return 0;
}

/* A JSON number as SQLite's text of the SQL value json_extract makes of it: an integer in
 * decimal, anything else (a fraction, an exponent, an integer beyond 64 bits) as a REAL, which
 * SQLite prints with %.15g and always a decimal point ("12.0", "1.0e+20"). */
static char *number_text(const char *raw, size_t len)
{
    char *tok = sd_strndup(raw, len);
    char out[64];
    bool real = strpbrk(tok, ".eE") != NULL;
    if (!real) {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(tok, &end, 10);
        if (errno == 0 && end && *end == '\0') {
            snprintf(out, sizeof(out), "%lld", v);
        } else {
            real = true;
        }
    }
    if (real) {
        double d = strtod(tok, NULL);
        if (d == 0) {
            d = 0; /* SQLite prints -0.0 as 0.0 */
        }
        char g[48];
        snprintf(g, sizeof(g), "%.15g", d);
        char *e = strchr(g, 'e');
        if (strchr(g, '.') || strchr(g, 'n') || strchr(g, 'i')) {
            snprintf(out, sizeof(out), "%s", g);
        } else if (e) {
            snprintf(out, sizeof(out), "%.*s.0%s", (int)(e - g), g, e);
        } else {
            snprintf(out, sizeof(out), "%s.0", g);
        }
    }
    free(tok);
    return sd_strdup(out);
}

int sd_pg_json_fold_member(const char *doc, const char *key, bool *ret_present, char **ret)
{
    struct jv *v = NULL;
    int r = parse(doc, &v);
    if (r < 0) {
        return r;
    }
    *ret_present = false;
    *ret = NULL;
    if (v->type == J_OBJECT) {
        struct sd_buf k;
        sd_buf_init(&k);
        sd_buf_append(&k, "\"", 1);
        sd_buf_puts(&k, key);
        sd_buf_append(&k, "\"", 1);
        struct jmember *m = find(v, k.data, k.len);
        sd_buf_release(&k);
        if (m) {
            *ret_present = true;
            const struct jv *x = m->val;
            char *text = NULL;
            if (x->type == J_STRING) {
                char *tok = sd_strndup(x->raw, x->len);
                json_t *j = json_loads(tok, JSON_DECODE_ANY, NULL);
                free(tok);
                if (json_is_string(j)) {
                    text = sd_strdup(json_string_value(j));
                }
                json_decref(j);
                if (!text) {
                    jv_free(v);
                    return -EINVAL;
                }
            } else if (x->type == J_OTHER && x->len == 4 && memcmp(x->raw, "true", 4) == 0) {
                text = sd_strdup("1");
            } else if (x->type == J_OTHER && x->len == 5 && memcmp(x->raw, "false", 5) == 0) {
                text = sd_strdup("0");
            } else if (x->type == J_OTHER) {
                text = number_text(x->raw, x->len);
            } else if (x->type != J_NULL) {
                struct sd_buf b;
                sd_buf_init(&b);
                render(&b, x);
                text = sd_buf_steal(&b);
                sd_buf_release(&b);
            }
            if (text) {
                *ret = sd_text_fold(text);
                free(text);
            }
        }
    }
    jv_free(v);
    return 0;
}
