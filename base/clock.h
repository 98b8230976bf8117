/* base/clock: the one clock of coapgw. Monotonic milliseconds for every deadline, age and timeout; code
 * that must be testable takes a clock function (cg_clock_fn) instead of calling this directly. */
#ifndef CG_CLOCK_H
#define CG_CLOCK_H

#include <stdint.h>
#include <time.h>

/* A clock: monotonic milliseconds. arg is the clock's own state (NULL for cg_now_ms). */
typedef uint64_t (*cg_clock_fn)(void *arg);

/* Monotonic milliseconds since an arbitrary start (CLOCK_MONOTONIC). Thread: any. */
uint64_t cg_now_ms(void);

/* cg_now_ms as a cg_clock_fn. */
uint64_t cg_clock_monotonic(void *arg);

/* The instant ms milliseconds from now on clock (CLOCK_REALTIME, or CLOCK_MONOTONIC for a condition variable
 * made with pthread_condattr_setclock), for pthread_cond_timedwait. */
struct timespec cg_timespec_after_ms(clockid_t clock, unsigned ms);

#endif
