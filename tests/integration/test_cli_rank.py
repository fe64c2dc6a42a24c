#!/usr/bin/env python3
"""test_cli_rank.py: `archeval score` on a few cheap requests, piped into
`archeval rank`, checked against a re-computation of ranking.md §5-6
written here independently of api/rank.c.

The population: small mlp_dag networks (width 16, batch 16) and two tiny
NB201 cells (4 channels, one cell per stage), with a duplicate (ties on
every metric), a degenerate DAG whose kernels are null, a tanh network
(linear_regions null) and a request without the expressivity group (its
metrics absent).  The test checks --json, --csv and the table for an
explicit component list, the "default" combination (which today falls to
topology.flops alone, the others skipped), rank_sum, an unknown metric
with an explicit direction, the job formats (`get` output one after
another, a failed and a queued job left out), the exit statuses of bad
input, 16 random populations full of ties and nulls, and, when archevald
is built, the same population submitted to a daemon and ranked from the
jobs `archeval get` prints.  Prints "N passed, M failed"; exit 77 when the
CLI is not built.  Single-threaded (subprocesses aside).
"""

import csv
import io
import json
import math
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# ---- the rule of ranking.md §5-6, written from the spec ------------------

# Better direction of the metrics this test uses (+1 higher, -1 lower).
BETTER = {
    "topology.flops": +1,
    "topology.params": +1,
    "expressivity.linear_regions": +1,
    "expressivity.curvature": +1,
    "expressivity.feature_isotropy": +1,
    "expressivity.feature_progressivity": +1,
    "expressivity.activation_patterns": +1,
    "convergence.jacobian_trainability": +1,
    "convergence.feature_corr_lambda_min": +1,
    "convergence.ntk_lambda_min": +1,
    "convergence.nngp_lambda_min": +1,
    "convergence.ntk_condition": -1,
    "proxies.synflow": +1,
    "generalization.kernel_complexity": -1,
    "generalization.kernel_regression_val_mse": -1,
}

# §6: the aspects' members, whatever the components.
ASPECTS = {
    "expressivity": ["expressivity.feature_isotropy",
                     "expressivity.feature_progressivity",
                     "expressivity.activation_patterns",
                     "expressivity.linear_regions"],
    "convergence": ["convergence.jacobian_trainability",
                    "convergence.feature_corr_lambda_min",
                    "proxies.synflow", "convergence.ntk_lambda_min",
                    "convergence.nngp_lambda_min"],
    "generalization": ["generalization.kernel_complexity",
                       "generalization.kernel_regression_val_mse"],
    "complexity": ["topology.flops"],
}

DEFAULT = ["expressivity.feature_isotropy",
           "expressivity.feature_progressivity",
           "expressivity.activation_patterns",
           "convergence.jacobian_trainability",
           "convergence.feature_corr_lambda_min", "proxies.synflow",
           "topology.flops"]
FAST = ["expressivity.activation_patterns",
        "convergence.feature_corr_lambda_min"]

ABSENT = object()


def lookup(card, name):
    group, field = name.split(".", 1)
    g = card.get(group)
    if not isinstance(g, dict) or field not in g:
        return ABSENT
    return g[field]


def spec_ranks(values, better):
    """1 = worst .. n = best; ties and nulls share their mean position."""
    n = len(values)
    bad = [i for i, v in enumerate(values)
           if v is None or v is ABSENT or not math.isfinite(v)]
    out = [0.0] * n
    for i in bad:
        out[i] = (len(bad) + 1) / 2.0
    good = sorted((better * values[i], i) for i in range(n) if i not in bad)
    start = len(bad) + 1
    k = 0
    while k < len(good):
        j = k
        while j < len(good) and good[j][0] == good[k][0]:
            j += 1
        first, last = start + k, start + j - 1
        for _, i in good[k:j]:
            out[i] = (first + last) / 2.0
        k = j
    return out


def tied(a, b):
    return abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b))


def positions(scores):
    """1 = best (highest score); near-equal scores share the mean."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    out = [0.0] * len(scores)
    k = 0
    while k < len(order):
        j = k + 1
        while j < len(order) and tied(scores[order[j]], scores[order[k]]):
            j += 1
        for m in order[k:j]:
            out[m] = (k + 1 + j) / 2.0
        k = j
    return out, order


def reference(cards, components, aggregate="log_rank", directions=None):
    """The ranking of cards (a list of scorecards) by the spec."""
    n = len(cards)
    directions = dict(BETTER, **(directions or {}))
    combination = "custom"
    if components in ("default", "fast"):
        combination = components
        if components == "default":
            def complete(names):
                return all(lookup(c, m) is not ABSENT
                           for c in cards for m in names)
            if not complete(DEFAULT) and complete(FAST):
                combination = "fast"
        components = DEFAULT if combination == "default" else FAST
    used = [m for m in components
            if any(lookup(c, m) is not ABSENT for c in cards)]
    skipped = [m for m in components if m not in used]

    def agg(rank_lists):
        if aggregate == "log_rank":
            return [math.fsum(math.log(r[i] / n) for r in rank_lists)
                    for i in range(n)]
        return [math.fsum(r[i] for r in rank_lists) for i in range(n)]

    ranks = {}
    for m in set(used) | {m for ms in ASPECTS.values() for m in ms}:
        values = [lookup(c, m) for c in cards]
        if all(v is ABSENT for v in values):
            continue
        ranks[m] = spec_ranks(values, directions[m])
    score = agg([ranks[m] for m in used])
    rank, order = positions(score)
    aspect_score, aspect_rank = {}, {}
    for a, members in ASPECTS.items():
        present = [m for m in members if m in ranks]
        if present:
            aspect_score[a] = agg([ranks[m] for m in present])
            aspect_rank[a] = positions(aspect_score[a])[0]
    pareto = []
    for i in range(n):
        dominated = False
        for j in range(n):
            if j == i:
                continue
            ge = all(aspect_score[a][j] > aspect_score[a][i] or
                     tied(aspect_score[a][j], aspect_score[a][i])
                     for a in aspect_score)
            gt = any(aspect_score[a][j] > aspect_score[a][i] and
                     not tied(aspect_score[a][j], aspect_score[a][i])
                     for a in aspect_score)
            if ge and gt:
                dominated = True
                break
        pareto.append(not dominated)
    return {"combination": combination, "components": used,
            "skipped": skipped, "ranks": ranks, "score": score,
            "rank": rank, "order": order, "aspect_rank": aspect_rank,
            "pareto": pareto}


# ---- the population --------------------------------------------------------

LIGHT = {"linear_regions": {"samples": 200, "repeats": 1},
         "curvature": {"points": 16, "repeats": 1}}


def mlp(dag, **extra):
    arch = {"type": "mlp_dag", "dag": dag, "width": 16}
    arch.update(extra)
    return {"architecture": arch,
            "data": {"batch_size": 16, "input_shape": [8]},
            "settings": LIGHT}


def nb201(cell):
    return {"architecture": {"type": "nb201", "cell": cell, "channels": 4,
                             "cells_per_stage": 1},
            "data": {"batch_size": 8}, "settings": LIGHT}


REQUESTS = [
    mlp("2_21_112"),
    mlp("2_02_002"),
    mlp("1_11_111"),
    mlp("2_22_222"),
    mlp("2_21_112"),              # a duplicate: ties everywhere
    mlp("0_00_000"),              # degenerate: null kernels
    mlp("2_21_112", activation="tanh"),  # linear_regions null
    dict(mlp("2_20_102"), metrics=["topology", "convergence"]),
    nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|"
          "avg_pool_3x3~1|nor_conv_1x1~2|"),
    nb201("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|"
          "nor_conv_1x1~2|"),
]

EXPLICIT = ["expressivity.linear_regions", "convergence.ntk_condition",
            "generalization.kernel_complexity", "topology.params"]


def cli(args, stdin=None):
    proc = subprocess.run([h.CLI] + args, input=stdin, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def check_json(out, cards, ids, ref, what):
    """The --json ranking against the reference."""
    got = json.loads(out)
    h.check(got["n"] == len(cards), what + ": n")
    h.check(got["rank"]["combination"] == ref["combination"],
            what + ": combination " + ref["combination"], got["rank"])
    h.check([c["metric"] for c in got["rank"]["components"]]
            == ref["components"], what + ": the components used",
            got["rank"]["components"])
    h.check(got["rank"]["skipped"] == ref["skipped"],
            what + ": the skipped components", got["rank"]["skipped"])
    members = got["members"]
    h.check([m["index"] for m in members] == ref["order"],
            what + ": members in rank order",
            ([m["index"] for m in members], ref["order"]))
    bad = []
    for m in members:
        i = m["index"]
        if m["id"] != ids[i]:
            bad.append((i, "id", m["id"], ids[i]))
        for name, r in ref["ranks"].items():
            if m["ranks"].get(name) != r[i]:
                bad.append((i, name, m["ranks"].get(name), r[i]))
            value = lookup(cards[i], name)
            value = None if value is ABSENT else value
            if not close(m["metrics"].get(name), value):
                bad.append((i, name, m["metrics"].get(name), value))
        if not close(m["score"], ref["score"][i]):
            bad.append((i, "score", m["score"], ref["score"][i]))
        if m["rank"] != ref["rank"][i]:
            bad.append((i, "rank", m["rank"], ref["rank"][i]))
        for a in ASPECTS:
            want = ref["aspect_rank"].get(a)
            want = want[i] if want else None
            if m["aspect_ranks"][a] != want:
                bad.append((i, a, m["aspect_ranks"][a], want))
        if m["pareto"] != ref["pareto"][i]:
            bad.append((i, "pareto", m["pareto"], ref["pareto"][i]))
    h.check(not bad, what + ": every value, rank, score, aspect rank and "
            "front flag equals the re-computation", bad[:10])
    front = [ids[i] for i in ref["order"] if ref["pareto"][i]]
    h.check(got["pareto_front"] == front, what + ": the Pareto front",
            (got["pareto_front"], front))
    return got


def check_csv(out, cards, ids, ref):
    rows = list(csv.DictReader(io.StringIO(out)))
    h.check(len(rows) == len(cards), "csv: one row per architecture")
    bad = []
    for row, i in zip(rows, ref["order"]):
        if row["id"] != ids[i]:
            bad.append(("id", row["id"], ids[i]))
        if float(row["rank"]) != ref["rank"][i]:
            bad.append(("rank", row["rank"], ref["rank"][i]))
        if not close(float(row["score"]), ref["score"][i]):
            bad.append(("score", row["score"], ref["score"][i]))
        if (row["pareto"] == "true") != ref["pareto"][i]:
            bad.append(("pareto", row["pareto"]))
        for name, r in ref["ranks"].items():
            if float(row[name + ".rank"]) != r[i]:
                bad.append((name, row[name + ".rank"], r[i]))
            value = lookup(cards[i], name)
            if value is ABSENT or value is None:
                if row[name] != "":
                    bad.append((name, row[name], "empty"))
            elif float(row[name]) != value:
                bad.append((name, row[name], value))
        for a in ASPECTS:
            want = ref["aspect_rank"].get(a)
            cell = row["aspect_rank." + a]
            if (cell == "") != (want is None) or \
                    (want and float(cell) != want[i]):
                bad.append((a, cell))
    h.check(not bad, "csv: rows equal the re-computation", bad[:10])


def check_table(out, ids, ref):
    lines = out.splitlines()
    start = next((k for k, line in enumerate(lines)
                  if line.split()[:2] == ["rank", "id"]), None)
    h.check(start is not None, "table: a header row", out)
    if start is None:
        return
    header = lines[start].split()
    h.check(header[-len(ref["components"]):] == ref["components"] or
            header[-len(ref["components"]) - 1:-1] == ref["components"],
            "table: one column per component", header)
    rows = lines[start + 1:]
    h.check(len(rows) == len(ids), "table: one row per architecture")
    bad = []
    for line, i in zip(rows, ref["order"]):
        f = line.split()
        if float(f[0]) != ref["rank"][i] or f[1] != ids[i]:
            bad.append((line, ref["rank"][i], ids[i]))
        if abs(float(f[2]) - ref["score"][i]) > 5e-5:
            bad.append((line, "score", ref["score"][i]))
        if (f[3] == "*") != ref["pareto"][i]:
            bad.append((line, "front", ref["pareto"][i]))
        # Each component cell ends in "(rank)".
        cells = [c.strip("()") for c in f if c.startswith("(")]
        want = [ref["ranks"][m][i] for m in ref["components"]]
        if [float(c) for c in cells] != want:
            bad.append((line, "component ranks", want))
    h.check(not bad, "table: rows equal the re-computation", bad[:5])


def main():
    if not os.path.exists(h.CLI):
        h.skip("archeval is not built")
    tmp = tempfile.mkdtemp(prefix="ae_rank_")
    requests = h.write_json(tmp, "requests.json", REQUESTS)
    code, scored, err = cli(["score", requests])
    h.check(code == 0, "archeval score scores the population", err)
    lines = [json.loads(line) for line in scored.splitlines()]
    cards = [line["result"] for line in lines]
    h.check(len(cards) == len(REQUESTS), "one scorecard per request")
    ids = ["#%d" % (i + 1) for i in range(len(cards))]
    h.check(lookup(cards[5], "generalization.kernel_complexity") is None and
            lookup(cards[6], "expressivity.linear_regions") is None and
            lookup(cards[7], "expressivity.linear_regions") is ABSENT,
            "the population has nulls and an absent group")

    def explicit_section():
        ref = reference(cards, EXPLICIT)
        code, out, err = cli(["rank", "--json", "--components",
                              ",".join(EXPLICIT), "-"], scored)
        h.check(code == 0, "rank --json --components exits 0", err)
        got = check_json(out, cards, ids, ref, "explicit")
        h.check(got["rank"]["requested"] is None,
                "an explicit list requests no named combination")
        h.check(any("linear_regions is absent from 1 of" in w
                    for w in got["warnings"]),
                "a metric absent from one scorecard is warned about",
                got["warnings"])
        # Duplicates (#1 and #5) tie on every component.
        h.check(ref["rank"][0] == ref["rank"][4] and
                ref["rank"][0] != int(ref["rank"][0]),
                "the duplicates share a fractional rank", ref["rank"])
        code, out, err = cli(["rank", "--csv", "--components",
                              ",".join(EXPLICIT), "-"], scored)
        h.check(code == 0, "rank --csv exits 0", err)
        check_csv(out, cards, ids, ref)
        code, out, err = cli(["rank", "--components", ",".join(EXPLICIT),
                              "-"], scored)
        h.check(code == 0, "rank (table) exits 0", err)
        check_table(out, ids, ref)

    def default_section():
        ref = reference(cards, "default")
        path = os.path.join(tmp, "scored.jsonl")
        with open(path, "w") as f:
            f.write(scored)
        code, out, err = cli(["rank", "--json", path])
        h.check(code == 0, "rank --json with the default combination", err)
        got = check_json(out, cards, ids, ref, "default")
        h.check(got["rank"]["requested"] == "default" and
                not got["rank"]["fallback"] and
                got["rank"]["skipped"] == ["proxies.synflow"],
                "default: full-profile scorecards rank by every component "
                "but synflow (the proxies group is not in \"full\"), which "
                "is skipped", got["rank"])
        code, out, err = cli(["rank", path])
        h.check(code == 0 and "skipped (in no scorecard)" in out,
                "the table says what was skipped", out)
        check_table(out, ids, ref)

    def rank_sum_section():
        comps = EXPLICIT + ["expressivity.curvature", "topology.flops"]
        ref = reference(cards, comps, "rank_sum")
        code, out, err = cli(["rank", "--json", "--aggregate", "rank_sum",
                              "--components", ",".join(comps)], scored)
        h.check(code == 0, "rank --aggregate rank_sum exits 0", err)
        got = check_json(out, cards, ids, ref, "rank_sum")
        h.check(got["rank"]["aggregate"] == "rank_sum", "aggregate named")
        log_ref = reference(cards, comps, "log_rank")
        h.check(log_ref["score"] != ref["score"],
                "log_rank and rank_sum give other scores")

    def explicit_direction_section():
        comps = ["topology.paths:higher", "convergence.ntk_lambda_max:lower"]
        ref = reference(cards, ["topology.paths",
                                "convergence.ntk_lambda_max"],
                        directions={"topology.paths": +1,
                                    "convergence.ntk_lambda_max": -1})
        code, out, err = cli(["rank", "--json", "--components",
                              ",".join(comps)], scored)
        h.check(code == 0, "unknown metrics with a direction rank", err)
        got = check_json(out, cards, ids, ref, "explicit directions")
        h.check([c["better"] for c in got["rank"]["components"]] ==
                ["higher", "lower"], "the directions given are used")

    def job_format_section():
        # What `archeval get ID` prints for each job, one after another
        # (indented), plus a failed and a queued job.
        jobs = []
        for i, c in enumerate(cards[:4]):
            jobs.append({"id": "j_%d" % i, "state": "succeeded",
                         "request": REQUESTS[i], "result": c})
        jobs.insert(2, {"id": "j_failed", "state": "failed",
                        "error": {"title": "x"}})
        jobs.append({"id": "j_queued", "state": "queued"})
        text = "".join(json.dumps(j, indent=2) + "\n" for j in jobs)
        code, out, err = cli(["rank", "--json", "--components",
                              ",".join(EXPLICIT)], text)
        h.check(code == 0, "jobs printed by get are ranked", err)
        h.check("j_failed" in err and "j_queued" in err,
                "jobs without a scorecard are named and left out", err)
        ref = reference(cards[:4], EXPLICIT)
        got = check_json(out, cards[:4], ["j_0", "j_1", "j_2", "j_3"], ref,
                         "jobs")
        h.check(got["members"][0]["architecture"] ==
                REQUESTS[ref["order"][0]]["architecture"]["dag"],
                "the architecture label comes from the job's request")
        # A JSON array of bare scorecards, and {"jobs": [...]}.
        code, out, err = cli(["rank", "--json", "--components",
                              ",".join(EXPLICIT)], json.dumps(cards[:4]))
        check_json(out, cards[:4], ["#1", "#2", "#3", "#4"], ref,
                   "array of scorecards")
        code, out, err = cli(["rank", "--json", "--components",
                              ",".join(EXPLICIT)],
                             json.dumps({"jobs": jobs}))
        h.check(code == 0 and [m["id"] for m in json.loads(out)["members"]]
                == ["j_%d" % i for i in ref["order"]],
                "{\"jobs\": [...]} is read", err)

    def score_errors_section():
        bad = REQUESTS[:3] + [{"architecture": {"type": "mlp_dag"}}]
        path = h.write_json(tmp, "bad.json", bad)
        code, out, err = cli(["score", path])
        h.check(code == 3 and '"error"' in out,
                "score prints an error line for a bad request", err)
        code, out2, err = cli(["rank", "--json", "--components",
                               ",".join(EXPLICIT)], out)
        h.check(code == 0 and json.loads(out2)["n"] == 3 and
                "item 4" in err, "rank leaves the error line out", err)

    def errors_section():
        code, _, err = cli(["rank", os.path.join(tmp, "missing.jsonl")])
        h.check(code == 1 and "cannot read" in err,
                "an unreadable file exits 1", err)
        code, _, err = cli(["rank"], "{\"topology\": ")
        h.check(code == 3 and "not JSON" in err, "bad JSON exits 3", err)
        code, _, err = cli(["rank"], "")
        h.check(code == 3 and "no scorecard" in err, "empty input exits 3",
                err)
        code, _, err = cli(["rank"], "[1, 2]")
        h.check(code == 3, "an array of numbers exits 3", err)
        code, _, err = cli(["rank"], "{\"name\": \"x\"}")
        h.check(code == 3 and "neither a job nor a scorecard" in err,
                "an object that is no scorecard exits 3", err)
        code, _, err = cli(["rank", "--components", "topology.flops,foo.bar"],
                           scored)
        h.check(code == 2 and "foo.bar" in err and "foo.bar:higher" in err,
                "an unknown metric exits 2 and names it", err)
        code, _, err = cli(["rank", "--components",
                            "generalization.kernel_complexity:higher"],
                           scored)
        h.check(code == 2 and "cannot be changed" in err,
                "a known metric's direction cannot be set", err)
        code, _, err = cli(["rank", "--aggregate", "mean"], scored)
        h.check(code == 2, "a bad --aggregate exits 2", err)
        code, _, err = cli(["rank", "--json", "--csv"], scored)
        h.check(code == 2, "--json with --csv exits 2", err)
        topology_only = "\n".join(
            json.dumps({"result": {"topology": c.get("topology", {})}})
            for c in cards) + "\n"
        code, _, err = cli(["rank", "--components", "fast"], topology_only)
        h.check(code == 3 and "none of the components" in err,
                "\"fast\" on scorecards without its metrics exits 3", err)
        code, out, _ = cli(["rank", "--list-metrics"])
        h.check(code == 0 and
                "generalization.kernel_complexity  lower  generalization"
                in out and "topology.flops  higher  complexity" in out,
                "--list-metrics prints the directions and aspects", out)
        code, out, _ = cli(["--help"])
        h.check(code == 0 and "rank [FILE|-]" in out,
                "archeval --help lists rank")

    def random_section():
        # Random populations with many ties, nulls and absent metrics,
        # ranked by random component lists: every one must equal the
        # re-computation.
        rng = random.Random(20261203)
        pool = ["expressivity.linear_regions", "convergence.ntk_lambda_min",
                "convergence.nngp_lambda_min", "convergence.ntk_condition",
                "generalization.kernel_complexity", "topology.flops",
                "topology.params", "proxies.synflow"]
        failures = []
        for trial in range(16):
            n = rng.choice([1, 2, 3, 5, 8, 13, 30])
            population = []
            for _ in range(n):
                card = {}
                for m in pool:
                    roll = rng.random()
                    if roll < 0.1:
                        continue              # absent
                    group, field = m.split(".")
                    card.setdefault(group, {})[field] = (
                        None if roll < 0.25 else
                        rng.choice([0.5, 1, 2, 3, -1.25, 1e-300, 7e12]))
                population.append(card)
            comps = rng.sample(pool, rng.randint(1, 4))
            aggregate = rng.choice(["log_rank", "rank_sum"])
            present = [m for m in comps
                       if any(lookup(c, m) is not ABSENT for c in population)]
            code, out, err = cli(["rank", "--json", "--aggregate", aggregate,
                                  "--components", ",".join(comps)],
                                 "\n".join(json.dumps(c)
                                           for c in population))
            if not present:
                if code != 3:
                    failures.append((trial, "expected exit 3", code, err))
                continue
            if code != 0:
                failures.append((trial, code, err))
                continue
            ref = reference(population, comps, aggregate)
            got = json.loads(out)
            for m in got["members"]:
                i = m["index"]
                want = (ref["rank"][i], ref["pareto"][i],
                        {k: v[i] for k, v in ref["ranks"].items()},
                        {a: (r[i] if (r := ref["aspect_rank"].get(a))
                             else None) for a in ASPECTS})
                have = (m["rank"], m["pareto"], m["ranks"],
                        m["aspect_ranks"])
                if want != have or not close(m["score"], ref["score"][i]):
                    failures.append((trial, i, have, want))
                    break
        h.check(not failures, "16 random populations (ties, nulls, absent "
                "metrics) equal the re-computation", failures[:3])

    def daemon_section():
        # The same population through archevald: submit, wait, get the
        # jobs, rank them; same ranks as offline, ids are the job ids.
        if not os.access(h.DAEMON, os.X_OK):
            h.log("no archevald: the daemon section is skipped")
            return
        d = h.Daemon(store=False)
        if not h.check(d.try_start(), "archevald starts"):
            return
        try:
            env = dict(os.environ, ARCHEVAL_SERVER=d.url)

            def run(args, stdin=None):
                p = subprocess.run([h.CLI] + args, input=stdin, env=env,
                                   capture_output=True, text=True,
                                   timeout=600)
                return p.returncode, p.stdout, p.stderr

            code, out, err = run(["submit", requests])
            job_ids = out.split()
            h.check(code == 0 and len(job_ids) == len(REQUESTS),
                    "the population is submitted as a batch", err)
            code, _, err = run(["wait", "--timeout", "600"] + job_ids)
            h.check(code == 0, "every job succeeds", err)
            code, jobs, err = run(["get"] + job_ids)
            h.check(code == 0, "get prints the jobs", err)
            code, out, err = cli(["rank", "--json", "--components",
                                  ",".join(EXPLICIT)], jobs)
            h.check(code == 0, "rank reads the jobs of get", err)
            got = json.loads(out)
            daemon_cards = [json.loads(line)["result"]
                            for line in jobs.splitlines()]
            ref = reference(daemon_cards, EXPLICIT)
            check_json(out, daemon_cards, job_ids, ref, "daemon jobs")
            offline = reference(cards, EXPLICIT)
            h.check(ref["rank"] == offline["rank"] and
                    ref["pareto"] == offline["pareto"],
                    "the daemon's population ranks as the offline one",
                    (ref["rank"], offline["rank"]))
            h.check(all(m["architecture"] for m in got["members"]),
                    "each job is labelled with its architecture")
        finally:
            h.check(d.stop() == 0, "archevald drains and exits 0")
            d.cleanup()

    for section in (explicit_section, default_section, rank_sum_section,
                    explicit_direction_section, job_format_section,
                    score_errors_section, errors_section, random_section,
                    daemon_section):
        h.section(section)
    h.finish()


if __name__ == "__main__":
    main()
