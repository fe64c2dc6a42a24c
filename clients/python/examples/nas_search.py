#!/usr/bin/env python3
"""nas_search.py: an example NAS controller over NAS-Bench-201 that scores
architectures through an archeval service instead of training them.

Search: random search for the first population, then regularised
evolution (Real et al. 2019): each child is a mutation (one edge's op
changed) of the best of `sample_size` random members of the population,
and the oldest member dies.  Children are scored in batches (one
POST /v1/jobs:batch per batch).

Fitness: as the No-Free-Lunch paper's Table 1 (metrics.md section 4.3),
the sum of three ranks over every architecture scored so far:
  expressivity    result.expressivity.linear_regions   higher is better
  convergence     result.convergence.ntk_condition     lower is better
                  (TE-NAS's kappa; --convergence nngp_lambda_min ranks the
                  analytic NNGP lambda_min instead, higher is better)
  generalization  result.generalization.gap_bound      lower is better
A missing (null) value ranks last.  At the end the script prints the
ranked table and the Pareto front of the three objectives, and with
--plot a scatter plot (when matplotlib is importable).

Usage: nas_search.py [--server URL] [--budget N] [--batch B] [--quick]
                     [--seed S] [--plot out.png]
Runs single-threaded; uses only the standard library and archeval_client.
"""

import argparse
import os
import random
import sys
import time

try:
    import archeval_client
except ImportError:  # run from a source tree without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(
        __file__)), ".."))
    import archeval_client

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
       "avg_pool_3x3")
# The six edges of the cell, (target node, source node), in string order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

CONVERGENCE_METRICS = {
    # name: (result key path, higher is better)
    "ntk_condition": (("convergence", "ntk_condition"), False),
    "nngp_lambda_min": (("convergence", "nngp_lambda_min"), True),
}


def cell_string(ops):
    """The NB201 string of a genotype (a tuple of six op names)."""
    nodes = []
    for target in (1, 2, 3):
        parts = ["%s~%d" % (ops[k], EDGES[k][1])
                 for k in range(6) if EDGES[k][0] == target]
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


def has_path(ops):
    """True when some path from the input to node 3 avoids 'none'."""
    reach = {0}
    for k, (target, source) in enumerate(EDGES):
        if ops[k] != "none" and source in reach:
            reach.add(target)
    return 3 in reach


def random_genotype(rng):
    while True:
        ops = tuple(rng.choice(OPS) for _ in EDGES)
        if has_path(ops):
            return ops


def mutate(ops, rng):
    """Changes one edge's op to another op (keeping a path to the output)."""
    while True:
        edge = rng.randrange(len(EDGES))
        new_op = rng.choice([op for op in OPS if op != ops[edge]])
        child = ops[:edge] + (new_op,) + ops[edge + 1:]
        if has_path(child):
            return child


def build_request(ops, args):
    """The job request for one genotype."""
    architecture = {"type": "nb201", "cell": cell_string(ops)}
    data = {"dataset": args.dataset}
    settings = {}
    if args.quick:
        architecture["cells_per_stage"] = 1
        data["batch_size"] = 8
        settings = {"linear_regions": {"samples": 500, "repeats": 1},
                    "curvature": {"points": 32, "repeats": 1}}
    elif args.batch_size:
        data["batch_size"] = args.batch_size
    request = {"architecture": architecture, "data": data,
               "seed": args.seed,
               "metrics": ["topology", "expressivity", "convergence",
                           "generalization"],
               "client_ref": "nas_search/" + cell_string(ops)}
    if settings:
        request["settings"] = settings
    return request


def lookup(result, path):
    value = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, (int, float)) else None


class Scored:
    """One evaluated architecture."""

    def __init__(self, ops, result, convergence_path):
        self.ops = ops
        self.cell = cell_string(ops)
        self.result = result or {}
        self.linear_regions = lookup(self.result,
                                     ("expressivity", "linear_regions"))
        self.convergence = lookup(self.result, convergence_path)
        self.gap_bound = lookup(self.result, ("generalization", "gap_bound"))
        self.ranks = (None, None, None)
        self.rank_sum = None

    def objectives(self, conv_higher):
        """The three objectives as values to maximise (None: missing)."""
        def neg(v):
            return None if v is None else -v
        return (self.linear_regions,
                self.convergence if conv_higher else neg(self.convergence),
                neg(self.gap_bound))


def rank_values(values):
    """Ranks (1 = best) of values to maximise; ties share their mean rank;
    None ranks last."""
    order = sorted(range(len(values)),
                   key=lambda i: (values[i] is None,
                                  -(values[i] if values[i] is not None
                                    else 0.0)))
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while (j + 1 < len(order) and
               values[order[j + 1]] == values[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def rerank(history, conv_higher):
    """Recomputes every architecture's three ranks and their sum."""
    columns = list(zip(*(s.objectives(conv_higher) for s in history)))
    ranked = [rank_values(list(column)) for column in columns]
    for i, scored in enumerate(history):
        scored.ranks = tuple(r[i] for r in ranked)
        scored.rank_sum = sum(scored.ranks)


def pareto_front(history, conv_higher):
    """The architectures no other one beats on all three objectives (a
    missing value counts as the worst)."""
    def vals(s):
        return [v if v is not None else float("-inf")
                for v in s.objectives(conv_higher)]
    front = []
    for s in history:
        a = vals(s)
        dominated = False
        for t in history:
            if t is s:
                continue
            b = vals(t)
            if all(x >= y for x, y in zip(b, a)) and any(
                    x > y for x, y in zip(b, a)):
                dominated = True
                break
        if not dominated:
            front.append(s)
    return front


def score_batch(client, genotypes, args):
    """Scores genotypes with one batch submission; returns Scored items
    (failed jobs keep an empty result, so they rank last)."""
    conv_path = CONVERGENCE_METRICS[args.convergence][0]
    jobs = client.submit_batch([build_request(g, args) for g in genotypes])
    client.wait_all(jobs, timeout=args.job_timeout)
    scored = []
    for ops, job in zip(genotypes, jobs):
        if job.state != "succeeded":
            detail = (job.error or {}).get("detail", job.state)
            print("  %s: %s (%s)" % (job.id, job.state, detail),
                  file=sys.stderr)
        scored.append(Scored(ops, job.result, conv_path))
    return scored


def fmt(value, spec):
    return "null" if value is None else format(value, spec)


def print_table(history, conv_name, limit):
    ranked = sorted(history, key=lambda s: (s.rank_sum, s.cell))
    print()
    print("Ranked by the sum of ranks (expressivity + convergence + "
          "generalization):")
    width = max(len(s.cell) for s in ranked)
    header = ("%4s  %-*s %8s %15s %10s  %6s %6s %6s %6s"
              % ("#", width, "cell", "LR", conv_name, "gap_bound", "r_exp",
                 "r_conv", "r_gen", "sum"))
    print(header)
    print("-" * len(header))
    for i, s in enumerate(ranked[:limit]):
        print("%4d  %-*s %8s %15s %10s  %6.1f %6.1f %6.1f %6.1f"
              % (i + 1, width, s.cell, fmt(s.linear_regions, ".1f"),
                 fmt(s.convergence, ".4g"), fmt(s.gap_bound, ".4g"),
                 s.ranks[0], s.ranks[1], s.ranks[2], s.rank_sum))
    if len(ranked) > limit:
        print("  ... %d more" % (len(ranked) - limit))


def print_front(front, conv_name):
    print()
    print("Pareto front (max linear_regions, %s %s, min gap_bound): %d "
          "architecture(s)" % ("max" if CONVERGENCE_METRICS[conv_name][1]
                               else "min", conv_name, len(front)))
    for s in sorted(front, key=lambda s: (s.rank_sum, s.cell)):
        print("  %s  LR=%s %s=%s gap=%s sum=%.1f"
              % (s.cell, fmt(s.linear_regions, ".1f"), conv_name,
                 fmt(s.convergence, ".4g"), fmt(s.gap_bound, ".4g"),
                 s.rank_sum))


def plot(history, front, conv_name, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not importable; no plot written "
              "(pip install matplotlib)")
        return
    pts = [s for s in history if None not in
           (s.linear_regions, s.convergence, s.gap_bound)]
    if not pts:
        print("--plot: no architecture has all three scores; no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    sc = ax.scatter([s.convergence for s in pts],
                    [s.linear_regions for s in pts],
                    c=[s.gap_bound for s in pts], cmap="viridis", s=25)
    on_front = [s for s in pts if s in front]
    ax.scatter([s.convergence for s in on_front],
               [s.linear_regions for s in on_front], facecolors="none",
               edgecolors="red", s=90, label="Pareto front")
    if conv_name == "ntk_condition":
        ax.set_xscale("log")
    ax.set_xlabel(conv_name)
    ax.set_ylabel("linear_regions")
    fig.colorbar(sc, label="gap_bound")
    ax.legend()
    ax.set_title("NAS-Bench-201 cells scored by archeval")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print("plot written to %s" % path)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Random search then regularised evolution over "
                    "NAS-Bench-201, scored by an archeval service.")
    p.add_argument("--server", help="archevald URL (default "
                   "$ARCHEVAL_SERVER, else http://127.0.0.1:8000)")
    p.add_argument("--budget", type=int, default=100,
                   help="architectures to score in all (default 100)")
    p.add_argument("--batch", type=int, default=16,
                   help="architectures per batch submission (default 16)")
    p.add_argument("--population", type=int, default=20,
                   help="population size; the first population is random "
                   "(default 20)")
    p.add_argument("--sample-size", type=int, default=5,
                   help="tournament size of the evolution (default 5)")
    p.add_argument("--convergence", choices=sorted(CONVERGENCE_METRICS),
                   default="ntk_condition",
                   help="convergence score to rank (default ntk_condition,"
                   " lower better; nngp_lambda_min: higher better)")
    p.add_argument("--dataset", default="synthetic",
                   help="dataset the server scores on (default synthetic)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per kernel (server default 64)")
    p.add_argument("--quick", action="store_true",
                   help="small settings for a short run: batch size 8, "
                   "linear_regions.samples 500, cells_per_stage 1")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the search and of the scores")
    p.add_argument("--job-timeout", type=float, default=None,
                   help="seconds to wait for one batch (default: no limit)")
    p.add_argument("--top", type=int, default=20,
                   help="rows of the ranked table (default 20)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="scatter plot of the scores (needs matplotlib)")
    args = p.parse_args(argv)
    if args.budget < 1 or args.batch < 1 or args.population < 1 or \
            args.sample_size < 1:
        p.error("--budget, --batch, --population and --sample-size must "
                "be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    rng = random.Random(args.seed)
    client = archeval_client.Client(args.server)
    conv_higher = CONVERGENCE_METRICS[args.convergence][1]
    history = []
    seen = set()
    population = []  # oldest first
    started = time.monotonic()

    def fresh(make):
        """A genotype not scored yet (gives up after many tries)."""
        for _ in range(200):
            g = make()
            if g not in seen:
                seen.add(g)
                return g
        return None

    while len(history) < args.budget:
        want = min(args.batch, args.budget - len(history))
        batch = []
        bred = 0
        for _ in range(want):
            if len(population) + len(batch) < args.population:
                g = fresh(lambda: random_genotype(rng))
            elif not population:
                break  # wait for the first population's scores
            else:
                bred += 1
                sample = rng.sample(population,
                                    min(args.sample_size, len(population)))
                parent = min(sample, key=lambda s: (s.rank_sum, s.cell))
                g = fresh(lambda: mutate(parent.ops, rng))
            if g is None:
                break
            batch.append(g)
        if not batch:
            print("the search space is exhausted", file=sys.stderr)
            break
        phase = "evolution" if bred else "random"
        try:
            scored = score_batch(client, batch, args)
        except archeval_client.ArchevalError as err:
            print("nas_search: %s" % err, file=sys.stderr)
            return 1
        history.extend(scored)
        population.extend(scored)
        while len(population) > args.population:
            population.pop(0)  # regularised evolution: the oldest dies
        rerank(history, conv_higher)
        best = min(history, key=lambda s: (s.rank_sum, s.cell))
        print("[%6.1f s] %-9s scored %3d/%d  best %s (sum %.1f)"
              % (time.monotonic() - started, phase, len(history),
                 args.budget, best.cell, best.rank_sum))
        sys.stdout.flush()

    if not history:
        print("nothing was scored", file=sys.stderr)
        return 1
    rerank(history, conv_higher)
    front = pareto_front(history, conv_higher)
    print_table(history, args.convergence, args.top)
    print_front(front, args.convergence)
    if args.plot:
        plot(history, front, args.convergence, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
