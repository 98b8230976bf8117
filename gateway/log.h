/* gateway/log: leveled, one-line key=value logging to stderr.
 * A disabled level costs one integer compare: call sites use the GW_LOG macro. Safe from any thread. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdatomic.h>

enum gw_log_level { GW_LOG_ERROR = 0, GW_LOG_WARN = 1, GW_LOG_INFO = 2, GW_LOG_DEBUG = 3 };

extern _Atomic int gw_log_threshold;

/* Parses "error", "warn", "info", "debug". Returns 0 on success, -1 for an unknown name. */
int gw_log_level_parse(const char *name, enum gw_log_level *out);
const char *gw_log_level_name(enum gw_log_level level);
void gw_log_set_level(enum gw_log_level level);

/* Writes "level=L mod=M " followed by the formatted text and a newline, as one write(2). */
void gw_log_write(enum gw_log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like gw_log_write, but for high-volume lines (the access log): appended to a buffer that a flusher thread
 * writes out every 50 ms (and when full). Unbuffered until gw_log_start_buffering(). */
void gw_log_buffered(enum gw_log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Starts the flusher thread (main, at start-up). Returns 0, or -1 (lines then go out unbuffered). */
int gw_log_start_buffering(void);
/* Stops the flusher and writes out what is left (main, at exit). */
void gw_log_stop_buffering(void);

#define GW_LOG(level, mod, ...)                                                                              \
    do {                                                                                                     \
        if ((int)(level) <= atomic_load_explicit(&gw_log_threshold, memory_order_relaxed)) {                 \
            gw_log_write((level), (mod), __VA_ARGS__);                                                       \
        }                                                                                                    \
    } while (0)

#define gw_log_enabled(level) ((int)(level) <= atomic_load_explicit(&gw_log_threshold, memory_order_relaxed))

#endif
