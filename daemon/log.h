/*
 * log.h - the daemon's leveled logging to stderr (journald reads stderr).
 *
 * One line per message: "chand[pid]: <level>: <text>".  The level is a
 * process-wide setting read without a lock (an int), so any thread,
 * goroutines included, may log.
 */
#ifndef CHAND_LOG_H
#define CHAND_LOG_H

typedef enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN,
    LOG_LVL_INFO,
    LOG_LVL_DEBUG,
} log_level;

/* Sets the level; messages above it are dropped. */
void log_set_level(log_level l);
log_level log_get_level(void);
/* Returns 0 and sets *l for "error", "warn", "info", "debug"; else -1. */
int log_level_parse(const char *s, log_level *l);
/* Returns the name of a level. */
const char *log_level_name(log_level l);
/* Writes one message if l is enabled. */
void log_msg(log_level l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_get_level() >= LOG_LVL_DEBUG)                                  \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                               \
    } while (0)

#endif /* CHAND_LOG_H */
