/* Numeric CSV tables; see csvtable.h. */
#include "eval/csvtable.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

void fkd_csv_table_free(fkd_csv_table *t)
{
    if (!t) return;
    for (int j = 0; j < t->n_cols; j++) free(t->names[j]);
    free(t->names);
    free(t->values);
    memset(t, 0, sizeof(*t));
}

/* Reads one field starting at *pos into buf (unquoted); sets *end_of_line when the field
 * closed its line (or the text). */
static fkd_status next_field(const char *text, size_t size, size_t *pos, char *buf, size_t cap, int *end_of_line,
                             const char *what, int line)
{
    size_t i = *pos, n = 0;
    int quoted = i < size && text[i] == '"';
    if (quoted) i++;
    for (;;) {
        if (i >= size) {
            if (quoted) return FKD_FAIL(FKD_ERR_FORMAT, "%s:%d: unterminated quoted field", what, line);
            *end_of_line = 1;
            break;
        }
        char c = text[i];
        if (quoted && c == '"') {
            if (i + 1 < size && text[i + 1] == '"') {
                c = '"';
                i++;
            } else {
                quoted = 0;
                i++;
                continue;
            }
        } else if (!quoted && (c == ',' || c == '\n' || c == '\r')) {
            if (c == ',') {
                i++;
                *end_of_line = 0;
            } else {
                if (c == '\r' && i + 1 < size && text[i + 1] == '\n') i++;
                i++;
                *end_of_line = 1;
            }
            break;
        }
        if (n + 1 >= cap) return FKD_FAIL(FKD_ERR_FORMAT, "%s:%d: field longer than %zu bytes", what, line, cap - 1);
        buf[n++] = c;
        i++;
    }
    buf[n] = 0;
    *pos = i;
    return FKD_OK;
}

static int blank_line(const char *text, size_t size, size_t pos)
{
    return pos < size && (text[pos] == '\n' || text[pos] == '\r');
}

static size_t skip_line_end(const char *text, size_t size, size_t pos)
{
    if (pos < size && text[pos] == '\r') pos++;
    if (pos < size && text[pos] == '\n') pos++;
    return pos;
}

static fkd_status parse_header(const char *text, size_t size, size_t *pos, const char *what, fkd_csv_table *t,
                               char *buf, size_t cap)
{
    int cap_cols = 0, eol = 0;
    while (!eol) {
        FKD_TRY(next_field(text, size, pos, buf, cap, &eol, what, 1));
        if (t->n_cols == cap_cols) {
            cap_cols = cap_cols ? 2 * cap_cols : 16;
            char **names = realloc(t->names, sizeof(char *) * cap_cols);
            if (!names) return FKD_FAIL(FKD_ERR_NOMEM, "%s: header", what);
            t->names = names;
        }
        if (!(t->names[t->n_cols] = strdup(buf))) return FKD_FAIL(FKD_ERR_NOMEM, "%s: header", what);
        t->n_cols++;
    }
    return FKD_OK;
}

static fkd_status parse_number(const char *field, const char *what, int line, int col, const char *name,
                               double *out)
{
    const char *s = field;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) {
        *out = NAN;
        return FKD_OK;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s:%d: field %d ('%s'): '%s' is not a number", what, line, col + 1, name,
                        field);
    *out = v;
    return FKD_OK;
}

fkd_status fkd_csv_table_parse(const char *text, size_t size, const char *what, fkd_csv_table *t)
{
    memset(t, 0, sizeof(*t));
    char buf[1024];
    size_t pos = 0;
    if (size == 0) return FKD_FAIL(FKD_ERR_FORMAT, "%s:1: empty file, expected a header row", what);
    fkd_status s = parse_header(text, size, &pos, what, t, buf, sizeof(buf));
    size_t cap_rows = 0;
    for (int line = 2; s == FKD_OK && pos < size; line++) {
        if (blank_line(text, size, pos)) {
            pos = skip_line_end(text, size, pos);
            continue;
        }
        if ((size_t)t->n_rows == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 256;
            double *v = realloc(t->values, sizeof(double) * cap_rows * t->n_cols);
            if (!v) {
                s = FKD_FAIL(FKD_ERR_NOMEM, "%s: %zu rows", what, cap_rows);
                break;
            }
            t->values = v;
        }
        double *row = t->values + (size_t)t->n_rows * t->n_cols;
        int eol = 0, col = 0;
        while (s == FKD_OK && !eol) {
            s = next_field(text, size, &pos, buf, sizeof(buf), &eol, what, line);
            if (s != FKD_OK) break;
            if (col >= t->n_cols) {
                s = FKD_FAIL(FKD_ERR_FORMAT, "%s:%d: more than the header's %d fields", what, line, t->n_cols);
                break;
            }
            s = parse_number(buf, what, line, col, t->names[col], &row[col]);
            col++;
        }
        if (s == FKD_OK && col < t->n_cols)
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s:%d: %d fields, the header has %d", what, line, col, t->n_cols);
        if (s == FKD_OK) t->n_rows++;
    }
    if (s != FKD_OK) fkd_csv_table_free(t);
    return s;
}

fkd_status fkd_csv_table_load(const char *path, fkd_csv_table *t)
{
    uint8_t *data;
    size_t size;
    memset(t, 0, sizeof(*t));
    FKD_TRY(fkd_file_read_all(path, &data, &size));
    fkd_status s = fkd_csv_table_parse((const char *)data, size, path, t);
    free(data);
    return s;
}

int fkd_csv_table_column(const fkd_csv_table *t, const char *name)
{
    for (int j = 0; j < t->n_cols; j++)
        if (!strcmp(t->names[j], name)) return j;
    return -1;
}

void fkd_csv_table_get(const fkd_csv_table *t, int col, double *out)
{
    for (int i = 0; i < t->n_rows; i++) out[i] = t->values[(size_t)i * t->n_cols + col];
}
