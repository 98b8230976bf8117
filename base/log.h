/* base/log: leveled, one-line key=value logging to stderr, as text ("ts=... level=... key=value") or as
 * JSON objects (cg_log_set_format); the JSON access log goes to stdout (cg_log_stdout).
 * A disabled level costs one integer compare: call sites use the CG_LOG macro. Safe from any thread.
 * Logging never holds up serving: while the flusher runs (cg_log_start_buffering), a call only copies its
 * line into a buffer, and a line that does not fit because stderr is not read fast enough (a log collector
 * that hangs, a full pipe) is dropped and counted (cg_log_dropped; /metrics coapgw_log_lines_dropped_total).
 * The log says so with "event=lines_dropped lines=N total=T" once stderr takes lines again ("sink=stdout"
 * for lines stdout could not take). Each sink has a flusher of its own: a stuck stdout never holds up
 * stderr, nor the other way round. */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum cg_log_level { CG_LOG_ERROR = 0, CG_LOG_WARN = 1, CG_LOG_INFO = 2, CG_LOG_DEBUG = 3 };
enum cg_log_format { CG_LOG_TEXT = 0, CG_LOG_JSON = 1 };

extern _Atomic int cg_log_threshold;

/* Parses "error", "warn", "info", "debug". Returns 0 on success, -1 for an unknown name. */
int cg_log_level_parse(const char *name, enum cg_log_level *out);
const char *cg_log_level_name(enum cg_log_level level);
void cg_log_set_level(enum cg_log_level level);
/* Text (the default) or JSON: {"ts":..,"level":..,"mod":.., then each key=value of the line as a string
 * member, quoted values unquoted first}; a part that is not key=value goes whole into "text". Set once at
 * start-up (main), before the first thread. */
void cg_log_set_format(enum cg_log_format format);
enum cg_log_format cg_log_format(void);

/* The current time as RFC 3339 UTC with milliseconds ("2026-12-01T22:24:16.943Z"); returns its length. */
#define CG_LOG_TS_LEN 32
size_t cg_log_timestamp(char out[CG_LOG_TS_LEN]);

/* Logs "ts=T level=L mod=M " followed by the formatted text and a newline. A CR or LF in the formatted text
 * becomes a space: one call is one line. Values from outside belong in cg_log_quote. While the flusher runs
 * the line goes through the buffer like cg_log_buffered's (order kept), a warn or error line flushed at
 * once; otherwise (start-up, exit) it is written at once, waiting at most 500 ms for a stuck stderr, and not
 * at all again until stderr has taken a line. Lines never interleave or tear on a pipe. */
void cg_log_write(enum cg_log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes src[0..len) into dst as a double-quoted log value: a quote or a backslash gets a backslash, CR, LF
 * and TAB become \r \n \t, other control and non-ASCII bytes \xNN, so a value from a device or a client
 * can neither end its field nor start a line. Truncates (still quoted) to fit cap; dst is NUL-terminated.
 * Returns the length written (excluding the NUL). cap >= 3. */
size_t cg_log_quote(char *dst, size_t cap, const char *src, size_t len);

/* Writes src[0..len) into dst as a JSON string (RFC 8259) with its quotes: quote, backslash and control
 * bytes escaped (\n \r \t \b \f, others and DEL as \u00XX), U+2028/U+2029 as \u2028/\u2029, and every
 * byte that is not part of well-formed UTF-8 as \ufffd, so the output is valid JSON and valid UTF-8
 * whatever the input. Truncates at a whole character to fit cap; NUL-terminated; returns the length
 * written. cap >= 3. */
size_t cg_json_quote(char *dst, size_t cap, const char *src, size_t len);

/* A JSON object built in a caller's buffer. A member that does not fit is left out, a string value is cut
 * (at a whole character) to fit; the closing brace always fits. Keys are the caller's (ASCII, no escapes). */
struct cg_json {
    char *p;
    size_t cap, len;
    unsigned members;
};
void cg_json_begin(struct cg_json *j, char *buf, size_t cap);                    /* cap >= 8 */
void cg_json_str(struct cg_json *j, const char *key, const char *v, size_t len); /* v NULL: null */
void cg_json_int(struct cg_json *j, const char *key, long long v);
void cg_json_raw(struct cg_json *j, const char *key, const char *raw); /* a literal: number, true, null */
/* The members of a text line's "key=value key=\"quoted\"" part, as strings (see cg_log_set_format). */
void cg_json_kv(struct cg_json *j, const char *text, size_t len);
size_t cg_json_end(struct cg_json *j); /* closes the object; returns its length */

/* A whole line (no newline; at most 8191 bytes) for stdout: the JSON access log. Buffered like
 * cg_log_buffered, through stdout's own flusher. */
void cg_log_stdout(const char *line, size_t len);

/* For high-volume lines (the access log): appended to the buffer, which the flusher writes out every 50 ms
 * (at once when half full) with the lock released. Written at once until cg_log_start_buffering(). */
void cg_log_buffered(enum cg_log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Starts the flusher thread (main, at start-up). Returns 0, or -1 (lines then go out unbuffered). */
int cg_log_start_buffering(void);
/* Stops the flusher and writes out what is left (main, at exit); gives up (drops, counts) after 1 s when
 * stderr takes nothing, so a stuck reader does not hang the exit. */
void cg_log_stop_buffering(void);

/* Lines dropped since start: not written because stderr or stdout was stuck or failed (EPIPE, say). */
uint64_t cg_log_dropped(void);

/* Sends lines to fd instead of stderr, or cg_log_stdout's instead of stdout (the unit tests). */
void cg_log_set_fd(int fd);
void cg_log_set_out_fd(int fd);

#define CG_LOG(level, mod, ...)                                                                              \
    do {                                                                                                     \
        if ((int)(level) <= atomic_load_explicit(&cg_log_threshold, memory_order_relaxed)) {                 \
            cg_log_write((level), (mod), __VA_ARGS__);                                                       \
        }                                                                                                    \
    } while (0)

#define cg_log_enabled(level) ((int)(level) <= atomic_load_explicit(&cg_log_threshold, memory_order_relaxed))

#endif
