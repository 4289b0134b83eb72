/* Logging to stderr with levels, and a progress line for long work.
 *
 * Set the level with fkd_log_set_level() or FACEKD_LOG=debug|info|warn|error. */
#ifndef FKD_CORE_LOG_H
#define FKD_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { FKD_LOG_DEBUG = 0, FKD_LOG_INFO, FKD_LOG_WARN, FKD_LOG_ERROR, FKD_LOG_QUIET } fkd_log_level;

void fkd_log_set_level(fkd_log_level level);
fkd_log_level fkd_log_get_level(void);
void fkd_log(fkd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define FKD_DEBUG(...) fkd_log(FKD_LOG_DEBUG, __VA_ARGS__)
#define FKD_INFO(...) fkd_log(FKD_LOG_INFO, __VA_ARGS__)
#define FKD_WARN(...) fkd_log(FKD_LOG_WARN, __VA_ARGS__)
#define FKD_ERROR(...) fkd_log(FKD_LOG_ERROR, __VA_ARGS__)

/* Monotonic clock in seconds. */
double fkd_now(void);

/* A progress bar on a terminal ("[####   ] 120/500 loss 3.21 640 img/s ETA 0:42"),
 * plain log lines every `log_every` seconds otherwise. */
typedef struct {
    const char *label;
    int64_t total;       /* units of work (steps, images) */
    int64_t items_per_unit; /* images per unit, for the images/s figure */
    int64_t done;        /* last value given to update/finish */
    double start, last_draw;
    bool tty;
} fkd_progress;

void fkd_progress_start(fkd_progress *p, const char *label, int64_t total, int64_t items_per_unit);
/* `extra` is shown after the counter (e.g. "loss 3.21"); may be NULL. */
void fkd_progress_update(fkd_progress *p, int64_t done, const char *extra);
void fkd_progress_finish(fkd_progress *p, int64_t done, const char *extra);

#endif
