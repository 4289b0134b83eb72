/* Recipes: strict YAML reading, schema defaults, --set, extends, the resolved round trip,
 * method parameter getters and the generated reference. Each test runs in its own
 * temporary folder (the current directory), so messages name short relative files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "io/recipe.h"
#include "train/distill.h"
#include "train/trainer.h"

static char repo_dir[PATH_MAX];
static char tmp_dir[PATH_MAX];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int enter_tmp(void **state)
{
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/facekd_recipe_XXXXXX");
    if (!mkdtemp(tmp_dir) || chdir(tmp_dir) != 0) return -1;
    return 0;
}

static int leave_tmp(void **state)
{
    (void)state;
    if (chdir(repo_dir) != 0) return -1;
    return nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        assert_int_equal(fkd_mkdir_p(dir), FKD_OK);
    }
    assert_int_equal(fkd_atomic_write(path, text, strlen(text)), FKD_OK);
}

/* Writes `text` to r.yaml, loads it with `sets` and checks it fails with exactly `message`. */
static void expect_error_sets(const char *text, const char *const *sets, size_t n_sets, const char *message)
{
    write_file("r.yaml", text);
    fkd_recipe r;
    fkd_status s = fkd_recipe_load(&r, "r.yaml", sets, n_sets);
    if (s == FKD_OK) fail_msg("loaded without error, expected: %s", message);
    assert_string_equal(fkd_last_error(), message);
    assert_null(r.tree);
    assert_null(r.name);
}

static void expect_error(const char *text, const char *message) { expect_error_sets(text, NULL, 0, message); }

static void load_ok(fkd_recipe *r, const char *path, const char *const *sets, size_t n_sets)
{
    fkd_status s = fkd_recipe_load(r, path, sets, n_sets);
    if (s != FKD_OK) fail_msg("%s: unexpected error: %s", path, fkd_last_error());
}

static char *abs_path(const char *rel)
{
    char *p;
    assert_true(asprintf(&p, "%s/%s", tmp_dir, rel) > 0);
    return p;
}

static void assert_abs_path(const char *got, const char *rel)
{
    char *want = abs_path(rel);
    assert_string_equal(got, want);
    free(want);
}

static void test_defaults_applied(void **state)
{
    (void)state;
    write_file("quick.yaml", "steps: 10\n");
    fkd_recipe r;
    load_ok(&r, "quick.yaml", NULL, 0);
    assert_string_equal(r.name, "quick");
    assert_abs_path(r.output, "runs/quick");
    assert_int_equal(r.seed, 1);
    assert_int_equal(r.steps, 10);
    assert_int_equal(r.epochs, 0);
    assert_int_equal(r.batch_size, 128);
    assert_int_equal(r.eval_every, 2000);
    assert_int_equal(r.log_every, 50);
    assert_int_equal(r.threads, 0);
    assert_false(r.deterministic);
    assert_false(r.skip_nonfinite);
    assert_int_equal(r.data.source, FKD_SOURCE_SYNTH);
    assert_null(r.data.path);
    assert_int_equal(r.data.synth.identities, 1000);
    assert_int_equal(r.data.sampler.kind, FKD_RECIPE_SAMPLER_RANDOM);
    assert_true(r.data.flip);
    assert_false(r.data.resize);
    assert_int_equal(r.model.width, 0);
    assert_int_equal(r.data.n_eval, 0);
    assert_int_equal(r.model.arch, FKD_RECIPE_ARCH_MBF);
    assert_int_equal(r.model.embedding_size, 512);
    assert_int_equal(r.model.precision, FKD_RECIPE_PRECISION_FP32);
    assert_null(r.model.weights);
    assert_int_equal(r.head.loss, FKD_HEAD_ARCFACE);
    assert_true(isnan(r.head.s) && isnan(r.head.m2)); /* the preset's values apply */
    assert_int_equal(r.optim.kind, FKD_RECIPE_OPTIM_SGD);
    assert_true(r.optim.lr == 0.1 && r.optim.momentum == 0.9 && r.optim.weight_decay == 0.0005);
    assert_true(r.optim.betas[0] == 0.9 && r.optim.betas[1] == 0.999 && r.optim.eps == 1e-8);
    assert_int_equal(r.schedule.kind, FKD_RECIPE_SCHEDULE_POLY);
    assert_true(r.schedule.power == 2);
    assert_int_equal(r.schedule.n_milestones, 0);
    assert_null(r.teacher.model);
    assert_int_equal(r.teacher.arch, FKD_RECIPE_ARCH_UNSET);
    assert_true(r.teacher.cache);
    assert_null(r.teacher.cache_dir);
    assert_false(r.model.direct_conv);
    assert_false(r.teacher.direct_conv);
    assert_int_equal(r.n_distill, 0);
    assert_string_equal(fkd_recipe_enum_name("optimizer.type", r.optim.kind), "sgd");
    assert_string_equal(fkd_recipe_enum_name("data.eval[].synth", FKD_RECIPE_BENCH_AGEDB), "synth-agedb");
    fkd_recipe_free(&r);
    fkd_recipe_free(&r); /* safe twice: free leaves the recipe empty */
}

static void test_values_and_relative_paths(void **state)
{
    (void)state;
    write_file("recipes/a.yaml", "name: a\n"
                                 "epochs: 3\n"
                                 "data:\n"
                                 "  source: folder\n"
                                 "  path: ../faces\n"
                                 "  sampler: {kind: pk, p: 8, k: 4}\n"
                                 "  eval:\n"
                                 "    - {name: lfw, bin: bins/lfw.bin}\n"
                                 "    - {name: mine, pairs: /abs/pairs.txt, root: ./imgs}\n"
                                 "    - {name: s, synth: synth-calfw}\n"
                                 "batch_size: 32\n"
                                 "model: {arch: resnet18, precision: bf16, weights: w.safetensors}\n"
                                 "optimizer: {type: adamw, lr: 1e-3, betas: [0.8, 0.95]}\n"
                                 "schedule: {type: step, milestones: [2, 5], gamma: 0.5}\n");
    fkd_recipe r;
    load_ok(&r, "recipes/a.yaml", NULL, 0);
    assert_abs_path(r.data.path, "faces");
    assert_int_equal(r.data.source, FKD_SOURCE_FOLDER);
    assert_int_equal(r.data.sampler.kind, FKD_RECIPE_SAMPLER_PK);
    assert_int_equal(r.data.sampler.p, 8);
    assert_int_equal(r.data.n_eval, 3);
    assert_abs_path(r.data.eval[0].bin, "recipes/bins/lfw.bin");
    assert_int_equal(r.data.eval[0].synth, FKD_RECIPE_BENCH_NONE);
    assert_string_equal(r.data.eval[1].pairs, "/abs/pairs.txt");
    assert_abs_path(r.data.eval[1].root, "recipes/imgs");
    assert_int_equal(r.data.eval[2].synth, FKD_RECIPE_BENCH_CALFW);
    assert_int_equal(r.model.arch, FKD_RECIPE_ARCH_RESNET18);
    assert_int_equal(r.model.precision, FKD_RECIPE_PRECISION_BF16);
    assert_abs_path(r.model.weights, "recipes/w.safetensors");
    assert_int_equal(r.optim.kind, FKD_RECIPE_OPTIM_ADAMW);
    assert_true(r.optim.lr == 1e-3 && r.optim.betas[0] == 0.8 && r.optim.betas[1] == 0.95);
    assert_int_equal(r.schedule.n_milestones, 2);
    assert_int_equal(r.schedule.milestones[1], 5);
    assert_true(r.schedule.gamma == 0.5);
    fkd_recipe_free(&r);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_error("steps: 10\nbatch_size: [1, 2\n",
                 "r.yaml:3:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)");
    expect_error("steps: 10\n\tbatch_size: 3\n", "r.yaml:2:1: tab character in indentation; YAML indents with spaces");
    expect_error("steps: 10\ndata:\n  flip: true\n  flip: false\n",
                 "r.yaml:4:3: data.flip: duplicate key (first defined at line 3)");
    expect_error("a: &x 1\n", "r.yaml:1:4: a: anchors (&x) are not supported; use extends to share settings");
    expect_error("steps: 10\nb: *x\n", "r.yaml:2:4: b: aliases (*x) are not supported; use extends to share settings");
    expect_error("steps: 10\nhead: !!str x\n", "r.yaml:2:7: head: tags (tag:yaml.org,2002:str) are not supported");
    expect_error("", "r.yaml: empty recipe");
    expect_error("# nothing but a comment\n", "r.yaml: empty recipe");
    expect_error("- steps\n", "r.yaml:1:1: a recipe is a mapping of keys to values, got a list");
    expect_error("steps: 1\n---\nsteps: 2\n", "r.yaml:2:1: more than one YAML document ('---'); a recipe is one document");
    expect_error("[a, b]: 1\n", "r.yaml:1:1: mapping keys must be plain words");
    /* Nesting beyond 64 levels is refused, not recursed into. */
    char deep[400] = "x: ";
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    expect_error(deep, "r.yaml:1:68: x[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                       "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                       "[0][0][0][0][0][0][0][0]: nested deeper than 64 levels");
    fkd_recipe r;
    assert_int_equal(fkd_recipe_load(&r, "missing.yaml", NULL, 0), FKD_ERR_IO);
    assert_string_equal(fkd_last_error(), "missing.yaml: cannot open: No such file or directory");
}

static void test_schema_errors(void **state)
{
    (void)state;
    expect_error("steps: 10\noptimizer:\n  lrr: 1\n",
                 "r.yaml:3:3: optimizer.lrr: unknown key (expected one of: type, lr, momentum, nesterov, betas, eps, "
                 "weight_decay)");
    expect_error("steps: 10\nbatch_size: many\n", "r.yaml:2:13: batch_size: expected an integer, got \"many\"");
    expect_error("steps: 10\nbatch_size: -4\n", "r.yaml:2:13: batch_size: must be between 1 and 65536, got -4");
    expect_error("steps: 10\nbatch_size: 1.5\n", "r.yaml:2:13: batch_size: expected an integer, got \"1.5\"");
    expect_error("steps: 10\nbatch_size: 99999999999999999999\n",
                 "r.yaml:2:13: batch_size: expected an integer, got \"99999999999999999999\"");
    expect_error("steps: 10\noptimizer: {lr: \"0.1\"}\n", "r.yaml:2:17: optimizer.lr: expected a number, got \"0.1\"");
    expect_error("steps: 10\noptimizer: {lr: .nan}\n", "r.yaml:2:17: optimizer.lr: expected a number, got \".nan\"");
    expect_error("steps: 10\noptimizer: {lr: 0x10}\n", "r.yaml:2:17: optimizer.lr: expected a number, got \"0x10\"");
    expect_error("steps: 10\noptimizer: {momentum: 1.5}\n",
                 "r.yaml:2:23: optimizer.momentum: must be between 0 and 1, got 1.5");
    expect_error("steps: 10\noptimizer: {type: adam}\n",
                 "r.yaml:2:19: optimizer.type: expected one of sgd, adamw; got \"adam\"");
    expect_error("steps: 10\noptimizer: {betas: [0.9, 0.99]}\n",
                 "r.yaml:2:13: optimizer.betas: only used when optimizer.type is adamw (it is sgd)");
    expect_error("steps: 10\noptimizer: {type: adamw, betas: [0.9]}\n",
                 "r.yaml:2:33: optimizer.betas: expected a list of 2 numbers, got 1");
    expect_error("steps: 10\noptimizer: {type: adamw, betas: [0.9, two]}\n",
                 "r.yaml:2:39: optimizer.betas[1]: expected a number, got \"two\"");
    expect_error("steps: 10\ndata: {flip: yes}\n", "r.yaml:2:14: data.flip: expected true or false, got \"yes\"");
    expect_error("steps: 10\nmodel: 3\n", "r.yaml:2:8: model: expected a mapping, got \"3\"");
    expect_error("steps: 10\nname:\n", "r.yaml:2:6: name: expected a string, got nothing");
    expect_error("steps: 10\ndistill:\n  - weight: 1\n", "r.yaml:3:5: distill[0]: missing key 'method'");
    expect_error("steps: 10\ndistill: [kd]\n", "r.yaml:2:11: distill[0]: expected a mapping, got \"kd\"");
    expect_error("steps: 10\ndata: {synth: {identities: 1}}\n",
                 "r.yaml:2:28: data.synth.identities: must be between 2 and 10000000, got 1");
    expect_error("steps: 10\ndata: {source: recordio, synth: {seed: 2}}\n",
                 "r.yaml:2:26: data.synth: only used when data.source is synth (it is recordio)");
}

static void test_cross_key_errors(void **state)
{
    (void)state;
    expect_error("name: x\n", "r.yaml: steps: give epochs or steps (the training length)");
    expect_error("steps: 10\nepochs: 3\n", "r.yaml:1:8: steps: give epochs or steps, not both");
    expect_error("steps: 10\ndata: {source: folder}\n", "r.yaml:2:16: data.source: folder needs data.path");
    expect_error("steps: 10\ndata: {sampler: {kind: pk, p: 10}}\n",
                 "r.yaml:2:17: data.sampler: p x k = 10 x 4 = 40 must equal batch_size (128)");
    expect_error("steps: 10\ndata: {eval: [{name: a}]}\n",
                 "r.yaml:2:15: data.eval[0]: give exactly one of bin, synth or pairs (got 0)");
    expect_error("steps: 10\ndata: {eval: [{name: a, synth: synth-lfw, bin: a.bin}]}\n",
                 "r.yaml:2:15: data.eval[0]: give exactly one of bin, synth or pairs (got 2)");
    expect_error("steps: 10\ndata: {eval: [{name: a, pairs: p.txt}]}\n",
                 "r.yaml:2:15: data.eval[0]: pairs needs root (the image folder)");
    expect_error("steps: 10\ndata: {eval: [{name: a, synth: synth-lfw}, {name: a, bin: x.bin}]}\n",
                 "r.yaml:2:51: data.eval[1].name: benchmark name 'a' is already used by data.eval[0]");
    expect_error("steps: 10\nschedule: {type: step, milestones: [5, 3]}\n",
                 "r.yaml:2:40: schedule.milestones[1]: milestones must increase (3 after 5)");
    expect_error("steps: 10\nschedule: {warmup_steps: 5, warmup_epochs: 1}\n",
                 "r.yaml:2:44: schedule.warmup_epochs: give warmup_steps or warmup_epochs, not both");
    expect_error("steps: 10\nteacher: {model: t.pt}\n", "r.yaml:2:18: teacher.model: expected a .safetensors or .onnx file");
    expect_error("steps: 10\ndistill:\n  - method: kd\n", "r.yaml:3:3: distill: distillation needs a teacher: set teacher.model");
}

static void test_set_overrides(void **state)
{
    (void)state;
    write_file("r.yaml", "steps: 10\n"
                         "teacher: {model: t.onnx}\n"
                         "distill:\n"
                         "  - {method: kd, T: 4}\n"
                         "  - {method: l2, weight: 3}\n");
    const char *sets[] = {
        "steps=20",                     /* scalar */
        "optimizer.lr=0.05",            /* nested, section not in the file */
        "data.sampler.kind=pk",         /* two levels created */
        "data.sampler.p=32",
        "distill[0].weight=2",          /* list item, bracket spelling */
        "distill.1.weight=0.25",        /* list item, dotted spelling */
        "distill.0.T=8",                /* method parameter */
        "distill.2.method=cosine",      /* appends an item */
        "schedule.type=step",
        "schedule.milestones=[4, 8]",   /* a flow list as the value */
        "teacher.model=../other/t2.onnx", /* relative to the current directory */
        "name='quoted name'",
    };
    fkd_recipe r;
    load_ok(&r, "r.yaml", sets, sizeof sets / sizeof sets[0]);
    assert_int_equal(r.steps, 20);
    assert_true(r.optim.lr == 0.05);
    assert_int_equal(r.data.sampler.kind, FKD_RECIPE_SAMPLER_PK);
    assert_int_equal(r.data.sampler.p * r.data.sampler.k, r.batch_size);
    assert_int_equal(r.n_distill, 3);
    assert_true(r.distill[0].weight == 2 && r.distill[1].weight == 0.25);
    assert_string_equal(r.distill[2].method, "cosine");
    assert_true(isnan(r.distill[2].weight));
    assert_true(fkd_recipe_method_weight(&r.distill[2], 1.0) == 1.0);
    double t;
    assert_int_equal(fkd_recipe_param_float(&r.distill[0], "T", 1, 0.01, 100, &t), FKD_OK);
    assert_true(t == 8);
    assert_int_equal(r.schedule.n_milestones, 2);
    assert_int_equal(r.schedule.milestones[0], 4);
    char *want;
    assert_true(asprintf(&want, "%.*s/other/t2.onnx", (int)(strrchr(tmp_dir, '/') - tmp_dir), tmp_dir) > 0);
    assert_string_equal(r.teacher.model, want);
    free(want);
    assert_string_equal(r.name, "quoted name");
    fkd_recipe_free(&r);

    const char *bad_value[] = {"head.s=abc"};
    expect_error_sets("steps: 10\n", bad_value, 1, "--set head.s=abc: head.s: expected a number, got \"abc\"");
    const char *bad_key[] = {"head.scale=30"};
    expect_error_sets("steps: 10\n", bad_key, 1,
                      "--set head.scale=30: head.scale: unknown key (expected one of: loss, s, m1, m2, m3, margin, easy_margin, straight_through, intra, inter, triplet, center)");
    const char *past_end[] = {"distill.3.method=kd"};
    expect_error_sets("steps: 10\ndistill: []\n", past_end, 1,
                      "--set distill.3.method=kd: distill has 0 items; index 3 is past its end");
    const char *no_equals[] = {"steps"};
    expect_error_sets("steps: 10\n", no_equals, 1, "--set steps: expected KEY.PATH=VALUE");
    const char *bad_yaml[] = {"schedule.milestones=[1,"};
    expect_error_sets("steps: 10\n", bad_yaml, 1,
                      "--set schedule.milestones=[1,: YAML syntax error: did not find expected node content (while "
                      "parsing a flow node)");
    const char *into_scalar[] = {"steps.x=1"};
    expect_error_sets("steps: 10\n", into_scalar, 1, "--set steps.x=1: steps is not a mapping");
    const char *index_on_map[] = {"data[0].flip=true"};
    expect_error_sets("steps: 10\ndata: {}\n", index_on_map, 1, "--set data[0].flip=true: data is a mapping, not a list");
    const char *bad_path[] = {"head..s=1"};
    expect_error_sets("steps: 10\n", bad_path, 1, "--set head..s=1: malformed key path (write a.b[0].c or a.b.0.c)");
    const char *extends[] = {"extends=base.yaml"};
    expect_error_sets("steps: 10\n", extends, 1, "--set extends=base.yaml: extends can only be given in a recipe file");
    const char *wrong_when[] = {"optimizer.eps=1e-6"};
    expect_error_sets("steps: 10\n", wrong_when, 1,
                      "--set optimizer.eps=1e-6: optimizer.eps: only used when optimizer.type is adamw (it is sgd)");
}

static void test_extends_deep_merge(void **state)
{
    (void)state;
    /* base/root.yaml <- base/mid.yaml <- exp/run.yaml; each extends relative to its own folder. */
    write_file("base/root.yaml", "steps: 100\n"
                                 "batch_size: 64\n"
                                 "data:\n"
                                 "  source: folder\n"
                                 "  path: faces\n"
                                 "  eval:\n"
                                 "    - {name: lfw, bin: lfw.bin}\n"
                                 "    - {name: cfp, bin: cfp.bin}\n"
                                 "optimizer: {lr: 0.2, momentum: 0.8}\n"
                                 "schedule: {type: step, milestones: [10, 20, 30]}\n");
    write_file("base/mid.yaml", "extends: root.yaml\n"
                                "optimizer: {momentum: 0.85}\n"
                                "model: {embedding_size: 256}\n");
    write_file("exp/run.yaml", "extends: ../base/mid.yaml\n"
                               "name: run\n"
                               "data:\n"
                               "  flip: false\n"
                               "  eval:\n"
                               "    - {name: agedb, synth: synth-agedb}\n"
                               "schedule: {milestones: [50]}\n");
    fkd_recipe r;
    load_ok(&r, "exp/run.yaml", NULL, 0);
    assert_string_equal(r.name, "run");
    assert_int_equal(r.steps, 100);                  /* from root */
    assert_int_equal(r.batch_size, 64);
    assert_int_equal(r.data.source, FKD_SOURCE_FOLDER);
    assert_abs_path(r.data.path, "base/faces");      /* relative to root.yaml's folder */
    assert_false(r.data.flip);                       /* map merged key by key */
    assert_int_equal(r.data.n_eval, 1);              /* list replaced, not appended */
    assert_string_equal(r.data.eval[0].name, "agedb");
    assert_true(r.optim.lr == 0.2 && r.optim.momentum == 0.85); /* mid overrides one key */
    assert_int_equal(r.model.embedding_size, 256);
    assert_int_equal(r.schedule.kind, FKD_RECIPE_SCHEDULE_STEP);
    assert_int_equal(r.schedule.n_milestones, 1);
    assert_int_equal(r.schedule.milestones[0], 50);
    fkd_recipe_free(&r);

    /* Messages point into the file that holds the value. */
    write_file("base/bad.yaml", "steps: 10\noptimizer: {lr: fast}\n");
    write_file("exp/child.yaml", "extends: ../base/bad.yaml\n");
    assert_int_equal(fkd_recipe_load(&r, "exp/child.yaml", NULL, 0), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "exp/../base/bad.yaml:2:17: optimizer.lr: expected a number, got \"fast\"");

    write_file("exp/lost.yaml", "steps: 1\nextends: nope/base.yaml\n");
    assert_int_equal(fkd_recipe_load(&r, "exp/lost.yaml", NULL, 0), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(),
                        "exp/lost.yaml:2:10: extends: cannot open exp/nope/base.yaml: No such file or directory");
    write_file("exp/num.yaml", "extends: [a.yaml]\n");
    assert_int_equal(fkd_recipe_load(&r, "exp/num.yaml", NULL, 0), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "exp/num.yaml:1:10: extends: expected a string, got a list");
}

static void test_extends_cycles(void **state)
{
    (void)state;
    write_file("a.yaml", "extends: b.yaml\nsteps: 1\n");
    write_file("b.yaml", "extends: sub/c.yaml\n");
    write_file("sub/c.yaml", "extends: ../a.yaml\n");
    fkd_recipe r;
    assert_int_equal(fkd_recipe_load(&r, "a.yaml", NULL, 0), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "sub/c.yaml:1:10: extends: cycle: a.yaml -> b.yaml -> sub/c.yaml -> sub/../a.yaml");
    write_file("self.yaml", "extends: self.yaml\n");
    assert_int_equal(fkd_recipe_load(&r, "self.yaml", NULL, 0), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "self.yaml:1:10: extends: cycle: self.yaml -> self.yaml");
    /* A diamond is not a cycle: two files may extend the same base. */
    write_file("base.yaml", "steps: 5\n");
    write_file("left.yaml", "extends: base.yaml\nbatch_size: 8\n");
    write_file("top.yaml", "extends: left.yaml\nseed: 3\n");
    load_ok(&r, "top.yaml", NULL, 0);
    assert_int_equal(r.steps, 5);
    assert_int_equal(r.batch_size, 8);
    assert_int_equal(r.seed, 3);
    fkd_recipe_free(&r);
}

/* Emit, write elsewhere, load again, emit again: the texts and the recipes must agree. */
static void round_trip(const char *path, const char *const *sets, size_t n_sets)
{
    fkd_recipe a, b;
    load_ok(&a, path, sets, n_sets);
    char *yaml_a, *yaml_b;
    assert_int_equal(fkd_recipe_emit(&a, &yaml_a), FKD_OK);
    assert_int_equal(fkd_mkdir_p("run/saved"), FKD_OK);
    assert_int_equal(fkd_recipe_save(&a, "run/saved/recipe.yaml"), FKD_OK);
    load_ok(&b, "run/saved/recipe.yaml", NULL, 0);
    assert_int_equal(fkd_recipe_emit(&b, &yaml_b), FKD_OK);
    assert_string_equal(yaml_a, yaml_b);
    assert_string_equal(a.name, b.name);
    assert_string_equal(a.output, b.output);
    assert_int_equal(a.n_distill, b.n_distill);
    assert_int_equal(a.data.n_eval, b.data.n_eval);
    assert_true(a.optim.lr == b.optim.lr && a.optim.weight_decay == b.optim.weight_decay);
    for (size_t i = 0; i < a.n_distill; i++) {
        assert_string_equal(a.distill[i].method, b.distill[i].method);
        assert_true((isnan(a.distill[i].weight) && isnan(b.distill[i].weight)) || a.distill[i].weight == b.distill[i].weight);
    }
    free(yaml_a);
    free(yaml_b);
    fkd_recipe_free(&a);
    fkd_recipe_free(&b);
}

static void test_resolved_round_trip(void **state)
{
    (void)state;
    write_file("ex/train.yaml", fkd_recipe_example_train);
    write_file("ex/distill.yaml", fkd_recipe_example_distill);
    round_trip("ex/train.yaml", NULL, 0);
    round_trip("ex/distill.yaml", NULL, 0);
    /* Awkward values: strings that read as null, numbers or booleans; quoted parameters;
     * nested parameter maps; floats that need all 17 digits. */
    write_file("odd.yaml", "name: 'null'\n"
                           "steps: 7\n"
                           "optimizer: {type: adamw, lr: 0.1234567890123456789, eps: 1e-300}\n"
                           "teacher: {model: 'dir with space/t #1.onnx', arch: iresnet50}\n"
                           "data: {eval: [{name: '123', synth: synth-lfw}, {name: 'true', synth: synth-cplfw}]}\n"
                           "distill:\n"
                           "  - method: ekd\n"
                           "    fars: [0.1, 1.0e-6]\n"
                           "    mining: \"semi-hard\"\n"
                           "    label: \"42\"\n"
                           "    nested: {a: [1, {b: x}], c: ''}\n");
    round_trip("odd.yaml", NULL, 0);
    const char *sets[] = {"distill[0].weight=0.3", "head.s=30.5", "schedule.type=cosine"};
    round_trip("odd.yaml", sets, 3);

    /* The quoted "42" stays a string after the round trip. */
    fkd_recipe r;
    load_ok(&r, "run/saved/recipe.yaml", NULL, 0);
    int64_t v;
    assert_int_equal(fkd_recipe_param_int(&r.distill[0], "label", 0, 0, 100, &v), FKD_ERR_FORMAT);
    /* The message names the line of `label:` in the saved file (found here, so adding a
     * recipe key elsewhere does not move the expectation) and its column. */
    int label_line = 0;
    char text[256], expected[160];
    FILE *saved = fopen("run/saved/recipe.yaml", "r");
    assert_non_null(saved);
    for (int line = 1; !label_line && fgets(text, sizeof text, saved); line++)
        if (strstr(text, "label:")) label_line = line;
    fclose(saved);
    snprintf(expected, sizeof expected, "run/saved/recipe.yaml:%d:10: distill[0].label: expected an integer, got \"42\"",
             label_line);
    assert_string_equal(fkd_last_error(), expected);
    assert_string_equal(r.name, "null");
    assert_true(r.optim.lr == 0.1234567890123456789 && r.optim.eps == 1e-300);
    fkd_recipe_free(&r);
}

static void test_method_params(void **state)
{
    (void)state;
    write_file("m.yaml", "steps: 10\n"
                         "teacher: {model: t.safetensors}\n"
                         "distill:\n"
                         "  - method: kd\n"
                         "    T: four\n"
                         "  - method: rkd\n"
                         "    distance_weight: 30\n"
                         "    angle_wieght: 50\n"
                         "  - method: ekd\n"
                         "    weight: 2\n"
                         "    fars: [1e-2, 1e-3]\n"
                         "    hard_negatives: 100\n"
                         "    mining: hard\n"
                         "    flip: true\n"
                         "  - method: shrinkteanet\n"
                         "    taps: [stage3, stage4, embedding]\n"
                         "    bad_taps: [stage3, [x]]\n");
    fkd_recipe r;
    load_ok(&r, "m.yaml", NULL, 0);
    assert_int_equal(r.n_distill, 4);
    const char **taps;
    size_t n_taps;
    static const char *const default_taps[] = {"embedding"};
    assert_int_equal(fkd_recipe_param_strings(&r.distill[3], "taps", default_taps, 1, &taps, &n_taps), FKD_OK);
    assert_int_equal(n_taps, 3);
    assert_string_equal(taps[0], "stage3");
    assert_string_equal(taps[2], "embedding");
    free(taps);
    assert_int_equal(fkd_recipe_param_strings(&r.distill[3], "bad_taps", NULL, 0, &taps, &n_taps), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "m.yaml:17:24: distill[3].bad_taps[1]: expected a string, got a list");
    assert_int_equal(fkd_recipe_param_strings(&r.distill[2], "taps", default_taps, 1, &taps, &n_taps), FKD_OK);
    assert_int_equal(n_taps, 1);
    assert_string_equal(taps[0], "embedding");
    free(taps);
    double t;
    assert_int_equal(fkd_recipe_param_float(&r.distill[0], "T", 4, 0.01, 100, &t), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "m.yaml:5:8: distill[0].T: expected a number, got \"four\"");

    double dw, aw;
    assert_int_equal(fkd_recipe_param_float(&r.distill[1], "distance_weight", 25, 0, 1e6, &dw), FKD_OK);
    assert_int_equal(fkd_recipe_param_float(&r.distill[1], "angle_weight", 50, 0, 1e6, &aw), FKD_OK);
    assert_true(dw == 30 && aw == 50);
    assert_int_equal(fkd_recipe_params_done(&r.distill[1]), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "m.yaml:8:5: distill[1].angle_wieght: unknown parameter of method rkd");

    const fkd_recipe_method *ekd = &r.distill[2];
    assert_true(fkd_recipe_method_weight(ekd, 1.0) == 2.0);
    static const double default_fars[] = {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};
    double *fars;
    size_t n_fars;
    assert_int_equal(fkd_recipe_param_floats(ekd, "fars", default_fars, 6, 0, 1, &fars, &n_fars), FKD_OK);
    assert_int_equal(n_fars, 2);
    assert_true(fars[0] == 1e-2 && fars[1] == 1e-3);
    free(fars);
    int64_t hn;
    assert_int_equal(fkd_recipe_param_int(ekd, "hard_negatives", 2000, 1, 1000000, &hn), FKD_OK);
    assert_int_equal(hn, 100);
    double momentum;
    assert_int_equal(fkd_recipe_param_float(ekd, "momentum", 0.99, 0, 1, &momentum), FKD_OK);
    assert_true(momentum == 0.99); /* absent: the default */
    static const char *const minings[] = {"hard", "semi-hard", "all", NULL};
    const char *mining;
    assert_int_equal(fkd_recipe_param_string(ekd, "mining", "all", minings, &mining), FKD_OK);
    assert_string_equal(mining, "hard");
    assert_int_equal(fkd_recipe_params_done(ekd), FKD_ERR_FORMAT); /* flip not read yet */
    assert_string_equal(fkd_last_error(), "m.yaml:14:5: distill[2].flip: unknown parameter of method ekd");
    bool flip;
    assert_int_equal(fkd_recipe_param_bool(ekd, "flip", false, &flip), FKD_OK);
    assert_true(flip);
    assert_int_equal(fkd_recipe_params_done(ekd), FKD_OK);
    /* Absent list parameters give a copy of the default. */
    assert_int_equal(fkd_recipe_param_floats(&r.distill[1], "fars", default_fars, 6, 0, 1, &fars, &n_fars), FKD_OK);
    assert_int_equal(n_fars, 6);
    assert_true(fars[5] == 1e-6);
    free(fars);
    assert_int_equal(fkd_recipe_param_int(ekd, "hard_negatives", 2000, 1000, 5000, &hn), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "m.yaml:12:21: distill[2].hard_negatives: must be between 1000 and 5000, got 100");
    assert_int_equal(fkd_recipe_param_string(ekd, "mining", NULL, (const char *const[]){"all", NULL}, &mining),
                     FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "m.yaml:13:13: distill[2].mining: expected one of all; got \"hard\"");
    fkd_recipe_free(&r);

    /* Parameter errors in --set values are named by the assignment. */
    const char *sets[] = {"distill.0.T=hot"};
    load_ok(&r, "m.yaml", sets, 1);
    assert_int_equal(fkd_recipe_param_float(&r.distill[0], "T", 4, 0.01, 100, &t), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "--set distill.0.T=hot: distill[0].T: expected a number, got \"hot\"");
    fkd_recipe_free(&r);
}

/* Random byte edits of the example distillation recipe: every load either succeeds or
 * fails with a message that starts with the file name (a place), never crashes. */
static void test_mutated_recipes_never_crash(void **state)
{
    (void)state;
    static const char alphabet[] = " \t\n:-[]{},&*!#\"'|>?%@`0123456789abxyz.";
    const size_t n_base = strlen(fkd_recipe_example_distill);
    char *text = malloc(n_base + 64);
    assert_non_null(text);
    fkd_rng rng;
    fkd_rng_seed(&rng, 7, 0);
    int loaded = 0, rejected = 0;
    for (int trial = 0; trial < 400; trial++) {
        size_t n = n_base;
        memcpy(text, fkd_recipe_example_distill, n);
        int edits = 1 + (int)fkd_rng_below(&rng, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)fkd_rng_below(&rng, n);
            char c = alphabet[fkd_rng_below(&rng, sizeof alphabet - 1)];
            if (fkd_rng_below(&rng, 2) == 0) {
                text[at] = c; /* replace */
            } else if (n < n_base + 60) {
                memmove(text + at + 1, text + at, n - at); /* insert */
                text[at] = c;
                n++;
            }
        }
        text[n] = '\0';
        write_file("f.yaml", text);
        fkd_recipe r;
        if (fkd_recipe_load(&r, "f.yaml", NULL, 0) == FKD_OK) {
            loaded++;
            fkd_recipe_free(&r);
        } else {
            rejected++;
            if (strncmp(fkd_last_error(), "f.yaml", 6) != 0) fail_msg("message without a place: %s", fkd_last_error());
        }
    }
    free(text);
    /* Both outcomes occur: many edits land in comments or values that stay valid. */
    assert_true(loaded > 0 && rejected > 0);
}

/* model.direct_conv, model.keep_activations and teacher.direct_conv reach the graphs the
 * trainer and the distiller build (each key only its own graph). */
static void test_direct_conv_reaches_the_graphs(void **state)
{
    (void)state;
    write_file("r.yaml", "steps: 1\nseed: 7\nmodel: {sync_bn: true}\n");
    fkd_recipe r;
    load_ok(&r, "r.yaml", NULL, 0);
    fkd_graph_config m = fkd_trainer_graph_config(&r, 16), t = fkd_distill_teacher_graph_config(&r, 8);
    assert_false(m.direct_conv || t.direct_conv || m.keep_activations);
    assert_int_equal(m.mode, FKD_GRAPH_TRAIN);
    assert_int_equal(m.batch, 16);
    assert_int_equal(m.precision, FKD_PREC_F32);
    assert_true(m.sync_bn);
    assert_int_equal(m.seed, 7);
    assert_int_equal(t.mode, FKD_GRAPH_INFER);
    assert_int_equal(t.batch, 8);
    fkd_recipe_free(&r);
    const char *model_only[] = {"model.direct_conv=true"}, *teacher_only[] = {"teacher.direct_conv=true"};
    load_ok(&r, "r.yaml", model_only, 1);
    assert_true(fkd_trainer_graph_config(&r, 16).direct_conv);
    assert_false(fkd_distill_teacher_graph_config(&r, 8).direct_conv);
    fkd_recipe_free(&r);
    load_ok(&r, "r.yaml", teacher_only, 1);
    assert_false(fkd_trainer_graph_config(&r, 16).direct_conv);
    assert_true(fkd_distill_teacher_graph_config(&r, 8).direct_conv);
    fkd_recipe_free(&r);
    const char *keep[] = {"model.keep_activations=true"};
    load_ok(&r, "r.yaml", keep, 1);
    assert_true(fkd_trainer_graph_config(&r, 16).keep_activations);
    fkd_recipe_free(&r);
}

static void test_docs_match_schema(void **state)
{
    (void)state;
    char *md;
    assert_int_equal(fkd_recipe_doc(&md), FKD_OK);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/docs/RECIPES.md", repo_dir);
    uint8_t *committed;
    size_t size;
    assert_int_equal(fkd_file_read_all(path, &committed, &size), FKD_OK);
    /* Regenerate with: build/facekd recipe --doc > docs/RECIPES.md */
    assert_string_equal((const char *)committed, md);
    assert_non_null(strstr(md, "| `optimizer.betas` | list of 2 numbers | `[0.9, 0.999]` | 0 … 1 |"));
    assert_non_null(strstr(md, "| `distill[].method` | string | required |"));
    free(committed);
    free(md);
}

int main(void)
{
    if (!getcwd(repo_dir, sizeof repo_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_applied, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_values_and_relative_paths, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_syntax_errors, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_schema_errors, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_cross_key_errors, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_set_overrides, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_extends_deep_merge, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_extends_cycles, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_resolved_round_trip, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_method_params, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_mutated_recipes_never_crash, enter_tmp, leave_tmp),
        cmocka_unit_test_setup_teardown(test_direct_conv_reaches_the_graphs, enter_tmp, leave_tmp),
        cmocka_unit_test(test_docs_match_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
