/*
 * nexus/clock.h - elapsed time, for timeouts, budgets and the durations
 * reports show.
 */
#ifndef NEXUS_CLOCK_H
#define NEXUS_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on CLOCK_MONOTONIC: only differences mean anything. */
double nx_now(void);

#ifdef __cplusplus
}
#endif

#endif
