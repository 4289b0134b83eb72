/* A 5x7 bitmap font with a descender row for printable ASCII (32..126), used by the plot
 * renderer.
 *
 * Each glyph is 8 rows, top to bottom: rows 0..6 down to the baseline, row 7 for the
 * descenders of g j p q y , ;. In each row bit 4 is the leftmost of 5 columns. Glyphs are
 * drawn in a 6x10 cell (one column and two rows of spacing). */
#ifndef FKD_EVAL_FONT_H
#define FKD_EVAL_FONT_H

#include <stdint.h>

#define FKD_FONT_W 5
#define FKD_FONT_H 8
#define FKD_FONT_CAP 7 /* rows above the baseline: for centring text on a tick */
#define FKD_FONT_ADVANCE 6 /* horizontal cell, pixels at scale 1 */
#define FKD_FONT_LINE 10   /* vertical cell */

/* The 8 rows of character c; characters outside 32..126 get the '?' glyph. */
const uint8_t *fkd_font_glyph(int c);

/* Width in pixels of a string drawn at `scale` (no trailing spacing column). */
int fkd_font_text_width(const char *s, int scale);

#endif
