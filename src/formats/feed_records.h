/* feed_records.h — turn a fetched feed document (XML or JSON) into a JSON array of record
 * objects, ready for the connector's field mapping.
 *
 * Both functions take untrusted bytes straight from a vendor's server. They never fetch
 * anything, never expand entities and bound everything the input controls: document size,
 * record count, nesting depth, XPath work, output size.
 *
 * Ownership and errors: on success they return 0, store a new reference in *ret and leave
 * *ret_error alone. On failure they return -EINVAL, leave *ret alone and, when ret_error is not
 * NULL, store a new heap string (free() it) saying what is wrong and where: a line for XML, a
 * line and column for JSON syntax, a JSON Pointer for JSON structure. Messages are valid
 * UTF-8 on one line. Allocation failure aborts (base.h).
 *
 * Thread rules: reentrant; any number of threads may parse at once. libxml2 is initialised once
 * by the first call (pthread_once); its error reporting is redirected per call, so nothing is
 * ever written to stderr and no handler installed by the caller is disturbed. */
#ifndef SD_FEED_RECORDS_H
#define SD_FEED_RECORDS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#define SD_FEED_MAX_BYTES ((size_t)256 * 1024 * 1024) /* input document size */
#define SD_FEED_MAX_RECORDS 1000000                   /* records per document */
#define SD_FEED_MAX_DEPTH 32                          /* nesting of objects in one XML record */
#define SD_FEED_MAX_ATTRIBUTES 256                    /* attributes of one XML element */
#define SD_FEED_MAX_TAG_BYTES ((size_t)1024 * 1024)   /* one XML start tag, attributes included */

/* Parse an XML document (at most SD_FEED_MAX_BYTES) and return the elements selected by `xpath`
 * as JSON objects, in document order (new array in *ret).
 *
 * Element → object: each attribute becomes a string member; each child element with only text
 * (or nothing) becomes a string member, its text trimmed of XML whitespace; a repeated name
 * becomes an array of its values in document order (an attribute and a child element of the
 * same local name count as repeated, attribute first); a child with child elements or
 * attributes becomes a nested object, recursively, at most SD_FEED_MAX_DEPTH objects deep
 * counting the record itself; an element's own text next to child elements or attributes is
 * member "#text" (all its direct text and CDATA joined, trimmed; absent when only whitespace).
 * A selected element with only text is therefore {"#text": "..."}. Comments and processing
 * instructions are ignored. Character references and the five predefined entities (&amp; …)
 * are ordinary text.
 *
 * Namespaces: member names are local names (prefixes dropped). In the XPath, the prefixes the
 * document declares on its root element may be used ("/s:Sales/s:Sale"); a default namespace
 * cannot be named in XPath 1.0, so match on local-name() ("//node()[local-name()='Sale']").
 *
 * Refused with -EINVAL: an empty xpath or one longer than 4096 bytes; an empty document; a NUL
 * byte in a document that is not UTF-16/UCS-4; a document that is not well-formed ("line 12:
 * Opening and ending tag mismatch: Sale line 3 and Sales"); any DOCTYPE ("line 1: DOCTYPE/entity
 * declarations are not accepted"); nesting beyond libxml2's 256 levels; an invalid XPath
 * ("xpath '/a[' is invalid: Invalid expression at character 4"); an XPath whose result is not a
 * node-set or contains non-element nodes; an XPath exceeding its work budget (proportional to the
 * document size); more than SD_FEED_MAX_RECORDS records; a record nested deeper than
 * SD_FEED_MAX_DEPTH; selections that overlap so much (nested selected elements) that the output
 * would exceed four conversions per document node. An XPath that selects nothing is not an error:
 * empty array. Also refused, before libxml2 reads anything: an element with more than
 * SD_FEED_MAX_ATTRIBUTES attributes ("line 3: element 'Sale' has more than 256 attributes"; libxml2
 * checks attributes pairwise, so 100,000 of them would cost it 19 s of CPU), a start tag longer
 * than SD_FEED_MAX_TAG_BYTES, and an encoding a byte scan cannot read (EBCDIC, UTF-7, ISO-2022, or
 * a declaration switching an 8-bit document to UTF-16LE/UTF-32: "line 1: encoding 'UTF-7' is not
 * accepted ..."). */
int sd_xml_records(const char *buf, size_t len, const char *xpath, json_t **ret, char **ret_error);

/* sd_xml_records that also returns -ECANCELED ("parse stopped: the hub is shutting down" in
 * *ret_error) once *stop is true: checked between parse steps of 256 KiB and every 1024 records
 * converted, so a stop is honoured within one step's work. stop may be NULL. */
int sd_xml_records_until(const char *buf, size_t len, const char *xpath, const atomic_bool *stop,
                         json_t **ret, char **ret_error);

/* Parse JSON text (at most SD_FEED_MAX_BYTES; duplicate keys rejected; no NUL in strings) and
 * return the array at `pointer` (RFC 6901; "" = the document itself must be an array), as a
 * new reference. Refused with -EINVAL: bad or truncated JSON ("line 3 column 7: ..."), a
 * malformed pointer, a pointer that does not exist (says which step is missing), a value that
 * is not an array, an element that is not an object ("record '/data/3' is a string, not an
 * object"), more than SD_FEED_MAX_RECORDS elements. */
int sd_json_records(const char *buf, size_t len, const char *pointer, json_t **ret,
                    char **ret_error);

#endif
