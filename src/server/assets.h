/* assets.h — files shipped inside the binary (the OpenAPI document, the dashboard's HTML, CSS
 * and JS), generated at build time by cmake/embed_assets.cmake from docs/openapi.yaml and ui/. */
#ifndef SD_SERVER_ASSETS_H
#define SD_SERVER_ASSETS_H

#include <stddef.h>

struct sd_asset {
    const char *path;          /* relative to the repository: "docs/openapi.yaml", "ui/app.js" */
    const unsigned char *data; /* len bytes, followed by a NUL that is not counted */
    size_t len;
};

extern const struct sd_asset sd_assets[]; /* ends with an entry whose path is NULL */
extern const unsigned sd_assets_count;

/* The asset at PATH (exact match), or NULL. */
const struct sd_asset *sd_asset_find(const char *path);

/* The Content-Type for PATH by its extension ("text/html; charset=utf-8", …);
 * "application/octet-stream" when unknown. */
const char *sd_asset_content_type(const char *path);

#endif
