/* io/npy: reading numpy's own files (scripts/gen_optim_fixtures.py wrote them with numpy
 * 1.24), byte-identical writing, and clear errors on every malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/npy.h"

#define FIX "tests/fixtures/npy/"

static char tmpdir[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fkd_test_npy_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmp(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* The fixtures hold arange(24) * 0.25 - 3 in shape (2, 3, 4) (exact in float32). */
static double fixture_value(int64_t i) { return (double)i * 0.25 - 3.0; }

static void assert_shape_234(const fkd_npy_info *info)
{
    assert_int_equal(info->ndims, 3);
    assert_int_equal(info->dims[0], 2);
    assert_int_equal(info->dims[1], 3);
    assert_int_equal(info->dims[2], 4);
    assert_int_equal(info->numel, 24);
}

static void test_reads_float_files_in_every_version(void **state)
{
    (void)state;
    const char *files[] = {FIX "f4_2x3x4.npy", FIX "f4_2x3x4_v2.npy", FIX "f4_2x3x4_v3.npy",
                           FIX "f8_2x3x4.npy"};
    const int major[] = {1, 2, 3, 1};
    for (int f = 0; f < 4; f++) {
        fkd_npy_array a;
        assert_int_equal(fkd_npy_read(files[f], FKD_NPY_F32, &a), FKD_OK);
        assert_int_equal(a.info.version_major, major[f]);
        assert_int_equal(a.info.dtype, f == 3 ? FKD_NPY_F64 : FKD_NPY_F32);
        assert_int_equal(a.dtype, FKD_NPY_F32);
        assert_shape_234(&a.info);
        /* Every value is exactly representable: compare exactly. */
        for (int i = 0; i < 24; i++) assert_true(((float *)a.data)[i] == (float)fixture_value(i));
        fkd_npy_free(&a);
        assert_null(a.data);

        assert_int_equal(fkd_npy_read(files[f], FKD_NPY_F64, &a), FKD_OK);
        for (int i = 0; i < 24; i++) assert_true(((double *)a.data)[i] == fixture_value(i));
        fkd_npy_free(&a);
    }
}

static void test_reads_scalar_empty_and_1d(void **state)
{
    (void)state;
    fkd_npy_array a;
    assert_int_equal(fkd_npy_read(FIX "f4_scalar.npy", FKD_NPY_F32, &a), FKD_OK);
    assert_int_equal(a.info.ndims, 0);
    assert_int_equal(a.info.numel, 1);
    assert_true(((float *)a.data)[0] == 2.5f);
    fkd_npy_free(&a);

    assert_int_equal(fkd_npy_read(FIX "f4_empty_0x3.npy", FKD_NPY_F32, &a), FKD_OK);
    assert_int_equal(a.info.ndims, 2);
    assert_int_equal(a.info.dims[0], 0);
    assert_int_equal(a.info.dims[1], 3);
    assert_int_equal(a.info.numel, 0);
    assert_non_null(a.data);
    fkd_npy_free(&a);

    fkd_npy_info info;
    assert_int_equal(fkd_npy_read_info(FIX "f4_6.npy", &info), FKD_OK);
    assert_int_equal(info.ndims, 1);
    assert_int_equal(info.dims[0], 6);
    assert_int_equal(info.data_offset % 64, 0);
}

static void test_reads_integer_labels(void **state)
{
    (void)state;
    const int64_t want[] = {0, 7, -1, (int64_t)1 << 40, 3};
    fkd_npy_array a;
    assert_int_equal(fkd_npy_read(FIX "i8_labels.npy", FKD_NPY_I64, &a), FKD_OK);
    assert_int_equal(a.info.numel, 5);
    assert_memory_equal(a.data, want, sizeof want);
    fkd_npy_free(&a);

    const int64_t want32[] = {0, 7, -1, (int64_t)1 << 30, 3};
    assert_int_equal(fkd_npy_read(FIX "i4_labels.npy", FKD_NPY_I64, &a), FKD_OK);
    assert_int_equal(a.info.dtype, FKD_NPY_I32);
    assert_memory_equal(a.data, want32, sizeof want32);
    fkd_npy_free(&a);
}

/* Writes `data` and compares the bytes with the file numpy wrote for the same array. */
static void assert_writes_like_numpy(const char *fixture, fkd_npy_dtype dtype, const void *data,
                                     int ndims, const int64_t *dims)
{
    char path[128];
    tmp_path(path, sizeof path, "out.npy");
    assert_int_equal(fkd_npy_write(path, dtype, data, ndims, dims), FKD_OK);
    uint8_t *mine, *theirs;
    size_t n_mine, n_theirs;
    assert_int_equal(fkd_file_read_all(path, &mine, &n_mine), FKD_OK);
    assert_int_equal(fkd_file_read_all(fixture, &theirs, &n_theirs), FKD_OK);
    assert_int_equal(n_mine, n_theirs);
    assert_memory_equal(mine, theirs, n_mine);
    free(mine);
    free(theirs);
}

static void test_writes_the_bytes_numpy_writes(void **state)
{
    (void)state;
    float f[24];
    for (int i = 0; i < 24; i++) f[i] = (float)fixture_value(i);
    assert_writes_like_numpy(FIX "f4_2x3x4.npy", FKD_NPY_F32, f, 3, (const int64_t[]){2, 3, 4});
    assert_writes_like_numpy(FIX "f4_6.npy", FKD_NPY_F32, f, 1, (const int64_t[]){6});
    float scalar = 2.5f;
    assert_writes_like_numpy(FIX "f4_scalar.npy", FKD_NPY_F32, &scalar, 0, NULL);
    assert_writes_like_numpy(FIX "f4_empty_0x3.npy", FKD_NPY_F32, f, 2, (const int64_t[]){0, 3});
    const int64_t labels[] = {0, 7, -1, (int64_t)1 << 40, 3};
    assert_writes_like_numpy(FIX "i8_labels.npy", FKD_NPY_I64, labels, 1, (const int64_t[]){5});
}

static void test_write_read_round_trip(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "rt.npy");
    float x[7 * 5 * 3 * 2];
    for (int i = 0; i < 210; i++) x[i] = (float)i / 7.0f - 11.0f;
    const int64_t dims[4] = {7, 5, 3, 2};
    assert_int_equal(fkd_npy_write(path, FKD_NPY_F32, x, 4, dims), FKD_OK);
    fkd_npy_array a;
    assert_int_equal(fkd_npy_read(path, FKD_NPY_F32, &a), FKD_OK);
    assert_int_equal(a.info.ndims, 4);
    assert_memory_equal(a.info.dims, dims, sizeof dims);
    assert_memory_equal(a.data, x, sizeof x);
    fkd_npy_free(&a);
    /* No temporary file left next to the output. */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
}

/* Expects `status` from reading `path` as `want`, and a message with the path and `needle`. */
static void assert_read_fails(const char *path, fkd_npy_dtype want, fkd_status status,
                              const char *needle)
{
    fkd_npy_array a;
    fkd_status s = fkd_npy_read(path, want, &a);
    if (s != status || !strstr(fkd_last_error(), path) || !strstr(fkd_last_error(), needle))
        fail_msg("%s: status %d, message \"%s\" (wanted %d with \"%s\")", path, s, fkd_last_error(),
                 status, needle);
    assert_null(a.data);
}

static void test_refuses_unsupported_arrays(void **state)
{
    (void)state;
    assert_read_fails(FIX "bad_fortran.npy", FKD_NPY_F32, FKD_ERR_UNSUPPORTED, "Fortran order");
    assert_read_fails(FIX "bad_bigendian.npy", FKD_NPY_F32, FKD_ERR_UNSUPPORTED, "'>f4'");
    assert_read_fails(FIX "bad_f2.npy", FKD_NPY_F32, FKD_ERR_UNSUPPORTED, "'<f2'");
    assert_read_fails(FIX "bad_u1.npy", FKD_NPY_I64, FKD_ERR_UNSUPPORTED, "'|u1'");
    assert_read_fails(FIX "f4_6.npy", FKD_NPY_I64, FKD_ERR_UNSUPPORTED, "'<f4' cannot load as <i8");
    assert_read_fails(FIX "i8_labels.npy", FKD_NPY_F32, FKD_ERR_UNSUPPORTED,
                      "'<i8' cannot load as <f4");
    assert_read_fails(FIX "does_not_exist.npy", FKD_NPY_F32, FKD_ERR_IO, "cannot open");
}

/* A version 1.0 file with header text `dict` (padding and newline added) and `data_bytes`
 * bytes of data. */
static void write_v1(const char *path, const char *dict, size_t data_bytes)
{
    uint8_t buf[512] = "\x93NUMPY\x01\x00";
    size_t dl = strlen(dict), hlen = dl + 1;
    buf[8] = (uint8_t)hlen;
    buf[9] = 0;
    memcpy(buf + 10, dict, dl);
    buf[10 + dl] = '\n';
    memset(buf + 11 + dl, 0, data_bytes);
    assert_int_equal(fkd_atomic_write(path, buf, 11 + dl + data_bytes), FKD_OK);
}

static void test_malformed_files_name_file_and_problem(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "bad.npy");
    const char *ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    static const struct {
        const char *dict;
        size_t data;
        fkd_status status;
        const char *needle;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, FKD_ERR_FORMAT,
         "truncated .npy data"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, FKD_ERR_FORMAT,
         "4 trailing bytes"},
        {"{'descr': '<f4', 'fortran_order': False, }", 0, FKD_ERR_FORMAT, "lacks key 'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", 8, FKD_ERR_FORMAT,
         "unknown key 'extra'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
         FKD_ERR_FORMAT, "repeats key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8, FKD_ERR_FORMAT,
         "a tuple such as (3,)"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", 8, FKD_ERR_FORMAT,
         "header garbage at byte"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8, FKD_ERR_FORMAT, "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8, FKD_ERR_FORMAT,
         "final newline"},
        {"['descr', '<f4']", 8, FKD_ERR_FORMAT, "'{' opening the header dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, "
         "99999999999)}",
         8, FKD_ERR_FORMAT, "overflows"},
        {"{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}", 8, FKD_ERR_FORMAT,
         "header garbage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_v1(path, cases[i].dict, cases[i].data);
        assert_read_fails(path, FKD_NPY_F32, cases[i].status, cases[i].needle);
    }

    /* Preamble damage: bad magic, unknown version, cut inside the preamble and the header. */
    write_v1(path, ok, 24);
    uint8_t *good;
    size_t n;
    assert_int_equal(fkd_file_read_all(path, &good, &n), FKD_OK);
    uint8_t bad[256];
    memcpy(bad, good, n);
    bad[1] = 'X';
    assert_int_equal(fkd_atomic_write(path, bad, n), FKD_OK);
    assert_read_fails(path, FKD_NPY_F32, FKD_ERR_FORMAT, "bad magic");
    memcpy(bad, good, n);
    bad[6] = 4;
    assert_int_equal(fkd_atomic_write(path, bad, n), FKD_OK);
    assert_read_fails(path, FKD_NPY_F32, FKD_ERR_UNSUPPORTED, "version 4.0");
    assert_int_equal(fkd_atomic_write(path, good, 7), FKD_OK);
    assert_read_fails(path, FKD_NPY_F32, FKD_ERR_FORMAT, "truncated .npy preamble");
    assert_int_equal(fkd_atomic_write(path, good, 40), FKD_OK);
    assert_read_fails(path, FKD_NPY_F32, FKD_ERR_FORMAT, "truncated .npy header");
    assert_int_equal(fkd_atomic_write(path, good, 0), FKD_OK);
    assert_read_fails(path, FKD_NPY_F32, FKD_ERR_FORMAT, "empty file");
    free(good);
}

static void test_parse_header_from_memory(void **state)
{
    (void)state;
    /* Keys in another order, double quotes, Python 2 "L" suffixes, no trailing comma. */
    const char text[] =
        "\x93NUMPY\x01\x00\x41\x00"
        "{\"shape\": (3L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}     \n";
    fkd_npy_info info;
    assert_int_equal(fkd_npy_parse_header("mem", (const uint8_t *)text, sizeof text - 1, &info),
                     FKD_OK);
    assert_int_equal(info.dtype, FKD_NPY_F64);
    assert_int_equal(info.ndims, 2);
    assert_int_equal(info.dims[0], 3);
    assert_int_equal(info.dims[1], 2);
    assert_int_equal(info.data_offset, sizeof text - 1);
    /* The same bytes cut short of the header. */
    assert_int_equal(fkd_npy_parse_header("mem", (const uint8_t *)text, 30, &info), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "mem: truncated .npy header: 20 of 65 bytes"));
}

/* Every single-byte change and every truncation of a real header either parses or fails
 * with a message naming the input; the sanitizer build checks no read goes astray. */
static void test_mutated_headers_never_crash(void **state)
{
    (void)state;
    uint8_t *good;
    size_t n;
    assert_int_equal(fkd_file_read_all(FIX "f4_2x3x4.npy", &good, &n), FKD_OK);
    const size_t header = 128;
    assert_true(n > header);
    static const uint8_t values[] = {0,   ' ', '(', ')', ',', '\'', '"',
                                     ':', '{', '}', '9', 'L', '\n', 0xff};
    uint8_t *buf = malloc(header);
    assert_non_null(buf);
    int parsed = 0, failed = 0;
    for (size_t pos = 0; pos < header; pos++) {
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(buf, good, header);
            buf[pos] = values[v];
            fkd_npy_info info;
            fkd_status s = fkd_npy_parse_header("mem", buf, header, &info);
            if (s == FKD_OK) {
                parsed++;
                assert_true(info.data_offset <= header);
            } else {
                failed++;
                assert_true(s < 0);
                assert_true(strncmp(fkd_last_error(), "mem: ", 5) == 0);
            }
        }
    }
    for (size_t len = 0; len < header; len++) {
        fkd_npy_info info;
        memcpy(buf, good, len);
        assert_int_equal(fkd_npy_parse_header("mem", buf, len, &info), FKD_ERR_FORMAT);
    }
    /* Padding spaces can become many things harmlessly; most other bytes cannot. */
    assert_true(parsed > 0 && failed > parsed);
    free(buf);
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_float_files_in_every_version),
        cmocka_unit_test(test_reads_scalar_empty_and_1d),
        cmocka_unit_test(test_reads_integer_labels),
        cmocka_unit_test(test_writes_the_bytes_numpy_writes),
        cmocka_unit_test(test_write_read_round_trip),
        cmocka_unit_test(test_refuses_unsupported_arrays),
        cmocka_unit_test(test_malformed_files_name_file_and_problem),
        cmocka_unit_test(test_parse_header_from_memory),
        cmocka_unit_test(test_mutated_headers_never_crash),
    };
    return cmocka_run_group_tests(tests, setup_tmp, remove_tmp);
}
