/* insightface / MXNet RecordIO: the .rec + .idx layout of MS1MV2, MS1MV3 and Glint360K.
 *
 * .rec: a sequence of records, each `magic (u32 0xced7230a) | lrec (u32) | data | pad`,
 * little-endian; lrec's low 29 bits are the data length, its top 3 bits (cflag) say
 * whether the record is whole (0) or the start (1), a middle part (2) or the end (3) of a
 * record that was split where the magic occurred inside the data: the reader rejoins the
 * parts with the magic between them. Data are padded with zeros to 4 bytes.
 * .idx: text, one "key<TAB>offset" line per record (offset of its magic in the .rec).
 *
 * A record's payload (insightface's IRHeader, struct "IfQQ"): u32 flag, f32 label,
 * u64 id, u64 id2 (24 bytes); when flag > 0, `flag` more f32 labels follow; then the
 * encoded image. Training sets written by insightface start with a header record (key 0,
 * flag > 0): labels[0] is one past the last image key, so images are keys [1, labels[0]);
 * when labels[1] > labels[0], keys [labels[0], labels[1]) are identity records whose
 * labels (start, end) give each identity's image key range. Without a header record,
 * every key of the .idx is an image.
 */
#ifndef FKD_DATA_RECORDIO_H
#define FKD_DATA_RECORDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fileio.h"
#include "core/status.h"

#define FKD_RECORDIO_MAGIC 0xced7230aU
#define FKD_RECORDIO_HEADER_BYTES 24
#define FKD_RECORDIO_MAX_LENGTH ((1u << 29) - 1)

/* A decoded record payload; pointers point into the payload buffer. */
typedef struct {
    uint32_t flag;
    float label;           /* the scalar label word (meaningless when flag > 0) */
    uint64_t id, id2;
    float labels[4];       /* the first min(flag, 4) extra labels, copied (flag > 0) */
    const uint8_t *data;   /* the encoded image */
    size_t data_size;
} fkd_rec_payload;

typedef struct {
    char *rec_path, *idx_path;
    const uint8_t *map;   /* the .rec, mmap'ed read-only */
    size_t map_size;
    int64_t n_keys;       /* lines of the .idx */
    uint64_t *keys;       /* (n_keys) sorted ascending */
    uint64_t *offsets;    /* (n_keys) offset of each key's record in the .rec */
    bool has_header;      /* record 0 is an insightface header record */
    int64_t n_images;     /* image records */
    uint64_t *image_keys; /* (n_images) */
    int64_t n_identities; /* from identity records, or 0 until fkd_recordio_labels ran */
    int32_t *labels;      /* (n_images) filled by fkd_recordio_labels, else NULL */
} fkd_recordio;

/* Opens `rec_path` and its index (`idx_path`, or rec_path with .rec replaced by .idx when
 * NULL). Checks every index offset against the .rec size and reads the header record.
 * Thread-safe to read from afterwards. fkd_recordio_close is safe on a half-opened one. */
fkd_status fkd_recordio_open(fkd_recordio *r, const char *rec_path, const char *idx_path);
void fkd_recordio_close(fkd_recordio *r);

/* Reads the record stored under `key`, rejoining split records, into *buf (grown with
 * realloc as needed; *cap its capacity; the caller frees *buf). */
fkd_status fkd_recordio_read_key(const fkd_recordio *r, uint64_t key, uint8_t **buf, size_t *cap,
                                 size_t *size);
/* Parses a payload (IRHeader + extra labels + image). `what` names it in errors. */
fkd_status fkd_recordio_parse(const uint8_t *payload, size_t size, const char *what, fkd_rec_payload *out);

/* Image i in [0, n_images): its payload, parsed; label is labels[0] when flag > 0. */
fkd_status fkd_recordio_read_image(const fkd_recordio *r, int64_t i, uint8_t **buf, size_t *cap,
                                   fkd_rec_payload *out, int32_t *label);
/* Fills r->labels (and r->n_identities = max label + 1) from identity records when the
 * file has them, else by reading every image record's header. */
fkd_status fkd_recordio_labels(fkd_recordio *r);

/* Writer of raw records: data are split around any 4-byte-aligned magic word like MXNet's
 * writer does. Output files are written atomically (commit renames both). */
typedef struct {
    fkd_atomic_file rec, idx;
    uint64_t offset;   /* bytes written to the .rec so far */
    bool open;
} fkd_recordio_writer;

fkd_status fkd_recordio_writer_open(fkd_recordio_writer *w, const char *rec_path, const char *idx_path);
fkd_status fkd_recordio_writer_put(fkd_recordio_writer *w, uint64_t key, const uint8_t *data, size_t size);
/* Builds a payload (IRHeader with `n_labels` extra labels when n_labels > 0, else the scalar
 * `label`) followed by `image`, and puts it. */
fkd_status fkd_recordio_writer_put_image(fkd_recordio_writer *w, uint64_t key, uint32_t n_labels,
                                         const float *labels, float label, const uint8_t *image,
                                         size_t image_size);
fkd_status fkd_recordio_writer_commit(fkd_recordio_writer *w);
void fkd_recordio_writer_abort(fkd_recordio_writer *w);

/* A training set in insightface's layout: header record 0, images at keys 1..n (labels
 * must be non-decreasing when identity ranges are written), identity records after them.
 *
 *   fkd_rec_train_writer w;
 *   FKD_TRY(fkd_rec_train_writer_open(&w, "train.rec", NULL, true));
 *   for each image: fkd_rec_train_writer_add(&w, label, jpeg, jpeg_size);
 *   FKD_TRY(fkd_rec_train_writer_commit(&w));   (or _abort on failure)
 */
typedef struct {
    fkd_recordio_writer raw;
    bool identity_ranges;
    int64_t n_images;
    int32_t last_label;
    int64_t *id_start; /* (n_ids + 1) first image key of each identity, grown */
    int64_t n_ids, ids_cap;
} fkd_rec_train_writer;

fkd_status fkd_rec_train_writer_open(fkd_rec_train_writer *w, const char *rec_path, const char *idx_path,
                                     bool identity_ranges);
fkd_status fkd_rec_train_writer_add(fkd_rec_train_writer *w, int32_t label, const uint8_t *image,
                                    size_t image_size);
fkd_status fkd_rec_train_writer_commit(fkd_rec_train_writer *w);
void fkd_rec_train_writer_abort(fkd_rec_train_writer *w);

#endif
