/* torture.h - allocation-failure injection for the replays (torture.c). */
#ifndef NEXUS_TEST_TORTURE_H
#define NEXUS_TEST_TORTURE_H

/* Start counting allocations; the nth (1-based) fails, 0: none does. */
void nx_torture_arm(unsigned long nth);
/* Stop; the calls counted since arming, *did_fail whether one failed. */
unsigned long nx_torture_disarm(int *did_fail);

#endif
