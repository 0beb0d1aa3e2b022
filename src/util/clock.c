/* clock.c - the one monotonic clock of nexus/clock.h. */
#include "nexus/clock.h"

#include <time.h>

double nx_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
