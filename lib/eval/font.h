/* A 5x7 bitmap font for printable ASCII (32..126), used by the plot renderer.
 *
 * Each glyph is 7 rows, top to bottom; in each row bit 4 is the leftmost of 5 columns.
 * Glyphs are drawn in a 6x9 cell (one column and two rows of spacing). */
#ifndef FKD_EVAL_FONT_H
#define FKD_EVAL_FONT_H

#include <stdint.h>

#define FKD_FONT_W 5
#define FKD_FONT_H 7
#define FKD_FONT_ADVANCE 6 /* horizontal cell, pixels at scale 1 */
#define FKD_FONT_LINE 9    /* vertical cell */

/* The 7 rows of character c; characters outside 32..126 get the '?' glyph. */
const uint8_t *fkd_font_glyph(int c);

/* Width in pixels of a string drawn at `scale` (no trailing spacing column). */
int fkd_font_text_width(const char *s, int scale);

#endif
