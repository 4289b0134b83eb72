/* A recipe's whole head section in one struct: the margin head's preset and overrides
 * and the metric losses' options, from the key/value pairs the recipe reader passes.
 *
 *   head: {preset: arcface, m2: 0.45, triplet.mining: hard, center.lambda: 0.003}
 *
 * Keys starting with "contrastive.", "triplet." or "center." go to fkd_metric_params,
 * the rest (preset, s, m1, m2, m3, w_norm, x_norm, bias, easy_margin, straight_through,
 * intra, inter, sphere_lambda) to fkd_margin_params. Errors name the key ("head.m1: …").
 * Which metric losses a run adds is the recipe's business; this only holds their options.
 */
#ifndef FKD_HEADS_HEAD_H
#define FKD_HEADS_HEAD_H

#include "heads/margin.h"
#include "heads/metric.h"

typedef struct {
    fkd_margin_params margin;
    fkd_metric_params metric;
} fkd_head_params;

/* Preset (default "arcface") first wherever it appears, then every override, then the
 * margin validation. */
fkd_status fkd_head_params_parse(fkd_head_params *p, const char *const *keys, const char *const *values,
                                 int count);

#endif
