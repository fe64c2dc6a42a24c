/* onnx_nb201.h: recognises a NAS-Bench-201 network in an imported ONNX
 * model (the "graph" architecture api/onnx.h makes of it), so that the job
 * is scored as the native {"type": "nb201"} request, bit for bit.
 *
 * The skeleton is NAS-Bench-201's (X. Dong, Y. Yang, ICLR 2020): a stem
 * conv 3x3 (C, no bias) and BN; 3 stages of N cells, the second and third
 * after a residual reduction (ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, plus
 * avg-pool 2x2/2 and conv 1x1 on the shortcut, to 2C); the head BN, ReLU,
 * global average pool and a linear layer with bias.  A cell is 4 nodes,
 * node j the sum of one edge from each earlier node, each edge one of none
 * (x * 0), skip_connect, nor_conv_1x1 / nor_conv_3x3 (ReLU-conv-BN) and
 * avg_pool_3x3 (stride 1, pad 1, count_include_pad false); every cell of
 * the network is the same.  The match is structural (ids and node order
 * play no part) and allows for what exporters do: common subexpressions
 * merged (one ReLU feeding two convs), skips that leave no node, the sums
 * in any order or grouping (an exact left-to-right order wins ties).
 * An export made in eval mode, BN folded into the convs (ReLU-conv-BN a
 * ReLU-conv with a bias, the stem a conv with a bias; the head's BN, after
 * an add, stays a BN), matches as the same network, with bn_folded set; a
 * graph partly folded does not match.
 * Plain data, no I/O, any thread. */
#ifndef AE_ONNX_NB201_H
#define AE_ONNX_NB201_H

#include <jansson.h>
#include <stddef.h>

#include "api/arch.h"

typedef struct {
  ae_nb201_op ops[6]; /* edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2 */
  char cell[96];      /* "|nor_conv_3x3~0|+|...|" */
  int channels;       /* C of the first stage */
  int cells_per_stage;
  int num_classes;
  int input_shape[3]; /* per sample, {C, H, W}: the model's */
  int bn_folded;      /* 1: an eval-mode export (BN folded into the convs);
                         it is scored as the cell with BN all the same */
} ae_onnx_nb201;

/* Matches architecture ({"type": "graph", "nodes", "output"}, as
 * ae_onnx_import makes it) whose data input is per-sample input_shape
 * (input_rank 3; any other rank is no match).  Returns 1 and fills *out
 * when it is a NAS-Bench-201 network, 0 when not, AE_ENOMEM. */
int ae_onnx_nb201_match(const json_t *architecture, const int *input_shape,
                        int input_rank, ae_onnx_nb201 *out);

/* The cell string of ops ("|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"). */
void ae_nb201_cell_string(const ae_nb201_op ops[6], char *buf, size_t len);

/* {"type": "nb201", "cell", "channels", "cells_per_stage"}: the native
 * request's architecture (new reference; NULL without memory).  Without
 * "num_classes", as a native request usually is (the canonical key counts
 * it): the data's classes, which default to the model's output width,
 * give the classifier's. */
json_t *ae_onnx_nb201_request_arch(const ae_onnx_nb201 *m);

/* The "recognized" member of a model's description: the request's
 * architecture, "num_classes", "input_shape", "arch", the cell string
 * as NAS-Bench-201's API writes it, and "bn_folded" (new reference; NULL
 * without memory). */
json_t *ae_onnx_nb201_json(const ae_onnx_nb201 *m);

/* When a is an uploaded model scored as its recognised nb201 network
 * (a->model set, type nb201): writes the scorecard's warning into buf
 * (a->model_bn_folded: one saying the export was in eval mode and was
 * scored with BatchNorm) and returns 1; else 0. */
int ae_onnx_nb201_note(const ae_arch *a, char *buf, size_t len);

#endif
