/* facekd viz: the picture (normalised or raw features, centre directions, unit circle)
 * and a miniature run of the whole pipeline (pre-training, one preset, files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

#include "eval/plot.h"
#include "support/tmpdir.h"
#include "support/train_fixture.h"
#include "train/viz.h"

/* Three features of two classes and two centres. Series: circle, then per class its
 * points and its centre line. Normalised features lie on the unit circle (|r - 1| <
 * 1e-12); raw ones are copied; a centre line runs from the origin along its centre to
 * 1.15 x the largest drawn radius. */
static void test_picture_series(void **state)
{
    (void)state;
    const float x[] = {3, 4, 0, -2, -1, 0};
    const int32_t labels[] = {0, 1, 1};
    const float w[] = {0, 5, -2, 0};
    for (int normalise = 0; normalise < 2; normalise++) {
        fkd_plot p;
        assert_int_equal(fkd_viz_picture(&p, 240, "t", x, labels, 3, w, 2, normalise), FKD_OK);
        assert_int_equal(p.n_series, 1 + 2 * 2);
        const fkd_plot_series *class1 = &p.series[3], *line0 = &p.series[2];
        assert_int_equal(class1->n, 2);
        assert_int_equal(class1->style.kind, FKD_PLOT_POINTS);
        assert_int_equal(class1->style.color, 1);
        if (normalise) {
            for (int i = 0; i < class1->n; i++) assert_true(fabs(hypot(class1->x[i], class1->y[i]) - 1) < 1e-12);
        } else {
            assert_true(class1->x[0] == 0 && class1->y[0] == -2 && class1->x[1] == -1 && class1->y[1] == 0);
        }
        double radius = normalise ? 1 : 5; /* the largest raw norm is |(3, 4)| */
        assert_int_equal(line0->n, 2);
        assert_true(line0->x[0] == 0 && line0->y[0] == 0);
        assert_true(fabs(line0->x[1]) < 1e-12 && fabs(line0->y[1] - 1.15 * radius) < 1e-12);
        fkd_plot_free(&p);
    }
}

/* The whole pipeline in miniature: 2 identities x 4 images, width 4, 2 pre-training
 * steps and 2 steps of one preset; every output file appears and viz.csv has its row. */
static void test_tiny_viz_run(void **state)
{
    (void)state;
    char dir[256], path[4096];
    assert_int_equal(fkd_test_tmpdir_make(dir, sizeof dir, "viz"), 0);
    fkd_viz_options o;
    fkd_viz_options_default(&o);
    o.out = dir;
    o.presets[0] = "cosface";
    o.n_presets = 1;
    o.identities = 2;
    o.images_per_identity = 4;
    o.heldout = 2;
    o.width = 4;
    o.batch = 4;
    o.steps = 2;
    o.pretrain_steps = 2;
    assert_int_equal(fkd_viz_run(&o), FKD_OK);
    static const char *const files[] = {"viz.yaml", "cosface.png", "grid.png", "viz.csv",
                                        "runs/pretrain/model.safetensors", "runs/cosface/model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (!fkd_test_file_nonempty(path)) fail_msg("%s is missing or empty", files[i]);
    }
    /* viz.csv: the header and one row for cosface with its margins and a held-out
     * accuracy in [0, 1]. */
    snprintf(path, sizeof path, "%s/viz.csv", dir);
    uint8_t *text = NULL;
    size_t size = 0;
    assert_int_equal(fkd_file_read_all(path, &text, &size), FKD_OK);
    const char *row = strchr((const char *)text, '\n');
    assert_non_null(row);
    double accuracy = -1;
    assert_int_equal(sscanf(row + 1, "cosface,64,1,0,0.35,unit circle,2,%*f,%lf,", &accuracy), 1);
    assert_true(accuracy >= 0 && accuracy <= 1);
    free(text);

    /* A misspelt preset is refused before any training. */
    o.presets[0] = "arcfase";
    o.out = path; /* a folder that must not be created */
    snprintf(path, sizeof path, "%s/never", dir);
    assert_int_not_equal(fkd_viz_run(&o), FKD_OK);
    assert_false(fkd_test_file_nonempty(path));
    assert_int_equal(fkd_test_tmpdir_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picture_series),
        cmocka_unit_test(test_tiny_viz_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
