/* feed_records.c — XML (libxml2 + XPath) and JSON (jansson + JSON Pointer) feed documents to
 * JSON record arrays.
 *
 * XML safety rests on one rule rather than on libxml2's amplification heuristics: a document
 * with a DOCTYPE is refused. The SAX internalSubset callback fires as soon as "<!DOCTYPE name
 * ExternalID" is read, before the internal subset is parsed, and stops the parser there, so no
 * entity (general or parameter, internal or external) is ever declared, and neither billion
 * laughs nor XXE gets a first step. Without a DTD the only references a document can hold are
 * character references and the five predefined entities, which libxml2 turns into plain text
 * nodes; any other "&name;" is a well-formedness error. Vendor feeds have no use for DTDs, and
 * accepting "DOCTYPE without internal subset" would buy nothing: we would not load the external
 * DTD, so its entities (&nbsp;) and default attributes would silently go missing. Behind that
 * rule: XML_PARSE_NONET, never NOENT/DTDLOAD/DTDATTR/DTDVALID/HUGE (libxml2's own limits on
 * depth 256 and text node length stay on), a refusing entityDecl callback, a post-parse check
 * that the tree has no DTD, and text extraction that reads text/CDATA nodes itself and fails on
 * an entity reference node instead of expanding it (as xmlNodeGetContent would).
 *
 * Errors: libxml2 reports through the per-context SAX serror hook (parser), the XPath context's
 * error hook (XPath) and, for the few reports raised without a context (encoding conversion),
 * the calling thread's structured handler, which libxml2 keeps per thread; it is swapped in for
 * the duration of the call and restored. Only the first report of level error or worse counts,
 * warnings are dropped, nothing reaches stderr.
 *
 * Bounds: input size; libxml2's parser limits; XPath operations (opLimit, proportional to the
 * input size, against quadratic expressions like //a[count(//b) > 0]); record count; object depth
 * per record; conversions in total (nested selected elements are converted once per selected
 * ancestor, so a budget of four conversions per document node caps the output size).
 *
 * JSON is simpler: jansson with JSON_REJECT_DUPLICATES, the array located by JSON Pointer, and
 * messages that name the missing step or the offending element. */
#include "formats/feed_records.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/encoding.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "base/base.h"
#include "formats/json_pointer.h"

#define MAX_XPATH_BYTES 4096     /* XPath text; its compiler recurses on nesting */
#define XPATH_OPS_BASE 1000000UL /* XPath work budget: base + per input byte */
#define XPATH_OPS_PER_BYTE 16UL
#define CONVERSIONS_PER_NODE 4 /* output budget for overlapping selections */
#define DOCTYPE_REFUSED "DOCTYPE/entity declarations are not accepted"
#define PUSH_CHUNK_BYTES ((size_t)256 * 1024) /* parse step between stop checks */

/* libxml2 2.12 made the structured error handler take a const pointer. */
#if LIBXML_VERSION >= 21200
typedef const xmlError *xml_error_arg;
#else
typedef xmlErrorPtr xml_error_arg;
#endif

/* ---- shared: error messages ---------------------------------------------------------------- */

/* Make msg printable on one line and valid UTF-8 (it may quote input bytes): control characters
 * become spaces, trailing whitespace goes, and if the text is not valid UTF-8 every non-ASCII
 * byte becomes '?'. jansson is the UTF-8 validator at hand. */
static char *clean_message(char *msg)
{
    size_t n = strlen(msg);
    while (n > 0 &&
           (msg[n - 1] == ' ' || msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == '\t')) {
        msg[--n] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) {
            msg[i] = ' ';
        }
    }
    json_t *probe = json_stringn(msg, n);
    if (!probe) {
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)msg[i] >= 0x80) {
                msg[i] = '?';
            }
        }
    }
    json_decref(probe);
    return msg;
}

static int fail(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **ret_error, const char *fmt, ...)
{
    if (ret_error) {
        va_list ap;
        va_start(ap, fmt);
        *ret_error = clean_message(sd_vasprintf(fmt, ap));
        va_end(ap);
    }
    return -EINVAL;
}

static int stopped(char **ret_error)
{
    if (ret_error) {
        *ret_error = sd_strdup("parse stopped: the hub is shutting down");
    }
    return -ECANCELED;
}

/* ---- XML: libxml2 setup and error capture ------------------------------------------------- */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
    xmlInitParser();
}

/* The first error-level report of one sd_xml_records call. */
struct xml_report {
    char *message; /* libxml2's text, trailing newline removed; NULL until an error */
    int line;      /* 0 when unknown (XPath, encoding) */
    int code;      /* libxml2's xmlParserErrors */
    int offset;    /* XPath: byte offset of the error in the expression, else -1 */
    bool doctype;  /* the document had a DOCTYPE: refused */
    int doctype_line;
};

static void report_error(struct xml_report *r, const xmlError *err)
{
    if (r->message || err == NULL || err->level < XML_ERR_ERROR) {
        return;
    }
    r->message = clean_message(sd_strdup(err->message ? err->message : "unknown error"));
    if (r->message[0] == '\0') {
        free(r->message);
        r->message = sd_strdup("unknown error");
    }
    r->line = err->line;
    r->code = err->code;
    r->offset = err->domain == XML_FROM_XPATH ? err->int1 : -1;
}

/* This thread's handler while a call runs (XPath, encoding): data is the report. */
static void on_error(void *data, xml_error_arg err)
{
    report_error(data, err);
}

/* Parser handler: data is the parser context (SAX userData), its _private the report. */
static void on_parser_error(void *data, xml_error_arg err)
{
    xmlParserCtxtPtr ctxt = data;
    report_error(ctxt->_private, err);
}

/* Unformatted generic reports (libxml2's own debugging output) are swallowed. */
static void on_generic_error(void *data, const char *fmt, ...)
{
}

static void refuse_doctype(xmlParserCtxtPtr ctxt)
{
    struct xml_report *r = ctxt->_private;
    if (!r->doctype) {
        r->doctype = true;
        r->doctype_line = ctxt->input ? ctxt->input->line : 0;
    }
    xmlStopParser(ctxt);
}

static void on_doctype(void *data, const xmlChar *name, const xmlChar *external_id,
                       const xmlChar *system_id)
{
    refuse_doctype(data);
}

static void on_entity_decl(void *data, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    refuse_doctype(data); /* unreachable while on_doctype stops first; kept as a second lock */
}

/* ---- XML: element → JSON ------------------------------------------------------------------- */

struct conv {
    char *error;   /* first failure, formatted */
    size_t budget; /* conversions (element or attribute → value) left */
};

static bool conv_fail(struct conv *cv, const xmlNode *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool conv_fail(struct conv *cv, const xmlNode *where, const char *fmt, ...)
{
    if (cv->error) {
        return false; /* the first failure is the one reported */
    }
    va_list ap;
    va_start(ap, fmt);
    char *what = sd_vasprintf(fmt, ap);
    va_end(ap);
    cv->error = sd_asprintf("line %ld: %s", xmlGetLineNo(where), what);
    free(what);
    return false;
}

static bool take_budget(struct conv *cv, const xmlNode *where, const char *xpath)
{
    if (cv->budget == 0) {
        return conv_fail(cv, where,
                         "xpath '%s' selects nested elements: the records would repeat the "
                         "document more than %d times over",
                         xpath, CONVERSIONS_PER_NODE);
    }
    cv->budget--;
    return true;
}

static bool is_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Append the text and CDATA nodes of the list `first` (an element's or attribute's children)
 * to b, without descending and without expanding anything. An entity reference cannot occur
 * without a DTD; meeting one is a hard error, reported at element `where`. */
static bool gather_text(struct conv *cv, const xmlNode *first, const xmlNode *where,
                        struct sd_buf *b)
{
    for (const xmlNode *c = first; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            if (c->content) {
                sd_buf_puts(b, (const char *)c->content);
            }
        } else if (c->type == XML_ENTITY_REF_NODE) {
            return conv_fail(cv, where, "entity reference '&%s;' is not accepted",
                             (const char *)c->name);
        }
    }
    return true;
}

static json_t *make_string(struct conv *cv, const xmlNode *where, const char *s, size_t n,
                           bool trim)
{
    if (trim) {
        while (n > 0 && is_xml_space(s[0])) {
            s++;
            n--;
        }
        while (n > 0 && is_xml_space(s[n - 1])) {
            n--;
        }
    }
    json_t *v = json_stringn(s, n);
    if (!v) {
        conv_fail(cv, where, "text is not valid UTF-8");
    }
    return v;
}

/* Add value under name; a second value for the same name turns the member into an array.
 * Steals value. */
static bool add_member(struct conv *cv, const xmlNode *where, json_t *obj, const char *name,
                       json_t *value)
{
    json_t *old = json_object_get(obj, name);
    if (!old) {
        if (json_object_set_new(obj, name, value) != 0) {
            return conv_fail(cv, where, "name '%s' is not valid UTF-8", name);
        }
        return true;
    }
    if (json_is_array(old)) {
        json_array_append_new(old, value);
        return true;
    }
    json_t *arr = json_array();
    json_array_append(arr, old);
    json_array_append_new(arr, value);
    json_object_set_new(obj, name, arr);
    return true;
}

static bool has_structure(const xmlNode *node)
{
    if (node->properties) {
        return true;
    }
    for (const xmlNode *c = node->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
            return true;
        }
    }
    return false;
}

static json_t *convert_element(struct conv *cv, const xmlNode *node, int level, const char *xpath);

/* A child element's value: a trimmed string for a text-only element, else an object. */
static json_t *convert_child(struct conv *cv, const xmlNode *node, int level, const char *xpath)
{
    if (has_structure(node)) {
        return convert_element(cv, node, level, xpath);
    }
    if (!take_budget(cv, node, xpath)) {
        return NULL;
    }
    struct sd_buf text;
    sd_buf_init(&text);
    json_t *v = NULL;
    if (gather_text(cv, node->children, node, &text)) {
        v = make_string(cv, node, text.data ? text.data : "", text.len, true);
    }
    sd_buf_release(&text);
    return v;
}

/* level: 1 for a record, +1 per nested object. Recursion depth is bounded by
 * SD_FEED_MAX_DEPTH. */
static json_t *convert_element(struct conv *cv, const xmlNode *node, int level, const char *xpath)
{
    if (level > SD_FEED_MAX_DEPTH) {
        conv_fail(cv, node, "element '%s' is nested more than %d levels deep in its record",
                  (const char *)node->name, SD_FEED_MAX_DEPTH);
        return NULL;
    }
    if (!take_budget(cv, node, xpath)) {
        return NULL;
    }
    json_t *obj = json_object();
    struct sd_buf text;
    sd_buf_init(&text);
    bool ok = true;
    for (const xmlAttr *a = node->properties; ok && a; a = a->next) {
        struct sd_buf val;
        sd_buf_init(&val);
        ok = take_budget(cv, node, xpath) && gather_text(cv, a->children, node, &val);
        json_t *v = ok ? make_string(cv, node, val.data ? val.data : "", val.len, false) : NULL;
        sd_buf_release(&val);
        ok = v && add_member(cv, node, obj, (const char *)a->name, v);
    }
    for (const xmlNode *c = node->children; ok && c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
            json_t *v = convert_child(cv, c, level + 1, xpath);
            ok = v && add_member(cv, c, obj, (const char *)c->name, v);
        }
    }
    ok = ok && gather_text(cv, node->children, node, &text);
    if (ok) {
        json_t *t = make_string(cv, node, text.data ? text.data : "", text.len, true);
        if (!t) {
            ok = false;
        } else if (json_string_length(t) > 0) {
            json_object_set_new(obj, "#text", t);
        } else {
            json_decref(t);
        }
    }
    sd_buf_release(&text);
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Elements and attributes in the tree, walked without recursion. */
static size_t count_nodes(const xmlNode *root)
{
    size_t n = 0;
    const xmlNode *cur = root;
    while (cur) {
        if (cur->type == XML_ELEMENT_NODE) {
            n++;
            for (const xmlAttr *a = cur->properties; a; a = a->next) {
                n++;
            }
        }
        if (cur->type == XML_ELEMENT_NODE && cur->children) {
            cur = cur->children;
            continue;
        }
        while (cur && cur != root && !cur->next) {
            cur = cur->parent;
        }
        cur = (cur && cur != root) ? cur->next : NULL;
    }
    return n;
}

static const char *node_kind(xmlElementType t)
{
    switch (t) {
    case XML_ATTRIBUTE_NODE: return "an attribute";
    case XML_TEXT_NODE: return "a text node";
    case XML_CDATA_SECTION_NODE: return "a CDATA node";
    case XML_COMMENT_NODE: return "a comment";
    case XML_PI_NODE: return "a processing instruction";
    case XML_DOCUMENT_NODE: return "the document node";
    case XML_NAMESPACE_DECL: return "a namespace node";
    default: return "a non-element node";
    }
}

static const char *xpath_kind(xmlXPathObjectType t)
{
    switch (t) {
    case XPATH_BOOLEAN: return "a boolean";
    case XPATH_NUMBER: return "a number";
    case XPATH_STRING: return "a string";
    default: return "a non-node-set value";
    }
}

/* Let the XPath use the prefixes the root element declares. */
static void register_root_namespaces(xmlXPathContextPtr xp, const xmlNode *root)
{
    for (const xmlNs *ns = root->nsDef; ns; ns = ns->next) {
        if (ns->prefix && ns->href) {
            xmlXPathRegisterNs(xp, ns->prefix, ns->href);
        }
    }
}

/* Evaluate xpath on doc and convert the selection. Returns 0 or -EINVAL with *ret_error. */
static int select_records(xmlDocPtr doc, size_t len, const char *xpath, struct xml_report *rep,
                          const atomic_bool *stop, json_t **ret, char **ret_error)
{
    int r;
    xmlXPathContextPtr xp = xmlXPathNewContext(doc);
    xmlXPathCompExprPtr comp = NULL;
    xmlXPathObjectPtr res = NULL;
    json_t *out = NULL;
    struct conv cv = {0};
    if (!xp) {
        abort();
    }
    /* No xp->error hook: that path hands over an error without its text. Left alone, XPath
     * reports go through __xmlRaiseError to this thread's structured handler, i.e. to `rep`. */
    xp->opLimit = XPATH_OPS_BASE + XPATH_OPS_PER_BYTE * (unsigned long)len;
    const xmlNode *root = xmlDocGetRootElement(doc);
    if (root) {
        register_root_namespaces(xp, root);
    }

    comp = xmlXPathCtxtCompile(xp, (const xmlChar *)xpath);
    if (!comp || rep->message) {
        if (rep->message && rep->offset >= 0) {
            r = fail(ret_error, "xpath '%s' is invalid: %s at character %d", xpath, rep->message,
                     rep->offset + 1);
        } else {
            r = fail(ret_error, "xpath '%s' is invalid: %s", xpath,
                     rep->message ? rep->message : "syntax error");
        }
        goto out;
    }
    res = xmlXPathCompiledEval(comp, xp);
    if (!res || rep->message) {
        r = fail(ret_error, "xpath '%s' failed: %s", xpath,
                 rep->message ? rep->message : "evaluation error");
        goto out;
    }
    if (res->type != XPATH_NODESET) {
        r = fail(ret_error, "xpath '%s' returns %s, not elements", xpath, xpath_kind(res->type));
        goto out;
    }
    const xmlNodeSet *set = res->nodesetval;
    size_t n = set ? (size_t)set->nodeNr : 0;
    if (n > SD_FEED_MAX_RECORDS) {
        r = fail(ret_error, "xpath '%s' selects %zu elements, more than the limit of %d", xpath, n,
                 SD_FEED_MAX_RECORDS);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (set->nodeTab[i]->type != XML_ELEMENT_NODE) {
            r = fail(ret_error, "xpath '%s' selects %s, not only elements", xpath,
                     node_kind(set->nodeTab[i]->type));
            goto out;
        }
    }
    cv.budget = CONVERSIONS_PER_NODE * count_nodes(root);
    out = json_array();
    for (size_t i = 0; i < n; i++) {
        if (stop && (i & 1023) == 0 && atomic_load(stop)) {
            r = stopped(ret_error);
            goto out;
        }
        json_t *rec = convert_element(&cv, set->nodeTab[i], 1, xpath);
        if (!rec) {
            r = fail(ret_error, "%s", cv.error);
            goto out;
        }
        json_array_append_new(out, rec);
    }
    *ret = out;
    out = NULL;
    r = 0;
out:
    free(cv.error);
    json_decref(out);
    xmlXPathFreeObject(res);
    xmlXPathFreeCompExpr(comp);
    xmlXPathFreeContext(xp);
    return r;
}

/* ---- XML: start tag pre-scan ---------------------------------------------------------------- */

/* libxml2 2.9 checks each attribute of a start tag against all the earlier ones (duplicates,
 * namespace bindings): 100,000 attributes on one element cost 19 s of CPU, 200,000 nine minutes,
 * all spent before any callback of ours runs. So the document is scanned first, linearly, and a
 * start tag with more than SD_FEED_MAX_ATTRIBUTES attributes or longer than
 * SD_FEED_MAX_TAG_BYTES is refused before libxml2 sees it.
 *
 * The scan reads code units (1, 2 or 4 bytes, as the first bytes announce) and knows just enough
 * XML to find start tags: comments, CDATA sections and processing instructions are skipped, and
 * inside a tag quoted values are skipped; each '=' outside quotes is one attribute (every
 * attribute needs one; one without is a well-formedness error). Where the scan and libxml2 could
 * disagree is malformed markup, and there libxml2 stops at its first error (and the push parser
 * below takes no chunk after it). An encoding that could hide '<', '=' or quotes from a byte scan
 * (UTF-7, ISO-2022, EBCDIC, a switch to UTF-16/32 declared inside an 8-bit document) is refused:
 * the declared encoding must be one of the ASCII-compatible families below. */

struct scan {
    const unsigned char *p;
    size_t n;  /* code units */
    int width; /* bytes per code unit: 1, 2 or 4 */
    bool be;
};

static uint32_t unit(const struct scan *sc, size_t i)
{
    const unsigned char *u = sc->p + i * (size_t)sc->width;
    switch (sc->width) {
    case 2: return sc->be ? (uint32_t)(u[0] << 8 | u[1]) : (uint32_t)(u[1] << 8 | u[0]);
    case 4:
        return sc->be ? ((uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3])
                      : ((uint32_t)u[3] << 24 | (uint32_t)u[2] << 16 | (uint32_t)u[1] << 8 | u[0]);
    default: return u[0];
    }
}

static bool unit_is(const struct scan *sc, size_t i, const char *s)
{
    for (size_t k = 0; s[k]; k++) {
        if (i + k >= sc->n || unit(sc, i + k) != (unsigned char)s[k]) {
            return false;
        }
    }
    return true;
}

/* Index just past the first `end` at or after i (lines counted), or sc->n. */
static size_t skip_past(const struct scan *sc, size_t i, const char *end, size_t *line)
{
    for (; i < sc->n; i++) {
        if (unit_is(sc, i, end)) {
            return i + strlen(end);
        }
        *line += unit(sc, i) == '\n';
    }
    return sc->n;
}

/* The element name at i, for messages: printable ASCII kept, anything else '?', at most 64. */
static char *tag_name(const struct scan *sc, size_t i)
{
    struct sd_buf b;
    sd_buf_init(&b);
    for (; i < sc->n && b.len < 64; i++) {
        uint32_t c = unit(sc, i);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '/' || c == '>' || c == '<' ||
            c == '=') {
            break;
        }
        char ch = c > 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
        sd_buf_append(&b, &ch, 1);
    }
    return b.data ? sd_buf_steal(&b) : sd_strdup("?");
}

/* Whether the declared encoding is allowed for a document whose code units are `width` wide. */
static bool encoding_allowed(const char *enc, int width)
{
    /* UTF-16 in an 8-bit document: libxml2 refuses that itself. */
    static const char *const narrow[] = {
        "UTF-8",     "UTF8",    "US-ASCII", "ASCII",  "ISO-8859-", "ISO8859-",
        "ISO_8859-", "LATIN",   "WINDOWS-", "CP125",  "KOI8-",     "SHIFT_JIS",
        "SHIFT-JIS", "SJIS",    "EUC-",     "GB2312", "GBK",       "GB18030",
        "BIG5",      "TIS-620", "UTF-16",   "UTF16"};
    static const char *const wide2[] = {"UTF-16", "UTF16", "UCS-2", "UCS2", "ISO-10646-UCS-2"};
    static const char *const wide4[] = {"UTF-32", "UTF32", "UCS-4", "UCS4", "ISO-10646-UCS-4"};
    const char *const *list = width == 1 ? narrow : width == 2 ? wide2 : wide4;
    size_t n = width == 1   ? sizeof(narrow) / sizeof(*narrow)
               : width == 2 ? sizeof(wide2) / sizeof(*wide2)
                            : sizeof(wide4) / sizeof(*wide4);
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(list[i]);
        bool prefix = list[i][k - 1] == '-' || strcmp(list[i], "LATIN") == 0 ||
                      strcmp(list[i], "CP125") == 0 || strcmp(list[i], "BIG5") == 0;
        if (width == 1 && (strcmp(list[i], "UTF-16") == 0 || strcmp(list[i], "UTF16") == 0)) {
            prefix = false; /* "UTF-16LE" would switch the decoder: not allowed here */
        }
        if (width > 1) {
            prefix = true; /* UTF-16LE, UCS-4BE ... all read as the detected width */
        }
        if (prefix ? strncasecmp(enc, list[i], k) == 0 : strcasecmp(enc, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The encoding named by an XML declaration at the start (NULL when none); ASCII only. */
static char *declared_encoding(const struct scan *sc)
{
    size_t i = 0;
    if (sc->width == 1 && sc->n >= 3 && sc->p[0] == 0xEF && sc->p[1] == 0xBB && sc->p[2] == 0xBF) {
        i = 3;
    } else if (sc->n > 0 && unit(sc, 0) == 0xFEFF) {
        i = 1;
    }
    if (!unit_is(sc, i, "<?xml")) {
        return NULL;
    }
    size_t end = i;
    while (end < sc->n && end < i + 512 && !unit_is(sc, end, "?>")) {
        end++;
    }
    for (size_t k = i; k + 8 < end; k++) {
        if (!unit_is(sc, k, "encoding")) {
            continue;
        }
        k += 8;
        while (k < end && (unit(sc, k) == ' ' || unit(sc, k) == '=' || unit(sc, k) == '\t')) {
            k++;
        }
        if (k >= end || (unit(sc, k) != '"' && unit(sc, k) != '\'')) {
            return NULL; /* malformed: libxml2 says so */
        }
        uint32_t q = unit(sc, k++);
        struct sd_buf b;
        sd_buf_init(&b);
        for (; k < end && unit(sc, k) != q && b.len < 64; k++) {
            uint32_t c = unit(sc, k);
            char ch = c > 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
            sd_buf_append(&b, &ch, 1);
        }
        return b.data ? sd_buf_steal(&b) : sd_strdup("");
    }
    return NULL;
}

/* 0, or -EINVAL with a message naming the line. */
static int prescan(const char *buf, size_t len, char **ret_error)
{
    struct scan sc = {.p = (const unsigned char *)buf, .width = 1};
    if (len >= 4) {
        switch (xmlDetectCharEncoding((const unsigned char *)buf, 4)) {
        case XML_CHAR_ENCODING_UTF16LE: sc.width = 2; break;
        case XML_CHAR_ENCODING_UTF16BE: sc.width = 2, sc.be = true; break;
        case XML_CHAR_ENCODING_UCS4LE: sc.width = 4; break;
        case XML_CHAR_ENCODING_UCS4BE: sc.width = 4, sc.be = true; break;
        case XML_CHAR_ENCODING_UCS4_2143:
        case XML_CHAR_ENCODING_UCS4_3412:
        case XML_CHAR_ENCODING_EBCDIC:
            return fail(ret_error, "line 1: the document's encoding is not accepted (use UTF-8, "
                                   "UTF-16, UTF-32 or an ASCII-compatible 8-bit encoding)");
        default: break;
        }
    }
    sc.n = len / (size_t)sc.width;
    char *enc = declared_encoding(&sc);
    if (enc && !encoding_allowed(enc, sc.width)) {
        int r = fail(ret_error,
                     "line 1: encoding '%s' is not accepted (use UTF-8, UTF-16, UTF-32 or an "
                     "ASCII-compatible 8-bit encoding)",
                     enc);
        free(enc);
        return r;
    }
    free(enc);

    size_t line = 1;
    for (size_t i = 0; i < sc.n;) {
        uint32_t c = unit(&sc, i);
        if (c != '<') {
            line += c == '\n';
            i++;
            continue;
        }
        if (unit_is(&sc, i, "<!--")) {
            i = skip_past(&sc, i + 4, "-->", &line);
            continue;
        }
        if (unit_is(&sc, i, "<![CDATA[")) {
            i = skip_past(&sc, i + 9, "]]>", &line);
            continue;
        }
        if (unit_is(&sc, i, "<?")) {
            i = skip_past(&sc, i + 2, "?>", &line);
            continue;
        }
        if (unit_is(&sc, i, "<!") || unit_is(&sc, i, "</")) {
            i += 2;
            continue;
        }
        /* A start tag: count attributes up to its '>' (or a '<' that ends malformed markup). */
        size_t start = i, tag_line = line, attrs = 0;
        uint32_t quote = 0;
        for (i++; i < sc.n; i++) {
            c = unit(&sc, i);
            line += c == '\n';
            if ((i - start) * (size_t)sc.width > SD_FEED_MAX_TAG_BYTES) {
                char *name = tag_name(&sc, start + 1);
                int r =
                    fail(ret_error, "line %zu: start tag of element '%s' is longer than %zu KiB",
                         tag_line, name, SD_FEED_MAX_TAG_BYTES >> 10);
                free(name);
                return r;
            }
            if (c == '<') {
                break; /* not legal in a tag or a value: libxml2 stops here */
            }
            if (quote) {
                quote = c == quote ? 0 : quote;
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '>') {
                i++;
                break;
            } else if (c == '=' && ++attrs > SD_FEED_MAX_ATTRIBUTES) {
                char *name = tag_name(&sc, start + 1);
                int r = fail(ret_error, "line %zu: element '%s' has more than %d attributes",
                             tag_line, name, SD_FEED_MAX_ATTRIBUTES);
                free(name);
                return r;
            }
        }
    }
    return 0;
}

/* Whether the document starts like UTF-16 or UCS-4 (BOM or "<?" pattern). */
static bool wide_encoding(const char *buf, size_t len)
{
    if (len < 4) {
        return false;
    }
    switch (xmlDetectCharEncoding((const unsigned char *)buf, 4)) {
    case XML_CHAR_ENCODING_UTF16LE:
    case XML_CHAR_ENCODING_UTF16BE:
    case XML_CHAR_ENCODING_UCS4LE:
    case XML_CHAR_ENCODING_UCS4BE:
    case XML_CHAR_ENCODING_UCS4_2143:
    case XML_CHAR_ENCODING_UCS4_3412: return true;
    default: return false;
    }
}

int sd_xml_records(const char *buf, size_t len, const char *xpath, json_t **ret, char **ret_error)
{
    return sd_xml_records_until(buf, len, xpath, NULL, ret, ret_error);
}

int sd_xml_records_until(const char *buf, size_t len, const char *xpath, const atomic_bool *stop,
                         json_t **ret, char **ret_error)
{
    pthread_once(&xml_once, xml_init);
    if (!ret || (!buf && len > 0)) {
        return fail(ret_error, "invalid arguments");
    }
    if (!xpath || xpath[0] == '\0') {
        return fail(ret_error, "xpath is empty");
    }
    if (strlen(xpath) > MAX_XPATH_BYTES) {
        return fail(ret_error, "xpath is longer than %d bytes", MAX_XPATH_BYTES);
    }
    if (len > SD_FEED_MAX_BYTES) {
        return fail(ret_error, "document is larger than %zu MiB", SD_FEED_MAX_BYTES >> 20);
    }
    size_t blank = 0;
    while (blank < len && is_xml_space(buf[blank])) {
        blank++;
    }
    if (blank == len) {
        return fail(ret_error, "document is empty");
    }
    /* libxml2 takes a NUL byte for the end of the input and ignores what follows; in the 8-bit
     * encodings NUL is never legal, so say so. UTF-16/32 documents carry NUL bytes by nature. */
    const char *nul = memchr(buf, '\0', len);
    if (nul && !wide_encoding(buf, len)) {
        size_t line = 1;
        for (const char *c = buf; c < nul; c++) {
            line += *c == '\n';
        }
        return fail(ret_error, "line %zu: document contains a NUL byte", line);
    }
    int r = prescan(buf, len, ret_error);
    if (r < 0) {
        return r;
    }

    /* Reports raised without a parser or XPath context go to this thread's handlers; take them
     * over for this call and give them back afterwards. */
    xmlStructuredErrorFunc saved_serror = xmlStructuredError;
    void *saved_sctx = xmlStructuredErrorContext;
    xmlGenericErrorFunc saved_gerror = xmlGenericError;
    void *saved_gctx = xmlGenericErrorContext;
    struct xml_report rep = {0};
    xmlSetStructuredErrorFunc(&rep, on_error);
    xmlSetGenericErrorFunc(NULL, on_generic_error);

    /* The push parser takes the document in bounded steps, so a stop request is seen between
     * them, and it takes no further step after a fatal error. The first 4 bytes go in first:
     * libxml2 detects the encoding from them. */
    xmlDocPtr doc = NULL;
    size_t first = len < 4 ? len : 4;
    xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(NULL, NULL, buf, (int)first, NULL);
    if (!ctxt) {
        abort();
    }
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_COMPACT | XML_PARSE_BIG_LINES);
    ctxt->_private = &rep;
    ctxt->sax->serror = on_parser_error;
    ctxt->sax->internalSubset = on_doctype;
    ctxt->sax->entityDecl = on_entity_decl;
    ctxt->sax->externalSubset = NULL;
    for (size_t off = first;; off += PUSH_CHUNK_BYTES) {
        if (stop && atomic_load(stop)) {
            r = stopped(ret_error);
            goto out;
        }
        size_t n = len - off < PUSH_CHUNK_BYTES ? len - off : PUSH_CHUNK_BYTES;
        xmlParseChunk(ctxt, buf + off, (int)n, n == len - off);
        if (n == len - off || rep.message || rep.doctype || ctxt->instate == XML_PARSER_EOF) {
            break;
        }
    }
    doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    if (rep.message && rep.code == XML_ERR_DOCUMENT_EMPTY) {
        /* The push parser's word for a non-blank document that does not start with markup. */
        free(rep.message);
        rep.message = sd_strdup("Start tag expected, '<' not found");
    }
    if (!ctxt->wellFormed && !rep.message && !rep.doctype) {
        rep.message = sd_strdup("document is not well-formed");
    }
    if (rep.doctype || (doc && (doc->intSubset || doc->extSubset))) {
        if (rep.doctype_line > 0) {
            r = fail(ret_error, "line %d: %s", rep.doctype_line, DOCTYPE_REFUSED);
        } else {
            r = fail(ret_error, "%s", DOCTYPE_REFUSED);
        }
        goto out;
    }
    if (!doc || rep.message || !xmlDocGetRootElement(doc)) {
        const char *msg = rep.message ? rep.message : "document is not well-formed";
        if (rep.line > 0) {
            r = fail(ret_error, "line %d: %s", rep.line, msg);
        } else {
            r = fail(ret_error, "%s", msg);
        }
        goto out;
    }
    r = select_records(doc, len, xpath, &rep, stop, ret, ret_error);
out:
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    free(rep.message);
    xmlSetGenericErrorFunc(saved_gctx, saved_gerror);
    xmlSetStructuredErrorFunc(saved_sctx, saved_serror);
    return r;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* pointer designates nothing in root: say which step fails and why. */
static int fail_missing(char **ret_error, const json_t *root, const char *pointer)
{
    /* Find the longest prefix that resolves; the token after it is the missing step. */
    size_t end = 0; /* prefix pointer[0, end) resolves */
    const json_t *parent = root;
    for (;;) {
        const char *slash = strchr(pointer + end + 1, '/');
        size_t next = slash ? (size_t)(slash - pointer) : strlen(pointer);
        char *prefix = sd_strndup(pointer, next);
        const json_t *v = sd_json_pointer_get(root, prefix);
        free(prefix);
        if (!v || next == strlen(pointer)) {
            break;
        }
        parent = v;
        end = next;
    }
    const char *tok = pointer + end + 1;
    size_t toklen = strcspn(tok, "/");
    char *where = end == 0 ? sd_strdup("the top level") : sd_asprintf("'%.*s'", (int)end, pointer);
    int r;
    if (json_is_object(parent)) {
        r = fail(ret_error,
                 "json pointer '%s' does not exist: no member '%.*s' in the object at %s", pointer,
                 (int)toklen, tok, where);
    } else if (json_is_array(parent)) {
        r = fail(ret_error,
                 "json pointer '%s' does not exist: no element '%.*s' in the array at %s "
                 "(%zu elements)",
                 pointer, (int)toklen, tok, where, json_array_size(parent));
    } else {
        r = fail(ret_error, "json pointer '%s' does not exist: the value at %s is %s", pointer,
                 where, json_kind(parent));
    }
    free(where);
    return r;
}

int sd_json_records(const char *buf, size_t len, const char *pointer, json_t **ret,
                    char **ret_error)
{
    if (!ret || (!buf && len > 0)) {
        return fail(ret_error, "invalid arguments");
    }
    if (!sd_json_pointer_valid(pointer)) {
        return fail(ret_error,
                    "json pointer '%s' is malformed: it must be empty or start with '/', and "
                    "'~' must be followed by 0 or 1",
                    pointer ? pointer : "(null)");
    }
    if (len > SD_FEED_MAX_BYTES) {
        return fail(ret_error, "document is larger than %zu MiB", SD_FEED_MAX_BYTES >> 20);
    }
    size_t blank = 0;
    while (blank < len &&
           (buf[blank] == ' ' || buf[blank] == '\t' || buf[blank] == '\r' || buf[blank] == '\n')) {
        blank++;
    }
    if (blank == len) {
        return fail(ret_error, "document is empty");
    }

    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        bool truncated = json_error_code(&jerr) == json_error_premature_end_of_input;
        return fail(ret_error, "line %d column %d: %s%s", jerr.line, jerr.column, jerr.text,
                    truncated ? " (the document is truncated)" : "");
    }
    int r;
    const json_t *arr = sd_json_pointer_get(root, pointer);
    const char *where = pointer[0] == '\0' ? "the document" : NULL;
    if (!arr) {
        r = fail_missing(ret_error, root, pointer);
        goto out;
    }
    if (!json_is_array(arr)) {
        if (where) {
            r = fail(ret_error, "%s is %s, not an array", where, json_kind(arr));
        } else {
            r = fail(ret_error, "json pointer '%s' selects %s, not an array", pointer,
                     json_kind(arr));
        }
        goto out;
    }
    if (json_array_size(arr) > SD_FEED_MAX_RECORDS) {
        r = fail(ret_error, "%zu records, more than the limit of %d", json_array_size(arr),
                 SD_FEED_MAX_RECORDS);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *el = json_array_get(arr, i);
        if (!json_is_object(el)) {
            r = fail(ret_error, "record '%s/%zu' is %s, not an object", pointer, i, json_kind(el));
            goto out;
        }
    }
    *ret = json_incref((json_t *)arr);
    r = 0;
out:
    json_decref(root);
    return r;
}
