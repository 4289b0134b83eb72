/* `facekd compare SET.yaml`: a teacher and a list of student recipes (without and with
 * distillation) trained in turn and evaluated on the same benchmarks, in one table shaped
 * like the EKD paper's (rows: teacher, student without KD, each method; columns: each
 * benchmark's 10-fold accuracy and TAR@FAR=1e-3) plus EKD's view — the student's TPR at
 * the teacher's thresholds — and one ROC plot per benchmark with every row.
 *
 *   name: quickstart
 *   output: ../runs/quickstart/compare      # compare.md, compare.csv, roc_<bench>.png
 *   teacher: ../runs/quickstart/r50-arcface/model.safetensors
 *   teacher_recipe: ../teachers/quickstart_r50_arcface.yaml   # trains it when missing
 *                                   # (or a list of recipes run in order, the last one
 *                                   #  writing the teacher: a warm start, then ArcFace)
 *   far: 1e-3                                # the FAR of the TAR and EKD columns
 *   flip: true                               # insightface's flip test (false: one pass)
 *   benchmarks:
 *     - {name: synth-lfw, synth: synth-lfw}
 *     - {name: lfw, bin: /data/faces_emore/lfw.bin}
 *   runs:                                   # `facekd train` when the recipe has no
 *     - {label: MobileFaceNet (no KD), recipe: ../distill/quickstart_nokd.yaml}
 *     - {label: KD, recipe: ../distill/quickstart_kd.yaml}   # distill: block, else distill
 *
 * A run whose model.safetensors already exists is evaluated, not trained again, unless
 * `rerun` is asked for. The runs' own evaluation lists are replaced by nothing (compare
 * evaluates every model itself, once). */
#ifndef FKD_TRAIN_COMPARE_H
#define FKD_TRAIN_COMPARE_H

#include <stdbool.h>

#include "core/status.h"

fkd_status fkd_compare_run(const char *set_path, bool rerun);

#endif
