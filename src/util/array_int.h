/*
 * array_int.h - the one growth rule for heap arrays (not public).
 *
 * Every array that grows as input is read (tokens, initializers, findings,
 * argv strings, text buffers) grows through nx_array_grow: the byte count
 * is checked for overflow, the capacity doubles (amortised O(1) appends
 * instead of a realloc per element) and never passes the caller's cap, and
 * a failed realloc leaves the old block with the caller.  It returns a code
 * and sets no message: each caller names its file and its cap.
 */
#ifndef NEXUS_ARRAY_INT_H
#define NEXUS_ARRAY_INT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Make room for at least `need` elements of `elem` bytes in the array whose
 * pointer is at `arrp` (a T **, passed as void *) and whose capacity, in
 * elements, is *cap.  Nothing happens when need <= *cap.  Otherwise the new
 * capacity is the largest of need, twice *cap and 8, but at most max.
 * New elements are not initialised.
 *
 * Returns 0; NX_ELIMIT when need > max (nothing changed); NX_ENOMEM when
 * the bytes overflow size_t or realloc fails (*arrp and *cap unchanged, the
 * old block still the caller's).
 */
int nx_array_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t max);

/* The common case: room for n + 1 elements of *arr, no cap but size_t. */
#define NX_ARRAY_PUSH(arr, cap, n) \
	nx_array_grow(&(arr), &(cap), (n) + 1, sizeof(*(arr)), SIZE_MAX)

/*
 * For an array that keeps only its count n (a public struct without a
 * capacity field): room for exactly n + 1 elements, overflow-checked.
 */
static inline int nx_array_push_exact(void *arrp, size_t n, size_t elem)
{
	size_t cap = n;

	return nx_array_grow(arrp, &cap, n + 1, elem, n + 1);
}
#define NX_ARRAY_PUSH_EXACT(arr, n) nx_array_push_exact(&(arr), (n), sizeof(*(arr)))

#endif
