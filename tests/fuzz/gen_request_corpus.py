#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_request.c from the route table (src/api/routes.c),
so every route, including one added later, gets seeds: a valid request, each path parameter and
a query parameter with invalid UTF-8, NUL, a malformed escape and an over-long value, the wrong
keys, and for JSON routes the malformed-JSON corpus of fuzz_ingest plus bodies that quote
invalid UTF-8. Run it after changing the route table and commit its output:

    python3 tests/fuzz/gen_request_corpus.py

The input layout is described at the top of fuzz_request.c: four bytes (method, route, auth,
flags), then fields separated by 0xFE (path parameters, query, extra headers, body)."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_request")
SEP = b"\xfe"

# auth byte
NONE, OWN_KEY, OTHER_KEY, ADMIN, UNKNOWN_KEY, BEARER_ONLY = range(6)
# flags byte
ENCODE, JSON_TYPE, SECOND_TENANT, PROD, CHUNKED = 1, 2, 4, 8, 16


def routes():
    """[(method, pattern, name, flags)] in table order, from src/api/routes.c."""
    text = open(os.path.join(ROOT, "src", "api", "routes.c"), encoding="utf-8").read()
    macros = dict(re.findall(r'#define\s+(\w+)\s+"([^"]*)"', text))
    table = text[text.index("sd_routes[] = {"):text.index("const size_t sd_routes_count")]
    out = []
    for m in re.finditer(r'\{\s*"([A-Z]+)",\s*((?:\w+\s*)?(?:"[^"]*"\s*)*),\s*"(\w+)",\s*'
                         r'([^,]+),\s*\w+\s*\}', table):
        method, pat_expr, name, flags = m.groups()
        pattern = ""
        for tok in re.findall(r'"[^"]*"|\w+', pat_expr):
            pattern += tok[1:-1] if tok.startswith('"') else macros[tok]
        out.append((method, pattern, name, flags.strip()))
    if not out:
        sys.exit("gen_request_corpus: no routes found in src/api/routes.c")
    return out


RECORDS = (b'{"events":[{"event_id":"EVT-9","title":"Tosca","date":"2025-11-03","time":"19:30:00",'
           b'"venue":"State Opera","hall":"Main","capacity":900,"city":"Berlin"}],'
           b'"customers":[{"customer_id":"CUS-9","email":"cus-9@example.com"}],'
           b'"sales":[{"invoice_number":"INV-9","event_id":"EVT-9","customer_id":"CUS-9",'
           b'"purchase_datetime":"2025-04-15T11:08:42Z","ticket_category":"regular",'
           b'"quantity":2,"sales_price":"89.00","currency":"EUR"}]}')
SALE = (b'{"invoice_number":"INV-1","event_id":"EVT-1","customer_id":"CUS-1",'
        b'"purchase_datetime":"2025-04-15T11:08:42Z","ticket_category":"VIP","quantity":3,'
        b'"sales_price":"120.00","currency":"EUR"}')
SEGMENT = b'{"segment_name":"Opera buyers","rules":{"bought":{"event_id":"EVT-1"}}}'
TARGET = (b'{"type":"audience_push","environment":"test","url":"https://push.example/push2",'
          b'"app_key":"APP2","secure_token":"TOK2"}')
CONNECTOR = (b'{"type":"feed","environment":"test","schedule":"manual",'
             b'"settings":{"url":"https://feed.example/other.json"}}')

# A valid body, query and parameter choice per route name; "@1" = the disposable seeded id.
VALID = {
    "ingest": {"body": RECORDS},
    "events_list": {"query": b"limit=1"},
    "customers_list": {"query": b"limit=1"},
    "sales_list": {"query": b"limit=1"},
    "sale_put": {"body": SALE},
    "connector_create": {"body": CONNECTOR},
    "connectors_list": {},
    "connector_update": {"body": b'{"schedule":"hourly"}', "params": {"connector_id": b"@1"}},
    "connector_delete": {"params": {"connector_id": b"@1"}},
    "profiles_find": {"query": b"customer_id=CUS-1&source=webhook"},
    "profile_split": {"body": b'{"source":"webhook","customer_id":"CUS-1"}'},
    "customer_erase": {"query": b"erase=profile", "params": {"customer_id": b"@1"}},
    "tenant_update": {"body": b'{"link_rule":"email"}'},
    "suppressions_add": {"body": b'{"environment":"test","emails":["nobody@example.com"]}'},
    "segment_create": {"body": SEGMENT},
    "segment_update": {"body": SEGMENT, "params": {"segment_id": b"@1"}},
    "segment_delete": {"params": {"segment_id": b"@1"}},
    "segment_members": {"query": b"limit=1"},
    "target_create": {"body": TARGET},
    "target_update": {"body": b'{"segments_per_hour":3}', "params": {"target_id": b"@1"}},
    "target_delete": {"params": {"target_id": b"@1"}},
    "segment_push": {"body": b'{"target_id":"@target_id@"}'},
    "deliveries_list": {"query": b"state=queued&client_id=@client_id@&limit=5"},
}

# What a path parameter or query value is replaced by in the hostile seeds (sent raw: the
# server's URL decoding sees the escapes as written).
BAD_VALUES = {
    "ff": b"%FF",
    "nul": b"EVT-1%00junk",
    "utf8_cut": b"%C3",
    "raw_high": b"\xff\xc3(",
    "bad_escape": b"%G1%",
    "long": b"A" * 3000,
    "slash": b"a%2Fb",
}
BAD_QUERIES = {
    "ff": b"limit=%FF&cursor=%FF&email=%FF&customer_id=%FF&source=%FF&state=%FF&erase=%FF"
          b"&client_id=%FF",
    "nul": b"limit=1%00&cursor=x%00y&email=a%00@example.com&erase=profile%00&state=queued%00",
    "long": b"cursor=" + b"B" * 3000 + b"&email=" + b"c" * 3000,
    "dup": b"limit=1&limit=2&customer_id=CUS-1&email=cus-1@example.com",
}
MALFORMED_BODIES = {
    "bad_escape_utf8": b'{"events":[{"event_id":"\\x\xff\xfe"}]}',
    "escape_multibyte": b'{"events":[{"event_id":"\\\xc3\xa9"}],"segment_name":"\\\xff"}',
    "invalid_utf8_key": b'{"\xff\xff":1}',
    "invalid_utf8_value": b'{"segment_name":"\xc3","rules":{"bought":{"event_id":"\xff"}}}',
    "nul_escape": b'{"event_id":"a\\u0000b","target_id":"\\u0000","emails":["\\u0000@x"]}',
    "truncated": b'{"events":[{"event_id":"EVT-',
    "deep": b"[" * 4000,
    "lone_surrogate": b'{"customer_id":"\\ud800","source":"\\udfff"}',
}


def param_names(pattern):
    return re.findall(r"\{(\w+)\}", pattern)


def seed(route_idx, method_byte=0, auth=OWN_KEY, flags=ENCODE | JSON_TYPE, params=(),
         query=b"", headers=b"", body=b""):
    return (bytes([method_byte, route_idx, auth, flags]) + SEP.join(list(params) + [query, headers])
            + SEP + body)


def default_auth(flags_str):
    if "ADMIN" in flags_str:
        return ADMIN
    if "TENANT" in flags_str:
        return OWN_KEY
    return NONE


def main():
    table = routes()
    if len(table) > 255:
        sys.exit("gen_request_corpus: more than 255 routes; widen the route byte")
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    files = {}
    ingest_corpus = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_ingest")
    malformed = dict(MALFORMED_BODIES)
    for f in sorted(os.listdir(ingest_corpus)):
        malformed["ingest_" + os.path.splitext(f)[0]] = open(os.path.join(ingest_corpus, f),
                                                             "rb").read()
    for i, (method, pattern, name, flags_str) in enumerate(table):
        names = param_names(pattern)
        v = VALID.get(name, {})
        auth = default_auth(flags_str)
        good = [v.get("params", {}).get(n, b"") for n in names]
        query, body = v.get("query", b""), v.get("body", b"")
        files["%s.valid" % name] = seed(i, auth=auth, params=good, query=query, body=body)
        files["%s.prod" % name] = seed(i, auth=auth, flags=ENCODE | JSON_TYPE | PROD, params=good,
                                       query=query, body=body)
        # Wrong keys: none, the other tenant's, an unknown one, "Bearer" alone, and a tenant key
        # on an admin route / the admin token on a tenant route.
        for label, a in (("nokey", NONE), ("otherkey", OTHER_KEY), ("unknownkey", UNKNOWN_KEY),
                         ("bearer_only", BEARER_ONLY),
                         ("crosskey", OWN_KEY if auth == ADMIN else ADMIN)):
            files["%s.%s" % (name, label)] = seed(i, auth=a, params=good, query=query, body=body)
        files["%s.key_nul" % name] = seed(i, auth=NONE, params=good, query=query, body=body,
                                          headers=b"Authorization: Bearer sd_test_x%00junk\n"
                                                  b"Idempotency-Key: \xff\xc3%00")
        for p, pname in enumerate(names):
            for label, bad in BAD_VALUES.items():
                params = list(good)
                params[p] = bad
                files["%s.%s_%s" % (name, pname, label)] = seed(
                    i, auth=auth, flags=JSON_TYPE, params=params, query=query, body=body)
        for label, q in BAD_QUERIES.items():
            files["%s.query_%s" % (name, label)] = seed(i, auth=auth, params=good, query=q,
                                                         body=body)
        if "JSON_BODY" in flags_str or "WRITE" in flags_str:
            files["%s.chunked" % name] = seed(i, auth=auth, flags=ENCODE | JSON_TYPE | CHUNKED,
                                              params=good, query=query, body=body)
            files["%s.no_content_type" % name] = seed(i, auth=auth, flags=ENCODE, params=good,
                                                      query=query, body=body)
            bodies = malformed if name == "ingest" else MALFORMED_BODIES
            for label, b in bodies.items():
                files["%s.body_%s" % (name, label)] = seed(i, auth=auth, params=good,
                                                            query=query, body=b)
        # Another method on the same path (405 with Allow).
        files["%s.other_method" % name] = seed(i, method_byte=8, auth=auth, params=good)
    raw = len(table)
    for label, path in (("root", b"/"), ("unknown", b"/v2/nothing"), ("ff", b"/v1/%FF/events"),
                        ("raw_high", b"/v1/\xff\xc0/events"), ("nul", b"/healthz%00"),
                        ("dots", b"/v1/../admin/v1/deliveries"), ("long", b"/" + b"x" * 6000),
                        ("double_slash", b"//v1//fz_opera//events"),
                        ("over_buffer", b"/" + b"x" * 40000)):
        files["raw_path.%s" % label] = seed(raw, auth=OWN_KEY, flags=JSON_TYPE, params=[path])
    # A header block over libmicrohttpd's buffer (431 from libmicrohttpd itself), and headers
    # repeated or with odd bytes.
    by_name = {name: i for i, (_, _, name, _) in enumerate(table)}
    files["headers.over_buffer"] = seed(by_name["healthz"], auth=NONE, headers=b"X-Big: " + b"y" * 40000)
    files["headers.odd"] = seed(by_name["ingest"], auth=OWN_KEY, headers=b"Idempotency-Key: a\nIdempotency-Key: b\n"
                                b"Content-Type: text/plain\nX-\xff: \xc3\n: empty name",
                                body=RECORDS)
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("gen_request_corpus: %d routes, %d seeds in %s" % (len(table), len(files),
                                                          os.path.relpath(OUT, ROOT)))


if __name__ == "__main__":
    main()
