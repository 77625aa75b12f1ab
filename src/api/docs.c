/* docs.c — GET /openapi.yaml: the API's OpenAPI document, served from the copy embedded in the
 * binary at build time (server/assets.h), so the hub describes exactly the routes it was built
 * with and needs no file on disk. No key: the document holds no tenant data and no secret. */
#include "api/api.h"
#include "server/assets.h"

#define OPENAPI_ASSET "docs/openapi.yaml"

int sd_api_openapi(struct sd_req *req)
{
    const struct sd_asset *a = sd_asset_find(OPENAPI_ASSET);
    if (!a) {
        /* cmake/embed_assets.cmake always embeds it; a build without it is broken. */
        sd_req_reply_error(req, 500, "internal_error", "this build has no OpenAPI document");
        return SD_REQ_DONE;
    }
    sd_req_reply_text(req, 200, sd_asset_content_type(OPENAPI_ASSET), (const char *)a->data);
    return SD_REQ_DONE;
}
