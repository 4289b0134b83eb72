/* facekd — face-recognition knowledge distillation on CPUs.
 *
 * libfacekd trains and distills face-recognition models (IResNet teachers, MobileFaceNet
 * and ResNet-18 students) on a oneDNN engine. This header includes the public modules;
 * each module's header documents its functions.
 *
 * Conventions: functions return fkd_status (0 = success); on failure
 * fkd_last_error() holds a message naming the file, place and problem. Objects have
 * create/free pairs; free is safe on NULL and on half-built objects.
 */
#ifndef FACEKD_H
#define FACEKD_H

#define FKD_VERSION "0.1.0"

#include "core/fileio.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/dataset.h"
#include "data/folder.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/recordio.h"
#include "data/synth.h"
#include "data/synth_bench.h"
#include "data/verbin.h"
#include "dist/dist.h"
#include "distill/distiller.h"
#include "eval/bench.h"
#include "eval/embed.h"
#include "eval/plot.h"
#include "eval/report.h"
#include "eval/verify.h"
#include "heads/head.h"
#include "heads/margin.h"
#include "heads/metric.h"
#include "io/checkpoint.h"
#include "io/model.h"
#include "io/npy.h"
#include "io/recipe.h"
#include "io/safetensors.h"
#include "nn/arch.h"
#include "nn/graph.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "train/trainer.h"

#endif
