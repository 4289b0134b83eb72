/* Writing the synthetic world to disk in the formats real data comes in, and reading it
 * directly as a dataset.
 *
 * Benchmarks become insightface verification .bin files (JPEG images, pickle protocol 2,
 * like lfw.bin), so they are read back through the same reader as the real ones.
 * Training sets become an image folder (<dir>/<identity>/<index>.jpg) or an insightface
 * RecordIO pair (<prefix>.rec / <prefix>.idx with header and identity records). All files
 * are written atomically. `progress` may be NULL; when given it is started and advanced.
 */
#ifndef FKD_DATA_SYNTH_EXPORT_H
#define FKD_DATA_SYNTH_EXPORT_H

#include "core/log.h"
#include "core/status.h"
#include "data/dataset.h"
#include "data/synth.h"

/* JPEG quality of written images (insightface's sets are JPEG at about this quality). */
#define FKD_SYNTH_JPEG_QUALITY 95

/* Renders the pairs and writes them as a .bin at `path`. */
fkd_status fkd_synth_write_pairs(const fkd_synth_world *w, const fkd_synth_pair *pairs, int64_t n_pairs,
                                 const char *path, fkd_progress *progress);
/* Writes benchmark `name` to <dir>/<its file name> (synth_lfw.bin, ...). */
fkd_status fkd_synth_write_bench(const fkd_synth_world *w, const char *name, const char *dir, fkd_progress *progress);

/* Training identities [0, n_ids) x images [0, per_id). */
fkd_status fkd_synth_write_folder(const fkd_synth_world *w, int64_t n_ids, int per_id, const char *dir,
                                  fkd_progress *progress);
/* Writes <prefix>.rec and <prefix>.idx. */
fkd_status fkd_synth_write_recordio(const fkd_synth_world *w, int64_t n_ids, int per_id, const char *prefix,
                                    fkd_progress *progress);

/* A dataset over the world's training identities: n_train x per_id images, image i is
 * (identity i / per_id, index i % per_id), rendered on the fly (thread-safe). */
fkd_status fkd_synth_dataset_open(fkd_dataset *ds, const fkd_synth_world *w, int per_id);

#endif
