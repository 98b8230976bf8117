/* base/log: formats a line into a stack buffer and writes it with one write(2), so lines from
 * different threads never interleave. Never allocates. */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int cg_log_threshold = CG_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int cg_log_level_parse(const char *name, enum cg_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum cg_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *cg_log_level_name(enum cg_log_level level)
{
    return level_names[level];
}

void cg_log_set_level(enum cg_log_level level)
{
    atomic_store(&cg_log_threshold, (int)level);
}

/* Formats "ts=... level=L mod=M " into line; the date part is formatted once per second per thread. */
static int format_prefix(char *line, size_t cap, enum cg_log_level level, const char *mod)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached_date[32];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(cached_date, sizeof(cached_date), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    return snprintf(line, cap, "ts=%s.%03ldZ level=%s mod=%s ", cached_date, ts.tv_nsec / 1000000,
                    level_names[level], mod);
}

static size_t format_line(char *line, size_t cap, enum cg_log_level level, const char *mod, const char *fmt,
                          va_list ap)
{
    int n = format_prefix(line, cap, level, mod);
    int m = vsnprintf(line + n, cap - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > cap - 2) {
        len = cap - 2;
    }
    /* A stray CR or LF (an error text from a library, say) must not start a line that is not ours. */
    for (size_t i = (size_t)n; i < len; i++) {
        if (line[i] == '\n' || line[i] == '\r') {
            line[i] = ' ';
        }
    }
    line[len++] = '\n';
    return len;
}

/* The escape for byte c inside a quoted value, written to out (at most 4 bytes); returns its length. */
static size_t escape_byte(unsigned char c, char out[4])
{
    static const char hex[] = "0123456789abcdef";

    out[0] = '\\';
    switch (c) {
    case '"':
    case '\\':
        out[1] = (char)c;
        return 2;
    case '\n':
        out[1] = 'n';
        return 2;
    case '\r':
        out[1] = 'r';
        return 2;
    case '\t':
        out[1] = 't';
        return 2;
    default:
        break;
    }
    if (c < 0x20 || c >= 0x7f) {
        out[1] = 'x';
        out[2] = hex[c >> 4];
        out[3] = hex[c & 0xf];
        return 4;
    }
    out[0] = (char)c;
    return 1;
}

size_t cg_log_quote(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;
    char esc[4];

    dst[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        size_t k = escape_byte((unsigned char)src[i], esc);
        if (n + k + 2 > cap) { /* room for the closing quote and the NUL */
            break;
        }
        memcpy(dst + n, esc, k);
        n += k;
    }
    dst[n++] = '"';
    dst[n] = '\0';
    return n;
}

static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, p, len);
        if (w <= 0) {
            return;
        }
        p += w;
        len -= (size_t)w;
    }
}

void cg_log_write(enum cg_log_level level, const char *mod, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, sizeof(line), level, mod, fmt, ap);
    va_end(ap);
    write_all(line, len);
}

/* ---- buffered lines (the access log): one write per LOG_FLUSH_MS instead of one per request ---- */

#define LOG_BUF 65536
#define LOG_FLUSH_MS 50

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char buf[LOG_BUF];
    size_t len;
    bool running, stop;
    pthread_t thread;
} lb = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Writes out what is buffered. Caller holds lb.mu. */
static void flush_locked(void)
{
    if (lb.len > 0) {
        write_all(lb.buf, lb.len);
        lb.len = 0;
    }
}

void cg_log_buffered(enum cg_log_level level, const char *mod, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(line, sizeof(line), level, mod, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lb.mu);
    if (!lb.running) {
        pthread_mutex_unlock(&lb.mu);
        write_all(line, len);
        return;
    }
    if (lb.len + len > sizeof(lb.buf)) {
        flush_locked();
    }
    memcpy(lb.buf + lb.len, line, len);
    lb.len += len;
    pthread_mutex_unlock(&lb.mu);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lb.mu);
    while (!lb.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += LOG_FLUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&lb.cv, &lb.mu, &until);
        flush_locked();
    }
    pthread_mutex_unlock(&lb.mu);
    return NULL;
}

int cg_log_start_buffering(void)
{
    pthread_mutex_lock(&lb.mu);
    lb.stop = false;
    lb.running = pthread_create(&lb.thread, NULL, flusher_main, NULL) == 0;
    pthread_mutex_unlock(&lb.mu);
    return lb.running ? 0 : -1;
}

void cg_log_stop_buffering(void)
{
    pthread_mutex_lock(&lb.mu);
    if (!lb.running) {
        pthread_mutex_unlock(&lb.mu);
        return;
    }
    lb.stop = true;
    pthread_cond_signal(&lb.cv);
    pthread_mutex_unlock(&lb.mu);
    pthread_join(lb.thread, NULL);
    pthread_mutex_lock(&lb.mu);
    flush_locked();
    lb.running = false;
    pthread_mutex_unlock(&lb.mu);
}
