/* canon.h: the canonical form of an architecture and its key, for dedup
 * and the result cache (api.md "Canonical form", issue 13 item 3).
 *
 * Two architectures get one key when they compute the same function of
 * their parameters, with the same initialisation distribution, up to a
 * renaming of the parameters.  The equivalences recognised, and nothing
 * else:
 *
 *  1. Zero propagation.  `none` (nb201), digit 0 (mlp_dag) and `zero`
 *     (graph) contribute nothing; so does an op whose input is identically
 *     zero when the op maps zero to zero at initialisation: nb201's convs
 *     (ReLU, conv without bias, BN whose beta is 0 and not a trained
 *     parameter of the NTK) and avg_pool; mlp_dag's linear edges without
 *     bias whose activation has sigma(0) = 0 (all but sigmoid); graph's
 *     conv, batch_norm, avg_pool, global_avg_pool, flatten, linear without
 *     bias and act with fn(0) = 0.  Any other op on a zero input stays, as
 *     an op of no input (a bias, sigmoid(0)).  A cell or graph whose output
 *     is identically zero is one class per skeleton: "degenerate".
 *  2. Skips are inlined: skip_connect, digit 1, identity, act identity, a
 *     flatten of a rank-1 value, and flattens at the graph's output (the
 *     lowering flattens a rank-3 output anyway).
 *  3. Sums are multisets: add is commutative and associative (nested adds
 *     flatten; x + x stays two terms, it is not x).
 *  4. Ops that cannot reach the output vanish.
 *  5. Parameter-free ops (avg_pool, global_avg_pool, act, flatten) applied
 *     to the same value are one value (two avg_pool edges on one node).
 *     Ops with parameters never merge: two convs on one input are two
 *     independently drawn convs, and one conv feeding two places is one.
 *  6. Isomorphic relabelling: the order and names of nodes do not matter
 *     (NB201's two intermediate nodes swapped, graph ids renamed, nodes
 *     listed in another order).
 *
 * So sharing counts: conv(x;W1) + conv'(conv(x;W2)) and conv(x;W) +
 * conv'(conv(x;W)) have one expression tree but different parameters and
 * are different keys (expression trees, which NAS-Bench-201's
 * unique-string rule compares, merge them).  Every
 * field that changes the network is in the key too: the type; nb201's
 * channels, cells_per_stage and num_classes; mlp_dag's width, bias,
 * num_classes and per-edge activations; graph's op fields, the init gain of
 * every linear and conv (the activation feeding it directly), and whether
 * inputs are norm-scaled (dense graphs).  Types never share keys.
 *
 * What the key does NOT cover: the parameter and FLOP counts of ops that
 * never reach the output or only see zeros (they are in the lowered
 * network's topology.params/flops), and the tensor ids the seed draws from
 * (an equivalent network gets the same distribution, not the same numbers).
 *
 * The canonical labelling is colour refinement (node colours from inputs,
 * consumers and output use, iterated to a fixed point), then the first
 * node of the first tied class is individualised and refinement repeats.
 * The form written out lists every node with its inputs, so equal forms
 * are always equal networks; isomorphic networks get equal forms whenever
 * tied classes are automorphism orbits, which holds for every nb201 cell
 * (tests/unit/test_canon.c checks all 15,625 against a brute-force
 * isomorphism count) and every twin/parallel structure; a graph where
 * refinement ties non-equivalent nodes (none is known among networks) could
 * get two keys for one network: a cache miss, never a wrong hit.
 *
 * Not recognised (each a miss, never a wrong hit): linearity (avg_pool(a +
 * b) against avg_pool(a) + avg_pool(b), a conv of a sum), BN's scale
 * invariance, x + x against a rescaled x, num_classes given explicitly
 * against the same number taken from the data, and a flatten of a rank-1
 * input when the rank comes from the data.
 *
 * Census (tests/unit/test_canon.c): the 15,625 NB201 cells are 5,260
 * networks under these rules (341 cells are degenerate, one of them).
 * Expression trees with zeros dropped (forgetting sharing) give 4,930;
 * NAS-Bench-201's to_unique_str(consider_zero=True), which keeps zero
 * terms in its sums and only sees a node as zero when its one input is
 * `none`, gives the published 6,466.
 *
 * nb101 and darts use none of the above: their form is the cell itself,
 * written for every relabelling of the interior vertices (nb101, already
 * pruned as nasbench prunes) or of the four nodes (darts, each node's two
 * (op, input) pairs in sorted order) that keeps edges going forward, and
 * the smallest taken: isomorphic cells share a key (nasbench's graph hash
 * classes), with the skeleton settings in the form too.  Zeros in darts
 * cells are not propagated (a miss, never a wrong hit).
 *
 * The key is the SHA-256 (api/sha256.h) of the form, in hex.  Plain data,
 * no I/O; the caller owns the result. */
#ifndef AE_CANON_H
#define AE_CANON_H

#include "api/arch.h"

/* Bump when the rules above change: old keys then miss, never collide. */
#define AE_CANON_VERSION 1

typedef struct {
  char key[65];   /* hex SHA-256 of form, NUL-terminated */
  char *form;     /* malloc'd: "canon/1 nb201 channels=16 ...; n1=...;
                     out=n1+n2" */
  int degenerate; /* 1: the output is identically zero */
  int n_ops;      /* ops in the canonical form (after pruning) */
} ae_canon;

/* Computes a's canonical form and key (a as ae_arch_from_json made it).
 * Returns AE_OK, or AE_ENOMEM when memory or the term budget runs out (a
 * graph whose flattened sums would hold over 4 million terms, or a term
 * summed 2^64 times: such an architecture has no key and is computed
 * without the cache); out is then empty.  Time: at most a few seconds for
 * a 4096-node graph built to defeat the refinement, milliseconds for
 * usual ones.  Free with ae_canon_free. */
int ae_arch_canon(const ae_arch *a, ae_canon *out);

void ae_canon_free(ae_canon *c);

#endif
