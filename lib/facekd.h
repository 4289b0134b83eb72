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

#include "core/log.h"
#include "core/rng.h"
#include "core/status.h"
#include "distill/distiller.h"
#include "io/npy.h"
#include "nn/graph.h"
#include "nn/optim.h"
#include "nn/schedule.h"

#endif
