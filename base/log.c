/* base/log: formats a line into a stack buffer; a flusher thread per sink (stderr, stdout) writes buffered
 * lines out in whole-line chunks of at most PIPE_BUF bytes, so lines from different threads never
 * interleave. Never allocates, and never lets a sink that stopped reading hold up the caller (nor the other
 * sink): a line that does not fit is dropped, counted. */
#include "base/log.h"

#include "base/clock.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int cg_log_threshold = CG_LOG_INFO;
static _Atomic int log_format = CG_LOG_TEXT;

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

void cg_log_set_format(enum cg_log_format format)
{
    atomic_store(&log_format, (int)format);
}

enum cg_log_format cg_log_format(void)
{
    return (enum cg_log_format)atomic_load_explicit(&log_format, memory_order_relaxed);
}

/* The date part is formatted once per second per thread. */
size_t cg_log_timestamp(char out[CG_LOG_TS_LEN])
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached_date[20]; /* "2026-12-01T22:24:16" */
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(cached_date, sizeof(cached_date), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    int n = snprintf(out, CG_LOG_TS_LEN, "%s.%03dZ", cached_date, (int)(ts.tv_nsec / 1000000) % 1000);
    return n > 0 && n < CG_LOG_TS_LEN ? (size_t)n : 0;
}

/* ---- text: "ts=... level=L mod=M key=value ..." ---- */

static size_t format_text(char *line, size_t cap, enum cg_log_level level, const char *mod, const char *fmt,
                          va_list ap)
{
    char ts[CG_LOG_TS_LEN];
    cg_log_timestamp(ts);
    int n = snprintf(line, cap, "ts=%s level=%s mod=%s ", ts, level_names[level], mod);
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

/* ---- JSON ---- */

/* The length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return len;
}

/* The JSON form of the character at s[0..n) into out (at most 6 bytes); *used is how many bytes of s it
 * took. Invalid UTF-8 becomes U+FFFD, one per byte. */
static size_t json_char(const unsigned char *s, size_t n, char out[6], size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    size_t len = utf8_len(s, n);

    *used = len > 0 ? len : 1;
    if (len == 0) {
        memcpy(out, "\\ufffd", 6);
        return 6;
    }
    if (len == 3 && c == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)) {
        memcpy(out, s[2] == 0xa8 ? "\\u2028" : "\\u2029", 6); /* line separators, for JavaScript readers */
        return 6;
    }
    if (len > 1) {
        memcpy(out, s, len);
        return len;
    }
    const char *esc = c == '"'    ? "\\\""
                      : c == '\\' ? "\\\\"
                      : c == '\n' ? "\\n"
                      : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t"
                      : c == '\b' ? "\\b"
                      : c == '\f' ? "\\f"
                                  : NULL;
    if (esc != NULL) {
        memcpy(out, esc, 2);
        return 2;
    }
    if (c < 0x20 || c == 0x7f) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 0xf];
        return 6;
    }
    out[0] = (char)c;
    return 1;
}

size_t cg_json_quote(char *dst, size_t cap, const char *src, size_t len)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t n = 0;
    char esc[6];

    dst[n++] = '"';
    for (size_t i = 0; i < len;) {
        size_t used;
        size_t k = json_char(s + i, len - i, esc, &used);
        if (n + k + 2 > cap) { /* room for the closing quote and the NUL */
            break;
        }
        memcpy(dst + n, esc, k);
        n += k;
        i += used;
    }
    dst[n++] = '"';
    dst[n] = '\0';
    return n;
}

/* What every member needs behind it: "}\n" and the NUL. */
#define JSON_RESERVE 3

void cg_json_begin(struct cg_json *j, char *buf, size_t cap)
{
    j->p = buf;
    j->cap = cap;
    j->len = 0;
    j->members = 0;
    buf[j->len++] = '{';
    buf[j->len] = '\0';
}

/* "," (after the first member) "\"key\":" when it fits with room for a value of at least min bytes. */
static bool json_key(struct cg_json *j, const char *key, size_t min)
{
    size_t klen = strlen(key);
    size_t need = (j->members > 0) + klen + 3 + min;

    if (j->len + need + JSON_RESERVE > j->cap) {
        return false;
    }
    if (j->members++ > 0) {
        j->p[j->len++] = ',';
    }
    j->p[j->len++] = '"';
    memcpy(j->p + j->len, key, klen); /* keys are ours: plain ASCII, nothing to escape */
    j->len += klen;
    j->p[j->len++] = '"';
    j->p[j->len++] = ':';
    return true;
}

static void json_put(struct cg_json *j, const char *raw, size_t len)
{
    memcpy(j->p + j->len, raw, len);
    j->len += len;
    j->p[j->len] = '\0';
}

void cg_json_str(struct cg_json *j, const char *key, const char *v, size_t len)
{
    if (v == NULL) {
        cg_json_raw(j, key, "null");
        return;
    }
    if (json_key(j, key, 2)) {
        j->len += cg_json_quote(j->p + j->len, j->cap - j->len - JSON_RESERVE + 1, v, len);
    }
}

void cg_json_raw(struct cg_json *j, const char *key, const char *raw)
{
    size_t len = strlen(raw);
    if (json_key(j, key, len)) {
        json_put(j, raw, len);
    }
}

void cg_json_int(struct cg_json *j, const char *key, long long v)
{
    char num[24];
    snprintf(num, sizeof(num), "%lld", v);
    cg_json_raw(j, key, num);
}

size_t cg_json_end(struct cg_json *j)
{
    json_put(j, "}", 1);
    return j->len;
}

/* Reads one value of a text line at s[0..n): quoted (cg_log_quote's escapes undone) or bare, up to the
 * next space. Writes the bytes to out (cap bytes); returns how many bytes of s it took. */
static size_t kv_value(const char *s, size_t n, char *out, size_t cap, size_t *out_len)
{
    size_t i = 0, o = 0;

    if (n == 0 || s[0] != '"') {
        while (i < n && s[i] != ' ') {
            if (o < cap) {
                out[o++] = s[i];
            }
            i++;
        }
        *out_len = o;
        return i;
    }
    for (i = 1; i < n && s[i] != '"'; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            char e = s[++i];
            c = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
            if (e == 'x' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
                isxdigit((unsigned char)s[i + 2])) {
                char hex[3] = {s[i + 1], s[i + 2], '\0'};
                c = (char)strtoul(hex, NULL, 16);
                i += 2;
            }
        }
        if (o < cap) {
            out[o++] = c;
        }
    }
    *out_len = o;
    return i < n ? i + 1 : i; /* the closing quote */
}

void cg_json_kv(struct cg_json *j, const char *text, size_t len)
{
    char value[2048], key[64];
    size_t i = 0;

    while (i < len) {
        while (i < len && text[i] == ' ') {
            i++;
        }
        size_t k = i;
        while (k < len && text[k] != '=' && text[k] != ' ') {
            k++;
        }
        if (k == i) {
            break;
        }
        if (k >= len || text[k] != '=' || k - i >= sizeof(key)) {
            /* Not key=value: the rest of the line, as it is, under "text". */
            cg_json_str(j, "text", text + i, len - i);
            return;
        }
        memcpy(key, text + i, k - i);
        key[k - i] = '\0';
        size_t vlen;
        i = k + 1;
        i += kv_value(text + i, len - i, value, sizeof(value), &vlen);
        char qkey[sizeof(key) * 6 + 3];
        cg_json_quote(qkey, sizeof(qkey), key, strlen(key));
        qkey[strlen(qkey) - 1] = '\0'; /* json_key adds the quotes */
        cg_json_str(j, qkey + 1, value, vlen);
    }
}

/* {"ts":..., "level":..., "mod":..., then the key=value pairs of the formatted text as members}. */
static size_t format_json(char *line, size_t cap, enum cg_log_level level, const char *mod, const char *fmt,
                          va_list ap)
{
    char text[2048], ts[CG_LOG_TS_LEN];
    struct cg_json j;
    int m = vsnprintf(text, sizeof(text), fmt, ap);
    size_t tlen = m < 0 ? 0 : (size_t)m >= sizeof(text) ? sizeof(text) - 1 : (size_t)m;

    cg_log_timestamp(ts);
    cg_json_begin(&j, line, cap - 1);
    cg_json_str(&j, "ts", ts, strlen(ts));
    cg_json_raw(&j, "level",
                level == CG_LOG_ERROR  ? "\"error\""
                : level == CG_LOG_WARN ? "\"warn\""
                : level == CG_LOG_INFO ? "\"info\""
                                       : "\"debug\"");
    cg_json_str(&j, "mod", mod, strlen(mod));
    cg_json_kv(&j, text, tlen);
    size_t len = cg_json_end(&j);
    line[len++] = '\n';
    return len;
}

/* ---- the sinks: every write waits for room with poll() first, so a stuck reader costs a bounded wait ----
 */

#define LOG_FLUSH_MS 50
#define LOG_DIRECT_MS 500 /* the longest a line written without the flusher waits for a stuck sink */
#define LOG_EXIT_MS 1000  /* the longest the last flush waits at exit before it drops what is left */
#define LOG_BUF 65536

/* A sink: its descriptor, and the buffer callers append to (memcpy under the mutex) while its flusher
 * writes the other half outside it. */
struct sink {
    const char *name;
    _Atomic int fd;
    _Atomic bool stuck; /* the last write timed out: the next direct line does not wait again */
    atomic_uint_fast64_t dropped;
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
};

enum { SINK_ERR, SINK_OUT, SINKS };

static struct sink sinks[SINKS] = {
    [SINK_ERR] = {.name = "stderr",
                  .fd = STDERR_FILENO,
                  .mu = PTHREAD_MUTEX_INITIALIZER,
                  .cv = PTHREAD_COND_INITIALIZER},
    [SINK_OUT] = {.name = "stdout",
                  .fd = STDOUT_FILENO,
                  .mu = PTHREAD_MUTEX_INITIALIZER,
                  .cv = PTHREAD_COND_INITIALIZER},
};

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
static void drain(struct sink *s, const char *p, size_t len, const _Atomic int64_t *deadline)
{
    int fd = atomic_load(&s->fd);
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
    atomic_store(&s->stuck, done < len);
    uint64_t lost = 0;
    for (const char *q = p + done; (q = memchr(q, '\n', (size_t)(p + len - q))) != NULL; q++) {
        lost++;
    }
    if (lost > 0) {
        atomic_fetch_add_explicit(&s->dropped, lost, memory_order_relaxed);
    }
}

/* A line while no flusher runs (start-up, exit): written now, but no longer than LOG_DIRECT_MS. */
static void write_direct(struct sink *s, const char *line, size_t len)
{
    _Atomic int64_t deadline = atomic_load(&s->stuck) ? 0 : now_ms() + LOG_DIRECT_MS;
    drain(s, line, len, &deadline);
}

uint64_t cg_log_dropped(void)
{
    uint64_t total = 0;
    for (int i = 0; i < SINKS; i++) {
        total += atomic_load_explicit(&sinks[i].dropped, memory_order_relaxed);
    }
    return total;
}

void cg_log_set_fd(int fd)
{
    atomic_store(&sinks[SINK_ERR].fd, fd);
    atomic_store(&sinks[SINK_ERR].stuck, false);
}

void cg_log_set_out_fd(int fd)
{
    atomic_store(&sinks[SINK_OUT].fd, fd);
    atomic_store(&sinks[SINK_OUT].stuck, false);
}

/* Appends a formatted line, or drops it when the half is full (the sink is slower than the lines come). Wakes
 * the flusher at half full, so a sink that keeps up never sees a full half, and for a warn or error line. */
static void append_line(struct sink *s, const char *line, size_t len, enum cg_log_level level)
{
    pthread_mutex_lock(&s->mu);
    if (!s->running) {
        pthread_mutex_unlock(&s->mu);
        write_direct(s, line, len);
        return;
    }
    if (s->len + len > LOG_BUF) {
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        return;
    }
    bool wake = level <= CG_LOG_WARN || (s->len < LOG_BUF / 2 && s->len + len >= LOG_BUF / 2);
    memcpy(s->bufs[s->cur] + s->len, line, len);
    s->len += len;
    s->urgent = s->urgent || level <= CG_LOG_WARN;
    if (wake) {
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void log_line(enum cg_log_level level, const char *mod, const char *fmt, va_list ap)
{
    char line[8192]; /* a JSON line may escape a byte as six */
    size_t len = cg_log_format() == CG_LOG_JSON ? format_json(line, sizeof(line), level, mod, fmt, ap)
                                                : format_text(line, 2048, level, mod, fmt, ap);
    append_line(&sinks[SINK_ERR], line, len, level);
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

void cg_log_stdout(const char *line, size_t len)
{
    char buf[8192];

    if (len >= sizeof(buf)) {
        len = sizeof(buf) - 1; /* the caller's line is at most CG_LOG_LINE_MAX: never cut here */
    }
    memcpy(buf, line, len);
    buf[len++] = '\n';
    append_line(&sinks[SINK_OUT], buf, len, CG_LOG_INFO);
}

/* Once the sink moves again, the log itself says how many lines it lacks (on stderr). */
static void report_drops(struct sink *s)
{
    uint64_t total = atomic_load_explicit(&s->dropped, memory_order_relaxed);
    if (total == s->reported) {
        return;
    }
    if (s == &sinks[SINK_ERR]) {
        cg_log_write(CG_LOG_WARN, "log", "event=lines_dropped lines=%llu total=%llu",
                     (unsigned long long)(total - s->reported), (unsigned long long)total);
    } else {
        cg_log_write(CG_LOG_WARN, "log", "event=lines_dropped sink=%s lines=%llu total=%llu", s->name,
                     (unsigned long long)(total - s->reported), (unsigned long long)total);
    }
    s->reported = total;
}

/* Takes the half callers appended to (caller holds s->mu); *len is its length. */
static const char *swap_locked(struct sink *s, size_t *len)
{
    const char *out = s->bufs[s->cur];
    *len = s->len;
    s->cur ^= 1;
    s->len = 0;
    s->urgent = false;
    return out;
}

static void wait_locked(struct sink *s)
{
    struct timespec until = cg_timespec_after_ms(CLOCK_REALTIME, LOG_FLUSH_MS);
    pthread_cond_timedwait(&s->cv, &s->mu, &until);
}

/* The sink's only writer while running. It may wait on the sink as long as it likes: it holds no lock
 * then, and the other sink has a flusher of its own. */
static void *flusher_main(void *arg)
{
    struct sink *s = arg;

    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (s->len < LOG_BUF / 2 && !s->urgent) {
            wait_locked(s);
        }
        if (s->len == 0 || s->stop) {
            continue;
        }
        size_t len;
        const char *out = swap_locked(s, &len);
        pthread_mutex_unlock(&s->mu);
        drain(s, out, len, &s->deadline);
        if (!atomic_load(&s->stuck) && !atomic_load(&sinks[SINK_ERR].stuck)) {
            report_drops(s);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static bool start_sink(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->running) {
        s->stop = false;
        atomic_store(&s->deadline, INT64_MAX);
        s->running = pthread_create(&s->thread, NULL, flusher_main, s) == 0;
    }
    bool running = s->running;
    pthread_mutex_unlock(&s->mu);
    return running;
}

int cg_log_start_buffering(void)
{
    bool ok = true;
    for (int i = 0; i < SINKS; i++) {
        ok = start_sink(&sinks[i]) && ok;
    }
    return ok ? 0 : -1;
}

/* The flusher's current write gets until LOG_EXIT_MS from now, and so does what is left in the buffer. */
static void stop_sink(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->running) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->stop = true;
    atomic_store(&s->deadline, now_ms() + LOG_EXIT_MS);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    if (!atomic_load(&s->stuck) && !atomic_load(&sinks[SINK_ERR].stuck)) {
        report_drops(s);
    }
    pthread_mutex_lock(&s->mu);
    size_t len;
    const char *out = swap_locked(s, &len);
    s->running = false; /* from here lines go out directly, and nobody else touches out */
    pthread_mutex_unlock(&s->mu);
    drain(s, out, len, &s->deadline);
}

/* stdout first: its report of drops goes through stderr's buffer, which is flushed after it. */
void cg_log_stop_buffering(void)
{
    stop_sink(&sinks[SINK_OUT]);
    stop_sink(&sinks[SINK_ERR]);
}
