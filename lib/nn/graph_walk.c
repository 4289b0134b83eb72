/* Structure of a graph for readers outside lib/nn (see graph_walk.h). */
#include "nn/graph_walk.h"

#include <string.h>

#include "nn/op.h"

fkd_status fkd_graph_node_count(const fkd_graph *g, int *count)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: node_count: NULL graph");
    *count = g->n_nodes;
    return FKD_OK;
}

fkd_status fkd_graph_node_at(const fkd_graph *g, int index, fkd_graph_node_info *info)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: node_at: NULL graph");
    if (index < 0 || index >= g->n_nodes)
        return FKD_FAIL(FKD_ERR_ARG, "graph: node_at: node %d does not exist (%d nodes)", index, g->n_nodes);
    const fkd__node *n = &g->nodes[index];
    memset(info, 0, sizeof *info);
    info->op = fkd__op_name(n->op);
    info->name = n->name;
    info->n_inputs = n->n_inputs;
    for (int i = 0; i < n->n_inputs; i++) info->inputs[i] = n->inputs[i];
    info->output = n->output;
    info->first_param = n->first_param;
    info->n_params = n->n_params;
    if (n->op == FKD__OP_CONV) {
        fkd__conv_attrs(n, &info->kernel, &info->stride, &info->padding, &info->groups);
        info->out_channels = (int)g->values[n->output].dims[1];
    }
    if (n->op == FKD__OP_BATCHNORM) info->eps = fkd__batchnorm_eps(n);
    return FKD_OK;
}
