#!/usr/bin/env python3
"""nas_search.py: an example NAS controller over NAS-Bench-201 that scores
architectures through an archeval service instead of training them.

Search: random search for the first population, then regularised
evolution (Real et al. 2019): each child is a mutation (one edge's op
changed) of the best of `sample_size` random members of the population,
and the oldest member dies.  Every architecture scored is a member of one
study (api.md "Studies"): each batch is added to it, and the server ranks
the whole population; the controller ranks nothing itself.

Fitness: as the No-Free-Lunch paper's Table 1 (metrics.md section 4.3),
the study ranks by the sum of three ranks ("rank_sum") over every
architecture scored so far:
  expressivity    expressivity.linear_regions   higher is better
  convergence     convergence.ntk_condition     lower is better
                  (TE-NAS's kappa; --convergence nngp_lambda_min ranks the
                  analytic NNGP lambda_min instead, higher is better)
  generalization  generalization.gap_bound      lower is better
A missing (null) value ranks last.  After each batch the script prints
the best so far: the study's top member, replaced only by one that ranks
above it, with how many members it beats (which never decreases).  At the
end it prints the study's ranked table, its Pareto front and selection
bound, and with --plot a scatter plot (when matplotlib is importable).

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
        self.job = None
        self.ranks = (None, None, None)  # the study's, 1 = best
        self.rank_sum = None
        self.position = None  # the study's combined rank, 1 = best
        self.pareto = False


def create_study(client, args):
    """The study every scored architecture joins, ranked by the sum of the
    three ranks of the NFL Table 1."""
    template = build_request(("skip_connect",) * 6, args)
    conv = "convergence." + args.convergence
    return client.create_study(
        "nas_search seed %d" % args.seed, data=template["data"],
        seed=template["seed"], metrics=template["metrics"],
        settings=template.get("settings"),
        rank={"components": ["expressivity.linear_regions", conv,
                             "generalization.gap_bound"],
              "aggregate": "rank_sum"})


def score_batch(study, genotypes, args):
    """Adds genotypes to the study and waits for them; returns Scored
    items (failed jobs keep an empty result, so they rank last)."""
    conv_path = CONVERGENCE_METRICS[args.convergence][0]
    jobs = study.add([build_request(g, args)["architecture"]
                      for g in genotypes])
    study.client.wait_all(jobs, timeout=args.job_timeout)
    scored = []
    for ops, job in zip(genotypes, jobs):
        if job.state != "succeeded":
            detail = (job.error or {}).get("detail", job.state)
            print("  %s: %s (%s)" % (job.id, job.state, detail),
                  file=sys.stderr)
        item = Scored(ops, job.result, conv_path)
        item.job = job.id
        scored.append(item)
    return scored


def apply_ranking(history, ranking):
    """Copies the study's ranks onto the Scored items: the three component
    ranks (1 = best here), their sum and the Pareto flag."""
    n = ranking["n"]
    by_job = {m["job"]: m for m in ranking["members"]}
    names = [c["metric"] for c in ranking["rank"]["components"]]
    for s in history:
        m = by_job.get(getattr(s, "job", None))
        if not m:  # failed: ranked last on everything
            s.ranks, s.rank_sum, s.pareto, s.position = \
                (float(n + 1),) * 3, 3.0 * (n + 1), False, float(n + 1)
            continue
        # The server ranks 1 = worst .. n = best; the table shows 1 = best.
        s.ranks = tuple(n + 1 - m["ranks"][k] if k in m["ranks"] else n
                        for k in names)
        s.rank_sum = sum(s.ranks)
        s.pareto = m["pareto"]
        s.position = m["rank"]


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
    print("Pareto front of the study (over the aspects expressivity, "
          "convergence, generalization, complexity): %d architecture(s)"
          % len(front))
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
    try:
        study = create_study(client, args)
    except archeval_client.ArchevalError as err:
        print("nas_search: %s" % err, file=sys.stderr)
        return 1
    print("study %s" % study.id)
    history = []
    best = None
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
            scored = score_batch(study, batch, args)
            history.extend(scored)
            ranking = study.ranking()
        except archeval_client.ArchevalError as err:
            print("nas_search: %s" % err, file=sys.stderr)
            return 1
        population.extend(scored)
        while len(population) > args.population:
            population.pop(0)  # regularised evolution: the oldest dies
        apply_ranking(history, ranking)
        # The best so far changes only for a member ranked above it.
        top = min(history, key=lambda s: (s.position, s.cell))
        if best is None or top.position < best.position:
            best = top
        beats = sum(1 for s in history if s.position > best.position)
        print("[%6.1f s] %-9s scored %3d/%d  best so far %s (rank %.1f of "
              "%d, beats %d)"
              % (time.monotonic() - started, phase, len(history),
                 args.budget, best.cell, best.position, len(history), beats))
        sys.stdout.flush()

    if not history:
        print("nothing was scored", file=sys.stderr)
        return 1
    front = [s for s in history if s.pareto]
    print_table(history, args.convergence, args.top)
    print_front(front, args.convergence)
    bound = ranking.get("selection_bound", {})
    if bound.get("gap") is not None:
        print()
        print("Selection bound: with probability %.2f the validation and "
              "test risks of all %d members differ by at most %.3f (%d "
              "validation samples)" % (1 - bound["delta"],
                                        bound["n_candidates"], bound["gap"],
                                        bound["n_validation"]))
    if args.plot:
        plot(history, front, args.convergence, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
