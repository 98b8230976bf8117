/* base/log: formats a line into a stack buffer; the flusher thread writes buffered lines out in whole-line
 * chunks of at most PIPE_BUF bytes, so lines from different threads never interleave. Never allocates, and
 * never lets a sink that stopped reading hold up the caller: a line that does not fit is dropped, counted. */
#include "base/log.h"

#include "base/clock.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
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

/* ---- the sink: every write waits for room with poll() first, so a stuck reader costs a bounded wait ---- */

#define LOG_FLUSH_MS 50
#define LOG_DIRECT_MS 500 /* the longest a line written without the flusher waits for a stuck sink */
#define LOG_EXIT_MS 1000  /* the longest the last flush waits at exit before it drops what is left */

static _Atomic int sink_fd = STDERR_FILENO;
static _Atomic uint64_t dropped;
static _Atomic bool sink_stuck; /* the last write timed out: the next direct line does not wait again */

static int64_t now_ms(void)
{
    return (int64_t)cg_now_ms(); /* signed: deadlines are compared by difference */
}

/* The next write: whole lines, at most PIPE_BUF bytes. A pipe with room for POLLOUT takes that much at once
 * without blocking, and all of it or nothing, so no other writer ever lands inside one of our lines. */
static size_t chunk_len(const char *p, size_t len)
{
    if (len <= PIPE_BUF) {
        return len;
    }
    const char *nl = memrchr(p, '\n', PIPE_BUF);
    return nl != NULL ? (size_t)(nl - p) + 1 : PIPE_BUF;
}

/* Waits for room until *deadline (re-read every LOG_FLUSH_MS: cg_log_stop_buffering shortens it), once more
 * when it has passed. Returns 1 when the sink takes a write, 0 when the time is up, -1 when it never will. */
static int wait_room(int fd, const _Atomic int64_t *deadline)
{
    for (;;) {
        int64_t left = atomic_load(deadline) - now_ms();
        int ms = left <= 0 ? 0 : left < LOG_FLUSH_MS ? (int)left : LOG_FLUSH_MS;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, ms);
        if (n > 0) {
            return 1; /* POLLERR, POLLHUP and POLLNVAL too: the write says what is wrong */
        }
        if (n < 0 && errno != EINTR) {
            return -1;
        }
        if (n == 0 && ms == 0) {
            return 0;
        }
    }
}

/* Writes p[0..len) (whole lines) to the sink until *deadline; counts the lines it could not write. */
static void drain(const char *p, size_t len, const _Atomic int64_t *deadline)
{
    int fd = atomic_load(&sink_fd);
    size_t done = 0;

    while (done < len && wait_room(fd, deadline) > 0) {
        ssize_t w = write(fd, p + done, chunk_len(p + done, len - done));
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (w <= 0) {
            break; /* EPIPE, EBADF, ENOSPC: this sink will not take the lines */
        }
        done += (size_t)w;
    }
    atomic_store(&sink_stuck, done < len);
    uint64_t lost = 0;
    for (const char *q = p + done; (q = memchr(q, '\n', (size_t)(p + len - q))) != NULL; q++) {
        lost++;
    }
    if (lost > 0) {
        atomic_fetch_add_explicit(&dropped, lost, memory_order_relaxed);
    }
}

/* A line while no flusher runs (start-up, exit): written now, but no longer than LOG_DIRECT_MS. */
static void write_direct(const char *line, size_t len)
{
    _Atomic int64_t deadline = atomic_load(&sink_stuck) ? 0 : now_ms() + LOG_DIRECT_MS;
    drain(line, len, &deadline);
}

uint64_t cg_log_dropped(void)
{
    return atomic_load_explicit(&dropped, memory_order_relaxed);
}

void cg_log_set_fd(int fd)
{
    atomic_store(&sink_fd, fd);
    atomic_store(&sink_stuck, false);
}

/* ---- the buffer: callers append (memcpy under the mutex); the flusher writes the other half outside it */

#define LOG_BUF 65536

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char bufs[2][LOG_BUF];
    int cur;                  /* the half callers append to; the flusher owns the other */
    size_t len;               /* bytes in bufs[cur] */
    bool running;             /* a flusher runs: lines go into the buffer */
    bool stop;                /* the flusher is to end */
    bool urgent;              /* a warn or error line waits: flush now */
    uint64_t reported;        /* drops already told in the log (flusher, then cg_log_stop_buffering) */
    _Atomic int64_t deadline; /* the flusher's writes give up then: far away until stopping */
    pthread_t thread;
} lb = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Appends a formatted line, or drops it when the half is full (the sink is slower than the lines come). Wakes
 * the flusher at half full, so a sink that keeps up never sees a full half, and for a warn or error line. */
static void append_line(const char *line, size_t len, enum cg_log_level level)
{
    pthread_mutex_lock(&lb.mu);
    if (!lb.running) {
        pthread_mutex_unlock(&lb.mu);
        write_direct(line, len);
        return;
    }
    if (lb.len + len > LOG_BUF) {
        pthread_mutex_unlock(&lb.mu);
        atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
        return;
    }
    bool wake = level <= CG_LOG_WARN || (lb.len < LOG_BUF / 2 && lb.len + len >= LOG_BUF / 2);
    memcpy(lb.bufs[lb.cur] + lb.len, line, len);
    lb.len += len;
    lb.urgent = lb.urgent || level <= CG_LOG_WARN;
    if (wake) {
        pthread_cond_signal(&lb.cv);
    }
    pthread_mutex_unlock(&lb.mu);
}

static void log_line(enum cg_log_level level, const char *mod, const char *fmt, va_list ap)
{
    char line[2048];
    size_t len = format_line(line, sizeof(line), level, mod, fmt, ap);
    append_line(line, len, level);
}

void cg_log_write(enum cg_log_level level, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(level, mod, fmt, ap);
    va_end(ap);
}

/* Both entry points share one buffer and one writer: the order of lines is kept. */
void cg_log_buffered(enum cg_log_level level, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(level, mod, fmt, ap);
    va_end(ap);
}

/* Once the sink moves again, the log itself says how many lines it lacks. */
static void report_drops(void)
{
    uint64_t total = cg_log_dropped();
    if (total != lb.reported) {
        cg_log_write(CG_LOG_WARN, "log", "event=lines_dropped lines=%llu total=%llu",
                     (unsigned long long)(total - lb.reported), (unsigned long long)total);
        lb.reported = total;
    }
}

/* Takes the half callers appended to (caller holds lb.mu); *len is its length. */
static const char *swap_locked(size_t *len)
{
    const char *out = lb.bufs[lb.cur];
    *len = lb.len;
    lb.cur ^= 1;
    lb.len = 0;
    lb.urgent = false;
    return out;
}

static void wait_locked(void)
{
    struct timespec until = cg_timespec_after_ms(CLOCK_REALTIME, LOG_FLUSH_MS);
    pthread_cond_timedwait(&lb.cv, &lb.mu, &until);
}

/* The only writer while running. It may wait on the sink as long as it likes: it holds no lock then. */
static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lb.mu);
    while (!lb.stop) {
        if (lb.len < LOG_BUF / 2 && !lb.urgent) {
            wait_locked();
        }
        if (lb.len == 0 || lb.stop) {
            continue;
        }
        size_t len;
        const char *out = swap_locked(&len);
        pthread_mutex_unlock(&lb.mu);
        drain(out, len, &lb.deadline);
        if (!atomic_load(&sink_stuck)) {
            report_drops();
        }
        pthread_mutex_lock(&lb.mu);
    }
    pthread_mutex_unlock(&lb.mu);
    return NULL;
}

int cg_log_start_buffering(void)
{
    pthread_mutex_lock(&lb.mu);
    if (!lb.running) {
        lb.stop = false;
        atomic_store(&lb.deadline, INT64_MAX);
        lb.running = pthread_create(&lb.thread, NULL, flusher_main, NULL) == 0;
    }
    bool running = lb.running;
    pthread_mutex_unlock(&lb.mu);
    return running ? 0 : -1;
}

/* The flusher's current write gets until LOG_EXIT_MS from now, and so does what is left in the buffer. */
void cg_log_stop_buffering(void)
{
    pthread_mutex_lock(&lb.mu);
    if (!lb.running) {
        pthread_mutex_unlock(&lb.mu);
        return;
    }
    lb.stop = true;
    atomic_store(&lb.deadline, now_ms() + LOG_EXIT_MS);
    pthread_cond_signal(&lb.cv);
    pthread_mutex_unlock(&lb.mu);
    pthread_join(lb.thread, NULL);
    if (!atomic_load(&sink_stuck)) {
        report_drops();
    }
    pthread_mutex_lock(&lb.mu);
    size_t len;
    const char *out = swap_locked(&len);
    lb.running = false; /* from here lines go out directly, and nobody else touches out */
    pthread_mutex_unlock(&lb.mu);
    drain(out, len, &lb.deadline);
}
