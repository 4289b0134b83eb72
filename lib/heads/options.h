/* Reading head options from recipe text (key/value pairs), shared by the margin head and
 * the metric losses. Errors name the recipe key: "head.s: not a number ('abc')". */
#ifndef FKD_HEADS_OPTIONS_H
#define FKD_HEADS_OPTIONS_H

#include <stdbool.h>

#include "core/status.h"

/* A finite number; `key` is the full recipe key used in messages. */
fkd_status fkd__heads_parse_double(const char *key, const char *text, double *out);
/* true/false, yes/no, on/off, 1/0. */
fkd_status fkd__heads_parse_bool(const char *key, const char *text, bool *out);

#endif
