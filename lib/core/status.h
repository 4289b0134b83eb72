/* Status codes and the last-error message.
 *
 * Every library function that can fail returns an fkd_status (0 = success, negative =
 * failure) and records a human-readable message naming the file, the place and the
 * problem with FKD_FAIL. Only main() turns a status into an exit code.
 */
#ifndef FKD_CORE_STATUS_H
#define FKD_CORE_STATUS_H

/* X-macro: one list generates both the enum and fkd_status_str(). */
#define FKD_STATUS_LIST(X)                                                         \
    X(FKD_OK, 0, "success")                                                        \
    X(FKD_ERR_NOMEM, -1, "out of memory")                                          \
    X(FKD_ERR_IO, -2, "input/output error")                                        \
    X(FKD_ERR_FORMAT, -3, "malformed input")                                       \
    X(FKD_ERR_ARG, -4, "invalid argument")                                         \
    X(FKD_ERR_DNNL, -5, "oneDNN call failed")                                      \
    X(FKD_ERR_UNSUPPORTED, -6, "unsupported")                                      \
    X(FKD_ERR_NUMERIC, -7, "non-finite value")                                     \
    X(FKD_ERR_NOTFOUND, -8, "not found")                                           \
    X(FKD_ERR_INTERRUPTED, -9, "interrupted")

typedef enum {
#define FKD__STATUS_ENUM(name, value, text) name = value,
    FKD_STATUS_LIST(FKD__STATUS_ENUM)
#undef FKD__STATUS_ENUM
    FKD_STATUS_MIN = -9
} fkd_status;

/* Static text for a status code ("invalid argument"). */
const char *fkd_status_str(fkd_status status);

/* Records `fmt` (printf-style) as the calling thread's last error, together with the
 * source place, and returns `status` so callers can write `return FKD_FAIL(...)`. */
fkd_status fkd__fail(fkd_status status, const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define FKD_FAIL(status, ...) fkd__fail((status), __FILE__, __LINE__, __VA_ARGS__)

/* Adds context in front of the current message: "recipe.yaml: " + old message.
 * Returns `status` unchanged. */
fkd_status fkd__wrap(fkd_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define FKD_WRAP(status, ...) fkd__wrap((status), __VA_ARGS__)

/* The calling thread's last error message ("" when none), and where it was raised. */
const char *fkd_last_error(void);
const char *fkd_last_error_place(void);
void fkd_clear_error(void);

/* Propagate a failing status: FKD_TRY(fkd_foo(...)); */
#define FKD_TRY(expr)                                                              \
    do {                                                                           \
        fkd_status fkd__s = (expr);                                                \
        if (fkd__s != FKD_OK) return fkd__s;                                       \
    } while (0)

#endif
