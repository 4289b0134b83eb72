#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FKD_ERROR_CAP 1024

static _Thread_local char last_message[FKD_ERROR_CAP];
static _Thread_local char last_place[128];

const char *fkd_status_str(fkd_status status)
{
    switch (status) {
#define FKD__STATUS_CASE(name, value, text) \
    case name:                              \
        return text;
        FKD_STATUS_LIST(FKD__STATUS_CASE)
#undef FKD__STATUS_CASE
    }
    return "unknown status";
}

fkd_status fkd__fail(fkd_status status, const char *src_file, int src_line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    snprintf(last_place, sizeof last_place, "%s:%d", src_file, src_line);
    return status;
}

fkd_status fkd__wrap(fkd_status status, const char *fmt, ...)
{
    char prefix[FKD_ERROR_CAP];
    char old[FKD_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_message, sizeof old);
    size_t used = strlen(prefix);
    memcpy(last_message, prefix, used + 1);
    if (used < sizeof last_message - 1) {
        size_t room = sizeof last_message - 1 - used;
        size_t n = strnlen(old, room);
        memcpy(last_message + used, old, n);
        last_message[used + n] = '\0';
    }
    return status;
}

const char *fkd_last_error(void) { return last_message; }
const char *fkd_last_error_place(void) { return last_place; }

void fkd_clear_error(void)
{
    last_message[0] = '\0';
    last_place[0] = '\0';
}
