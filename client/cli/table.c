/*
 * table.c - chanctl's commands, one row each: name, arguments, a one-line
 * description, the longer help, and the handler (with what a shared
 * handler calls).  `chanctl --help` lists this table in its order;
 * chanctl.1 describes the same commands.
 */
#include "cli.h"

#define LOCK_HELP                                                              \
    "Prints the fencing token.  The lock belongs to chanctl's session, "       \
    "which ends when chanctl exits: without --lease the lock is released "     \
    "at once.  With --lease DUR it outlives the process for DUR; release "     \
    "it with 'unlock NAME --token T'."

#define RUN_HELP                                                               \
    "COMMAND gets the fencing token in $CHAND_TOKEN.  SIGTERM and SIGHUP "     \
    "are passed on to COMMAND, and chanctl lets go only once it has "          \
    "exited.  If chanctl is killed outright, its session ends and the "        \
    "server releases the lock.  If the lock is lost while COMMAND runs "       \
    "(the connection to the server is lost; with --lease, the lease runs "     \
    "out), COMMAND gets SIGTERM, SIGKILL after --grace DUR (10s), and "        \
    "chanctl exits 125."

const cli_cmd cli_cmds[] = {
    {.name = "ping",
     .fn = cli_h_ping,
     .brief = "check that the server answers",
     .help = "Checks that the server answers; prints pong."},
    {.name = "hello",
     .fn = cli_h_hello,
     .brief = "print the server's version and this session",
     .help = "Prints the server's version and this session's id."},
    {.name = "call",
     .fn = cli_h_call,
     .min = 1,
     .max = 2,
     .usage = "METHOD [PARAMS]",
     .brief = "send any request and print its result",
     .help = "Sends any request (PARAMS a JSON object) and prints its "
             "result; --timeout is carried as timeout_ms for blocking "
             "methods."},
    {.name = "make",
     .fn = cli_h_make,
     .min = 1,
     .max = 2,
     .opts = O_CAP | O_TYPE | O_MAXDELIV | O_DEADLTR,
     .usage = "NAME [CAP] [--cap N] [--type T] [--max-deliver N] "
              "[--dead-letter NAME]",
     .brief = "make a channel",
     .help = "Makes channel NAME with a buffer of CAP values (0: "
             "unbuffered), carrying values of type T: any, string, number, "
             "bool, object, array.  A channel that exists with the same CAP "
             "and type is left as it is; one that exists and is closed "
             "stays closed, and make says so and exits 1 (drop NAME starts "
             "over).  For acknowledged receives (recv --ack, work): after "
             "--max-deliver N attempts a value goes to the --dead-letter "
             "channel, wrapped as {origin, value, attempts, reason}; "
             "without a dead-letter channel it is dropped."},
    {.name = "send",
     .fn = cli_h_send,
     .min = 2,
     .max = 2,
     .opts = O_FILE | O_STRING | O_JSONVAL | O_NORAW,
     .usage = "NAME VALUE|- [--string|--json] | NAME --file PATH|-",
     .brief = "send a value on a channel",
     .help = "Sends VALUE on channel NAME, waiting for a receiver or "
             "buffer room.  VALUE is JSON if the whole of it parses as one "
             "JSON value, else a string: 42 is a number, 042 a string (JSON "
             "numbers have no leading zeros), '[1,2' a string.  --string "
             "always sends a string; --json requires valid JSON (exit 2 "
             "otherwise).  '-' sends each line of stdin as one value; "
             "--file PATH (or - for stdin) sends the whole file, bytes as "
             "they are, as one value.  Exits 1 if the channel is closed.  "
             "A VALUE that starts with '-' goes after --: send q -- -x."},
    {.name = "recv",
     .fn = cli_h_recv,
     .min = 1,
     .max = 1,
     .opts = O_MAKE | O_ACK | O_ACKWAIT,
     .usage = "NAME [--make CAP] [--ack [--ack-wait DUR]]",
     .brief = "receive one value from a channel",
     .help = "Receives one value from channel NAME and prints it (JSON; a "
             "raw string with --raw).  Exits 1 when the channel is closed "
             "and drained (-q: without saying so on stderr).  --make CAP "
             "first makes the channel with capacity CAP if it is missing, "
             "so a consumer may start before its producer.  --ack "
             "receives with acknowledgement: the delivery id is printed "
             "alone on a line on stderr (with --json, the output is "
             "{value, ok, delivery: {id, attempt}}), and the value is "
             "redelivered unless 'ack NAME ID' comes within --ack-wait.  "
             "The delivery belongs to chanctl's session: when chanctl "
             "exits, the value is redelivered at once, so acknowledge in "
             "the same session (the interactive mode) or use 'work'."},
    {.name = "range",
     .fn = cli_h_range,
     .min = 1,
     .max = 1,
     .opts = O_MAKE,
     .usage = "NAME [--make CAP]",
     .brief = "print values until the channel is closed",
     .help = "Receives and prints values, one a line, until channel NAME "
             "is closed (then exits 0).  --timeout applies to each "
             "receive; --make CAP as for recv."},
    {.name = "close",
     .fn = cli_h_byname,
     .byname = chand_close,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "close a channel",
     .help = "Closes channel NAME.  Exits 1 if it was already closed."},
    {.name = "len",
     .fn = cli_h_len,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "print a channel's length, capacity and values in flight",
     .help = "Prints the number of queued values, the capacity and the "
             "deliveries in flight (received with --ack, not yet "
             "acknowledged): 'LEN CAP INFLIGHT'."},
    {.name = "ack",
     .fn = cli_h_ack,
     .min = 2,
     .max = 2,
     .usage = "NAME ID",
     .brief = "acknowledge a delivery",
     .help = "Completes delivery ID of channel NAME: the value leaves the "
             "channel.  Exits 3 (not_pending) when the delivery is no "
             "longer in flight: acknowledged, expired and redelivered, or "
             "its session ended."},
    {.name = "nack",
     .fn = cli_h_nack,
     .min = 2,
     .max = 2,
     .opts = O_DELAY | O_REASON,
     .usage = "NAME ID [--delay DUR] [--reason TEXT]",
     .brief = "give a delivery back for redelivery",
     .help = "Puts the value of delivery ID back into channel NAME, ahead "
             "of values never delivered: at once, or after --delay DUR.  "
             "--reason is kept for its dead letter.  Exits 3 as ack."},
    {.name = "touch",
     .fn = cli_h_touch,
     .min = 2,
     .max = 2,
     .opts = O_ACKWAIT,
     .usage = "NAME ID [--ack-wait DUR]",
     .brief = "extend a delivery's deadline",
     .help = "Restarts the deadline of delivery ID: it expires --ack-wait "
             "DUR from now (default: the wait it was received with).  "
             "Prints the wait in milliseconds.  Exits 3 as ack."},
    {.name = "term",
     .fn = cli_h_term,
     .min = 2,
     .max = 2,
     .opts = O_REASON,
     .usage = "NAME ID [--reason TEXT]",
     .brief = "dead-letter a delivery at once",
     .help = "Sends the value of delivery ID to the channel's dead-letter "
             "channel now, whatever its attempts (dropped when it has "
             "none).  Exits 3 as ack."},
    {.name = "work",
     .fn = cli_h_work,
     .min = 1,
     .max = 1,
     .opts = O_CMD | O_ACKWAIT | O_MAXN | O_GRACE,
     .usage = "NAME [--ack-wait DUR] [--max N] -- COMMAND [ARGS...]",
     .brief = "run a command once per value, acknowledged",
     .help = "Receives values from channel NAME with acknowledgement and "
             "runs COMMAND once per value: the value is on its stdin and in "
             "$CHAND_VALUE (text for a string, else JSON; $CHAND_VALUE is "
             "unset for values over 128 KiB), the delivery in "
             "$CHAND_DELIVERY and $CHAND_ATTEMPT.  Exit 0 acknowledges the "
             "value; any other status nacks it (reason 'exit N' or "
             "'signal N'), so it is redelivered, or dead-lettered after "
             "the channel's --max-deliver.  While COMMAND runs, chanctl "
             "touches the delivery every third of --ack-wait (30s); if "
             "the delivery is lost anyway (chanctl was stopped past it), "
             "COMMAND gets SIGTERM, SIGKILL after --grace DUR (10s).  "
             "Stops after --max N values, or when the channel is closed "
             "and every value acknowledged (exit 0); --timeout bounds "
             "each wait for a value (exit 124).  When COMMAND cannot be "
             "run at all, the value is given back and chanctl exits 127.  "
             "SIGTERM and SIGINT are passed to COMMAND; chanctl then "
             "settles its value and exits."},
    {.name = "drop",
     .fn = cli_h_byname,
     .byname = chand_drop,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "remove an object from the server",
     .help = "Removes object NAME from the server."},
    {.name = "list",
     .fn = cli_h_list,
     .max = 1,
     .usage = "[PREFIX]",
     .brief = "list objects",
     .help = "Lists objects (whose name starts with PREFIX), one a line: "
             "name, type, details."},
    {.name = "select",
     .fn = cli_h_select,
     .min = 1,
     .max = -1,
     .opts = O_DEFAULT | O_ACK | O_ACKWAIT,
     .usage = "CASE... [--default] [--ack [--ack-wait DUR]]",
     .brief = "wait until one of several cases can proceed",
     .help = "Waits until one case can proceed and performs it.  CASE is "
             "recv:NAME or send:NAME=VALUE.  Prints the index of the case "
             "taken (from 0), and for a receive a tab and the value; with "
             "--default prints -1 when nothing is ready.  Exits 1 when the "
             "receive found its channel closed.  --ack makes every receive "
             "case an acknowledged one, as recv --ack: the delivery id on "
             "stderr (with --json, in the output)."},
    {.group = "mutex",
     .name = "lock",
     .fn = cli_h_lock,
     .lock = chand_mutex_lock,
     .min = 1,
     .max = 1,
     .opts = O_LEASE,
     .usage = "NAME [--lease DUR]",
     .brief = "lock a mutex and print its fencing token",
     .help = "Locks mutex NAME.  " LOCK_HELP},
    {.group = "mutex",
     .name = "unlock",
     .fn = cli_h_unlock,
     .unlock = chand_mutex_unlock,
     .min = 1,
     .max = 1,
     .opts = O_TOKEN,
     .usage = "NAME [--token T]",
     .brief = "unlock a mutex",
     .help = "Unlocks mutex NAME (a lease-held lock needs its --token)."},
    {.group = "mutex",
     .name = "run",
     .fn = cli_h_run,
     .lock = chand_mutex_lock,
     .unlock = chand_mutex_unlock,
     .min = 1,
     .max = 1,
     .opts = O_CMD | O_LEASE | O_GRACE,
     .usage = "NAME -- COMMAND [ARG...]",
     .brief = "hold a mutex while a command runs",
     .help = "Holds mutex NAME exactly while COMMAND runs (as flock(1)) "
             "and exits with COMMAND's status.  " RUN_HELP},
    {.group = "rwmutex",
     .name = "lock",
     .fn = cli_h_lock,
     .lock = chand_rwmutex_lock,
     .min = 1,
     .max = 1,
     .opts = O_LEASE,
     .usage = "NAME [--lease DUR]",
     .brief = "write-lock an rwmutex",
     .help = "Write-locks rwmutex NAME.  " LOCK_HELP},
    {.group = "rwmutex",
     .name = "unlock",
     .fn = cli_h_unlock,
     .unlock = chand_rwmutex_unlock,
     .min = 1,
     .max = 1,
     .opts = O_TOKEN,
     .usage = "NAME [--token T]",
     .brief = "write-unlock an rwmutex",
     .help = "Write-unlocks rwmutex NAME."},
    {.group = "rwmutex",
     .name = "rlock",
     .fn = cli_h_lock,
     .lock = chand_rwmutex_rlock,
     .min = 1,
     .max = 1,
     .opts = O_LEASE,
     .usage = "NAME [--lease DUR]",
     .brief = "read-lock an rwmutex",
     .help = "Read-locks rwmutex NAME.  " LOCK_HELP},
    {.group = "rwmutex",
     .name = "runlock",
     .fn = cli_h_unlock,
     .unlock = chand_rwmutex_runlock,
     .min = 1,
     .max = 1,
     .opts = O_TOKEN,
     .usage = "NAME [--token T]",
     .brief = "read-unlock an rwmutex",
     .help = "Read-unlocks rwmutex NAME."},
    {.group = "rwmutex",
     .name = "run",
     .fn = cli_h_rw_run,
     .min = 1,
     .max = 1,
     .opts = O_CMD | O_READ | O_LEASE | O_GRACE,
     .usage = "NAME [--read] -- COMMAND [ARG...]",
     .brief = "hold an rwmutex while a command runs",
     .help = "Holds rwmutex NAME (the read side with --read) while "
             "COMMAND runs and exits with its status.  " RUN_HELP},
    {.group = "wg",
     .name = "add",
     .fn = cli_h_wg_add,
     .min = 1,
     .max = 2,
     .usage = "NAME [DELTA]",
     .brief = "add to a WaitGroup's counter",
     .help = "Adds DELTA (default 1, may be negative) to WaitGroup NAME "
             "and prints the counter."},
    {.group = "wg",
     .name = "done",
     .fn = cli_h_wg_done,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "decrement a WaitGroup's counter",
     .help = "Decrements WaitGroup NAME and prints the counter."},
    {.group = "wg",
     .name = "wait",
     .fn = cli_h_wg_wait,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "wait until a WaitGroup's counter is zero",
     .help = "Waits until the counter of WaitGroup NAME is zero."},
    {.group = "once",
     .name = "do",
     .fn = cli_h_once_do,
     .min = 1,
     .max = 1,
     .opts = O_CMD | O_GRACE,
     .usage = "NAME -- COMMAND [ARG...]",
     .brief = "run a command once across all callers",
     .help = "Runs COMMAND only in the first caller of NAME across all "
             "processes and exits with its status; the others wait until "
             "it has finished and exit with the same status without "
             "running it (so do later callers: the once keeps it).  If the "
             "connection to the server is lost while COMMAND runs (the "
             "server then lets the next caller run it), COMMAND gets "
             "SIGTERM, SIGKILL after --grace DUR (10s), and chanctl exits "
             "125."},
    {.group = "cond",
     .name = "wait",
     .fn = cli_h_cond_wait,
     .min = 2,
     .max = 2,
     .usage = "NAME MUTEX",
     .brief = "wait for a signal on a Cond",
     .help = "Locks MUTEX, waits for a signal on Cond NAME, and unlocks "
             "MUTEX."},
    {.group = "cond",
     .name = "signal",
     .fn = cli_h_byname,
     .byname = chand_cond_signal,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "wake one waiter of a Cond",
     .help = "Wakes one waiter of Cond NAME."},
    {.group = "cond",
     .name = "broadcast",
     .fn = cli_h_byname,
     .byname = chand_cond_broadcast,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "wake every waiter of a Cond",
     .help = "Wakes every waiter of Cond NAME."},
    {.group = "pool",
     .name = "put",
     .fn = cli_h_pool_put,
     .min = 2,
     .max = 2,
     .usage = "NAME VALUE|-",
     .brief = "put a value into a Pool",
     .help = "Puts VALUE into Pool NAME."},
    {.group = "pool",
     .name = "get",
     .fn = cli_h_pool_get,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "take a value from a Pool",
     .help = "Takes a value from Pool NAME and prints it; exits 1 when "
             "empty."},
    {.group = "map",
     .name = "store",
     .fn = cli_h_map_store,
     .min = 3,
     .max = 3,
     .usage = "NAME KEY VALUE|-",
     .brief = "store a value under a key",
     .help = "Stores VALUE under KEY in Map NAME."},
    {.group = "map",
     .name = "load",
     .fn = cli_h_map_load,
     .min = 2,
     .max = 2,
     .usage = "NAME KEY",
     .brief = "print the value of a key",
     .help = "Prints the value of KEY; exits 1 when KEY is absent."},
    {.group = "map",
     .name = "delete",
     .fn = cli_h_map_delete,
     .min = 2,
     .max = 2,
     .usage = "NAME KEY",
     .brief = "delete a key",
     .help = "Deletes KEY."},
    {.group = "map",
     .name = "load-or-store",
     .fn = cli_h_map_xchg,
     .xchg = chand_map_load_or_store,
     .key = "value",
     .min = 3,
     .max = 3,
     .usage = "NAME KEY VALUE|-",
     .brief = "print a key's value, storing one if absent",
     .help = "Prints the value of KEY, storing VALUE first when KEY is "
             "absent."},
    {.group = "map",
     .name = "load-and-delete",
     .fn = cli_h_map_load_and_delete,
     .min = 2,
     .max = 2,
     .usage = "NAME KEY",
     .brief = "delete a key and print its value",
     .help = "Deletes KEY and prints its value; exits 1 when KEY was "
             "absent."},
    {.group = "map",
     .name = "swap",
     .fn = cli_h_map_xchg,
     .xchg = chand_map_swap,
     .key = "previous",
     .min = 3,
     .max = 3,
     .usage = "NAME KEY VALUE|-",
     .brief = "store a value and print the previous one",
     .help = "Stores VALUE under KEY and prints the previous value, if "
             "any."},
    {.group = "map",
     .name = "cas",
     .fn = cli_h_map_cas,
     .min = 4,
     .max = 4,
     .usage = "NAME KEY OLD NEW",
     .brief = "compare and swap a key's value",
     .help = "Stores NEW under KEY if it holds OLD; prints true/false and "
             "exits 1 when not swapped."},
    {.group = "map",
     .name = "cad",
     .fn = cli_h_map_cad,
     .min = 3,
     .max = 3,
     .usage = "NAME KEY OLD",
     .brief = "compare and delete a key",
     .help = "Deletes KEY if it holds OLD; prints true/false and exits 1 "
             "when not deleted."},
    {.group = "map",
     .name = "range",
     .fn = cli_h_map_range,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "print every entry",
     .help = "Prints every entry, one a line: KEY, a tab, the value."},
    {.group = "map",
     .name = "len",
     .fn = cli_h_map_len,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "print the number of entries",
     .help = "Prints the number of entries."},
    {.group = "map",
     .name = "clear",
     .fn = cli_h_byname,
     .byname = chand_map_clear,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "delete every entry",
     .help = "Deletes every entry."},
    {.group = "atomic",
     .name = "load",
     .fn = cli_h_atomic_load,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "print a counter",
     .help = "Prints the int64 counter NAME."},
    {.group = "atomic",
     .name = "store",
     .fn = cli_h_atomic_store,
     .min = 2,
     .max = 2,
     .usage = "NAME N",
     .brief = "set a counter",
     .help = "Sets counter NAME to N."},
    {.group = "atomic",
     .name = "add",
     .fn = cli_h_atomic_add,
     .min = 1,
     .max = 2,
     .usage = "NAME [DELTA]",
     .brief = "add to a counter and print it",
     .help = "Adds DELTA (default 1, may be negative) and prints the new "
             "value."},
    {.group = "atomic",
     .name = "swap",
     .fn = cli_h_atomic_swap,
     .min = 2,
     .max = 2,
     .usage = "NAME N",
     .brief = "set a counter and print the old value",
     .help = "Sets counter NAME to N and prints the old value."},
    {.group = "atomic",
     .name = "cas",
     .fn = cli_h_atomic_cas,
     .min = 3,
     .max = 3,
     .usage = "NAME OLD NEW",
     .brief = "compare and swap a counter",
     .help = "Sets counter NAME to NEW if it is OLD; prints true/false and "
             "exits 1 when not swapped."},
    {.name = "after",
     .fn = cli_h_timer,
     .timer = chand_timer_after,
     .min = 2,
     .max = 2,
     .usage = "NAME DUR",
     .brief = "make a channel that fires once after DUR",
     .help = "Makes channel NAME that receives one value (the time it "
             "fired) after DUR."},
    {.name = "ticker",
     .fn = cli_h_timer,
     .timer = chand_timer_ticker,
     .min = 2,
     .max = 2,
     .usage = "NAME DUR",
     .brief = "make a channel that ticks every DUR",
     .help = "Makes channel NAME that receives a tick every DUR until "
             "stopped."},
    {.name = "stop",
     .fn = cli_h_stop,
     .min = 1,
     .max = 1,
     .usage = "NAME",
     .brief = "stop a timer or ticker",
     .help = "Stops timer or ticker NAME; prints whether it was still "
             "pending."},
    {.name = "reset",
     .fn = cli_h_reset,
     .min = 2,
     .max = 2,
     .usage = "NAME DUR",
     .brief = "re-arm a timer or ticker",
     .help = "Re-arms timer or ticker NAME for DUR; prints whether it was "
             "pending."},
    {.name = "afterfunc",
     .fn = cli_h_afterfunc,
     .min = 2,
     .max = 3,
     .usage = "DUR METHOD [PARAMS]",
     .brief = "run a request on the server after DUR",
     .help = "Runs request METHOD PARAMS on the server after DUR; prints "
             "the timer's name (for stop)."},
    {.name = "go",
     .fn = cli_h_go,
     .min = 1,
     .max = 2,
     .usage = "METHOD [PARAMS]",
     .brief = "run a request in a new server goroutine",
     .help = "Runs request METHOD PARAMS in a new server goroutine; prints "
             "its id."},
    {.name = "stats",
     .fn = cli_h_stats,
     .brief = "print the runtime's stats",
     .help = "Prints the runtime's stats."},
    {.name = "dump",
     .fn = cli_h_dump,
     .brief = "print every object with its holders and waiters",
     .help = "Prints every object, sorted by name, as a tree: a line with "
             "its type, name and state (a channel's len/cap), one per "
             "holder (session, token, how long, lease) and one per waiter "
             "(session, what it waits for, how long), as a goroutine dump "
             "does.  --json prints the server's runtime.dump result."},
    {.name = "watch",
     .fn = cli_h_watch,
     .min = 1,
     .max = 1,
     .opts = O_INTERVAL,
     .usage = "NAME [--interval DUR]",
     .brief = "print a line each time an object changes",
     .help = "Polls the server every --interval (200ms) and prints a line, "
             "with the time, each time the length, holders or waiters of "
             "object NAME change (a JSON object a line with --json).  Runs "
             "until interrupted, or for --timeout DUR (then exits 0)."},
    {.name = "top",
     .fn = cli_h_top,
     .opts = O_INTERVAL,
     .usage = "[--interval DUR]",
     .brief = "a live view of the server",
     .help = "Redraws every --interval (1s) the server's sessions, "
             "goroutines, memory and requests per second, and its objects "
             "sorted by waiters (then holders) with the longest wait and "
             "their requests per second; r sorts by that rate instead (and "
             "back).  q or Ctrl-C quits; --timeout DUR stops after DUR."},
    {.name = "gomaxprocs",
     .fn = cli_h_gomaxprocs,
     .max = 1,
     .usage = "[N]",
     .brief = "set or read GOMAXPROCS",
     .help = "Sets GOMAXPROCS to N (or only reads it); prints the previous "
             "value."},
    {.group = "cluster",
     .name = "status",
     .fn = cli_h_cluster_status,
     .brief = "print a node's role, term, leader and peers",
     .help = "Prints the cluster's status as the node reached sees it: its "
             "role, term and commit index, the leader, and every peer."},
    {.group = "cluster",
     .name = "add",
     .fn = cli_h_cluster_add,
     .min = 2,
     .max = 2,
     .usage = "ID HOST:CLIENT_PORT:RAFT_PORT",
     .brief = "add a node to the cluster",
     .help = "Adds node ID, which clients reach at HOST:CLIENT_PORT and "
             "the other nodes at HOST:RAFT_PORT (an entry of the cluster "
             "setting); it votes once it has caught up.  Start the node "
             "first, with --cluster-join."},
    {.group = "cluster",
     .name = "remove",
     .fn = cli_h_cluster_remove,
     .min = 1,
     .max = 1,
     .usage = "ID",
     .brief = "remove a node from the cluster",
     .help = "Removes node ID from the cluster; stop it afterwards."},
};

const size_t cli_ncmds = sizeof cli_cmds / sizeof cli_cmds[0];
