/* Learning-rate schedules: pure functions of the optimizer step.
 *
 * `step` counts optimizer updates already taken (0 for the first update), so a trainer
 * calls fkd_optim_step(opt, fkd_schedule_lr(&s, k)) for k = 0, 1, 2, ...
 * Every schedule starts with an optional linear warm-up, lr = base_lr · step / warmup
 * for step < warmup_steps (0 at the first update, as in arcface_torch), then:
 *
 *   CONSTANT  base_lr
 *   POLY      base_lr · (1 − (step − W) / (T − W))^power        arcface_torch PolyScheduler
 *             (power 2 there); 0 from step T on
 *   STEP      base_lr · gamma^(number of milestones ≤ step)     torch MultiStepLR
 *   COSINE    eta_min + (base_lr − eta_min) · (1 + cos(π (step − W) / (T − W))) / 2
 *             torch CosineAnnealingLR with T_max = T − W; eta_min from step T on
 *
 * with W = warmup_steps and T = total_steps. Milestones are in steps: a recipe that
 * gives epochs converts them with fkd_schedule_milestones_from_epochs() (milestone epoch
 * e becomes step e · steps_per_epoch, i.e. the drop happens at the start of epoch e,
 * which is MultiStepLR stepped once per epoch). docs/OPTIM.md has the details.
 */
#ifndef FKD_NN_SCHEDULE_H
#define FKD_NN_SCHEDULE_H

#include <stdint.h>

#include "core/status.h"

#define FKD_SCHEDULE_MAX_MILESTONES 16

typedef enum {
    FKD_SCHEDULE_CONSTANT = 0,
    FKD_SCHEDULE_POLY,
    FKD_SCHEDULE_STEP,
    FKD_SCHEDULE_COSINE,
    FKD_SCHEDULE_KIND_COUNT
} fkd_schedule_kind;

typedef struct {
    fkd_schedule_kind kind;
    double base_lr;
    int64_t warmup_steps;                            /* 0 = no warm-up */
    int64_t total_steps;                             /* POLY, COSINE: end of the decay */
    double power;                                    /* POLY */
    double gamma;                                    /* STEP: factor at each milestone */
    int n_milestones;                                /* STEP */
    int64_t milestones[FKD_SCHEDULE_MAX_MILESTONES]; /* STEP: increasing steps */
    double eta_min;                                  /* COSINE: final lr */
} fkd_schedule;

/* Defaults per kind: arcface_torch's poly (power 2), MultiStepLR's gamma 0.1, cosine
 * eta_min 0; base_lr 0.1 (arcface_torch's SGD lr); no warm-up; total_steps 0 (the
 * caller sets it for POLY and COSINE). */
fkd_schedule fkd_schedule_defaults(fkd_schedule_kind kind);

/* "constant" | "poly" | "step" | "cosine". */
const char *fkd_schedule_kind_name(fkd_schedule_kind kind);
fkd_status fkd_schedule_kind_parse(const char *name, fkd_schedule_kind *kind);

/* Checks a schedule: positive base_lr, warmup < total for POLY/COSINE, increasing
 * milestones, gamma in (0, 1], and so on. The message names the field. */
fkd_status fkd_schedule_check(const fkd_schedule *s);

/* The learning rate for the update with index `step` (negative counts as 0). The
 * schedule must have passed fkd_schedule_check(). */
double fkd_schedule_lr(const fkd_schedule *s, int64_t step);

/* Sets s->milestones[i] = epochs[i] · steps_per_epoch. */
fkd_status fkd_schedule_milestones_from_epochs(fkd_schedule *s, const int64_t *epochs, int n,
                                               int64_t steps_per_epoch);

#endif
