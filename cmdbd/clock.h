/*
 * clock.h — elapsed time on CLOCK_MONOTONIC, for logs and metrics.
 */
#ifndef CMDB_CLOCK_H
#define CMDB_CLOCK_H

#include <time.h>

/* Milliseconds since t0 (a CLOCK_MONOTONIC reading). */
static inline double
clock_ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

#endif
