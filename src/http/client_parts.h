/* client_parts.h — what the parts of the HTTP client (client.c, session.c, token.c, form.c)
 * share with each other and no one else. Not for connectors: they use client.h. */
#ifndef SD_HTTP_CLIENT_PARTS_H
#define SD_HTTP_CLIENT_PARTS_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "http/client.h"

/* libcurl's global init, once per process (any thread; before any libcurl object). */
void sd_http_global_init(void);

/* Attach the session's jar to an easy handle before the transfer (turns the cookie engine on
 * for it). */
void sd_http_session_attach(struct sd_http_session *s, CURL *h);
/* After the transfer on h: 0 if the jar is within its caps, else -EFBIG with the reason in
 * error (no cookie names or values) and the jar emptied. */
int sd_http_session_check(struct sd_http_session *s, CURL *h, char *error, size_t error_size);

/* The header-value rule every helper applies: no byte below 0x20 and no DEL. */
bool sd_http_header_value_ok(const char *v);

#endif
