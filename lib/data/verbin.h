/* insightface verification sets (.bin: lfw.bin, cfp_fp.bin, agedb_30.bin, ...).
 *
 * A .bin is a Python pickle of (bins, issame_list): bins is a list of 2N encoded images
 * (JPEG or PNG bytes), issame_list N bools; pair i is bins[2i], bins[2i+1]. Files written
 * by Python 2 (protocol 2: str = SHORT_BINSTRING/BINSTRING) and by Python 3 (protocols
 * 2-5: BINBYTES variants, FRAME, MEMOIZE; protocol 2 from Python 3 stores bytes as
 * _codecs.encode(str, 'latin1')) are read. bins holding numpy arrays are refused with a
 * message saying how to convert the file; any other opcode is an error naming it and
 * its byte offset.
 */
#ifndef FKD_DATA_VERBIN_H
#define FKD_DATA_VERBIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    char *path;
    int64_t n_pairs;
    const uint8_t **images; /* (2 n_pairs) encoded image bytes, pointing into the file */
    size_t *sizes;          /* (2 n_pairs) */
    bool *issame;           /* (n_pairs) */
    uint8_t *file;          /* the whole file (owned) */
    size_t file_size;
    uint8_t **owned;        /* buffers made while reading (latin1 re-encoding), freed */
    int64_t n_owned;
} fkd_verbin;

/* Loads a .bin. fkd_verbin_free is safe on a half-loaded set. */
fkd_status fkd_verbin_load(const char *path, fkd_verbin *set);
void fkd_verbin_free(fkd_verbin *set);

/* Writes (images, issame) as a .bin, atomically. protocol 2 writes what Python 2 wrote
 * (byte strings as BINSTRING); protocol 4 what Python 3 writes (BINBYTES, frames, memo). */
fkd_status fkd_verbin_write(const char *path, const uint8_t *const *images, const size_t *sizes,
                            const bool *issame, int64_t n_pairs, int protocol);

#endif
