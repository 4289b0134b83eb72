/* io/safetensors: the format alone — round trips, dtype conversion, and malformed files
 * (each must fail with a message naming the file and the place, never crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "io/safetensors.h"

/* A safetensors image in memory: 8-byte length, `header`, then `data`. */
static uint8_t *make_file(const char *header, const void *data, size_t data_len, size_t *size)
{
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    uint8_t *buf = malloc(*size + 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    if (data_len) memcpy(buf + 8 + h, data, data_len);
    return buf;
}

/* Parses header+data as "bad.safetensors"; expects failure with every `needle` in the
 * message. */
static void expect_bad(const char *header, size_t data_len, const char *needle1, const char *needle2)
{
    static const uint8_t zeros[64];
    size_t size;
    uint8_t *buf = make_file(header, zeros, data_len, &size);
    fkd_safetensors st;
    fkd_status s = fkd_safetensors_parse(&st, "bad.safetensors", buf, size);
    if (s == FKD_OK) fail_msg("accepted: %s", header);
    assert_int_equal(s, FKD_ERR_FORMAT);
    const char *msg = fkd_last_error();
    if (!strstr(msg, "bad.safetensors") || (needle1 && !strstr(msg, needle1)) || (needle2 && !strstr(msg, needle2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\" (header %s)", msg, needle1 ? needle1 : "",
                 needle2 ? needle2 : "", header);
    assert_int_equal(st.count, 0);
    fkd_safetensors_free(&st);
}

static void test_round_trip_all_dtypes(void **state)
{
    (void)state;
    char path[] = "/tmp/fkd_st_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const float f32[6] = {1.5f, -2.25f, 0.f, 3e-5f, 1e8f, -0.f};
    const uint16_t f16[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};       /* 1, -2, 2^-24, 65504 */
    const uint16_t bf16[2] = {0x3F80, 0xC0A0};                        /* 1, -5 */
    const double f64[2] = {0.1, -1e300};
    const int64_t i64[1] = {12345};
    const int64_t d23[2] = {2, 3}, d4[1] = {4}, d2[1] = {2}, d1[1] = {1};
    const fkd_st_entry e[] = {
        {"a.weight", FKD_ST_F32, 2, d23, f32}, {"b \"quoted\"\n", FKD_ST_F16, 1, d4, f16},
        {"c", FKD_ST_BF16, 1, d2, bf16},       {"d", FKD_ST_F64, 1, d2, f64},
        {"bn.num_batches_tracked", FKD_ST_I64, 0, d1, i64},
    };
    const fkd_st_meta meta[] = {{"architecture", "mbf"}, {"note", "tab\there \\ \"q\""}};
    assert_int_equal(fkd_safetensors_write(path, e, 5, meta, 2), FKD_OK);

    fkd_safetensors st;
    assert_int_equal(fkd_safetensors_read(&st, path), FKD_OK);
    assert_int_equal(st.count, 5);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | st.buf[i];
    assert_int_equal(header_len % 8, 0); /* data section 8-byte aligned */
    assert_string_equal(fkd_safetensors_meta(&st, "architecture"), "mbf");
    assert_string_equal(fkd_safetensors_meta(&st, "note"), "tab\there \\ \"q\"");
    assert_null(fkd_safetensors_meta(&st, "absent"));
    assert_null(fkd_safetensors_find(&st, "absent"));

    float out[6];
    const fkd_st_tensor *t = fkd_safetensors_find(&st, "a.weight");
    assert_non_null(t);
    assert_int_equal(t->ndims, 2);
    assert_int_equal(t->dims[1], 3);
    fkd_st_tensor_to_f32(t, out);
    assert_memory_equal(out, f32, sizeof f32); /* exact, including -0 */
    t = fkd_safetensors_find(&st, "b \"quoted\"\n");
    assert_non_null(t);
    fkd_st_tensor_to_f32(t, out);
    assert_true(out[0] == 1.f && out[1] == -2.f && out[2] == ldexpf(1.f, -24) && out[3] == 65504.f);
    fkd_st_tensor_to_f32(fkd_safetensors_find(&st, "c"), out);
    assert_true(out[0] == 1.f && out[1] == -5.f);
    fkd_st_tensor_to_f32(fkd_safetensors_find(&st, "d"), out);
    assert_true(out[0] == 0.1f && isinf(out[1]) && out[1] < 0);
    t = fkd_safetensors_find(&st, "bn.num_batches_tracked");
    assert_int_equal(t->ndims, 0);
    assert_int_equal(t->numel, 1);
    fkd_st_tensor_to_f32(t, out);
    assert_true(out[0] == 12345.f);
    fkd_safetensors_free(&st);
    fkd_safetensors_free(&st); /* idempotent */
    unlink(path);
}

static void test_f16_specials(void **state)
{
    (void)state;
    const uint16_t h[5] = {0x7C00, 0xFC00, 0x7E00, 0x8000, 0x0400}; /* inf, -inf, nan, -0, 2^-14 */
    char header[160];
    snprintf(header, sizeof header, "{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]}}");
    size_t size;
    uint8_t *buf = make_file(header, h, sizeof h, &size);
    fkd_safetensors st;
    assert_int_equal(fkd_safetensors_parse(&st, "mem", buf, size), FKD_OK);
    float o[5];
    fkd_st_tensor_to_f32(&st.tensors[0], o);
    assert_true(isinf(o[0]) && o[0] > 0 && isinf(o[1]) && o[1] < 0 && isnan(o[2]));
    assert_true(o[3] == 0.f && signbit(o[3]) && o[4] == ldexpf(1.f, -14));
    fkd_safetensors_free(&st);
}

/* A hand-written header: whitespace, \u escapes (with a surrogate pair), metadata last,
 * an empty tensor, and trailing space padding. */
static void test_parse_handwritten(void **state)
{
    (void)state;
    const char *header = " {\n \"x\\u00e9\\ud83d\\ude00\" : { \"shape\" : [ 1 , 2 ] , \"dtype\" : \"F32\" ,"
                         " \"data_offsets\" : [ 0 , 8 ] } ,\n \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 3],"
                         " \"data_offsets\": [8, 8]},\n \"__metadata__\" : { \"k\" : \"v\\/w\" } }   ";
    const float v[2] = {7.f, -8.f};
    size_t size;
    uint8_t *buf = make_file(header, v, sizeof v, &size);
    fkd_safetensors st;
    assert_int_equal(fkd_safetensors_parse(&st, "mem", buf, size), FKD_OK);
    assert_int_equal(st.count, 2);
    assert_string_equal(st.tensors[0].name, "x\xc3\xa9\xf0\x9f\x98\x80");
    assert_string_equal(fkd_safetensors_meta(&st, "k"), "v/w");
    assert_int_equal(st.tensors[1].numel, 0);
    float o[2];
    fkd_st_tensor_to_f32(&st.tensors[0], o);
    assert_true(o[0] == 7.f && o[1] == -8.f);
    fkd_safetensors_free(&st);
}

#define T(name, rest) "{\"" name "\":{" rest "}}"
#define OK_ENTRY "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"

static void test_bad_headers(void **state)
{
    (void)state;
    expect_bad(T("w", OK_ENTRY) "x", 8, "header byte", "trailing");
    expect_bad("[1]", 0, "header byte 8", "expected '{'");
    expect_bad("{\"w\" {}}", 0, "header byte 13", "expected ':'");
    expect_bad("{\"w\":{\"dtype\":\"F32\"", 0, "header byte", NULL);
    expect_bad("{\"w", 0, "unterminated string", NULL);
    expect_bad(T("w", "\"dtype\":\"F3\\x\""), 0, "bad escape", NULL);
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), 8, "non-negative integer", NULL);
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]"), 8, "fraction", NULL);
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]"), 8, "leading zero", NULL);
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]"), 8, "too large", NULL);
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4, "more than 8", NULL);
    expect_bad(T("w", "\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]"), 8, "tensor 'w'", "unsupported dtype");
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[2]"), 8, "tensor 'w'", "no data_offsets");
    expect_bad(T("w", OK_ENTRY ",\"extra\":1"), 8, "tensor 'w'", "unknown or repeated key");
    expect_bad(T("w", OK_ENTRY ",\"dtype\":\"F32\""), 8, "tensor 'w'", "unknown or repeated key");
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]"), 8, "tensor 'w'", "[begin, end]");
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]"), 9, "more than 2", NULL);
    expect_bad("{\"__metadata__\":{\"k\":3}}", 0, "must be strings", NULL);
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "repeated __metadata__", NULL);
    expect_bad("{\"\":{" OK_ENTRY "}}", 8, "empty tensor name", NULL);
    expect_bad("{\"a\\ud800\":{" OK_ENTRY "}}", 8, "surrogate", NULL);
    expect_bad("{\"a\\u0000\":{" OK_ENTRY "}}", 8, "NUL", NULL);
    expect_bad("{\"a\tb\":{" OK_ENTRY "}}", 8, "control character", NULL);
}

static void test_bad_offsets(void **state)
{
    (void)state;
    /* End past the data section. */
    expect_bad(T("w", OK_ENTRY), 4, "tensor 'w'", "outside the 4-byte data section");
    /* Begin after end. */
    expect_bad(T("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]"), 8, "tensor 'w'", "outside");
    /* Size disagrees with shape × dtype. */
    expect_bad(T("w", "\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]"), 8, "tensor 'w'",
               "span 8 bytes but shape × F16 needs 4");
    /* Overlap. */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "overlap", NULL);
    /* Duplicate name. */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "'a' appears twice", NULL);
}

static void test_bad_framing(void **state)
{
    (void)state;
    fkd_safetensors st;
    uint8_t *tiny = malloc(5);
    memset(tiny, 0, 5);
    assert_int_equal(fkd_safetensors_parse(&st, "short.safetensors", tiny, 5), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "short.safetensors: 5 bytes: too short"));

    /* Header length larger than the file, and absurdly large. */
    size_t size;
    uint8_t *buf = make_file("{}", NULL, 0, &size);
    buf[0] = 200;
    assert_int_equal(fkd_safetensors_parse(&st, "len.safetensors", buf, size), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "len.safetensors: byte 0: header length 200"));
    buf = make_file("{}", NULL, 0, &size);
    buf[7] = 0x80;
    assert_int_equal(fkd_safetensors_parse(&st, "huge.safetensors", buf, size), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "huge.safetensors: byte 0: header length"));

    assert_int_equal(fkd_safetensors_read(&st, "/nonexistent/m.safetensors"), FKD_ERR_IO);
    assert_non_null(strstr(fkd_last_error(), "/nonexistent/m.safetensors"));
    fkd_safetensors_free(&st);
}

/* Every prefix of a valid file fails cleanly (truncation), and every single-byte
 * corruption of its header either parses or fails with a message — never crashes. */
static void test_truncation_and_corruption(void **state)
{
    (void)state;
    const float v[3] = {1, 2, 3};
    const char *header = "{\"__metadata__\":{\"a\":\"b\"},\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    size_t size;
    uint8_t *good = make_file(header, v, sizeof v, &size);
    fkd_safetensors st;
    for (size_t n = 0; n < size; n++) {
        uint8_t *cut = malloc(n + 1);
        memcpy(cut, good, n);
        assert_int_not_equal(fkd_safetensors_parse(&st, "cut.safetensors", cut, n), FKD_OK);
        assert_non_null(strstr(fkd_last_error(), "cut.safetensors"));
    }
    const uint8_t subst[] = {0, '"', '{', '}', '[', ']', ',', ':', '\\', '9', 'x', 0xff};
    for (size_t pos = 8; pos < 8 + strlen(header); pos++)
        for (size_t k = 0; k < sizeof subst; k++) {
            uint8_t *bad = malloc(size);
            memcpy(bad, good, size);
            bad[pos] = subst[k];
            if (fkd_safetensors_parse(&st, "flip.safetensors", bad, size) == FKD_OK)
                fkd_safetensors_free(&st);
            else
                assert_non_null(strstr(fkd_last_error(), "flip.safetensors"));
        }
    free(good);
}

/* Deterministic random mutations (1-4 bytes anywhere, including the length field and
 * the data) of a file with several tensors and metadata: parse or fail cleanly, and a
 * file that parses has every tensor inside the buffer. Run under the sanitizer build
 * this is a small fuzz test. */
static void test_random_mutations(void **state)
{
    (void)state;
    const char *header = "{\"__metadata__\":{\"architecture\":\"mbf\",\"embedding_size\":\"512\"},"
                         "\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                         "\"b.running_var\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]},"
                         "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[20,28]}}";
    uint8_t data[28];
    for (int i = 0; i < 28; i++) data[i] = (uint8_t)(i * 37);
    size_t size;
    uint8_t *good = make_file(header, data, sizeof data, &size);
    fkd_rng rng;
    fkd_rng_seed(&rng, 2026, 0);
    int parsed = 0;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *m = malloc(size);
        memcpy(m, good, size);
        int flips = 1 + (int)fkd_rng_below(&rng, 4);
        for (int k = 0; k < flips; k++) m[fkd_rng_below(&rng, size)] = (uint8_t)fkd_rng_below(&rng, 256);
        fkd_safetensors st;
        if (fkd_safetensors_parse(&st, "fuzz.safetensors", m, size) == FKD_OK) {
            parsed++;
            for (int t = 0; t < st.count; t++) {
                const fkd_st_tensor *x = &st.tensors[t];
                assert_true(x->data >= st.buf && x->data + x->nbytes <= st.buf + st.size);
                assert_int_equal(x->nbytes, (size_t)x->numel * fkd_st_dtype_size(x->dtype));
            }
            fkd_safetensors_free(&st);
        } else {
            assert_non_null(strstr(fkd_last_error(), "fuzz.safetensors"));
        }
    }
    print_message("  %d of 20000 mutated files parsed (mutations in data or harmless)\n", parsed);
    assert_true(parsed > 0 && parsed < 20000);
    free(good);
}

static void test_write_rejects_bad_entries(void **state)
{
    (void)state;
    const float x = 1;
    const int64_t d1[1] = {1};
    const fkd_st_entry dup[2] = {{"a", FKD_ST_F32, 1, d1, &x}, {"a", FKD_ST_F32, 1, d1, &x}};
    assert_int_equal(fkd_safetensors_write("/tmp/fkd_never.safetensors", dup, 2, NULL, 0), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "'a' given twice"));
    assert_int_equal(access("/tmp/fkd_never.safetensors", F_OK), -1);
    assert_int_equal(fkd_safetensors_write("/nonexistent/dir/x.safetensors", dup, 1, NULL, 0), FKD_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_dtypes),   cmocka_unit_test(test_f16_specials),
        cmocka_unit_test(test_parse_handwritten),       cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_offsets),             cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_truncation_and_corruption), cmocka_unit_test(test_write_rejects_bad_entries),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
