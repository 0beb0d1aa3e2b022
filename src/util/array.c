/* array.c - nx_array_grow (array_int.h). */
#include "util/array_int.h"

#include <stdlib.h>
#include <string.h>

#include "nexus/error.h"

int nx_array_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t max)
{
	size_t ncap;
	void *old, *p;

	if (need <= *cap)
		return 0;
	if (need > max)
		return NX_ELIMIT;
	ncap = *cap > SIZE_MAX / 2 ? SIZE_MAX : *cap * 2;
	if (ncap < 8)
		ncap = 8;
	if (ncap < need)
		ncap = need;
	if (ncap > max)
		ncap = max;
	if (elem && ncap > SIZE_MAX / elem) {
		/* Doubling overflowed but `need` itself may still fit. */
		if (need > SIZE_MAX / elem)
			return NX_ENOMEM;
		ncap = need;
	}
	/* arrp is really a T **; memcpy reads and writes it without assuming
	 * that T * and void * alias. */
	memcpy(&old, arrp, sizeof(old));
	if (!(p = realloc(old, elem ? ncap * elem : 1)))   /* never realloc(p, 0) */
		return NX_ENOMEM;
	memcpy(arrp, &p, sizeof(p));
	*cap = ncap;
	return 0;
}
