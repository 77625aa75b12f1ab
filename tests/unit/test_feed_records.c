/* test_feed_records.c — JSON Pointer lookup, XML feed → records (conversion, XPath, malformed
 * input, DOCTYPE/entity attacks, limits, thread safety, silence on stderr) and JSON feed →
 * records. Tables list both sides of each boundary; attack documents must fail fast with the
 * refusal message, never with a timeout or an allocation failure. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libxml/globals.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

#include "base/base.h"
#include "formats/feed_records.h"
#include "formats/json_pointer.h"

#define MAX_XPATH_DEPTH_TEST 1500 /* parentheses in a nested XPath, within the 4 KiB cap */

/* ---- helpers ------------------------------------------------------------------------------- */

static json_t *parse_json(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v) {
        fail_msg("bad expected JSON: %s: %s", e.text, text);
    }
    return v;
}

/* Run sd_xml_records expecting success and compare with the expected JSON text. */
static void xml_ok(const char *doc, const char *xpath, const char *expect)
{
    json_t *got = (json_t *)0x1;
    char *err = (char *)0x2;
    int rc = sd_xml_records(doc, strlen(doc), xpath, &got, &err);
    if (rc != 0) {
        fail_msg("xpath %s: rc %d: %s", xpath, rc, err);
    }
    assert_ptr_equal(err, (char *)0x2); /* untouched on success */
    json_t *want = parse_json(expect);
    if (!json_equal(got, want)) {
        char *s = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("xpath %s: got %s, want %s", xpath, s, expect);
    }
    json_decref(want);
    json_decref(got);
}

/* Run sd_xml_records expecting -EINVAL and a message starting with `prefix`. */
static void xml_err_len(const char *doc, size_t len, const char *xpath, const char *prefix)
{
    json_t *got = (json_t *)0x1;
    char *err = NULL;
    int rc = sd_xml_records(doc, len, xpath, &got, &err);
    if (rc != -EINVAL) {
        fail_msg("xpath %s: rc %d, want -EINVAL (want '%s')", xpath, rc, prefix);
    }
    assert_ptr_equal(got, (json_t *)0x1); /* untouched on failure */
    assert_non_null(err);
    if (strncmp(err, prefix, strlen(prefix)) != 0) {
        fail_msg("got error '%s', want prefix '%s'", err, prefix);
    }
    json_t *s = json_string(err); /* valid UTF-8, one line */
    assert_non_null(s);
    json_decref(s);
    assert_null(strchr(err, '\n'));
    free(err);
}

static void xml_err(const char *doc, const char *xpath, const char *prefix)
{
    xml_err_len(doc, strlen(doc), xpath, prefix);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- JSON Pointer -------------------------------------------------------------------------- */

static const char *RFC6901_DOC =
    "{\"foo\": [\"bar\", \"baz\"], \"\": 0, \"a/b\": 1, \"c%d\": 2, \"e^f\": 3, \"g|h\": 4,"
    " \"i\\\\j\": 5, \"k\\\"l\": 6, \" \": 7, \"m~n\": 8, \"~1\": 9,"
    " \"nested\": {\"a\": {\"b\": true}}, \"arr\": [{\"x\": 10}], \"null\": null}";

struct ptr_case {
    const char *pointer;
    const char *expect; /* JSON text of the value, NULL = absent */
};

static void test_pointer_get(void **state)
{
    static const struct ptr_case cases[] = {
        {"/foo", "[\"bar\", \"baz\"]"},
        {"/foo/0", "\"bar\""},
        {"/foo/1", "\"baz\""},
        {"/", "0"},
        {"/a~1b", "1"},
        {"/c%d", "2"},
        {"/e^f", "3"},
        {"/g|h", "4"},
        {"/i\\j", "5"},
        {"/k\"l", "6"},
        {"/ ", "7"},
        {"/m~0n", "8"},
        {"/~01", "9"}, /* "~01" is "~1", not "/" */
        {"/~1", NULL}, /* "/" is not a key */
        {"/nested/a/b", "true"},
        {"/arr/0/x", "10"},
        {"/null", "null"},
        {"/foo/2", NULL},  /* out of range */
        {"/foo/-", NULL},  /* past the end never exists */
        {"/foo/01", NULL}, /* leading zero */
        {"/foo/00", NULL},
        {"/foo/+1", NULL},
        {"/foo/ 1", NULL},
        {"/foo/1 ", NULL},
        {"/foo/-1", NULL},
        {"/foo/0x1", NULL},
        {"/foo/", NULL},                     /* empty token on an array */
        {"/foo/18446744073709551616", NULL}, /* overflow */
        {"/foo/99999999999999999999999", NULL},
        {"/foo/0/x", NULL}, /* step into a string */
        {"/null/x", NULL},
        {"/nested/a/b/c", NULL},
        {"/missing", NULL},
        {"/Foo", NULL},  /* case-sensitive */
        {"foo", NULL},   /* no leading slash */
        {"#/foo", NULL}, /* URI fragment form is not accepted */
        {"/m~2n", NULL}, /* bad escape */
        {"/m~", NULL},
        {"/missing/~", NULL}, /* malformed after a miss: still NULL */
        {"//", NULL},         /* key "" then key "" inside 0 */
    };
    json_t *root = parse_json(RFC6901_DOC);
    assert_ptr_equal(sd_json_pointer_get(root, ""), root);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const json_t *v = sd_json_pointer_get(root, cases[i].pointer);
        if (!cases[i].expect) {
            if (v) {
                fail_msg("case %zu '%s': want absent", i, cases[i].pointer);
            }
            continue;
        }
        json_t *want = parse_json(cases[i].expect);
        if (!v || !json_equal(v, want)) {
            fail_msg("case %zu '%s': wrong value", i, cases[i].pointer);
        }
        json_decref(want);
    }
    /* Top-level array. */
    json_t *arr = parse_json("[[1, 2], {\"0\": \"key\"}]");
    assert_int_equal(json_integer_value(sd_json_pointer_get(arr, "/0/1")), 2);
    assert_string_equal(json_string_value(sd_json_pointer_get(arr, "/1/0")), "key");
    assert_null(sd_json_pointer_get(arr, "/2"));
    assert_null(sd_json_pointer_get(NULL, ""));
    assert_null(sd_json_pointer_get(root, NULL));
    json_decref(arr);
    json_decref(root);
}

static void test_pointer_valid(void **state)
{
    static const struct {
        const char *p;
        bool valid;
    } cases[] = {
        {"", true},
        {"/", true},
        {"//", true},
        {"/a", true},
        {"/a~0b~1c", true},
        {"/~0~1", true},
        {"/0/-", true},
        {"/caf\xc3\xa9", true},
        {"/\xe2\x82\xac", true},
        {"a", false},
        {" /a", false},
        {"#/a", false},
        {"/~", false},
        {"/~2", false},
        {"/a~", false},
        {"/a~/b", false},
        {"/\xff", false},
        {"/\xc3", false},         /* truncated UTF-8 */
        {"/\xed\xa0\x80", false}, /* surrogate */
        {"/\xc0\xaf", false},     /* overlong '/' */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        if (sd_json_pointer_valid(cases[i].p) != cases[i].valid) {
            fail_msg("case %zu '%s'", i, cases[i].p);
        }
    }
    assert_false(sd_json_pointer_valid(NULL));
}

/* ---- XML conversion ------------------------------------------------------------------------ */

static const char *SALES_XML =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Sales xmlns=\"urn:sales\" xmlns:s=\"urn:sales\" xmlns:t=\"urn:ticket\">\n"
    "  <Sale id=\"S1\" t:channel=\"web\">\n"
    "    <Invoice> INV-1 </Invoice>\n"
    "    <Price currency=\"EUR\">12.50</Price>\n"
    "    <Seat>A1</Seat>\n"
    "    <Seat>A2</Seat>\n"
    "    <t:Customer><t:Name>Ann &amp; Bob &lt;ab&gt;</t:Name><Email/></t:Customer>\n"
    "    <Note><![CDATA[<b>bold</b> & more]]></Note>\n"
    "    <Sym>&#x20AC;&#8364;\xe2\x82\xac</Sym>\n"
    "    <!-- a comment --><?pi ignored?>\n"
    "  </Sale>\n"
    "  <Sale id=\"S2\">mixed <b>x</b> text</Sale>\n"
    "</Sales>\n";

static const char *SALES_JSON = "[{\"id\": \"S1\", \"channel\": \"web\", \"Invoice\": \"INV-1\","
                                "  \"Price\": {\"currency\": \"EUR\", \"#text\": \"12.50\"},"
                                "  \"Seat\": [\"A1\", \"A2\"],"
                                "  \"Customer\": {\"Name\": \"Ann & Bob <ab>\", \"Email\": \"\"},"
                                "  \"Note\": \"<b>bold</b> & more\","
                                "  \"Sym\": \"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"},"
                                " {\"id\": \"S2\", \"b\": \"x\", \"#text\": \"mixed  text\"}]";

static void test_xml_convert(void **state)
{
    xml_ok(SALES_XML, "/*/*", SALES_JSON);
    /* The root's prefixes are usable; a default namespace is reached with local-name(). */
    xml_ok(SALES_XML, "/s:Sales/s:Sale", SALES_JSON);
    xml_ok(SALES_XML, "//node()[local-name()='Sale']", SALES_JSON);
    xml_ok(SALES_XML, "/s:Sales/s:Sale[@id='S2']",
           "[{\"id\": \"S2\", \"b\": \"x\","
           " \"#text\": \"mixed  text\"}]");
    xml_ok(SALES_XML, "//t:Customer", "[{\"Name\": \"Ann & Bob <ab>\", \"Email\": \"\"}]");
    /* A default namespace without a prefix cannot be named: nothing selected, no error. */
    xml_ok(SALES_XML, "/Sales/Sale", "[]");
    xml_ok(SALES_XML, "//s:Nothing", "[]");

    static const struct {
        const char *doc;
        const char *xpath;
        const char *expect;
    } cases[] = {
        /* attribute and child of the same name are a repeated member, attribute first */
        {"<r id=\"1\"><id>2</id><id>3</id></r>", "/r", "[{\"id\": [\"1\", \"2\", \"3\"]}]"},
        /* repeated children mixing text-only and structured */
        {"<r><i a=\"1\"/><i>t</i><i><j>u</j></i></r>", "/r",
         "[{\"i\": [{\"a\": \"1\"}, \"t\", {\"j\": \"u\"}]}]"},
        /* a selected text-only element is {"#text": ...}; an empty one is {} */
        {"<r><v> 5 </v><v/><v>  </v></r>", "/r/v", "[{\"#text\": \"5\"}, {}, {}]"},
        /* whitespace-only text next to children is dropped; attributes keep their spaces */
        {"<r a=\" x \">\n  <c>1</c>\n</r>", "/r", "[{\"a\": \" x \", \"c\": \"1\"}]"},
        /* CDATA joins the surrounding text */
        {"<r><v>a<![CDATA[b]]>c</v></r>", "/r", "[{\"v\": \"abc\"}]"},
        /* references inside attributes */
        {"<r a=\"&lt;&#65;&amp;&#x42;&gt;&quot;&apos;\"/>", "/r", "[{\"a\": \"<A&B>\\\"'\"}]"},
        /* nested objects */
        {"<r><a><b><c k=\"v\">t</c></b></a></r>", "/r",
         "[{\"a\": {\"b\": {\"c\": {\"k\": \"v\", \"#text\": \"t\"}}}}]"},
        /* comments do not make an element structured */
        {"<r><v>a<!-- c -->b</v></r>", "/r", "[{\"v\": \"ab\"}]"},
        /* namespaced attributes: local names; xmlns declarations are not members */
        {"<r xmlns:x=\"urn:x\" x:a=\"1\" b=\"2\"/>", "/r", "[{\"a\": \"1\", \"b\": \"2\"}]"},
        {"<r xmlns:x=\"urn:x\" xmlns:y=\"urn:y\" x:a=\"1\" y:a=\"2\"/>", "/r",
         "[{\"a\": [\"1\", \"2\"]}]"},
        /* ISO-8859-1 input comes out as UTF-8 */
        {"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r><v>caf\xe9</v></r>", "/r",
         "[{\"v\": \"caf\xc3\xa9\"}]"},
        /* union selections come back in document order, without duplicates */
        {"<r><b>2</b><a>1</a></r>", "/r/a | /r/b | /r/a",
         "[{\"#text\": \"2\"}, {\"#text\": \"1\"}]"},
        /* attribute predicate, as a connector would use */
        {"<r><e id=\"1\"/><e/><e><id>2</id></e></r>", "//*[@id or id]",
         "[{\"id\": \"1\"}, {\"id\": \"2\"}]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        xml_ok(cases[i].doc, cases[i].xpath, cases[i].expect);
    }
    /* UTF-16 (with its NUL bytes) is fine when the BOM says so. */
    const char *ascii = "<r><v>x\xe9</v></r>";
    char utf16[64];
    size_t n = 0;
    utf16[n++] = (char)0xff;
    utf16[n++] = (char)0xfe;
    for (const char *c = ascii; *c; c++) {
        utf16[n++] = *c;
        utf16[n++] = 0;
    }
    json_t *got = NULL;
    char *err = NULL;
    assert_int_equal(sd_xml_records(utf16, n, "/r", &got, &err), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(got, 0), "v")),
                        "x\xc3\xa9");
    json_decref(got);
}

/* ---- XML errors ---------------------------------------------------------------------------- */

static void test_xml_malformed(void **state)
{
    xml_err("<Sales>\n  <Sale>\n</Sales>\n", "/*",
            "line 3: Opening and ending tag mismatch: Sale line 2 and Sales");
    xml_err("<r>&x;</r>", "/r", "line 1: Entity 'x' not defined");
    xml_err("<r>&nbsp;</r>", "/r", "line 1: Entity 'nbsp' not defined");
    xml_err("<r><a>", "/r", "line 1: ");
    xml_err("<r/><r/>", "/r", "line 1: Extra content at the end of the document");
    xml_err("<r a=\"1\" a=\"2\"/>", "/r", "line 1: Attribute a redefined");
    xml_err("<r>\xff</r>", "/r", "line 1: "); /* invalid UTF-8 */
    xml_err("<r>&#0;</r>", "/r", "line 1: "); /* not an XML character */
    xml_err("<x:r/>", "/r", "line 1: Namespace prefix x on r is not defined");
    xml_err("<?xml version=\"1.0\" encoding=\"x-nope\"?><r/>", "/r", "line 1: ");
    xml_err("", "/r", "document is empty");
    xml_err(" \n\t", "/r", "document is empty");
    xml_err("not xml", "/r", "line 1: Start tag expected");
    xml_err_len("<r/>\0<x/>", 9, "/r", "line 1: document contains a NUL byte");
    xml_err_len("<r>\n<a>\0</a></r>", 16, "/r", "line 2: document contains a NUL byte");
    /* Size is checked before the document is read. */
    xml_err_len("<r/>", SD_FEED_MAX_BYTES + 1, "/r", "document is larger than 256 MiB");
    /* Arguments. */
    xml_err("<r/>", "", "xpath is empty");
    json_t *got = NULL;
    assert_int_equal(sd_xml_records("<r/>", 4, NULL, &got, NULL), -EINVAL); /* no message */
    assert_null(got);
}

static void test_xml_xpath_errors(void **state)
{
    const char *doc = "<r id=\"1\"><a>x</a></r>";
    xml_err(doc, "/a[", "xpath '/a[' is invalid: Invalid expression at character 4");
    xml_err(doc, "///", "xpath '///' is invalid: Invalid expression at character 4");
    xml_err(doc, "/r/", "xpath '/r/' is invalid: Invalid expression at character 4");
    xml_err(doc, "/r[1]]", "xpath '/r[1]]' is invalid: Invalid expression at character 6");
    xml_err(doc, "/x:r", "xpath '/x:r' failed: Undefined namespace prefix");
    xml_err(doc, "nope()", "xpath 'nope()' failed: Unregistered function");
    xml_err(doc, "$v", "xpath '$v' failed: Undefined variable");
    xml_err(doc, "count(//a)", "xpath 'count(//a)' returns a number, not elements");
    xml_err(doc, "string(/r)", "xpath 'string(/r)' returns a string, not elements");
    xml_err(doc, "1 = 1", "xpath '1 = 1' returns a boolean, not elements");
    xml_err(doc, "//@id", "xpath '//@id' selects an attribute, not only elements");
    xml_err(doc, "//text()", "xpath '//text()' selects a text node, not only elements");
    xml_err(doc, "/", "xpath '/' selects the document node, not only elements");
    xml_err(doc, "/r | //text()", "xpath '/r | //text()' selects a text node");
    /* Deep nesting in the expression itself stays within the XPath compiler's limits. */
    char deep[MAX_XPATH_DEPTH_TEST * 2 + 2];
    memset(deep, '(', MAX_XPATH_DEPTH_TEST);
    deep[MAX_XPATH_DEPTH_TEST] = '1';
    memset(deep + MAX_XPATH_DEPTH_TEST + 1, ')', MAX_XPATH_DEPTH_TEST);
    deep[sizeof(deep) - 1] = '\0';
    xml_err(doc, deep, "xpath '(((");
    /* Longer than 4 KiB. */
    char *longx = sd_malloc(5000);
    memset(longx, '/', 1);
    memset(longx + 1, 'a', 4998);
    longx[4999] = '\0';
    xml_err(doc, longx, "xpath is longer than 4096 bytes");
    free(longx);
}

/* Classic billion laughs: ten levels of ten references. */
static const char *BILLION_LAUGHS =
    "<?xml version=\"1.0\"?>\n"
    "<!DOCTYPE lolz [\n"
    " <!ENTITY lol \"lol\">\n"
    " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
    " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
    " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
    " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
    " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
    " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
    " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
    " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
    " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
    "]>\n"
    "<lolz><lol a=\"&lol9;\">&lol9;</lol></lolz>\n";

static void test_xml_billion_laughs(void **state)
{
    double t0 = now_sec();
    xml_err(BILLION_LAUGHS, "/*/*", "line 2: DOCTYPE/entity declarations are not accepted");
    xml_err(BILLION_LAUGHS, "//text()", "line 2: DOCTYPE/entity declarations are not accepted");
    /* Quadratic blowup variant: one big entity referenced many times. */
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "<!DOCTYPE r [<!ENTITY a \"");
    for (int i = 0; i < 50000; i++) {
        sd_buf_puts(&b, "aaaaaaaaaa");
    }
    sd_buf_puts(&b, "\">]><r>");
    for (int i = 0; i < 50000; i++) {
        sd_buf_puts(&b, "&a;");
    }
    sd_buf_puts(&b, "</r>");
    xml_err_len(b.data, b.len, "/r", "line 1: DOCTYPE/entity declarations are not accepted");
    sd_buf_release(&b);
    /* Parameter-entity laughs. */
    xml_err("<!DOCTYPE r [<!ENTITY % a \"x\"><!ENTITY % b \"%a;%a;%a;%a;\"> %b;]><r/>", "/r",
            "line 1: DOCTYPE/entity declarations are not accepted");
    assert_true(now_sec() - t0 < 2.0);
}

static void test_xml_xxe(void **state)
{
    double t0 = now_sec();
    static const char *docs[] = {
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
        "<r>&x;</r>",
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM \"http://127.0.0.1:9/x\">]>\n"
        "<r><v>&x;</v></r>",
        /* parameter entity pulling an external DTD */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]>\n"
        "<r/>",
        /* external subset only */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r SYSTEM \"file:///etc/passwd\">\n<r/>",
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r PUBLIC \"-//X//Y\" \"http://127.0.0.1:9/y.dtd\">\n"
        "<r/>",
        /* a bare DOCTYPE is refused too (documented decision) */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r>\n<r/>",
        /* attribute defaults from a DTD */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ATTLIST r a CDATA \"injected\">]>\n<r/>",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(*docs); i++) {
        xml_err(docs[i], "/r", "line 2: DOCTYPE/entity declarations are not accepted");
    }
    /* XInclude is never processed: the element stays an ordinary element. */
    xml_ok("<r xmlns:xi=\"http://www.w3.org/2001/XInclude\">"
           "<xi:include href=\"file:///etc/passwd\" parse=\"text\"/></r>",
           "/r", "[{\"include\": {\"href\": \"file:///etc/passwd\", \"parse\": \"text\"}}]");
    assert_true(now_sec() - t0 < 2.0);
}

/* n nested <a> elements, the innermost holding text "x"; the outer n-1 become objects. */
static char *nested(int n)
{
    struct sd_buf b;
    sd_buf_init(&b);
    for (int i = 0; i < n; i++) {
        sd_buf_puts(&b, "<a>");
    }
    sd_buf_puts(&b, "x");
    for (int i = 0; i < n; i++) {
        sd_buf_puts(&b, "</a>");
    }
    return sd_buf_steal(&b);
}

/* v is `objects` objects nested through member "a", the innermost holding "a": "x". */
static void check_chain(const json_t *v, int objects)
{
    for (int i = 1; i < objects; i++) {
        assert_int_equal(json_object_size(v), 1);
        v = json_object_get(v, "a");
    }
    assert_int_equal(json_object_size(v), 1);
    assert_string_equal(json_string_value(json_object_get(v, "a")), "x");
}

static void test_xml_depth(void **state)
{
    /* 33 elements = 32 objects: the limit, accepted. */
    char *doc = nested(SD_FEED_MAX_DEPTH + 1);
    json_t *got = NULL;
    char *err = NULL;
    assert_int_equal(sd_xml_records(doc, strlen(doc), "/a", &got, &err), 0);
    check_chain(json_array_get(got, 0), SD_FEED_MAX_DEPTH);
    json_decref(got);
    free(doc);
    /* 34 elements = 33 objects: refused, with the line. */
    doc = nested(SD_FEED_MAX_DEPTH + 2);
    xml_err(doc, "/a", "line 1: element 'a' is nested more than 32 levels deep in its record");
    /* ...but a record lower in the same document is fine. */
    assert_int_equal(sd_xml_records(doc, strlen(doc), "/a/a/a", &got, &err), 0);
    check_chain(json_array_get(got, 0), SD_FEED_MAX_DEPTH - 1);
    json_decref(got);
    free(doc);
    /* Huge depth: libxml2's own limit (256) ends the parse quickly. */
    double t0 = now_sec();
    doc = nested(100000);
    xml_err(doc, "/a", "line 1: Excessive depth in document: 256");
    free(doc);
    assert_true(now_sec() - t0 < 2.0);
}

static void test_xml_limits(void **state)
{
    /* Record count: one over the limit. */
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r>");
    for (int i = 0; i < SD_FEED_MAX_RECORDS + 1; i++) {
        sd_buf_puts(&b, "<a/>");
    }
    sd_buf_puts(&b, "</r>");
    xml_err_len(b.data, b.len, "/r/a",
                "xpath '/r/a' selects 1000001 elements, more than the limit of 1000000");
    /* Exactly the limit is accepted. */
    json_t *got = NULL;
    char *err = NULL;
    assert_int_equal(sd_xml_records(b.data, b.len, "/r/a[position() > 1]", &got, &err), 0);
    assert_int_equal(json_array_size(got), SD_FEED_MAX_RECORDS);
    json_decref(got);
    sd_buf_release(&b);

    /* Overlapping selections: every element of a deep chain repeats the document too often... */
    char *doc = nested(12);
    xml_err(doc, "//*", "line 1: xpath '//*' selects nested elements");
    free(doc);
    /* ...while every element of a shallow feed is fine. */
    xml_ok("<r><s><v>1</v></s></r>", "//*",
           "[{\"s\": {\"v\": \"1\"}}, {\"v\": \"1\"}, {\"#text\": \"1\"}]");

    /* XPath work budget: a quadratic expression on a few thousand elements. */
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r>");
    for (int i = 0; i < 3000; i++) {
        sd_buf_puts(&b, "<a/>");
    }
    sd_buf_puts(&b, "</r>");
    double t0 = now_sec();
    xml_err_len(
        b.data, b.len, "//a[count(//a) > count(//a/preceding::a)]",
        "xpath '//a[count(//a) > count(//a/preceding::a)]' failed: Operation limit exceeded");
    assert_true(now_sec() - t0 < 5.0);
    sd_buf_release(&b);
}

/* ---- XML: attributes per element, start tag size, encodings, stop ------------------------- */

/* "<r>\n<s a0=\"0\" a1=\"1\" ...>x</s></r>" with n attributes on s. */
static char *many_attributes(int n, const char *extra)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r>\n<s");
    for (int i = 0; i < n; i++) {
        sd_buf_printf(&b, " a%d=\"%d\"", i, i);
    }
    sd_buf_printf(&b, "%s>x</s></r>", extra);
    return sd_buf_steal(&b);
}

static void test_xml_attributes(void **state)
{
    /* 100,000 attributes on one element (19 s of libxml2 CPU before the cap) are refused with
     * the line and the element named. */
    char *doc = many_attributes(100000, "");
    xml_err(doc, "/r/s", "line 2: element 's' has more than 256 attributes");
    free(doc);
    /* The boundary: 256 parse, 257 do not. */
    doc = many_attributes(SD_FEED_MAX_ATTRIBUTES, "");
    json_t *got = NULL;
    char *err = NULL;
    assert_int_equal(sd_xml_records(doc, strlen(doc), "/r/s", &got, &err), 0);
    assert_int_equal(json_object_size(json_array_get(got, 0)), SD_FEED_MAX_ATTRIBUTES + 1);
    json_decref(got);
    free(doc);
    doc = many_attributes(SD_FEED_MAX_ATTRIBUTES + 1, "");
    xml_err(doc, "/r/s", "line 2: element 's' has more than 256 attributes");
    free(doc);
    /* '=' in quoted values, comments, CDATA, processing instructions and text is not counted. */
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r><!-- ");
    for (int i = 0; i < 1000; i++) {
        sd_buf_puts(&b, "<x a='1' b=\"2\"/>");
    }
    sd_buf_puts(&b, " --><?pi a=1 b=2 c=3?><![CDATA[ a=1 ]]><s v=\"");
    for (int i = 0; i < 1000; i++) {
        sd_buf_puts(&b, "a=1 ");
    }
    sd_buf_puts(&b, "\">a=b</s></r>");
    assert_int_equal(sd_xml_records(b.data, b.len, "/r/s", &got, &err), 0);
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    sd_buf_release(&b);
    /* Namespace declarations are attributes too (libxml2 checks them pairwise as well). */
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r");
    for (int i = 0; i < 300; i++) {
        sd_buf_printf(&b, " xmlns:p%d=\"urn:%d\"", i, i);
    }
    sd_buf_puts(&b, "/>");
    xml_err_len(b.data, b.len, "/r", "line 1: element 'r' has more than 256 attributes");
    sd_buf_release(&b);
    /* A start tag longer than 1 MiB, even with few attributes. */
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r>\n\n<big v=\"");
    for (size_t i = 0; i < SD_FEED_MAX_TAG_BYTES; i++) {
        sd_buf_puts(&b, "v");
    }
    sd_buf_puts(&b, "\"/></r>");
    xml_err_len(b.data, b.len, "/r", "line 3: start tag of element 'big' is longer than 1024 KiB");
    sd_buf_release(&b);
    /* The same attack in UTF-16: the scan reads code units, not bytes. */
    doc = many_attributes(100000, "");
    size_t n = strlen(doc);
    char *wide = sd_malloc(2 * n + 2);
    wide[0] = (char)0xff, wide[1] = (char)0xfe; /* BOM, little endian */
    for (size_t i = 0; i < n; i++) {
        wide[2 + 2 * i] = doc[i];
        wide[3 + 2 * i] = '\0';
    }
    xml_err_len(wide, 2 * n + 2, "/r/s", "line 2: element 's' has more than 256 attributes");
    /* ...while a small UTF-16 document still parses. */
    const char *small = "<r><s a=\"1\"/></r>";
    for (size_t i = 0; i < strlen(small); i++) {
        wide[2 + 2 * i] = small[i];
        wide[3 + 2 * i] = '\0';
    }
    assert_int_equal(sd_xml_records(wide, 2 + 2 * strlen(small), "/r/s", &got, &err), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(got, 0), "a")), "1");
    json_decref(got);
    free(wide);
    free(doc);
    /* Encodings that could hide markup from a byte scan are refused; ASCII-compatible ones are
     * fine. */
    xml_err("<?xml version=\"1.0\" encoding=\"UTF-7\"?><r +AGE-=\"1\"/>", "/r",
            "line 1: encoding 'UTF-7' is not accepted");
    xml_err("<?xml version=\"1.0\" encoding=\"ISO-2022-JP\"?><r/>", "/r",
            "line 1: encoding 'ISO-2022-JP' is not accepted");
    xml_err("<?xml version=\"1.0\" encoding=\"UTF-16LE\"?><r/>", "/r",
            "line 1: encoding 'UTF-16LE' is not accepted");
    xml_ok("<?xml version=\"1.0\" encoding=\"windows-1252\"?><r><v>caf\xe9</v></r>", "/r",
           "[{\"v\": \"caf\xc3\xa9\"}]");
}

static void test_xml_stop(void **state)
{
    /* A stop request ends the parse with -ECANCELED and its own message; without one the same
     * document parses. */
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "<r>");
    for (int i = 0; i < 100000; i++) {
        sd_buf_puts(&b, "<a v=\"1\"/>");
    }
    sd_buf_puts(&b, "</r>");
    atomic_bool stop = true;
    json_t *got = (json_t *)0x1;
    char *err = NULL;
    assert_int_equal(sd_xml_records_until(b.data, b.len, "/r/a", &stop, &got, &err), -ECANCELED);
    assert_ptr_equal(got, (json_t *)0x1);
    assert_string_equal(err, "parse stopped: the hub is shutting down");
    free(err);
    atomic_store(&stop, false);
    got = NULL;
    assert_int_equal(sd_xml_records_until(b.data, b.len, "/r/a", &stop, &got, &err), 0);
    assert_int_equal(json_array_size(got), 100000);
    json_decref(got);
    sd_buf_release(&b);
}

/* ---- XML: thread safety and error routing -------------------------------------------------- */

static void *parse_loop(void *arg)
{
    intptr_t id = (intptr_t)arg;
    for (int i = 0; i < 200; i++) {
        json_t *got = NULL;
        char *err = NULL;
        if ((i + id) % 3 == 0) {
            if (sd_xml_records(SALES_XML, strlen(SALES_XML), "/s:Sales/s:Sale", &got, &err) != 0 ||
                json_array_size(got) != 2) {
                return (void *)1;
            }
            json_decref(got);
        } else if ((i + id) % 3 == 1) {
            const char *bad = "<a>\n<b>\n</a>";
            if (sd_xml_records(bad, strlen(bad), "/a", &got, &err) != -EINVAL ||
                strncmp(err, "line 3: Opening and ending tag mismatch: b", 42) != 0) {
                return (void *)2;
            }
            free(err);
        } else {
            if (sd_xml_records(BILLION_LAUGHS, strlen(BILLION_LAUGHS), "/a", &got, &err) !=
                    -EINVAL ||
                strcmp(err, "line 2: DOCTYPE/entity declarations are not accepted") != 0) {
                return (void *)3;
            }
            free(err);
        }
    }
    return NULL;
}

static void test_xml_threads(void **state)
{
    pthread_t t[8];
    for (intptr_t i = 0; i < 8; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, parse_loop, (void *)i), 0);
    }
    for (int i = 0; i < 8; i++) {
        void *res = (void *)1;
        assert_int_equal(pthread_join(t[i], &res), 0);
        assert_null(res);
    }
}

static int caller_handler_calls;
#if LIBXML_VERSION >= 21200
static void caller_handler(void *data, const xmlError *err)
#else
static void caller_handler(void *data, xmlErrorPtr err)
#endif
{
    caller_handler_calls++;
}

static void test_xml_quiet(void **state)
{
    /* Everything libxml2 might print goes nowhere: capture fd 2 around error-heavy calls. */
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    xmlSetStructuredErrorFunc(&caller_handler_calls, caller_handler);
    static const char *docs[] = {
        "<a><b></a>",
        "<r>\xff\xfe</r>",
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?><r/>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>\x81</r>",
        "<x:r/>",
        "<r xmlns=\"not a uri\"/>",
        "<r>&bad;</r>",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(*docs); i++) {
        json_t *got = NULL;
        char *err = NULL;
        if (sd_xml_records(docs[i], strlen(docs[i]), "/r", &got, &err) == 0) {
            json_decref(got);
        } else {
            free(err);
        }
    }
    const char *ok = "<r/>";
    static const char *xpaths[] = {"/a[", "nope()", "$x", "/x:y", "count(/r)"};
    for (size_t i = 0; i < sizeof(xpaths) / sizeof(*xpaths); i++) {
        char *err = NULL;
        json_t *got = NULL;
        assert_int_equal(sd_xml_records(ok, strlen(ok), xpaths[i], &got, &err), -EINVAL);
        free(err);
    }
    /* The caller's own handler is back in place and was never called by us. */
    assert_ptr_equal(xmlStructuredError, caller_handler);
    assert_ptr_equal(xmlStructuredErrorContext, &caller_handler_calls);
    assert_int_equal(caller_handler_calls, 0);
    xmlSetStructuredErrorFunc(NULL, NULL);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long size = ftell(tmp);
    fclose(tmp);
    assert_int_equal(size, 0);
}

/* ---- JSON records -------------------------------------------------------------------------- */

static void json_ok(const char *doc, const char *pointer, const char *expect)
{
    json_t *got = (json_t *)0x1;
    char *err = (char *)0x2;
    int rc = sd_json_records(doc, strlen(doc), pointer, &got, &err);
    if (rc != 0) {
        fail_msg("pointer %s: rc %d: %s", pointer, rc, err);
    }
    assert_ptr_equal(err, (char *)0x2);
    json_t *want = parse_json(expect);
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(got);
}

static void json_err_len(const char *doc, size_t len, const char *pointer, const char *expect,
                         bool exact)
{
    json_t *got = (json_t *)0x1;
    char *err = NULL;
    int rc = sd_json_records(doc, len, pointer, &got, &err);
    if (rc != -EINVAL) {
        fail_msg("pointer %s: rc %d, want -EINVAL", pointer ? pointer : "(null)", rc);
    }
    assert_ptr_equal(got, (json_t *)0x1);
    assert_non_null(err);
    if (exact ? strcmp(err, expect) != 0 : strncmp(err, expect, strlen(expect)) != 0) {
        fail_msg("got error '%s', want %s'%s'", err, exact ? "" : "prefix ", expect);
    }
    json_t *s = json_string(err);
    assert_non_null(s);
    json_decref(s);
    free(err);
}

static void json_err(const char *doc, const char *pointer, const char *expect)
{
    json_err_len(doc, strlen(doc), pointer, expect, true);
}

static void test_json_records(void **state)
{
    const char *doc = "{\"data\": {\"items\": [{\"a\": 1}, {\"b\": [2]}], \"n\": 3,"
                      " \"odd\": [{}, {}, \"x\"], \"a/b\": [{\"k\": \"~\"}]}}";
    json_ok(doc, "/data/items", "[{\"a\": 1}, {\"b\": [2]}]");
    json_ok(doc, "/data/a~1b", "[{\"k\": \"~\"}]");
    json_ok("[{\"a\": 1}]", "", "[{\"a\": 1}]");
    json_ok(" [] ", "", "[]");
    json_ok("{\"x\": []}", "/x", "[]");
    json_ok("[[{\"deep\": true}]]", "/0", "[{\"deep\": true}]");

    /* The result outlives the document it came from and is an independent reference. */
    json_t *got = NULL;
    char *err = NULL;
    assert_int_equal(sd_json_records(doc, strlen(doc), "/data/items", &got, &err), 0);
    assert_int_equal(got->refcount, 1);
    assert_int_equal(json_array_size(got), 2);
    json_decref(got);

    /* Structure errors. */
    json_err(doc, "/data", "json pointer '/data' selects an object, not an array");
    json_err(doc, "/data/n", "json pointer '/data/n' selects a number, not an array");
    json_err(doc, "", "the document is an object, not an array");
    json_err(doc, "/data/odd", "record '/data/odd/2' is a string, not an object");
    json_err("[{}, null]", "", "record '/1' is null, not an object");
    json_err("[[1]]", "", "record '/0' is an array, not an object");
    json_err("[true]", "", "record '/0' is a boolean, not an object");
    json_err(
        doc, "/nope",
        "json pointer '/nope' does not exist: no member 'nope' in the object at the top level");
    json_err(doc, "/data/nope/x",
             "json pointer '/data/nope/x' does not exist: no member 'nope' in the object at "
             "'/data'");
    json_err(doc, "/data/items/5",
             "json pointer '/data/items/5' does not exist: no element '5' in the array at "
             "'/data/items' (2 elements)");
    json_err(doc, "/data/items/01",
             "json pointer '/data/items/01' does not exist: no element '01' in the array at "
             "'/data/items' (2 elements)");
    json_err(doc, "/data/n/x",
             "json pointer '/data/n/x' does not exist: the value at '/data/n' is a number");
    json_err(doc, "/data/a~1b/0/k/z",
             "json pointer '/data/a~1b/0/k/z' does not exist: the value at '/data/a~1b/0/k' is "
             "a string");
    json_err(doc, "data",
             "json pointer 'data' is malformed: it must be empty or start with '/', and '~' "
             "must be followed by 0 or 1");
    json_err_len(doc, strlen(doc), "/a~2", "json pointer '/a~2' is malformed: ", false);
    json_err_len(doc, strlen(doc), NULL, "json pointer '(null)' is malformed", false);

    /* Syntax errors: jansson's position and text; truncation is named. */
    json_err("{\"data\": [{\"a\": 1}", "/data",
             "line 1 column 18: ']' expected near end of file (the document is truncated)");
    json_err("[{\"a\": \"unterminated", "",
             "line 1 column 20: premature end of input near '\"unterminated' (the document is "
             "truncated)");
    json_err("[{\"a\": 1}]\n[", "", "line 2 column 1: end of file expected near '['");
    json_err("[{\"a\": 1, \"a\": 2}]", "", "line 1 column 13: duplicate object key near '\"a\"'");
    json_err("[\n{\"a\": tru}]", "", "line 2 column 9: invalid token near 'tru'");
    json_err("[{\"a\": \"\\u0000\"}]", "",
             "line 1 column 15: \\u0000 is not allowed without "
             "JSON_ALLOW_NUL near '\"\\u0000\"'");
    json_err_len("[\"\xff\"]", 4, "", "line 1 column ", false);
    json_err("", "", "document is empty");
    json_err(" \n ", "", "document is empty");
    json_err("42", "", "line 1 column 2: '[' or '{' expected near '42'");
    json_err_len("[]", SD_FEED_MAX_BYTES + 1, "", "document is larger than 256 MiB", true);
}

static void test_json_limits(void **state)
{
    /* SD_FEED_MAX_RECORDS + 1 empty objects. */
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "[{}");
    for (int i = 0; i < SD_FEED_MAX_RECORDS; i++) {
        sd_buf_puts(&b, ",{}");
    }
    sd_buf_puts(&b, "]");
    json_err_len(b.data, b.len, "", "1000001 records, more than the limit of 1000000", true);
    sd_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pointer_get),      cmocka_unit_test(test_pointer_valid),
        cmocka_unit_test(test_xml_convert),      cmocka_unit_test(test_xml_malformed),
        cmocka_unit_test(test_xml_xpath_errors), cmocka_unit_test(test_xml_billion_laughs),
        cmocka_unit_test(test_xml_xxe),          cmocka_unit_test(test_xml_depth),
        cmocka_unit_test(test_xml_limits),       cmocka_unit_test(test_xml_threads),
        cmocka_unit_test(test_xml_quiet),        cmocka_unit_test(test_json_records),
        cmocka_unit_test(test_json_limits),      cmocka_unit_test(test_xml_attributes),
        cmocka_unit_test(test_xml_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
