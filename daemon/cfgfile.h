/*
 * cfgfile.h - where chand's settings come from: the built-in defaults,
 * then the config file (--config), then the command-line flags, so that a
 * flag always wins whatever its position.  The same composition runs again
 * on SIGHUP (cfg_reload), which is why the flags are remembered.
 *
 * File format (chand.conf(5)): one `key = value` per line; '#' starts a
 * comment (at the start of a line or after white space); blank lines are
 * ignored; a value may be written in double quotes.  Keys are the long flag
 * names, '_' and '-' alike.  The last of two equal keys wins.
 */
#ifndef CHAND_CFGFILE_H
#define CHAND_CFGFILE_H

#include <stddef.h>

#include "conf.h"

/* Applies every setting of the file at path to c.  Returns 0, or -1 with
 * "path:line: what" (or "path: why" when it cannot be read) in err; c may
 * then hold part of the file. */
int cfg_load_file(conf *c, const char *path, char *err, size_t errlen);

/* Same for a file already in memory (text need not end in '\n'); name is
 * used in messages.  For tests and for cfg_load_file. */
int cfg_load_text(conf *c, const char *name, const char *text, char *err,
                  size_t errlen);

/* main's argument handling: fills c from defaults, --config FILE and the
 * flags, and remembers argv (borrowed: it must outlive the process's use
 * of cfg_reload).  Returns 0 when the daemon should run, or 1 when it
 * should exit with *exit_code: 0 after --help, --version or a good
 * --test-config; 1 for a bad config file; 2 for a usage error.  Messages
 * go to stdout (help) or stderr. */
int cfg_from_args(int argc, char **argv, conf *c, int *exit_code);

/* Builds the settings again as cfg_from_args did (defaults, file, flags)
 * into c.  Returns 0, or -1 with a message in err. */
int cfg_reload(conf *c, char *err, size_t errlen);

#endif /* CHAND_CFGFILE_H */
