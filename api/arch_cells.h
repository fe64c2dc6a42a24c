/* arch_cells.h: the parsers of the benchmark-cell forms nb101 and darts
 * (api/arch_cells.c), called by ae_arch_from_json.  Each returns the
 * number of errors it added to p (0 = parsed), filling the type's fields
 * of a. */
#ifndef AE_ARCH_CELLS_H
#define AE_ARCH_CELLS_H

#include "api/arch.h"
#include <jansson.h>

int ae_parse_nb101(const json_t *j, const char *pointer, ae_arch *a,
                   ae_problem *p);
int ae_parse_darts(const json_t *j, const char *pointer, ae_arch *a,
                   ae_problem *p);

#endif
