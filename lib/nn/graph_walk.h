/* Reading a built graph's structure: its nodes in topological order with their op,
 * inputs, output, parameters and attributes. For exporters (lib/io/onnx_export) and
 * tools that need to see what a graph computes without reaching into lib/nn.
 *
 *   int n; fkd_graph_node_count(g, &n);
 *   for (int i = 0; i < n; i++) { fkd_graph_node_info ni; fkd_graph_node_at(g, i, &ni); ... }
 */
#ifndef FKD_NN_GRAPH_WALK_H
#define FKD_NN_GRAPH_WALK_H

#include "nn/graph.h"

typedef struct {
    const char *op;      /* "input", "conv", "batchnorm", "prelu", "add", "flatten", "linear", "dropout" */
    const char *name;    /* node name (its parameters are "<name>.weight", ...) */
    int n_inputs;
    fkd_value inputs[2];
    fkd_value output;
    int first_param;     /* index into fkd_graph_params(), n_params of them */
    int n_params;
    /* conv only */
    int out_channels, kernel, stride, padding, groups;
    /* batchnorm only */
    float eps;
} fkd_graph_node_info;

fkd_status fkd_graph_node_count(const fkd_graph *g, int *count);
/* Node `index` (0 .. count-1), valid until fkd_graph_free(). Parameter indices are only
 * meaningful after finalize. */
fkd_status fkd_graph_node_at(const fkd_graph *g, int index, fkd_graph_node_info *info);

#endif
