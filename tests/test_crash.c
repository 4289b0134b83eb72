/* Crash safety of training runs.
 *
 * `facekd train` (BUILD/facekd, BUILD from the environment as scripts/run_tests.sh sets
 * it, else "build") runs a tiny synthetic recipe in a child process that the test kills
 * with SIGKILL at several points, interrupts with SIGINT and SIGTERM, starts with an
 * unwritable run folder and runs against a file-size limit (a full disk). NaN handling is
 * tested in-process through a trainer hook that injects a non-finite loss or gradient.
 *
 * The recipe: mbf at width 8 with 32-d embeddings, 10 synthetic identities x 10 images,
 * batch 8, a checkpoint every 2 steps, one log row per step, no evaluation. A step takes
 * about 0.1 s on one thread, so each run is a second or two. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/recipe.h"
#include "io/safetensors.h"
#include "tests/support/tmpdir.h"
#include "train/trainer.h"

#define PATH_CAP 512
/* Generous: a step takes ~0.1 s, ten times that under the sanitizers on a busy machine. */
#define WAIT_SECONDS 120

typedef struct {
    char dir[PATH_CAP];    /* scratch directory */
    char recipe[PATH_CAP]; /* dir/tiny.yaml */
    char run[PATH_CAP];    /* dir/run: the run folder */
    char out[PATH_CAP];    /* dir/out.txt: the child's stdout and stderr */
    char cache[PATH_CAP];  /* dir/cache: FACEKD_CACHE */
} fixture;

static void fixture_init(fixture *f)
{
    assert_int_equal(fkd_test_tmpdir_make(f->dir, sizeof f->dir, "crash"), 0);
    fkd_test_tmpdir_path(f->recipe, sizeof f->recipe, f->dir, "tiny.yaml");
    fkd_test_tmpdir_path(f->run, sizeof f->run, f->dir, "run");
    fkd_test_tmpdir_path(f->out, sizeof f->out, f->dir, "out.txt");
    fkd_test_tmpdir_path(f->cache, sizeof f->cache, f->dir, "cache");
}

/* The recipe, with f->run as its output and `extra` (YAML lines) appended. */
static void write_recipe(const fixture *f, int steps, const char *extra)
{
    FILE *fp = fopen(f->recipe, "w");
    assert_non_null(fp);
    fprintf(fp,
            "name: tiny\nseed: 5\nsteps: %d\nbatch_size: 8\ncheckpoint_every: 2\neval_every: 0\nlog_every: 1\n"
            "threads: 1\noutput: %s\n"
            "data:\n  source: synth\n  synth: {identities: 10, images_per_identity: 10}\n"
            "model: {arch: mbf, embedding_size: 32, width: 8}\n"
            "optimizer: {lr: 0.01}\n%s",
            steps, f->run, extra ? extra : "");
    assert_int_equal(fclose(fp), 0);
}

static void fixture_make(fixture *f, int steps, const char *extra)
{
    fixture_init(f);
    write_recipe(f, steps, extra);
}

static void fixture_free(fixture *f) { fkd_test_tmpdir_remove(f->dir); }

/* ---- the child process ---------------------------------------------------------------- */

typedef struct {
    bool resume;
    bool as_nobody;        /* when running as root: drop to uid/gid 65534 so permissions bind */
    long file_size_limit;  /* RLIMIT_FSIZE in bytes (0: none); writes past it fail with EFBIG */
} run_opts;

static pid_t spawn_train(const fixture *f, const run_opts *o)
{
    const char *build = getenv("BUILD");
    char bin[PATH_CAP];
    snprintf(bin, sizeof bin, "%s/facekd", build && *build ? build : "build");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) return pid;

    int fd = open(f->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    /* The test runner may have blocked or ignored signals: start the child clean. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    setenv("FACEKD_CACHE", f->cache, 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    if (o && o->file_size_limit) {
        signal(SIGXFSZ, SIG_IGN); /* ignored dispositions survive exec: writes fail with EFBIG */
        struct rlimit rl = {(rlim_t)o->file_size_limit, (rlim_t)o->file_size_limit};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
    }
    if (o && o->as_nobody && geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(126);
    }
    char *argv[] = {bin, "train", (char *)f->recipe, o && o->resume ? "--resume" : NULL, NULL};
    execv(bin, argv);
    _exit(127);
}

/* The exit code, or 128 + signal when the child was killed. */
static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) assert_int_equal(errno, EINTR);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_train(const fixture *f, const run_opts *o) { return wait_child(spawn_train(f, o)); }

static char *read_text(const char *path)
{
    uint8_t *data;
    size_t size;
    return fkd_file_read_all(path, &data, &size) == FKD_OK ? (char *)data : NULL;
}

/* The step of the last complete row of run/log.csv; 0 when there is none. */
static long last_logged_step(const fixture *f)
{
    char path[PATH_CAP];
    fkd_test_tmpdir_path(path, sizeof path, f->run, "log.csv");
    char *text = read_text(path);
    long step = 0;
    for (char *line = text ? strchr(text, '\n') : NULL; line && line[1]; line = strchr(line + 1, '\n'))
        if (strchr(line + 1, '\n')) step = strtol(line + 1, NULL, 10);
    free(text);
    return step;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool child_running(pid_t pid) { return waitpid(pid, NULL, WNOHANG) == 0; }

/* Waits until the child has logged `step`; fails the test if it ends first. */
static void wait_for_step(pid_t pid, const fixture *f, long step)
{
    for (int i = 0; i < WAIT_SECONDS * 200; i++) {
        if (last_logged_step(f) >= step) return;
        if (!child_running(pid)) fail_msg("facekd train ended before step %ld (see %s)", step, f->out);
        sleep_ms(5);
    }
    fail_msg("facekd train did not reach step %ld in %d s", step, WAIT_SECONDS);
}

/* Whether the run folder holds a temporary (".tmp.") whose name starts with `prefix`
 * ("" for any). */
static bool has_temporary(const fixture *f, const char *prefix)
{
    DIR *d = opendir(f->run);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp.");
    closedir(d);
    return found;
}

/* Waits for inotify (watching the run folder) to report the creation of the file
 * "<prefix><pid>"; false if the child ends first. An event cannot be missed, however
 * briefly the file exists. */
static bool wait_for_creation(int watch, pid_t pid, const char *prefix)
{
    char want[128];
    snprintf(want, sizeof want, "%s%ld", prefix, (long)pid);
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (int i = 0; i < WAIT_SECONDS * 10 && child_running(pid); i++) {
        struct pollfd p = {.fd = watch, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = read(watch, buf, sizeof buf);
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *e = (const struct inotify_event *)(buf + off);
            if (e->len && strcmp(e->name, want) == 0) return true;
            off += (ssize_t)(sizeof *e + e->len);
        }
    }
    return false;
}

/* The step recorded in run/<name>, or -1 when the file does not load. */
static long checkpoint_step(const fixture *f, const char *name)
{
    char path[PATH_CAP];
    fkd_test_tmpdir_path(path, sizeof path, f->run, name);
    fkd_safetensors st;
    if (fkd_safetensors_read(&st, path) != FKD_OK) return -1;
    const char *step = fkd_safetensors_meta(&st, "step");
    long v = step && st.count > 0 ? strtol(step, NULL, 10) : -1;
    fkd_safetensors_free(&st);
    return v;
}

/* The checkpoint after a kill: loads, sits on a checkpoint_every boundary, is no older
 * than `at_least` and no newer than what was logged. */
static long assert_checkpoint_good(const fixture *f, long at_least)
{
    long step = checkpoint_step(f, "checkpoint.safetensors");
    long logged = last_logged_step(f);
    if (step < at_least || step % 2 != 0 || step > logged)
        fail_msg("checkpoint step %ld (logged %ld, expected >= %ld and even)", step, logged, at_least);
    return step;
}

/* log.csv holds steps 1..n, each once, in order. */
static void assert_log_complete(const fixture *f, long n)
{
    char path[PATH_CAP];
    fkd_test_tmpdir_path(path, sizeof path, f->run, "log.csv");
    char *text = read_text(path);
    assert_non_null(text);
    long expect = 1;
    for (char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n'), expect++)
        assert_int_equal(strtol(line + 1, NULL, 10), expect);
    assert_int_equal(expect - 1, n);
    free(text);
}

static bool output_contains(const fixture *f, const char *needle)
{
    char *text = read_text(f->out);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

static void assert_output_has(const fixture *f, const char *needle)
{
    if (output_contains(f, needle)) return;
    char *text = read_text(f->out);
    fprintf(stderr, "output of facekd train:\n%s\n", text ? text : "(none)");
    free(text);
    fail_msg("the output does not contain \"%s\"", needle);
}

/* ---- SIGKILL and --resume -------------------------------------------------------------- */

static void test_sigkill_at_several_points_then_resume(void **state)
{
    (void)state;
    const long steps = 16;
    fixture f;
    fixture_make(&f, (int)steps, NULL);
    run_opts resume = {.resume = true};

    /* 1. Killed in the middle of a step, after the first checkpoints. */
    pid_t pid = spawn_train(&f, NULL);
    wait_for_step(pid, &f, 3);
    kill(pid, SIGKILL);
    assert_int_equal(wait_child(pid), 128 + SIGKILL);
    long good = assert_checkpoint_good(&f, 2);

    /* 2. Killed while a checkpoint is being written (this process's temporary exists):
     *    the previous checkpoint must still load. */
    int watch = inotify_init1(IN_CLOEXEC);
    assert_true(watch >= 0);
    assert_true(inotify_add_watch(watch, f.run, IN_CREATE) >= 0);
    pid = spawn_train(&f, &resume);
    bool seen = wait_for_creation(watch, pid, "checkpoint.safetensors.tmp.");
    close(watch);
    kill(pid, SIGKILL);
    assert_int_equal(wait_child(pid), 128 + SIGKILL);
    assert_true(seen);
    print_message("killed %s the checkpoint's rename\n", has_temporary(&f, "checkpoint.safetensors.tmp.") ? "before" : "after");
    good = assert_checkpoint_good(&f, good);

    /* 3. Killed again a few steps after resuming. */
    pid = spawn_train(&f, &resume);
    wait_for_step(pid, &f, good + 3);
    kill(pid, SIGKILL);
    assert_int_equal(wait_child(pid), 128 + SIGKILL);
    good = assert_checkpoint_good(&f, good + 2);

    /* 4. Resumed to the end: every step logged once, the final files there, no
     *    temporaries left by the killed runs. */
    assert_int_equal(run_train(&f, &resume), 0);
    assert_output_has(&f, "resuming tiny at step");
    assert_int_equal(checkpoint_step(&f, "checkpoint.safetensors"), steps);
    assert_int_equal(checkpoint_step(&f, "model.safetensors"), steps);
    assert_log_complete(&f, steps);
    assert_false(has_temporary(&f, ""));
    fixture_free(&f);
}

static void test_resume_without_checkpoint_fails_clearly(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 4, NULL);
    run_opts resume = {.resume = true};
    assert_int_equal(run_train(&f, &resume), 1);
    assert_output_has(&f, "--resume");
    assert_output_has(&f, "checkpoint.safetensors");
    fixture_free(&f);
}

/* fkd_atomic_cleanup_dir removes the temporaries of writers that are gone, and only those. */
static void test_cleanup_removes_only_dead_writers_temporaries(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    pid_t gone = fork();
    assert_true(gone >= 0);
    if (gone == 0) _exit(0);
    assert_int_equal(wait_child(gone), 0);
    char name[3][64], path[PATH_CAP];
    snprintf(name[0], sizeof name[0], "checkpoint.safetensors.tmp.%ld", (long)gone); /* dead writer */
    snprintf(name[1], sizeof name[1], "log.csv.tmp.%ld", (long)getpid());            /* live writer */
    snprintf(name[2], sizeof name[2], "notes.tmp.txt");                               /* not a temporary */
    for (int i = 0; i < 3; i++) {
        fkd_test_tmpdir_path(path, sizeof path, f.dir, name[i]);
        assert_int_equal(fkd_atomic_write(path, "x", 1), FKD_OK);
    }
    int removed = -1;
    assert_int_equal(fkd_atomic_cleanup_dir(f.dir, &removed), FKD_OK);
    assert_int_equal(removed, 1);
    for (int i = 0; i < 3; i++) {
        fkd_test_tmpdir_path(path, sizeof path, f.dir, name[i]);
        assert_int_equal(access(path, F_OK) == 0, i > 0);
    }
    fixture_free(&f);
}

/* ---- SIGINT / SIGTERM ------------------------------------------------------------------ */

static void stop_with(int sig, int expected_exit)
{
    const long steps = 8;
    fixture f;
    fixture_make(&f, (int)steps, NULL);
    pid_t pid = spawn_train(&f, NULL);
    wait_for_step(pid, &f, 3);
    kill(pid, sig);
    assert_int_equal(wait_child(pid), expected_exit);
    assert_output_has(&f, "--resume");
    /* The step under way was finished and checkpointed, whatever checkpoint_every says. */
    long stopped = last_logged_step(&f);
    assert_true(stopped >= 3 && stopped < steps);
    assert_int_equal(checkpoint_step(&f, "checkpoint.safetensors"), stopped);
    assert_false(has_temporary(&f, ""));

    run_opts resume = {.resume = true};
    assert_int_equal(run_train(&f, &resume), 0);
    assert_log_complete(&f, steps);
    assert_int_equal(checkpoint_step(&f, "model.safetensors"), steps);
    fixture_free(&f);
}

static void test_sigint_checkpoints_and_exits_130(void **state)
{
    (void)state;
    stop_with(SIGINT, 130);
}

static void test_sigterm_checkpoints_and_exits_143(void **state)
{
    (void)state;
    stop_with(SIGTERM, 143);
}

/* ---- unwritable output, full disk ------------------------------------------------------ */

/* The run folder's parent is a regular file: no user can create the folder. */
static void test_output_under_a_file_fails_before_training(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    char parent[PATH_CAP];
    fkd_test_tmpdir_path(parent, sizeof parent, f.dir, "a-file");
    assert_int_equal(fkd_atomic_write(parent, "x", 1), FKD_OK);
    fkd_test_tmpdir_path(f.run, sizeof f.run, parent, "run");
    write_recipe(&f, 4, NULL);
    assert_int_equal(run_train(&f, NULL), 1);
    assert_output_has(&f, "a-file/run: cannot create directory: Not a directory");
    assert_false(output_contains(&f, "tiny 1/"));
    fixture_free(&f);
}

/* A read-only folder as the run folder's parent (as root, the child runs as nobody so
 * that the permissions apply). */
static void test_read_only_output_fails_before_training(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    char ro[PATH_CAP], msg[PATH_CAP + 64];
    fkd_test_tmpdir_path(ro, sizeof ro, f.dir, "read-only");
    assert_int_equal(mkdir(ro, 0555), 0);
    assert_int_equal(chmod(ro, 0555), 0);
    assert_int_equal(chmod(f.dir, 0755), 0); /* nobody must reach the recipe */
    fkd_test_tmpdir_path(f.run, sizeof f.run, ro, "run");
    write_recipe(&f, 4, NULL);
    run_opts o = {.as_nobody = true};
    int rc = run_train(&f, &o);
    if (rc == 126 || rc == 127) {
        fixture_free(&f);
        skip(); /* cannot drop privileges or reach build/facekd as nobody here */
    }
    assert_int_equal(rc, 1);
    snprintf(msg, sizeof msg, "%s: cannot create directory: Permission denied", f.run);
    assert_output_has(&f, msg);
    assert_false(output_contains(&f, "tiny 1/"));
    fixture_free(&f);
}

/* A full disk, as a file-size limit: the starting checkpoint (step 0) cannot be written.
 * The run stops before training with the reason and leaves no partial checkpoint. A disk
 * filling up later fails the same atomic write the same way. */
static void test_full_disk_fails_before_training_without_partial_file(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 6, NULL);
    run_opts o = {.file_size_limit = 64 * 1024}; /* a checkpoint here is ~380 KB */
    assert_int_equal(run_train(&f, &o), 1);
    assert_output_has(&f, "checkpoint.safetensors");
    assert_output_has(&f, "File too large");
    assert_int_equal(checkpoint_step(&f, "checkpoint.safetensors"), -1);
    assert_false(has_temporary(&f, ""));
    assert_false(output_contains(&f, "tiny 1/"));
    fixture_free(&f);
}

/* ---- NaN / Inf (in-process, through a trainer hook) ------------------------------------ */

/* A distillation-like term that is 0 except on chosen calls (1-based), where it is NaN
 * (loss_nan) or makes the gradient w.r.t. the embedding Inf (grad_inf). */
typedef struct {
    int calls;
    int bad_from, bad_to; /* calls in [bad_from, bad_to] are bad */
    bool grad_inf;
} probe;

static fkd_status probe_step(void *ctx, fkd_trainer *t, const fkd_batch *batch, const float *embedding,
                             float *d_embedding, float *margins, bool *use_margins, double *terms)
{
    (void)t, (void)batch, (void)embedding, (void)margins, (void)use_margins;
    probe *p = ctx;
    p->calls++;
    bool bad = p->calls >= p->bad_from && p->calls <= p->bad_to;
    terms[0] = bad && !p->grad_inf ? NAN : 0.0;
    if (bad && p->grad_inf) d_embedding[0] = INFINITY;
    return FKD_OK;
}

static fkd_status train_in_process(const fixture *f, probe *p)
{
    fkd_recipe r;
    setenv("FACEKD_CACHE", f->cache, 1);
    assert_int_equal(fkd_recipe_load(&r, f->recipe, NULL, 0), FKD_OK);
    fkd_train_hook hook = {.ctx = p, .n_terms = 1, .names = {"probe"}, .step = probe_step};
    fkd_trainer *t = NULL;
    fkd_status s = fkd_trainer_create(&t, &r, false, &hook);
    if (s == FKD_OK) s = fkd_trainer_run(t);
    fkd_trainer_free(t);
    fkd_recipe_free(&r);
    return s;
}

static void test_nan_loss_stops_naming_term_and_step(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 8, NULL);
    probe p = {.bad_from = 5, .bad_to = 5};
    assert_int_equal(train_in_process(&f, &p), FKD_ERR_NUMERIC);
    char expect[PATH_CAP + 96];
    snprintf(expect, sizeof expect, "step 5: loss term 'probe' is nan; the last good checkpoint is %s/checkpoint.safetensors (step 4)",
             f.run);
    assert_string_equal(fkd_last_error(), expect);
    assert_int_equal(checkpoint_step(&f, "checkpoint.safetensors"), 4);
    assert_int_equal(checkpoint_step(&f, "model.safetensors"), -1);
    fixture_free(&f);
}

static void test_inf_gradient_stops_naming_parameter_and_step(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 8, NULL);
    probe p = {.bad_from = 1, .bad_to = 1, .grad_inf = true};
    assert_int_equal(train_in_process(&f, &p), FKD_ERR_NUMERIC);
    const char *msg = fkd_last_error();
    assert_non_null(strstr(msg, "step 1: gradient of '"));
    assert_non_null(strstr(msg, "is not finite"));
    /* A fresh run checkpoints its starting point. */
    assert_non_null(strstr(msg, "checkpoint.safetensors (step 0)"));
    assert_int_equal(checkpoint_step(&f, "checkpoint.safetensors"), 0);
    fixture_free(&f);
}

static void test_skip_nonfinite_skips_the_batch(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 8, "skip_nonfinite: true\n");
    probe p = {.bad_from = 3, .bad_to = 4};
    assert_int_equal(train_in_process(&f, &p), FKD_OK);
    assert_int_equal(checkpoint_step(&f, "model.safetensors"), 8);
    assert_log_complete(&f, 8);
    fixture_free(&f);
}

static void test_skip_nonfinite_gives_up_after_a_run_of_bad_batches(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 2 * FKD_TRAIN_MAX_SKIPS_IN_ROW, "skip_nonfinite: true\n");
    probe p = {.bad_from = 2, .bad_to = 1000};
    assert_int_equal(train_in_process(&f, &p), FKD_ERR_NUMERIC);
    char expect[64];
    snprintf(expect, sizeof expect, "(%d batches in a row skipped by skip_nonfinite)", FKD_TRAIN_MAX_SKIPS_IN_ROW + 1);
    assert_non_null(strstr(fkd_last_error(), expect));
    /* Skipped steps leave the weights as they were: the checkpoints stay usable. */
    assert_true(checkpoint_step(&f, "checkpoint.safetensors") >= 2);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_at_several_points_then_resume),
        cmocka_unit_test(test_resume_without_checkpoint_fails_clearly),
        cmocka_unit_test(test_cleanup_removes_only_dead_writers_temporaries),
        cmocka_unit_test(test_sigint_checkpoints_and_exits_130),
        cmocka_unit_test(test_sigterm_checkpoints_and_exits_143),
        cmocka_unit_test(test_output_under_a_file_fails_before_training),
        cmocka_unit_test(test_read_only_output_fails_before_training),
        cmocka_unit_test(test_full_disk_fails_before_training_without_partial_file),
        cmocka_unit_test(test_nan_loss_stops_naming_term_and_step),
        cmocka_unit_test(test_inf_gradient_stops_naming_parameter_and_step),
        cmocka_unit_test(test_skip_nonfinite_skips_the_batch),
        cmocka_unit_test(test_skip_nonfinite_gives_up_after_a_run_of_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
