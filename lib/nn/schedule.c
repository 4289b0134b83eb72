/* Learning-rate schedules (formulas in schedule.h and docs/OPTIM.md). */
#include "nn/schedule.h"

#include <math.h>
#include <string.h>

static const char *const schedule_names[] = {
    [FKD_SCHEDULE_CONSTANT] = "constant",
    [FKD_SCHEDULE_POLY] = "poly",
    [FKD_SCHEDULE_STEP] = "step",
    [FKD_SCHEDULE_COSINE] = "cosine",
};
_Static_assert(sizeof schedule_names / sizeof schedule_names[0] == FKD_SCHEDULE_KIND_COUNT,
               "one name per schedule kind");

fkd_schedule fkd_schedule_defaults(fkd_schedule_kind kind)
{
    fkd_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.base_lr = 0.1;
    s.power = 2.0;
    s.gamma = 0.1;
    return s;
}

const char *fkd_schedule_kind_name(fkd_schedule_kind kind)
{
    return (unsigned)kind < FKD_SCHEDULE_KIND_COUNT ? schedule_names[kind] : "?";
}

fkd_status fkd_schedule_kind_parse(const char *name, fkd_schedule_kind *kind)
{
    for (int k = 0; k < FKD_SCHEDULE_KIND_COUNT; k++) {
        if (strcmp(name, schedule_names[k]) == 0) {
            *kind = (fkd_schedule_kind)k;
            return FKD_OK;
        }
    }
    return FKD_FAIL(FKD_ERR_ARG, "unknown lr schedule '%s' (constant, poly, step, cosine)", name);
}

fkd_status fkd_schedule_check(const fkd_schedule *s)
{
    if ((unsigned)s->kind >= FKD_SCHEDULE_KIND_COUNT)
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule: unknown kind %d", (int)s->kind);
    const char *name = schedule_names[s->kind];
    if (!(s->base_lr > 0) || !isfinite(s->base_lr))
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule %s: base_lr must be positive, not %g", name,
                        s->base_lr);
    if (s->warmup_steps < 0)
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule %s: warmup_steps must be >= 0, not %lld", name,
                        (long long)s->warmup_steps);
    if ((s->kind == FKD_SCHEDULE_POLY || s->kind == FKD_SCHEDULE_COSINE) &&
        s->total_steps <= s->warmup_steps)
        return FKD_FAIL(FKD_ERR_ARG,
                        "lr schedule %s: total_steps (%lld) must exceed warmup_steps (%lld)", name,
                        (long long)s->total_steps, (long long)s->warmup_steps);
    if (s->kind == FKD_SCHEDULE_POLY && !(s->power > 0))
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule poly: power must be positive, not %g", s->power);
    if (s->kind == FKD_SCHEDULE_COSINE && !(s->eta_min >= 0 && s->eta_min <= s->base_lr))
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule cosine: eta_min must be in [0, base_lr], not %g",
                        s->eta_min);
    if (s->kind == FKD_SCHEDULE_STEP) {
        if (!(s->gamma > 0 && s->gamma <= 1))
            return FKD_FAIL(FKD_ERR_ARG, "lr schedule step: gamma must be in (0, 1], not %g",
                            s->gamma);
        if (s->n_milestones < 0 || s->n_milestones > FKD_SCHEDULE_MAX_MILESTONES)
            return FKD_FAIL(FKD_ERR_ARG, "lr schedule step: %d milestones (at most %d)",
                            s->n_milestones, FKD_SCHEDULE_MAX_MILESTONES);
        for (int i = 0; i < s->n_milestones; i++) {
            if (s->milestones[i] <= 0 || (i > 0 && s->milestones[i] <= s->milestones[i - 1]))
                return FKD_FAIL(FKD_ERR_ARG,
                                "lr schedule step: milestone %d (%lld) must be positive and "
                                "larger than the one before",
                                i, (long long)s->milestones[i]);
        }
    }
    return FKD_OK;
}

double fkd_schedule_lr(const fkd_schedule *s, int64_t step)
{
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return s->base_lr * (double)step / (double)s->warmup_steps;
    /* Fraction of the decay phase done (POLY, COSINE), clamped at its end. */
    double span = (double)(s->total_steps - s->warmup_steps);
    double done = step >= s->total_steps ? 1.0 : (double)(step - s->warmup_steps) / span;
    switch (s->kind) {
    case FKD_SCHEDULE_POLY:
        return s->base_lr * pow(1.0 - done, s->power);
    case FKD_SCHEDULE_STEP: {
        int passed = 0;
        while (passed < s->n_milestones && s->milestones[passed] <= step) passed++;
        return s->base_lr * pow(s->gamma, passed);
    }
    case FKD_SCHEDULE_COSINE:
        return s->eta_min + (s->base_lr - s->eta_min) * (1.0 + cos(M_PI * done)) / 2.0;
    default:
        return s->base_lr;
    }
}

fkd_status fkd_schedule_milestones_from_epochs(fkd_schedule *s, const int64_t *epochs, int n,
                                               int64_t steps_per_epoch)
{
    if (n < 0 || n > FKD_SCHEDULE_MAX_MILESTONES)
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule step: %d milestones (at most %d)", n,
                        FKD_SCHEDULE_MAX_MILESTONES);
    if (steps_per_epoch <= 0)
        return FKD_FAIL(FKD_ERR_ARG, "lr schedule step: steps_per_epoch must be positive, not %lld",
                        (long long)steps_per_epoch);
    for (int i = 0; i < n; i++) {
        if (epochs[i] < 0 || epochs[i] > INT64_MAX / steps_per_epoch)
            return FKD_FAIL(FKD_ERR_ARG, "lr schedule step: milestone epoch %lld out of range",
                            (long long)epochs[i]);
        s->milestones[i] = epochs[i] * steps_per_epoch;
    }
    s->n_milestones = n;
    return FKD_OK;
}
