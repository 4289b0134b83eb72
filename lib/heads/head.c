/* Routing a recipe's head keys to the margin head and the metric losses (see head.h). */
#include "heads/head.h"

#include <string.h>

static bool is_metric_key(const char *key)
{
    static const char *const prefixes[] = {"contrastive.", "triplet.", "center."};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(key, prefixes[i], strlen(prefixes[i]))) return true;
    return false;
}

fkd_status fkd_head_params_parse(fkd_head_params *p, const char *const *keys, const char *const *values,
                                 int count)
{
    const char *preset = "arcface";
    for (int i = 0; i < count; i++)
        if (!strcmp(keys[i], "preset")) preset = values[i];
    FKD_TRY(fkd_margin_params_preset(&p->margin, preset));
    fkd_metric_params_default(&p->metric);
    for (int i = 0; i < count; i++) {
        if (!strcmp(keys[i], "preset")) continue;
        FKD_TRY(is_metric_key(keys[i]) ? fkd_metric_params_set(&p->metric, keys[i], values[i])
                                       : fkd_margin_params_set(&p->margin, keys[i], values[i]));
    }
    return fkd_margin_params_validate(&p->margin);
}
