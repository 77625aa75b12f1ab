#!/usr/bin/env python3
"""bench/segment_pages.py — for bench/segments.sh: what paging through ALL members of a segment
costs against computing it once, on a running hub.

    segment_pages.py BASE CLIENT KEY RULE_JSON LIMIT

POSTs the rule (its time is "computing once": parse, count, store), then reads every page of
members with `limit` LIMIT starting without cursor or snapshot (what a client that did not keep
the POST's answer does: a hub that snapshots computes the rule on the first page; one that does
not computes it on every page), following next_cursor until has_more is false. When the POST
answered a snapshot_id, its members are then paged once more from `?snapshot=` (what a client
that keeps the POST's answer does: no page computes anything). Prints one line:

    COMPUTE_S PAGING_S SLOWEST_PAGE_S PAGES MEMBERS MEMBER_COUNT [SNAP_PAGING_S SNAP_SLOWEST_S]

Exit 1 if any request did not answer 201/200 or a page repeats or misses order.
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def call(method, url, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=1800) as r:
        payload = r.read()
        status = r.status
    return status, json.loads(payload), time.monotonic() - t0


def page_all(path, key, first):
    """(total seconds, slowest page seconds, pages, members) of reading every page."""
    cursor, total, slowest, pages, members, last = None, 0.0, 0.0, 0, 0, 0
    while True:
        url = path + ("&cursor=" + urllib.parse.quote(cursor) if cursor else first)
        status, page, t = call("GET", url, key)
        if status != 200:
            raise RuntimeError("GET members answered %d" % status)
        total += t
        slowest = max(slowest, t)
        pages += 1
        for m in page["data"]:
            if m["profile_id"] <= last:
                raise RuntimeError("members out of order")
            last = m["profile_id"]
        members += len(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return total, slowest, pages, members


def main():
    base, client, key, rule, limit = sys.argv[1:6]
    status, seg, compute = call("POST", "%s/v1/%s/segments" % (base, client), key,
                                {"segment_name": "paging", "rules": json.loads(rule)})
    if status != 201:
        print("POST answered %d" % status, file=sys.stderr)
        return 1
    path = "%s/v1/%s/segments/%s/members?limit=%s" % (base, client, seg["segment_id"], limit)
    snap = seg.get("snapshot_id")
    try:
        if snap:  # the POST's own snapshot first, while it is the newest
            s_total, s_slowest, _, _ = page_all(path, key, "&snapshot=" + snap)
        total, slowest, pages, members = page_all(path, key, "")
    except (RuntimeError, urllib.error.HTTPError) as e:
        print(e, file=sys.stderr)
        return 1
    extra = " %.3f %.3f" % (s_total, s_slowest) if snap else ""
    print("%.3f %.3f %.3f %d %d %d%s" % (compute, total, slowest, pages, members,
                                         seg["member_count"], extra))
    return 0

if __name__ == "__main__":
    sys.exit(main())
