/* MobileFaceNet as insightface arcface_torch defines it ("mbf": blocks (1,4,6,2), scale 2;
 * "mbf_large": blocks (2,8,12,4), scale 4).
 *
 * With w = width (64), c1 = w·scale, c2 = 2w·scale; the fixed channel constants of
 * arcface_torch (64, 128, 256, 512) are w·{1,2,4,8}:
 *
 * layers.0  ConvBlock 3×3/2 (3→c1)                                   (N, c1, 56, 56)
 * layers.1  ConvBlock 3×3/1 grouped, groups w (blocks[0] == 1), or
 *           Residual(c1, blocks[0], expand 2w)                       stage1
 * layers.2  DepthWise c1→c1 /2, expand 2w                            (N, c1, 28, 28)
 * layers.3  Residual(c1, blocks[1], expand 2w)                       stage2
 * layers.4  DepthWise c1→c2 /2, expand 4w                            (N, c2, 14, 14)
 * layers.5  Residual(c2, blocks[2], expand 4w)                       stage3
 * layers.6  DepthWise c2→c2 /2, expand 8w                            (N, c2, 7, 7)
 * layers.7  Residual(c2, blocks[3], expand 4w)
 * conv_sep  ConvBlock 1×1 (c2→8w)                                    stage4 (N, 8w, 7, 7)
 * features  GDC: LinearBlock depthwise 7×7 (".layers.0") · flatten · Linear without bias
 *           (".layers.2", 8w → F) · BatchNorm1d (".layers.3")         embedding (N, F)
 *
 * ConvBlock "P" = conv P.layers.0 · BN P.layers.1 · PReLU P.layers.2; LinearBlock the same
 * without PReLU. DepthWise "P" (expand e) = ConvBlock 1×1 (→e) P.layers.0 · ConvBlock 3×3
 * depthwise (groups e, stride) P.layers.1 · LinearBlock 1×1 (→out) P.layers.2, plus the
 * input when residual. Residual "P" = DepthWise blocks P.layers.0, P.layers.1, … */
#ifndef FKD_STUDENTS_MBF_H
#define FKD_STUDENTS_MBF_H

#include "nn/graph.h"

typedef struct {
    int blocks[4];    /* mbf = {1, 4, 6, 2} */
    int scale;        /* 2 (mbf), 4 (mbf_large) */
    int width;        /* 64 in arcface_torch */
    int num_features; /* embedding size (512) */
} fkd_mbf_config;

fkd_status fkd_mbf_build(fkd_graph *g, const fkd_mbf_config *cfg, fkd_value input, fkd_value *embedding);

#endif
