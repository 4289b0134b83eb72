#define _POSIX_C_SOURCE 200809L
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = -1;

static void log_level_from_env(void)
{
    const char *env = getenv("FACEKD_LOG");
    log_level = FKD_LOG_INFO;
    if (!env) return;
    static const char *names[] = {"debug", "info", "warn", "error", "quiet"};
    for (int i = 0; i < 5; i++)
        if (strcmp(env, names[i]) == 0) log_level = i;
}

void fkd_log_set_level(fkd_log_level level) { log_level = (int)level; }

fkd_log_level fkd_log_get_level(void)
{
    if (log_level < 0) log_level_from_env();
    return (fkd_log_level)log_level;
}

void fkd_log(fkd_log_level level, const char *fmt, ...)
{
    if ((int)level < (int)fkd_log_get_level()) return;
    static const char *tags[] = {"debug: ", "", "warning: ", "error: "};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s%s\n", tags[level], line);
}

double fkd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void fkd_progress_start(fkd_progress *p, const char *label, int64_t total, int64_t items_per_unit)
{
    p->label = label;
    p->total = total;
    p->items_per_unit = items_per_unit > 0 ? items_per_unit : 1;
    p->start = fkd_now();
    p->last_draw = 0;
    p->done = 0;
    p->tty = isatty(STDERR_FILENO) && fkd_log_get_level() <= FKD_LOG_INFO;
}

static void format_eta(char *buf, size_t cap, double seconds)
{
    if (seconds < 0 || seconds > 1e7) {
        snprintf(buf, cap, "--:--");
        return;
    }
    int s = (int)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%d:%02d", s / 60, s % 60);
}

static void progress_draw(fkd_progress *p, int64_t done, const char *extra, bool final)
{
    double now = fkd_now();
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)(done * p->items_per_unit) / elapsed : 0;
    char eta[32];
    format_eta(eta, sizeof eta,
               done > 0 ? elapsed * (double)(p->total - done) / (double)done : -1);
    if (p->tty) {
        int width = 24, filled = p->total > 0 ? (int)(width * done / p->total) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : ' ';
        bar[width] = '\0';
        fprintf(stderr, "\r%s [%s] %lld/%lld %s %.0f img/s ETA %s\033[K", p->label, bar,
                (long long)done, (long long)p->total, extra ? extra : "", rate, eta);
        if (final) fputc('\n', stderr);
    } else if (fkd_log_get_level() <= FKD_LOG_INFO) {
        fprintf(stderr, "%s %lld/%lld %s %.0f img/s ETA %s\n", p->label, (long long)done,
                (long long)p->total, extra ? extra : "", rate, eta);
    }
    p->last_draw = now;
}

void fkd_progress_update(fkd_progress *p, int64_t done, const char *extra)
{
    p->done = done;
    double now = fkd_now();
    double every = p->tty ? 0.2 : 10.0;
    if (now - p->last_draw >= every) progress_draw(p, done, extra, false);
}

void fkd_progress_finish(fkd_progress *p, int64_t done, const char *extra)
{
    p->done = done;
    progress_draw(p, done, extra, true);
}
