/* net_init.c: the weight schemes of settings.init (ranking.md §0) on a
 * host net: kaiming_normal (the seeds' draw, ae_net_init_weights),
 * torch_default (PyTorch's Conv2d/Linear default, uniform) and gaussian
 * (unit normal).  Every draw comes from the seed's Philox streams, keyed
 * by node index and element, so any backend draws the same weights.
 * Uses only net.h's public calls.
 *
 * Writes the parameters of an ae_net: the thread that owns it. */
#include "gpu/host/net.h"

#include "gpu/philox.h"
#include <math.h>
#include <string.h>

/* W ~ U(+-1/sqrt(fan_in)) and the linear bias likewise, bias o drawn at
 * counter n_weight + o. */
static void init_torch_default(ae_net *n, int k, uint64_t seed,
                               uint32_t stream) {
  const ae_node *nd = &ae_net_graph(n)->nodes[k];
  size_t nw, nb;
  float *w = ae_net_param(n, k, AE_NET_WEIGHT, &nw);
  float *b = ae_net_param(n, k, AE_NET_BIAS, &nb);
  if (!w || nd->out < 1) return;
  double fan_in = (double)(nw / (size_t)nd->out);
  double bound = 1.0 / sqrt(fan_in);
  for (size_t e = 0; e < nw; e++)
    w[e] =
        (float)((2.0 * ae_philox_uniform(seed, (uint32_t)k, stream, e) - 1.0) *
                bound);
  for (size_t o = 0; b && o < nb; o++)
    b[o] = (float)((2.0 * ae_philox_uniform(seed, (uint32_t)k, stream, nw + o) -
                    1.0) *
                   bound);
}

static void init_gaussian(ae_net *n, int k, uint64_t seed, uint32_t stream) {
  size_t nw, nb;
  float *w = ae_net_param(n, k, AE_NET_WEIGHT, &nw);
  float *b = ae_net_param(n, k, AE_NET_BIAS, &nb);
  for (size_t e = 0; w && e < nw; e++)
    w[e] = (float)ae_philox_normal(seed, (uint32_t)k, stream, e);
  if (b) memset(b, 0, sizeof(float) * nb);
}

void ae_net_init_weights_scheme(ae_net *n, uint64_t seed, uint32_t stream,
                                ae_init_scheme scheme) {
  /* BN gamma 1, beta 0 (and kaiming's weights) in every scheme. */
  ae_net_init_weights(n, seed, stream);
  if (scheme == AE_INIT_KAIMING_NORMAL) return;
  const ae_graph *g = ae_net_graph(n);
  for (int k = 0; k < g->n_nodes; k++) {
    ae_op op = g->nodes[k].op;
    if (op != AE_OP_LINEAR && op != AE_OP_CONV) continue;
    if (scheme == AE_INIT_TORCH_DEFAULT)
      init_torch_default(n, k, seed, stream);
    else
      init_gaussian(n, k, seed, stream);
  }
}
