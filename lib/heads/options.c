/* Recipe text → head option values, strictly: trailing garbage, empty text and
 * non-finite numbers are errors naming the key. */
#include "heads/options.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

fkd_status fkd__heads_parse_double(const char *key, const char *text, double *out)
{
    if (!text || !*text) return FKD_FAIL(FKD_ERR_ARG, "%s: empty value", key);
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v))
        return FKD_FAIL(FKD_ERR_ARG, "%s: not a finite number ('%s')", key, text);
    *out = v;
    return FKD_OK;
}

fkd_status fkd__heads_parse_bool(const char *key, const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; text && i < 4; i++) {
        if (!strcasecmp(text, yes[i])) return *out = true, FKD_OK;
        if (!strcasecmp(text, no[i])) return *out = false, FKD_OK;
    }
    return FKD_FAIL(FKD_ERR_ARG, "%s: expected true or false (got '%s')", key, text ? text : "");
}
