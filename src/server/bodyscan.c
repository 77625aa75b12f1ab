/* bodyscan.c — the streaming counter behind bodyscan.h. One pass, constant state, no
 * allocation: it runs on every chunk of every JSON body before the chunk is kept.
 * A bare token (number, literal) is counted at its first character; the characters that end
 * one are whitespace, the structural characters and a quote. */
#include "server/bodyscan.h"

#include <string.h>

void sd_body_scan_init(struct sd_body_scan *s)
{
    memset(s, 0, sizeof(*s));
}

void sd_body_scan_feed(struct sd_body_scan *s, const char *data, size_t n)
{
    uint64_t cost = n;
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (s->in_string) {
            if (s->escape) {
                s->escape = false;
            } else if (c == '\\') {
                s->escape = true;
            } else if (c == '"') {
                s->in_string = false;
            }
            continue;
        }
        switch (c) {
        case '"':
            s->in_string = true;
            s->in_bare = false;
            cost += SD_SCAN_COST_STRING;
            break;
        case '{':
        case '[':
            if (c == '{' && s->depth == 2) {
                s->records++;
            }
            cost += c == '{' ? SD_SCAN_COST_OBJECT : SD_SCAN_COST_ARRAY;
            s->depth++;
            if (s->depth > s->max_depth) {
                s->max_depth = s->depth;
            }
            s->in_bare = false;
            break;
        case '}':
        case ']':
            s->depth--;
            s->in_bare = false;
            break;
        case ',':
        case ':':
        case ' ':
        case '\t':
        case '\r':
        case '\n': s->in_bare = false; break;
        default:
            if (!s->in_bare) {
                s->in_bare = true;
                cost += (c == '-' || (c >= '0' && c <= '9')) ? SD_SCAN_COST_NUMBER
                                                             : SD_SCAN_COST_LITERAL;
            }
            break;
        }
    }
    s->parsed_bytes += cost;
}
