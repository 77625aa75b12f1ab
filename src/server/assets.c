/* assets.c — lookup of the files embedded by cmake/embed_assets.cmake. */
#include "server/assets.h"

#include <string.h>

const struct sd_asset *sd_asset_find(const char *path)
{
    if (!path)
        return NULL;
    for (unsigned i = 0; i < sd_assets_count; i++)
        if (strcmp(sd_assets[i].path, path) == 0)
            return &sd_assets[i];
    return NULL;
}

const char *sd_asset_content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".yaml", "application/yaml"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
    };
    const char *dot = path ? strrchr(path, '.') : NULL;
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}
