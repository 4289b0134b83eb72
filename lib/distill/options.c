/* Distiller parameters: typed getters over (key, value text, place) lists.
 * Every message starts with the value's place and the full key ("recipe.yaml:14:7:
 * distill[2].T: ..."), so a user can go straight to the line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "distill/distiller.h"

void fkd_distill_options_init(fkd_distill_options *o, const char *scope,
                              fkd_distill_option *items, int count)
{
    memset(o, 0, sizeof *o);
    o->scope = scope;
    o->items = items;
    o->count = items ? count : 0;
}

/* "recipe.yaml:14:7: distill[2].T" into buf. */
static const char *where(const fkd_distill_options *o, const fkd_distill_option *it,
                         const char *key, char *buf, size_t cap)
{
    const char *place = it && it->place ? it->place : NULL;
    const char *scope = o->scope ? o->scope : "distill";
    snprintf(buf, cap, "%s%s%s.%s", place ? place : "", place ? ": " : "", scope, key);
    return buf;
}

static void remember(fkd_distill_options *o, const char *key)
{
    for (int i = 0; i < o->n_known; i++)
        if (strcmp(o->known[i], key) == 0) return;
    if (o->n_known < FKD_DISTILL_MAX_KNOWN) o->known[o->n_known++] = key;
}

/* The option named `key` (marked read), or NULL when absent. */
static fkd_distill_option *take(fkd_distill_options *o, const char *key)
{
    remember(o, key);
    for (int i = 0; i < o->count; i++) {
        if (o->items[i].key && strcmp(o->items[i].key, key) == 0) {
            o->items[i].read = true;
            return &o->items[i];
        }
    }
    return NULL;
}

/* Parses one finite decimal number spanning [s, end) exactly (surrounding blanks allowed). */
static bool parse_number(const char *s, const char *end, double *out)
{
    char tmp[64];
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    /* strtod also takes hex floats, "inf" and "nan": a recipe means none of them. */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", tmp[i])) return false;
    char *stop;
    errno = 0;
    double v = strtod(tmp, &stop);
    if (*stop != '\0' || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool in_range(double v, fkd_distill_range r)
{
    if (r.lo_open ? !(v > r.lo) : !(v >= r.lo)) return false;
    if (r.hi_open ? !(v < r.hi) : !(v <= r.hi)) return false;
    return true;
}

static fkd_status range_error(const fkd_distill_options *o, const fkd_distill_option *it,
                              const char *key, double v, fkd_distill_range r)
{
    char at[256];
    return FKD_FAIL(FKD_ERR_ARG, "%s: %g is out of range %c%g, %g%c",
                    where(o, it, key, at, sizeof at), v, r.lo_open ? '(' : '[', r.lo, r.hi,
                    r.hi_open ? ')' : ']');
}

fkd_status fkd_distill_opt_float(fkd_distill_options *o, const char *key, double def,
                                 fkd_distill_range range, double *out)
{
    fkd_distill_option *it = take(o, key);
    if (!it) {
        *out = def;
        return FKD_OK;
    }
    char at[256];
    double v;
    const char *text = it->value ? it->value : "";
    if (!parse_number(text, text + strlen(text), &v))
        return FKD_FAIL(FKD_ERR_ARG, "%s: expected a number, got \"%s\"",
                        where(o, it, key, at, sizeof at), text);
    if (!in_range(v, range)) return range_error(o, it, key, v, range);
    *out = v;
    return FKD_OK;
}

fkd_status fkd_distill_opt_int(fkd_distill_options *o, const char *key, int64_t def,
                               int64_t lo, int64_t hi, int64_t *out)
{
    fkd_distill_option *it = take(o, key);
    if (!it) {
        *out = def;
        return FKD_OK;
    }
    char at[256];
    const char *text = it->value ? it->value : "";
    const char *s = text;
    while (*s == ' ' || *s == '\t') s++;
    /* strtoll alone would skip leading junk and accept "0x10": insist on [+-]digit. */
    const char *digit = (*s == '-' || *s == '+') ? s + 1 : s;
    bool ok = *digit >= '0' && *digit <= '9';
    long long v = 0;
    if (ok) {
        char *stop;
        errno = 0;
        v = strtoll(s, &stop, 10);
        while (*stop == ' ' || *stop == '\t') stop++;
        ok = *stop == '\0' && errno != ERANGE;
    }
    if (!ok)
        return FKD_FAIL(FKD_ERR_ARG, "%s: expected an integer, got \"%s\"",
                        where(o, it, key, at, sizeof at), text);
    if (v < lo || v > hi)
        return FKD_FAIL(FKD_ERR_ARG, "%s: %lld is out of range [%lld, %lld]",
                        where(o, it, key, at, sizeof at), v, (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return FKD_OK;
}

fkd_status fkd_distill_opt_bool(fkd_distill_options *o, const char *key, bool def, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    fkd_distill_option *it = take(o, key);
    if (!it) {
        *out = def;
        return FKD_OK;
    }
    const char *text = it->value ? it->value : "";
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return FKD_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return FKD_OK;
        }
    }
    char at[256];
    return FKD_FAIL(FKD_ERR_ARG, "%s: expected true or false, got \"%s\"",
                    where(o, it, key, at, sizeof at), text);
}

fkd_status fkd_distill_opt_floats(fkd_distill_options *o, const char *key, const double *def,
                                  int n_def, int min_n, int max_n, fkd_distill_range range,
                                  double *out, int *n)
{
    fkd_distill_option *it = take(o, key);
    if (!it) {
        for (int i = 0; i < n_def; i++) out[i] = def[i];
        *n = n_def;
        return FKD_OK;
    }
    char at[256];
    const char *text = it->value ? it->value : "";
    const char *s = text, *end = text + strlen(text);
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if (s < end && *s == '[') {
        if (end[-1] != ']')
            return FKD_FAIL(FKD_ERR_ARG, "%s: expected a list of numbers, got \"%s\" (no ']')",
                            where(o, it, key, at, sizeof at), text);
        s++;
        end--;
    }
    int count = 0;
    while (s <= end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        double v;
        if (!parse_number(s, stop, &v))
            return FKD_FAIL(FKD_ERR_ARG, "%s: expected a list of numbers, got \"%s\"",
                            where(o, it, key, at, sizeof at), text);
        if (count == max_n)
            return FKD_FAIL(FKD_ERR_ARG, "%s: at most %d numbers, got more in \"%s\"",
                            where(o, it, key, at, sizeof at), max_n, text);
        if (!in_range(v, range)) return range_error(o, it, key, v, range);
        out[count++] = v;
        s = stop + 1;
    }
    if (count < min_n)
        return FKD_FAIL(FKD_ERR_ARG, "%s: at least %d numbers, got %d in \"%s\"",
                        where(o, it, key, at, sizeof at), min_n, count, text);
    *n = count;
    return FKD_OK;
}

fkd_status fkd_distill_opt_string(fkd_distill_options *o, const char *key, const char *def,
                                  char *out, size_t cap)
{
    fkd_distill_option *it = take(o, key);
    const char *text = it ? (it->value ? it->value : "") : def;
    char at[256];
    if (it && text[0] == '\0')
        return FKD_FAIL(FKD_ERR_ARG, "%s: expected a name, got an empty value",
                        where(o, it, key, at, sizeof at));
    if (strlen(text) >= cap)
        return FKD_FAIL(FKD_ERR_ARG, "%s: \"%s\" is longer than %zu characters",
                        where(o, it, key, at, sizeof at), text, cap - 1);
    memcpy(out, text, strlen(text) + 1);
    return FKD_OK;
}

fkd_status fkd_distill_options_done(const fkd_distill_options *o)
{
    for (int i = 0; i < o->count; i++) {
        const fkd_distill_option *it = &o->items[i];
        if (it->read) continue;
        char known[512] = "", at[256];
        /* an unread copy of a key that was read: the first one won, this one is a repeat */
        for (int j = 0; j < o->count; j++) {
            const fkd_distill_option *first = &o->items[j];
            if (j != i && first->read && it->key && first->key && !strcmp(first->key, it->key))
                return FKD_FAIL(FKD_ERR_ARG, "%s: given twice (first at %s)",
                                where(o, it, it->key, at, sizeof at),
                                first->place ? first->place : "an earlier entry");
        }
        size_t len = 0;
        for (int k = 0; k < o->n_known && len < sizeof known; k++)
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", k ? ", " : "",
                                    o->known[k]);
        return FKD_FAIL(FKD_ERR_ARG, "%s: unknown parameter of method %s (known: %s)",
                        where(o, it, it->key ? it->key : "?", at, sizeof at),
                        o->method ? o->method : "?", o->n_known ? known : "none");
    }
    return FKD_OK;
}

fkd_status fkd_distill_options_fail(const fkd_distill_options *o, fkd_status status,
                                    const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return FKD_FAIL(status, "%s: %s: %s", o->scope ? o->scope : "distill",
                    o->method ? o->method : "?", msg);
}
