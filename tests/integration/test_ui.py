#!/usr/bin/env python3
"""test_ui.py: the /ui/ page in a real browser (issue 13).

Starts archevald with a finished study, then loads each page with
Debian's headless Chromium (--dump-dom after the page's scripts ran) and
checks the rendered DOM against the JSON API: the study list has a row
per study with its progress; a study's page has one ranking row per
member, the members in rank order, Pareto points equal to the API's
front, a histogram per metric and the progress; a job's page shows its
state and scorecard.  The static files come from the binary and load no
external resource.  A screenshot of each page is saved under
$AE_BUILDDIR/tests/integration/ui-screenshots/ (the test's artefacts).

Environment: AE_BUILDDIR; CHROMIUM (default: chromium, chromium-browser).
Exit 77 without the daemon or a Chromium.  Prints "N passed, M failed".
"""

import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check = h.check
DAGS = ("2_22_222", "2_21_112", "2_02_122", "1_22_212", "2_12_221", "1",
        "2_22", "1_11")


def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Dom(html.parser.HTMLParser):
    """The elements of a page as (tag, attributes) in document order, and
    the text inside each id'd element."""

    def __init__(self, text):
        super().__init__()
        self.elements = []
        self.text_of = {}
        self._open = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.text_of[ident] = self.text_of.get(ident, "") + data

    def having(self, tag, cls=None):
        return [a for t, a in self.elements if t == tag and
                (cls is None or cls in (a.get("class") or "").split())]


def browse(chromium, url, profile, shot=None):
    """The DOM after the page's scripts ran (and a screenshot)."""
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--user-data-dir=" + profile, "--virtual-time-budget=8000",
            "--window-size=1200,1000"]
    if shot:
        subprocess.run(base + ["--screenshot=" + shot, url],
                       capture_output=True, timeout=120)
    r = subprocess.run(base + ["--dump-dom", url], capture_output=True,
                       text=True, timeout=120)
    return Dom(r.stdout), r.stdout


def main():
    h.require_daemon()
    chromium = find_chromium()
    if not chromium:
        h.skip("no chromium")
    shots = os.path.join(h.BUILDDIR, "tests", "integration",
                         "ui-screenshots")
    os.makedirs(shots, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="ae-ui-chromium-")
    d = h.Daemon()
    if not d.try_start():
        check(False, "daemon starts")
        return h.finish()
    try:
        for path, ctype in (("/ui/", "text/html"),
                            ("/ui/app.js", "text/javascript"),
                            ("/ui/style.css", "text/css")):
            r = d.call("GET", path)
            check(r.status == 200 and r.header("Content-Type")
                  .startswith(ctype), "GET %s from the binary" % path)
            check(not re.search(rb"(src|href)=\"(https?:)?//", r.body) and
                  b"@import" not in r.body and b"url(http" not in r.body,
                  "%s loads no external resource" % path)
        check(d.call("POST", "/ui/").status == 405, "POST /ui/ is 405")
        check(d.call("GET", "/ui/nope.js").status == 404,
              "an unknown file is 404")

        r = d.call("POST", "/v1/studies", {
            "name": "ui-study", "metrics": ["topology", "convergence"],
            "data": {"batch_size": 8}, "seed": 3})
        if not check(r.status == 201, "a study is created", r.body[:300]):
            return h.finish()
        sid = r.json["id"]
        d.call("POST", "/v1/studies/%s/architectures" % sid, {
            "architectures": [{"type": "mlp_dag", "dag": g, "width": 32}
                              for g in DAGS]})
        other = d.call("POST", "/v1/studies", {"name": "empty one"})
        check(other.status == 201, "a second study is created",
              other.body[:300])
        other = other.json
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if d.call("GET", "/v1/studies/%s" % sid).json["progress"] >= 1:
                break
            time.sleep(0.3)
        ranking = d.call("GET", "/v1/studies/%s/ranking" % sid).json
        members = ranking["members"]

        dom, _ = browse(chromium, d.url + "/ui/", profile,
                        os.path.join(shots, "studies.png"))
        rows = dom.having("tr", "study")
        check(sorted(a["data-id"] for a in rows) ==
              sorted([sid, other["id"]]), "the list: a row per study",
              rows)
        check("ui-study" in dom.text_of.get("studies", "") and
              "100%" in dom.text_of.get("studies", ""),
              "the list shows names and progress")

        dom, text = browse(chromium, d.url + "/ui/#/studies/" + sid,
                           profile, os.path.join(shots, "study.png"))
        rows = dom.having("tr", "member")
        check([a["data-job"] for a in rows] == [m["job"] for m in members],
              "the study: one row per member, in rank order",
              (len(rows), len(members)))
        front_rows = {a["data-job"] for a in dom.having("tr", "front")}
        check(front_rows == set(ranking["pareto_front"]),
              "front rows are the API's front")
        points = dom.having("circle")
        front_points = {a["data-job"] for a in dom.having("circle", "front")}
        check(len(points) == len(members) and
              front_points == set(ranking["pareto_front"]),
              "the scatter: a point per member, the front highlighted",
              (len(points), front_points, ranking["pareto_front"]))
        histos = {a["data-metric"] for a in dom.having("svg", "histogram")}
        check(histos == set(members[0]["metrics"]),
              "a histogram per metric", histos)
        progress = [a for t, a in dom.elements if a.get("id") == "progress"]
        check(progress and float(progress[0]["data-progress"]) == 1.0 and
              "%d members" % len(members) in dom.text_of.get("progress", ""),
              "the study's progress", progress)

        job = members[0]["job"]
        dom, _ = browse(chromium, d.url + "/ui/#/jobs/" + job, profile,
                        os.path.join(shots, "job.png"))
        check("succeeded" in dom.text_of.get("job-state", ""),
              "the job page shows the state")
        card = dom.text_of.get("scorecard", "")
        check('"topology"' in card and '"convergence"' in card,
              "the job page shows the scorecard")
        check(any(a.get("id") == "warnings" for t, a in dom.elements),
              "the job page lists the warnings")

        dom, _ = browse(chromium, d.url + "/ui/#/studies/s_nope", profile)
        check("s_nope" in dom.text_of.get("error", ""),
              "an unknown study shows the API's error")
        check(all(os.path.getsize(os.path.join(shots, f)) > 1000
                  for f in ("studies.png", "study.png", "job.png")),
              "screenshots saved under %s" % shots)
        status = d.stop()
        check(status == 0, "the daemon stops cleanly", status)
    finally:
        d.cleanup()
        shutil.rmtree(profile, ignore_errors=True)
    return h.finish()


if __name__ == "__main__":
    main()
