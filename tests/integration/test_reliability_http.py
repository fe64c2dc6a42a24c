#!/usr/bin/env python3
"""test_reliability_http.py: the small HTTP fixes of issue 14 item 7.

- A chunked body over --max-body-bytes gets a 413 problem+json (the rest
  is read and dropped; MHD 0.9.75 cannot answer mid-upload), not a reset.
- Transfer-Encoding other than chunked gets a 400 problem+json at once,
  not a hang until the connection timeout; Content-Encoding gzip a 415.
- A batch retried with its Idempotency-Key after one of its jobs was
  deleted answers 410 naming the index, never a shorter list; with every
  job there it answers them all; a key none of whose jobs is left is
  forgotten.
- Headers past 32 KiB get a 431 problem+json, a URL past it a 414
  problem+json, from the daemon (MHD 0.9.75's own answers are HTML; its
  per-connection pool is raised so that these reach the handler); headers
  just under the limit are served.
Prints "N passed, M failed" last.
"""

import json
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def raw(port, data, timeout=10.0):
    """Sends data on a fresh connection; (status, headers, body) read until
    the server closes, or None for a reset / nothing."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    if not out.startswith(b"HTTP/1.1 "):
        return None
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def post_head(extra):
    return (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n" + extra + b"\r\n")


class BodyFraming(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = h.Daemon("--no-store", "--max-body-bytes", "1024").start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def problem(self, answer, status, code):
        self.assertIsNotNone(answer, "no answer (reset or timeout)")
        got_status, headers, body = answer
        self.assertEqual(got_status, status, body)
        self.assertEqual(headers["content-type"], "application/problem+json")
        self.assertEqual(json.loads(body)["code"], code)

    def test_chunked_body_over_the_limit_gets_413(self):
        chunks = b"".join(b"100\r\n" + b" " * 256 + b"\r\n" for _ in range(12))
        answer = raw(self.d.port, post_head(b"Transfer-Encoding: chunked\r\n")
                     + chunks + b"0\r\n\r\n")
        self.problem(answer, 413, "body_too_large")

    def test_chunked_body_under_the_limit_still_works(self):
        body = json.dumps(h.SMALL_JOB).encode()
        answer = raw(self.d.port, post_head(
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n") +
            b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        self.assertEqual(answer[0], 202, answer)

    def test_gzip_transfer_encoding_gets_400_at_once(self):
        start = time.monotonic()
        answer = raw(self.d.port, post_head(b"Transfer-Encoding: gzip\r\n") +
                     b"\x1f\x8b\x08\x00", timeout=10)
        self.problem(answer, 400, "unsupported_transfer_encoding")
        self.assertLess(time.monotonic() - start, 5)

    def test_gzip_content_encoding_gets_415(self):
        answer = raw(self.d.port, post_head(
            b"Content-Encoding: gzip\r\nContent-Length: 4\r\n") +
            b"\x1f\x8b\x08\x00")
        self.problem(answer, 415, "unsupported_media_type")


    def test_headers_over_the_limit_get_431_problem(self):
        answer = raw(self.d.port, b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\n"
                     b"X-Pad: " + b"a" * 40000 + b"\r\n\r\n")
        self.problem(answer, 431, "headers_too_large")
        answer = raw(self.d.port, b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\n"
                     b"X-Pad: " + b"a" * 30000 +
                     b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(answer[0], 200, answer)

    def test_url_over_the_limit_gets_414_problem(self):
        answer = raw(self.d.port, b"GET /v1/jobs?page_token=" + b"a" * 40000 +
                     b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.problem(answer, 414, "uri_too_long")
        self.assertLess(len(json.loads(answer[2])["instance"]), 300)


class BatchReplay(unittest.TestCase):
    def test_replay_after_a_delete_is_410_not_a_short_list(self):
        with h.Daemon("--no-store") as d:
            batch = {"jobs": [h.SMALL_JOB, h.SMALL_JOB, h.SMALL_JOB]}
            key = {"Idempotency-Key": "batch-410"}
            first = d.call("POST", "/v1/jobs:batch", batch, headers=key)
            self.assertEqual(first.status, 202)
            ids = [j["id"] for j in first.json["jobs"]]
            for i in ids:
                d.wait(i)
            again = d.call("POST", "/v1/jobs:batch", batch, headers=key)
            self.assertEqual(again.status, 202)
            self.assertEqual([j["id"] for j in again.json["jobs"]], ids)
            self.assertEqual(d.call("DELETE", "/v1/jobs/" + ids[1]).status,
                             204)
            gone = d.call("POST", "/v1/jobs:batch", batch, headers=key)
            self.assertEqual(gone.status, 410, gone.body)
            self.assertEqual(gone.json["code"], "idempotent_jobs_gone")
            self.assertIn("index 1", gone.json["detail"])
            other = {"jobs": [h.SMALL_JOB]}
            self.assertEqual(d.call("POST", "/v1/jobs:batch", other,
                                    headers=key).status, 422)
            for i in (ids[0], ids[2]):
                self.assertEqual(d.call("DELETE", "/v1/jobs/" + i).status,
                                 204)
            fresh = d.call("POST", "/v1/jobs:batch", batch, headers=key)
            self.assertEqual(fresh.status, 202)
            self.assertFalse(set(j["id"] for j in fresh.json["jobs"]) &
                             set(ids))
            self.assertEqual(d.stop(), 0)


def large_job(samples=120):
    """An mlp job with inline inputs, about 1 MB of JSON: over the 64 KiB
    from which the daemon parses a body on its thread pool."""
    rows = [[((k * 13 + s) % 1000) / 1000.0 + 0.5 for k in range(784)]
            for s in range(samples)]
    return {"architecture": {"type": "mlp_dag", "dag": "2_21_112"},
            "metrics": ["topology"],
            "data": {"input_shape": [784], "inputs": rows,
                     "labels": [s % 10 for s in range(samples)]}}


class LargeBodiesOffTheLoop(unittest.TestCase):
    """A POST body of 64 KiB or more is parsed, validated and rendered on
    the thread pool (http.c parse_off_loop): the answers are those of the
    loop's own parse, field by field."""

    def test_large_bodies_answer_as_small_ones(self):
        with h.Daemon("--no-store", "--max-body-bytes", "8MiB",
                      host_workers=1) as d:
            job = large_job()
            body = json.dumps(job).encode()
            self.assertGreater(len(body), 64 * 1024)
            ok = d.call("POST", "/v1/jobs", job)
            self.assertEqual(ok.status, 202, ok.body[:300])
            done = d.wait(ok.json["id"])
            self.assertEqual(done["state"], "succeeded")
            self.assertEqual(done["request"]["data"]["inputs"][7][100],
                             job["data"]["inputs"][7][100])
            # Not JSON: 400 with the position, as from the loop.
            bad = d.call("POST", "/v1/jobs", raw=body[:-2] + b"x}",
                         headers={"Content-Type": "application/json"})
            self.assertEqual(bad.status, 400, bad.body[:300])
            self.assertEqual(bad.json["code"], "invalid_json")
            # A field out of range: 422 naming it.
            wrong = json.loads(body)
            wrong["data"]["labels"][3] = -1
            r = d.call("POST", "/v1/jobs", wrong)
            self.assertEqual(r.status, 422, r.body[:300])
            self.assertIn("/data/labels/3",
                          [e["pointer"] for e in r.json["errors"]])
            # An idempotent replay finds the first job by the pool's hash.
            key = {"Idempotency-Key": "large-1"}
            first = d.call("POST", "/v1/jobs", job, headers=key)
            again = d.call("POST", "/v1/jobs", job, headers=key)
            self.assertEqual(first.status, 202)
            self.assertEqual(again.json["id"], first.json["id"])
            # A large batch (its body parsed on the pool) and a wrong
            # content type (415 before any parse).
            batch = d.call("POST", "/v1/jobs:batch",
                           {"jobs": [job, h.SMALL_JOB]})
            self.assertEqual(batch.status, 202, batch.body[:300])
            self.assertEqual(len(batch.json["jobs"]), 2)
            r = d.call("POST", "/v1/jobs:batch",
                       {"jobs": [h.SMALL_JOB, wrong]})
            self.assertEqual(r.status, 422, r.body[:300])
            self.assertIn("/jobs/1/data/labels/3",
                          [e["pointer"] for e in r.json["errors"]])
            r = d.call("POST", "/v1/jobs", raw=body,
                       headers={"Content-Type": "text/plain"})
            self.assertEqual(r.status, 415)
            # Identical requests share a canonical key, however parsed.
            self.assertEqual(first.json.get("canonical"),
                             ok.json.get("canonical"))
            self.assertEqual(d.stop(), 0)
            log = d.log_text()
            self.assertRegex(log, r"loop: \d+ turns")
            # ok, bad, wrong, first, again, two batches: 7 on the pool.
            pooled = re.search(r"(\d+) request bodies were parsed on the "
                               r"thread pool", log)
            self.assertTrue(pooled, "no pool count in the log")
            self.assertEqual(int(pooled.group(1)), 7)


if __name__ == "__main__":
    h.main()
