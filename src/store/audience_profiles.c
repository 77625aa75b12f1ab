/* audience_profiles.c — the store's profile wrappers (store/audience.h, profiles part), the
 * link-rule names and the release helpers of the structs the profile ops hand out. Like
 * store.c's wrappers they add nothing but a check that the backend implements the op
 * (-ENOTSUP otherwise); thread rules are documented at each op. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/audience.h"
#include "store/store.h"

static const char *const rule_names[] = {"email", "email_and_last_name", "none"};

const char *sd_link_rule_name(enum sd_link_rule rule)
{
    return (unsigned)rule < sizeof(rule_names) / sizeof(rule_names[0]) ? rule_names[rule] : "?";
}

int sd_link_rule_parse(const char *s, enum sd_link_rule *ret)
{
    for (size_t i = 0; s && i < sizeof(rule_names) / sizeof(rule_names[0]); i++) {
        if (strcmp(s, rule_names[i]) == 0) {
            *ret = (enum sd_link_rule)i;
            return 0;
        }
    }
    return -EINVAL;
}

void sd_profile_release(struct sd_profile *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n_members; i++) {
        struct sd_profile_member *m = &p->members[i];
        free(m->source);
        free(m->customer_id);
        free(m->email);
        free(m->first_name);
        free(m->last_name);
        free(m->doc);
    }
    free(p->members);
    *p = (struct sd_profile){0};
}

void sd_profiles_free(struct sd_profile *v, size_t n)
{
    if (!v) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sd_profile_release(&v[i]);
    }
    free(v);
}

static const struct sd_store_profile_ops *ops(struct sd_store_handle *h)
{
    return sd_store_handle_ops(h)->profiles;
}

#define CALL(op, ...)                                                                              \
    (ops(h) && ops(h)->op ? ops(h)->op(sd_store_handle_backend(h), __VA_ARGS__) : -ENOTSUP)

int sd_store_profile_link_rule_get(struct sd_store_handle *h, const char *client_id,
                                   enum sd_link_rule *ret)
{
    return CALL(link_rule_get, client_id, ret);
}

int sd_store_profile_link_rule_set(struct sd_store_handle *h, const char *client_id,
                                   enum sd_link_rule rule)
{
    return CALL(link_rule_set, client_id, rule);
}

int sd_store_profile_get(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                         int64_t profile_id, struct sd_profile *ret)
{
    return CALL(get, tenant_id, env, profile_id, ret);
}

int sd_store_profile_find_by_email(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                   const char *email_key, struct sd_profile **ret, size_t *ret_n)
{
    return CALL(find_by_email, tenant_id, env, email_key, ret, ret_n);
}

int sd_store_profile_find_by_source(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                    const char *source, const char *customer_id,
                                    struct sd_profile **ret, size_t *ret_n)
{
    return CALL(find_by_source, tenant_id, env, source, customer_id, ret, ret_n);
}

int sd_store_profile_is_suppressed(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                                   const char *email_key, bool *ret)
{
    return CALL(is_suppressed, tenant_id, env, email_key, ret);
}

int sd_store_profile_split(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           int64_t profile_id, const char *source, const char *customer_id,
                           int64_t *ret_new_id)
{
    return CALL(split, tenant_id, env, profile_id, source, customer_id, ret_new_id);
}

int sd_store_profile_suppress(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                              const char *const *email_keys, size_t n,
                              struct sd_suppress_result *ret)
{
    return CALL(suppress, tenant_id, env, email_keys, n, ret);
}

int sd_store_profile_erase(struct sd_store_handle *h, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id,
                           struct sd_erasure_result *ret)
{
    return CALL(erase, tenant_id, env, source, customer_id, ret);
}
