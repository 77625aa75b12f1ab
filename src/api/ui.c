/* ui.c — the operator dashboard's static files: GET /ui (ui/index.html) and GET /ui/{file}
 * (ui/app.js, ui/app.css …), served from the copies embedded in the binary (server/assets.h).
 *
 * No key is needed: the files hold no data. Every number the pages show comes from the
 * authenticated API, called by the page with the token the operator typed in. So the answers
 * carry a strict Content-Security-Policy (only this origin, no inline script or style, no
 * framing): a script injected into a page through data it shows cannot run, and a key kept in
 * the page cannot be sent elsewhere. They are cached by ETag (a hash of the embedded bytes):
 * the browser revalidates every time and gets a 304 while the binary is the same. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "server/assets.h"

#define UI_DIR "ui/"
#define UI_FILE_MAX 64

static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/* FNV-1a over the bytes: the files change only with the binary, so this is a version stamp. */
static void asset_etag(const struct sd_asset *a, char out[20])
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < a->len; i++) {
        h ^= a->data[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 20, "\"%016llx\"", (unsigned long long)h);
}

/* If-None-Match holds etag (one of a comma-separated list, weak or strong, or "*"). */
static bool etag_matches(const char *header, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = header;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (strncmp(p, "W/", 2) == 0) {
            p += 2;
        }
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }
        if ((n == 1 && *p == '*') || (n == elen && memcmp(p, etag, elen) == 0)) {
            return true;
        }
        p = end;
    }
    return false;
}

static int serve(struct sd_req *req, const char *file)
{
    char path[sizeof UI_DIR + UI_FILE_MAX];
    const struct sd_asset *a = NULL;
    if (strlen(file) <= UI_FILE_MAX) {
        snprintf(path, sizeof path, UI_DIR "%s", file);
        a = sd_asset_find(path);
    }
    /* The table holds text files only (the server answers NUL-terminated bodies). */
    if (!a || memchr(a->data, 0, a->len)) {
        sd_req_reply_error(req, 404, "not_found", "no dashboard file '%s'", file);
        return SD_REQ_DONE;
    }
    char etag[20];
    asset_etag(a, etag);
    sd_req_add_header(req, "Content-Security-Policy", "%s", csp);
    sd_req_add_header(req, "X-Content-Type-Options", "nosniff");
    sd_req_add_header(req, "Referrer-Policy", "no-referrer");
    sd_req_add_header(req, "Cache-Control", "no-cache");
    sd_req_add_header(req, "ETag", "%s", etag);
    const char *inm = sd_req_header(req, "If-None-Match");
    if (inm && etag_matches(inm, etag)) {
        sd_req_reply_text(req, 304, sd_asset_content_type(path), "");
        return SD_REQ_DONE;
    }
    sd_req_reply_text(req, 200, sd_asset_content_type(path), (const char *)a->data);
    return SD_REQ_DONE;
}

int sd_api_ui_index(struct sd_req *req)
{
    return serve(req, "index.html");
}

int sd_api_ui_file(struct sd_req *req)
{
    return serve(req, req->params[0]);
}
