/* IResNet (insightface arcface_torch "iresnet18/34/50/100"), the ArcFace teachers and
 * the ResNet-18 student.
 *
 * stem     conv1 3×3/1 (3→w) · bn1 · prelu                         (N, w, 112, 112)
 * layerS   IBasicBlocks, the first with stride 2 (S = 1..4, width w·2^(S-1)):
 *            bn1 · conv1 3×3/1 · bn2 · prelu · conv2 3×3/stride · bn3
 *            + identity, or downsample = conv1×1/stride (".0") · BN (".1")
 *            no activation after the add                            stage S output
 * head     bn2 · flatten · [dropout] · fc (8w·7·7 → F) · features (BatchNorm1d, weight
 *          frozen at 1)                                             (N, F) embedding
 *
 * Taps: stage1 (N,w,56,56) … stage4 (N,8w,7,7), embedding (N,F). */
#ifndef FKD_TEACHERS_IRESNET_H
#define FKD_TEACHERS_IRESNET_H

#include "nn/graph.h"

typedef struct {
    int layers[4];    /* IBasicBlocks per stage: iresnet50 = {3, 4, 14, 3} */
    int width;        /* stem width; stages are width·{1,2,4,8} (64 in arcface_torch) */
    int num_features; /* embedding size (512) */
    float dropout;    /* before fc; 0 adds no node (arcface_torch's p=0 is the identity) */
} fkd_iresnet_config;

fkd_status fkd_iresnet_build(fkd_graph *g, const fkd_iresnet_config *cfg, fkd_value input, fkd_value *embedding);

#endif
